//! `POST /v3/assets` (multipart/form-data, field `file`, at most 32 MiB, the
//! type detected from the bytes: png, jpeg, mp4, webm, mp3, wav, pdf, srt)
//! and the uploaded files (`/v3-assets/{asset_id}`).
//!
//! Asset ids are signed (owner, type, size), so any simulator process accepts
//! them in `files:[{"type":"asset_id",…}]` for the same key; the bytes are
//! kept only by the process that took the upload (at most 64 MiB, oldest
//! dropped first).

use std::{
    collections::{HashMap, VecDeque},
    ops::Range,
    sync::Arc,
};

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    super::ids,
    SimState, authorize, data, error, invalid, read_body, record,
    sign::{self, AssetRef},
};

/// Largest file `POST /v3/assets` takes.
pub(super) const MAX_ASSET: usize = 32 * 1024 * 1024;
/// Largest request body: the file plus the multipart framing around it.
const MAX_BODY: usize = MAX_ASSET + 1024 * 1024;
/// Most bytes of uploads kept at once.
const KEEP_BYTES: usize = 64 * 1024 * 1024;

/// The accepted types; an asset id carries the index of its type.
const TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/wav",
    "application/pdf",
    "application/x-subrip",
];

pub(super) fn is_accepted(media_type: &str) -> bool {
    TYPES.iter().any(|t| t.eq_ignore_ascii_case(media_type))
}

pub(super) fn accepted_list() -> String {
    TYPES.join(", ")
}

/// The files uploaded to this process.
#[derive(Debug, Default)]
pub(super) struct Store {
    files: HashMap<String, (&'static str, Bytes)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Store {
    fn insert(&mut self, id: String, mime: &'static str, data: Bytes) {
        self.bytes += data.len();
        self.order.push_back(id.clone());
        self.files.insert(id, (mime, data));
        while self.bytes > KEEP_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((_, gone)) = self.files.remove(&old) {
                self.bytes -= gone.len();
            }
        }
    }
}

/// The type of a file, from its first bytes.
pub(super) fn sniff(b: &[u8]) -> Option<&'static str> {
    let at = |range: Range<usize>| b.get(range);
    let t = if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if at(4..8) == Some(b"ftyp") {
        "video/mp4"
    } else if b.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        "video/webm"
    } else if b.starts_with(b"ID3")
        || matches!(b, [0xff, second, ..] if second & 0xe0 == 0xe0 && second & 0x06 != 0)
    {
        "audio/mpeg"
    } else if b.starts_with(b"RIFF") && at(8..12) == Some(b"WAVE") {
        "audio/wav"
    } else if b.starts_with(b"%PDF-") {
        "application/pdf"
    } else if is_srt(b) {
        "application/x-subrip"
    } else {
        return None;
    };
    Some(t)
}

/// SubRip: a cue number, then `HH:MM:SS,mmm --> HH:MM:SS,mmm`.
fn is_srt(b: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&b[..b.len().min(256)]);
    let mut lines = head.trim_start_matches('\u{feff}').lines();
    let number = lines.next().map(str::trim).unwrap_or("");
    let timing = lines.next().unwrap_or("");
    let stamp = |s: &str| {
        let s = s.trim().as_bytes();
        s.len() == 12
            && s.iter().enumerate().all(|(i, c)| match i {
                2 | 5 => *c == b':',
                8 => *c == b',' || *c == b'.',
                _ => c.is_ascii_digit(),
            })
    };
    !number.is_empty()
        && number.bytes().all(|c| c.is_ascii_digit())
        && timing
            .split_once("-->")
            .is_some_and(|(a, z)| stamp(a) && stamp(z))
}

/// The boundary of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    parts
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .filter(|b| (1..=70).contains(&b.len()))
}

/// The `file` field of a multipart body.
#[derive(Debug, PartialEq, Eq)]
struct Part {
    filename: Option<String>,
    content_type: Option<String>,
    range: Range<usize>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = from;
    while i <= last_start {
        let at = i + hay[i..=last_start].iter().position(|&b| b == first)?;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// `name="value"` pairs of a header value such as Content-Disposition.
fn header_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(semi) = rest.find(';') {
        rest = &rest[semi + 1..];
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        let after = rest[eq + 1..].trim_start();
        let (val, tail) = match after.strip_prefix('"') {
            Some(q) => match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            },
            None => after.split_at(after.find(';').unwrap_or(after.len())),
        };
        out.push((key, val.trim().to_string()));
        rest = tail;
    }
    out
}

/// The `file` part; `Ok(None)` when the body has no such field, `Err` when
/// the body is not well-formed multipart.
fn file_part(body: &[u8], boundary: &str) -> Result<Option<Part>, ()> {
    let delimiter = format!("--{boundary}").into_bytes();
    let next = format!("\r\n--{boundary}").into_bytes();
    let mut at = find(body, &delimiter, 0).ok_or(())? + delimiter.len();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(None);
        }
        let start = at + 2;
        if !rest.starts_with(b"\r\n") {
            return Err(());
        }
        let (head, content_start) = if body[start..].starts_with(b"\r\n") {
            (String::new(), start + 2)
        } else {
            let end = find(body, b"\r\n\r\n", start).ok_or(())?;
            (
                String::from_utf8_lossy(&body[start..end]).into_owned(),
                end + 4,
            )
        };
        let content_end = find(body, &next, content_start).ok_or(())?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for (pk, pv) in header_params(v) {
                    match pk.as_str() {
                        "name" => name = Some(pv),
                        "filename" => filename = Some(pv),
                        _ => {}
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
        if name.as_deref() == Some("file") {
            return Ok(Some(Part {
                filename,
                content_type,
                range: content_start..content_end,
            }));
        }
        at = content_end + next.len();
    }
}

/// `POST /v3/assets`.
pub(super) async fn upload(
    State(state): State<Arc<SimState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => {
            record(&state, "asset", "POST", &uri, &headers, None);
            return r;
        }
    };
    let Some(boundary) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(boundary)
    else {
        record(&state, "asset", "POST", &uri, &headers, None);
        return invalid(
            "file",
            "Send the file as multipart/form-data with a field named 'file'",
        );
    };
    let bytes = match read_body(body, &headers, MAX_BODY).await {
        Ok(b) => b,
        Err(r) => {
            record(&state, "asset", "POST", &uri, &headers, None);
            return r;
        }
    };
    let part = file_part(&bytes, &boundary);
    // The file itself is not kept in the request log, only what describes it.
    let logged = match &part {
        Ok(Some(p)) => Some(json!({
            "filename": p.filename,
            "content_type": p.content_type,
            "size_bytes": p.range.len(),
        })),
        _ => None,
    };
    record(&state, "asset", "POST", &uri, &headers, logged);
    let part = match part {
        Ok(Some(p)) => p,
        Ok(None) => return invalid("file", "The multipart field 'file' is required"),
        Err(()) => return invalid("file", "The multipart/form-data body is malformed"),
    };
    let size = part.range.len();
    if size > MAX_ASSET {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!(
                "The file has {size} bytes; POST /v3/assets takes at most {MAX_ASSET} (32 MB)"
            ),
            Some("file"),
        );
    }
    if size == 0 {
        return invalid("file", "The file is empty");
    }
    let content = bytes.slice(part.range);
    let Some(mime) = sniff(&content) else {
        return invalid(
            "file",
            &format!("Unsupported file type; accepted: {}", accepted_list()),
        );
    };
    let asset = AssetRef {
        owner: ids::owner_tag(&key),
        mime: TYPES
            .iter()
            .position(|t| *t == mime)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(u8::MAX),
        size: u32::try_from(size).unwrap_or(u32::MAX),
        nonce: rand::random(),
    };
    let id = sign::asset_id(&asset);
    state.lock().heygen.assets.insert(id.clone(), mime, content);
    data(json!({
        "asset_id": id,
        "url": format!("{}/v3-assets/{id}", state.base_url),
        "mime_type": mime,
        "size_bytes": size,
    }))
}

/// `GET /v3-assets/{asset_id}`: an uploaded file, while this process keeps it.
pub(super) async fn asset_file(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "uploaded", "GET", &uri, &headers, None);
    let kept = state.lock().heygen.assets.files.get(&id).cloned();
    match kept {
        Some((mime, bytes)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_told_by_their_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(crate::simulator::SAMPLE_MP4), Some("video/mp4"));
        assert_eq!(sniff(&[0x1a, 0x45, 0xdf, 0xa3, 1]), Some("video/webm"));
        assert_eq!(sniff(b"ID3\x04\x00"), Some("audio/mpeg"));
        assert_eq!(sniff(&[0xff, 0xfb, 0x90]), Some("audio/mpeg"));
        assert_eq!(sniff(b"RIFF\x24\x00\x00\x00WAVEfmt "), Some("audio/wav"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(
            sniff(b"1\r\n00:00:00,000 --> 00:00:01,500\r\nHi\r\n"),
            Some("application/x-subrip")
        );
        assert_eq!(sniff(b"hello, plain text"), None);
        assert_eq!(sniff(b"<html><body>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn the_file_part_is_found_among_others() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a;b.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--Xy\r\n--XyZ--\r\n";
        let part = file_part(body, "XyZ").unwrap().unwrap();
        assert_eq!(part.filename.as_deref(), Some("a;b.png"));
        assert_eq!(part.content_type.as_deref(), Some("image/png"));
        assert_eq!(&body[part.range], b"\x89PNG\r\n--Xy");

        let none = b"--B\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--B--";
        assert_eq!(file_part(none, "B"), Ok(None));
        assert_eq!(file_part(b"no delimiter at all", "B"), Err(()));
        assert_eq!(
            file_part(
                b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nunterminated",
                "B"
            ),
            Err(())
        );
    }

    #[test]
    fn find_locates_needles() {
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abc", b"abcd", 0), None);
        assert_eq!(find(b"aaa", b"a", 3), None);
        assert_eq!(find(b"", b"a", 0), None);
    }
}

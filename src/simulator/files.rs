//! The video files (`/files/{task id}.mp4`), uploads
//! (`POST /v1/files/upload/base64`) and the uploaded files (`/files/{id}`).

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    SAMPLE_MP4, SimState, authorize, error, faults::FileFault, ids, invalid, tasks::video_ready,
};

/// Largest decoded upload, as the gateway's own server allows.
pub(super) const MAX_UPLOAD: usize = 20 * 1024 * 1024;
/// Largest upload request body: the base64 of [`MAX_UPLOAD`] plus the JSON around it.
pub(super) const MAX_UPLOAD_BODY: usize = MAX_UPLOAD / 3 * 4 + 64 * 1024;
/// Most bytes of uploads kept at once; the oldest go first.
const KEEP_UPLOADS: usize = 64 * 1024 * 1024;
const UPLOAD_PREFIX: &str = "file-sim-";

/// File types an upload may have, by extension.
const TYPES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("mp4", "video/mp4"),
    ("mov", "video/quicktime"),
    ("webm", "video/webm"),
    ("mp3", "audio/mpeg"),
    ("wav", "audio/wav"),
    ("m4a", "audio/mp4"),
    ("pdf", "application/pdf"),
];

#[derive(Debug, Clone)]
struct Upload {
    mime: String,
    data: Bytes,
}

/// The files uploaded to this process, at most [`KEEP_UPLOADS`] bytes.
#[derive(Debug, Default)]
pub(super) struct Uploads {
    files: HashMap<String, Upload>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Uploads {
    fn insert(&mut self, id: String, upload: Upload) {
        self.bytes += upload.data.len();
        self.order.push_back(id.clone());
        self.files.insert(id, upload);
        while self.bytes > KEEP_UPLOADS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.files.remove(&old) {
                self.bytes -= gone.data.len();
            }
        }
    }
}

pub(super) async fn file(
    State(state): State<Arc<SimState>>,
    Path(file): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if file.starts_with(UPLOAD_PREFIX) {
        state.record("uploaded", "GET", &format!("/files/{file}"), &headers, None);
        return match state.lock().uploads.files.get(&file) {
            Some(u) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, u.mime.clone())],
                u.data.clone(),
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    state.record("file", "GET", &format!("/files/{file}"), &headers, None);
    let Some(task) = file.strip_suffix(".mp4").and_then(ids::decode) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !video_ready(&task) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let age = SystemTime::now()
        .duration_since(task.created)
        .unwrap_or_default();
    if age > state.config.link_ttl {
        return (StatusCode::GONE, "link expired").into_response();
    }
    // `[link:403]`: the first link handed out is refused, and the next status
    // lookup hands out a fresh one.
    let version = query.get("v").and_then(|v| v.parse::<u64>().ok());
    if task.faults.link_403 && version.unwrap_or(1) < 2 {
        if let Some(id) = file.strip_suffix(".mp4") {
            let mut inner = state.lock();
            let run = inner.run(id);
            run.link_version = run.link_version.max(2);
        }
        return (
            StatusCode::FORBIDDEN,
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )
            .into_response();
    }
    video(task.faults.file)
}

/// The sample video, delivered as badly as `fault` asks.
pub(super) fn video(fault: Option<FileFault>) -> Response {
    let len = SAMPLE_MP4.len().to_string();
    let ok = |body: Body, with_length: bool| {
        let mut b = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "video/mp4");
        if with_length {
            b = b.header(header::CONTENT_LENGTH, len.as_str());
        }
        b.body(body)
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    match fault {
        None => ok(Body::from(Bytes::from_static(SAMPLE_MP4)), true),
        Some(FileFault::Truncate) => {
            // Headers and half the body go out; a moment later the connection is cut.
            let stream = futures::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from_static(
                            &SAMPLE_MP4[..SAMPLE_MP4.len() / 2],
                        )),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Some((Err(std::io::Error::other("simulated connection drop")), 2))
                    }
                    _ => None,
                }
            });
            ok(Body::from_stream(stream), true)
        }
        Some(FileFault::NoLength) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = SAMPLE_MP4
                .chunks(512)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            ok(Body::from_stream(futures::stream::iter(chunks)), false)
        }
        Some(FileFault::Empty) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "video/mp4")], "").into_response()
        }
        Some(FileFault::Html) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body>Please sign in</body></html>",
        )
            .into_response(),
        Some(FileFault::Slow(total)) => {
            const PARTS: usize = 10;
            let pause = total / PARTS as u32;
            let chunk = SAMPLE_MP4.len().div_ceil(PARTS);
            let stream = futures::stream::unfold(0usize, move |at| async move {
                if at >= SAMPLE_MP4.len() {
                    return None;
                }
                tokio::time::sleep(pause).await;
                let end = (at + chunk).min(SAMPLE_MP4.len());
                Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from_static(&SAMPLE_MP4[at..end])),
                    end,
                ))
            });
            ok(Body::from_stream(stream), true)
        }
    }
}

/// `POST /v1/files/upload/base64` with `{"file_data", "file_name"?}`.
pub(super) async fn upload(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    // The file itself is not kept in the request log, only its name.
    let logged = parsed
        .as_ref()
        .map(|v| json!({"file_name": v.get("file_name").cloned().unwrap_or(Value::Null)}));
    state.record(
        "upload",
        "POST",
        "/v1/files/upload/base64",
        &headers,
        logged,
    );
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let Some(Value::Object(req)) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "Request body must be a JSON object",
            "invalid_request_error",
        );
    };
    let name = match req.get("file_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => return invalid("invalid_parameter", "file_name must be a non-empty string"),
    };
    let Some(file_data) = req.get("file_data").and_then(Value::as_str) else {
        return invalid(
            "invalid_parameter",
            "file_data is required (base64 or a data: URL)",
        );
    };
    // A data: URL names its own type; a bare base64 string takes it from the name.
    let (declared, encoded) = match file_data.strip_prefix("data:") {
        Some(rest) => match rest.split_once(";base64,") {
            Some((mime, data)) => (Some(mime.to_ascii_lowercase()), data),
            None => return invalid("invalid_file_data", "a data: URL must be base64 encoded"),
        },
        None => (None, file_data),
    };
    let mime = match (&name, declared) {
        (Some(name), _) => match extension_type(name) {
            Some(mime) => mime.to_string(),
            None => {
                return invalid(
                    "invalid_file_type",
                    &format!("unsupported file type: {name}"),
                );
            }
        },
        (None, Some(mime)) if TYPES.iter().any(|(_, m)| *m == mime) => mime,
        (None, Some(mime)) => {
            return invalid(
                "invalid_file_type",
                &format!("unsupported file type: {mime}"),
            );
        }
        (None, None) => "application/octet-stream".to_string(),
    };
    let Some(data) = unbase64(encoded) else {
        return invalid("invalid_file_data", "file_data is not valid base64");
    };
    if data.is_empty() {
        return invalid("invalid_file_data", "the file is empty");
    }
    if data.len() > MAX_UPLOAD {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            "files may be at most 20 MB",
            "invalid_request_error",
        );
    }
    let id = format!("{UPLOAD_PREFIX}{:016x}", rand::random::<u64>());
    let size = data.len();
    state.lock().uploads.insert(
        id.clone(),
        Upload {
            mime,
            data: Bytes::from(data),
        },
    );
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Json(json!({
        "id": id,
        "object": "file",
        "filename": name.unwrap_or_else(|| id.clone()),
        "url": format!("{}/files/{id}", state.base_url),
        "size": size,
        "created": created,
    }))
    .into_response()
}

fn extension_type(name: &str) -> Option<&'static str> {
    let (_, ext) = name.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    TYPES.iter().find(|(e, _)| *e == ext).map(|(_, m)| *m)
}

/// Standard base64 (RFC 4648 §4), padding optional, ASCII whitespace ignored.
fn unbase64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let body = text.trim_end_matches(|c: char| c == '=' || c.is_ascii_whitespace());
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes().filter(|c| !c.is_ascii_whitespace()) {
        acc = ((acc << 6) | value(c)?) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // A single leftover character cannot encode a byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(unbase64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(unbase64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(unbase64("aGVs\nbG8h").unwrap(), b"hello!");
        assert_eq!(unbase64("").unwrap(), b"");
        assert!(unbase64("a").is_none());
        assert!(unbase64("aGV*").is_none());
    }

    #[test]
    fn types_follow_the_extension() {
        assert_eq!(extension_type("diagram.PNG"), Some("image/png"));
        assert_eq!(extension_type("notes.exe"), None);
        assert_eq!(extension_type("noext"), None);
    }
}

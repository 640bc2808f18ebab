//! `GET /v3/videos/{video_id}` and the files its links point at.
//!
//! Links look presigned: `{base}/v3-files/{video_id}.mp4?Expires=<unix s>&Signature=<mac>`
//! (also `.captioned.mp4`, `.srt`, `.png` for the thumbnail, `.gif`), valid
//! until `Expires` = the status call + [`SimConfig::link_ttl`]; every status
//! call hands out fresh ones. The file host answers S3-style: 403 with an XML
//! `AccessDenied` body for an expired link or a bad signature, 404
//! `NoSuchKey` for a video that is not completed.
//!
//! [`SimConfig::link_ttl`]: crate::simulator::SimConfig::link_ttl

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    super::{files, ids},
    SimState,
    agents::{Outcome, Plan, RENDER_FAILURE, STOP_FAILURE, lookup, title},
    authorize, lookup_answer, not_found, record,
    sign::{self, Session},
    unix,
};

/// The sample video's length, in seconds.
const DURATION: f64 = 1.0;

/// A 1×1 PNG, served as thumbnails and image previews.
pub(super) const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A 1×1 GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x01, 0x44, 0x00, 0x3b,
];

const SUBTITLES: &str = "1\n00:00:00,000 --> 00:00:01,000\nHello from the HeyGen simulator.\n";

/// The video of a lookup: signed by a simulator and owned by this key.
fn owned_video(id: &str, key: &str) -> Option<Session> {
    sign::open_video(id).filter(|s| s.task.owner == ids::owner_tag(key))
}

fn video_not_found(id: &str) -> Response {
    not_found("video_not_found", &format!("Video '{id}' not found"))
}

/// `GET /v3/videos/{video_id}`.
pub(super) async fn video(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "video", "GET", &uri, &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(s) = owned_video(&id, &key) else {
        return video_not_found(&id);
    };
    let session_id = sign::session_id(&s);
    let (fault, run) = lookup(&state, &session_id, &s.task.faults);
    let now = SystemTime::now();
    let plan = Plan::of(&s, run.stopped);
    let snap = plan.at(now.duration_since(s.task.created).unwrap_or_default());
    // Before the agent starts rendering, the video does not exist yet.
    let Some(status) = snap.video else {
        return video_not_found(&id);
    };
    let completed = status == "completed";
    let mut expires = unix(now) + state.config.link_ttl.as_secs();
    if s.task.faults.link_403
        && let Some(refused) = run.refused_link
    {
        expires = expires.max(refused + 1);
    }
    let link = |suffix: &str| {
        completed.then(|| {
            let file = format!("{id}.{suffix}");
            let sig = sign::link_signature(&file, expires);
            format!(
                "{}/v3-files/{file}?Expires={expires}&Signature={sig}",
                state.base_url
            )
        })
    };
    let shown = match &s.task.faults.odd_status {
        Some(odd) if snap.end.is_none() => odd.as_str(),
        _ => status,
    };
    let failure = match snap.end {
        Some((Outcome::RenderFailed, _)) => Some(RENDER_FAILURE),
        Some((Outcome::Stopped, _)) => Some(STOP_FAILURE),
        _ => None,
    };
    let at = |d: Duration| unix(s.task.created + d);
    let answer = json!({"data": {
        "id": id,
        "status": shown,
        "video_url": link("mp4"),
        "captioned_video_url": link("captioned.mp4"),
        "subtitle_url": link("srt"),
        "thumbnail_url": link("png"),
        "gif_url": link("gif"),
        "duration": completed.then_some(DURATION),
        "created_at": at(plan.video_start()),
        "completed_at": completed.then(|| at(s.task.render)),
        "title": title(&s),
        "folder_id": null,
        "output_language": null,
        "video_page_url": format!("{}/v3-share/{id}", state.base_url),
        "failure_code": failure.map(|f| f.0),
        "failure_message": failure.map(|f| f.1),
    }});
    lookup_answer(fault, answer).await
}

/// An S3-style XML error from the file host.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{:016X}</RequestId></Error>",
            rand::random::<u64>()
        ),
    )
        .into_response()
}

/// `GET /v3-files/{video_id}.{mp4|captioned.mp4|srt|png|gif}?Expires=&Signature=`.
pub(super) async fn file(
    State(state): State<Arc<SimState>>,
    Path(file): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (video_id, suffix) = file.split_once('.').unwrap_or((&file, ""));
    let is_video = matches!(suffix, "mp4" | "captioned.mp4");
    let endpoint = if is_video { "file" } else { "artifact" };
    record(&state, endpoint, "GET", &uri, &headers, None);
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(expires), Some(signature)) = (param("Expires"), param("Signature")) else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the Signature and Expires parameters",
        );
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Invalid date");
    };
    if !sign::link_signature_ok(&file, expires, signature) {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    let now = SystemTime::now();
    let now_secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    if now_secs > expires as f64 {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    let no_such_key = || {
        s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    };
    let Some(s) = sign::open_video(video_id) else {
        return no_such_key();
    };
    let session_id = sign::session_id(&s);
    let stopped = state
        .lock()
        .heygen
        .sessions
        .get(&session_id)
        .and_then(|r| r.stopped);
    let snap = Plan::of(&s, stopped).at(now.duration_since(s.task.created).unwrap_or_default());
    if snap.video != Some("completed") {
        return no_such_key();
    }
    if is_video && s.task.faults.link_403 {
        // `[link:403]`: the first link fetched is refused (and any expiring no
        // later); the next status call hands out one that works.
        let mut inner = state.lock();
        let run = inner.heygen.run(&session_id);
        if run.refused_link.is_none_or(|r| expires <= r) {
            run.refused_link = Some(run.refused_link.map_or(expires, |r| r.max(expires)));
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
        }
    }
    let typed = |mime: &'static str, body: &'static [u8]| {
        ([(header::CONTENT_TYPE, mime)], body).into_response()
    };
    match suffix {
        "mp4" | "captioned.mp4" => files::video(s.task.faults.file),
        "srt" => typed("application/x-subrip", SUBTITLES.as_bytes()),
        "png" => typed("image/png", PNG),
        "gif" => typed("image/gif", GIF),
        _ => no_such_key(),
    }
}

/// `video_page_url`: a small page naming the video.
pub(super) async fn page(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "page", "GET", &uri, &headers, None);
    if sign::open_video(&id).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let escaped: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><title>Simulated HeyGen video</title></head><body><h1>Simulated HeyGen video</h1><p>{escaped}</p></body></html>"
        ),
    )
        .into_response()
}

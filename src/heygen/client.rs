//! The v3 client: create, the two-layer status lookup, balance, uploads and
//! stop, over the shared [`Transport`] with `X-Api-Key` and the v3 error
//! envelope. A create is sent once (no idempotency key exists for Video
//! Agent): only a provable pre-send failure or a 429 is retried.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use percent_encoding::utf8_percent_encode;
use reqwest::{StatusCode, header::HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    catalog::Cache,
    expiry::link_expiry,
    types::{AssetInput, CreateAgentRequest, Envelope, ErrorEnvelope, Me, Message, Session, Video},
};
use crate::{
    backend::{
        ApiKey, BackendKind, Cancelled, Capabilities, LinkLifetime, UpstreamError, VideoBackend,
        error::Upstream,
        http::{
            Auth, HttpConfig, SEGMENT, Transport, excerpt, one_line, parse_json, parse_retry_after,
            validate_task_id,
        },
    },
    video::{Balance, Credits, FileRef, NewVideo, TaskErrorView, TaskSnapshot, VideoStatus},
};

/// Uploads take at most 32 MB in one multipart request (HEYGEN_V3.md §5).
pub const MAX_UPLOAD_BYTES: u64 = 32 * 1024 * 1024;
/// Presigned links live about this long, renewed by each lookup (v1 docs).
pub const LINK_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// What HeyGen's own API can do.
pub fn capabilities() -> Capabilities {
    Capabilities {
        kind: BackendKind::Heygen,
        links: LinkLifetime::Renewed(LINK_LIFETIME),
        typical_render: "20–45 minutes",
        poll_after: Duration::from_secs(60),
        min_task_poll: Duration::from_secs(10),
        max_upload_bytes: MAX_UPLOAD_BYTES,
    }
}

/// The v3 client. Cheap to share behind an `Arc`; also the catalogue.
#[derive(Debug)]
pub struct HeygenClient {
    pub(super) transport: Transport,
    caps: Capabilities,
    pub(super) cache: Cache,
}

impl HeygenClient {
    pub fn new(config: HttpConfig) -> Self {
        Self {
            transport: Transport::new(config, Auth::XApiKey, api_error),
            caps: capabilities(),
            cache: Cache::default(),
        }
    }

    pub fn config(&self) -> &HttpConfig {
        self.transport.config()
    }

    /// `POST /v3/video-agents` in `generate` mode.
    #[tracing::instrument(name = "heygen.create", level = "debug", skip_all)]
    pub async fn create_session(
        &self,
        key: &ApiKey,
        video: &NewVideo,
    ) -> Result<Session, UpstreamError> {
        let files: Vec<AssetInput> = video
            .files
            .iter()
            .map(|f| match f {
                FileRef::Url(url) => AssetInput::Url { url: url.clone() },
                FileRef::Asset(id) => AssetInput::AssetId {
                    asset_id: id.clone(),
                },
            })
            .collect();
        let body = CreateAgentRequest {
            prompt: video.prompt.clone(),
            mode: "generate",
            avatar_id: video.avatar_id.clone().filter(|v| !is_auto(v)),
            voice_id: video.voice_id.clone().filter(|v| !is_auto(v)),
            style_id: video.style_id.clone(),
            orientation: video.orientation,
            files: (!files.is_empty()).then_some(files),
            incognito_mode: video.incognito_mode,
        };
        let body = serde_json::to_vec(&body).map_err(|e| UpstreamError::Decode {
            status: 0,
            detail: e.to_string(),
        })?;
        let url = self.transport.url("/v3/video-agents");
        let (status, bytes) = self
            .transport
            .send_unrepeated(key, &url, Bytes::from(body))
            .await?;
        let session: Session = data_of(status, &bytes, key)?;
        if session.session_id.as_deref().is_none_or(str::is_empty) {
            // The video was probably created, but we cannot name it.
            return Err(UpstreamError::Decode {
                status: status.as_u16(),
                detail: "the answer carries no session_id".into(),
            });
        }
        Ok(session)
    }

    /// `GET /v3/video-agents/{session_id}`.
    pub async fn session(&self, key: &ApiKey, session_id: &str) -> Result<Session, UpstreamError> {
        validate_task_id(session_id)?;
        self.get(key, &format!("/v3/video-agents/{}", segment(session_id)))
            .await
    }

    /// `GET /v3/videos/{video_id}`.
    pub async fn video(&self, key: &ApiKey, video_id: &str) -> Result<Video, UpstreamError> {
        self.get(key, &format!("/v3/videos/{}", segment(video_id)))
            .await
    }

    /// Where a session stands: the session until it names a video, then the
    /// video, with the session's progress.
    #[tracing::instrument(name = "heygen.status", level = "debug", skip_all, fields(task_id = %task_id))]
    pub async fn snapshot(
        &self,
        key: &ApiKey,
        task_id: &str,
    ) -> Result<TaskSnapshot, UpstreamError> {
        let session = self.session(key, task_id).await?;
        let video = match session.video_id.as_deref().filter(|v| !v.is_empty()) {
            // The session names its video before the video can be looked
            // up: until then the session's own state is the answer.
            Some(video_id) => match self.video(key, video_id).await {
                Ok(v) => Some(v),
                Err(e) if e.is_not_found() && !s_finished(&session) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        Ok(snapshot_of(task_id, &session, video.as_ref()))
    }

    /// `GET /v3/users/me`: wallet, subscription or usage-based balance.
    #[tracing::instrument(name = "heygen.balance", level = "debug", skip_all)]
    pub async fn me(&self, key: &ApiKey) -> Result<Balance, UpstreamError> {
        let value = self.transport.get_json(key, "/v3/users/me").await?;
        let me: Me = serde_json::from_value(value.get("data").cloned().unwrap_or(Value::Null))
            .map_err(|e| UpstreamError::Decode {
                status: 200,
                detail: format!("not an account answer: {e}"),
            })?;
        let credits = credits_of(&me).ok_or_else(|| UpstreamError::Decode {
            status: 200,
            detail: format!(
                "the account answer states no balance: {}",
                key.scrub(&excerpt(value.to_string().as_bytes()))
            ),
        })?;
        let mut upstream = value;
        if let Some(data) = upstream.get_mut("data").and_then(Value::as_object_mut) {
            // The account's personal details are not needed to show a balance.
            for field in ["email", "first_name", "last_name", "username"] {
                data.remove(field);
            }
        }
        Ok(Balance {
            credits,
            price_per_video: None,
            upstream,
        })
    }

    /// `POST /v3/assets` (multipart, field `file`): the asset id for `files`.
    #[tracing::instrument(name = "heygen.upload", level = "debug", skip_all, fields(bytes = data.len()))]
    pub async fn upload_asset(
        &self,
        key: &ApiKey,
        file_name: &str,
        data: &[u8],
    ) -> Result<String, UpstreamError> {
        let boundary = format!("heygen-video-mcp-{:016x}", rand::random::<u64>());
        let name: String = file_name
            .chars()
            .map(|c| {
                if c.is_control() || matches!(c, '"' | '\\') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let mut body = Vec::with_capacity(data.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{name}\"\r\nContent-Type: {}\r\n\r\n",
                mime_of(&name)
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = self.transport.url("/v3/assets");
        let (status, bytes) = self
            .transport
            .post_unrepeated(
                key,
                &url,
                Bytes::from(body),
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .await?;
        let asset: super::types::Asset = data_of(status, &bytes, key)?;
        asset
            .asset_id
            .filter(|a| !a.is_empty())
            .ok_or(UpstreamError::Decode {
                status: status.as_u16(),
                detail: "the upload answer carries no asset_id".into(),
            })
    }

    /// `POST /v3/video-agents/{session_id}/stop`.
    #[tracing::instrument(name = "heygen.stop", level = "debug", skip_all, fields(task_id = %session_id))]
    pub async fn stop(&self, key: &ApiKey, session_id: &str) -> Result<(), UpstreamError> {
        validate_task_id(session_id)?;
        let url = self
            .transport
            .url(&format!("/v3/video-agents/{}/stop", segment(session_id)));
        let (status, bytes) = self
            .transport
            .send_unrepeated(key, &url, Bytes::from_static(b"{}"))
            .await?;
        parse_json(status, &bytes, key).map(drop)
    }

    /// An idempotent GET of `{"data": T}`.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        key: &ApiKey,
        path: &str,
    ) -> Result<T, UpstreamError> {
        let url = self.transport.url(path);
        let (status, bytes) = self.transport.send_idempotent(key, &url).await?;
        data_of(status, &bytes, key)
    }
}

/// `auto` and blanks mean "let the agent choose": the field is left out.
fn is_auto(v: &str) -> bool {
    let v = v.trim();
    v.is_empty() || v.eq_ignore_ascii_case("auto")
}

pub(super) fn segment(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

/// The MIME type a file name suggests (HeyGen detects it from the bytes anyway).
fn mime_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "m4a" | "aac" => "audio/aac",
        "ogg" => "audio/ogg",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// The `data` of a 2xx answer, key scrubbed.
fn data_of<T: DeserializeOwned>(
    status: StatusCode,
    bytes: &[u8],
    key: &ApiKey,
) -> Result<T, UpstreamError> {
    let value = parse_json(status, bytes, key)?;
    let env: Envelope<T> = serde_json::from_value(value).map_err(|e| UpstreamError::Decode {
        status: status.as_u16(),
        detail: key.scrub(&format!(
            "not the expected {{\"data\": …}} answer ({e}): {}",
            excerpt(bytes)
        )),
    })?;
    Ok(env.data)
}

fn unix(secs: f64) -> Option<SystemTime> {
    if !(secs.is_finite() && secs > 0.0) {
        return None;
    }
    // Some answers carry milliseconds.
    let secs = if secs > 1e11 { secs / 1000.0 } else { secs };
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
}

/// The session's status word in domain terms (HEYGEN_V3.md §3).
fn session_status(raw: &str) -> VideoStatus {
    match raw.trim().to_ascii_lowercase().as_str() {
        "thinking" | "reviewing" | "waiting_for_input" | "pending" | "queued" => {
            VideoStatus::Pending
        }
        "generating" | "processing" | "rendering" => VideoStatus::Processing,
        "completed" => VideoStatus::Processing,
        "failed" | "error" => VideoStatus::Failed,
        "stopped" | "cancelled" | "canceled" => VideoStatus::Cancelled,
        _ => VideoStatus::Unknown,
    }
}

/// Whether the session itself says it ended (failed or stopped).
fn s_finished(session: &Session) -> bool {
    session_status(session.status.as_deref().unwrap_or_default()).is_finished()
}

/// The video's status word in domain terms; unknown words count as running.
fn video_status(raw: &str) -> VideoStatus {
    match raw.trim().to_ascii_lowercase().as_str() {
        "pending" | "waiting" | "queued" => VideoStatus::Pending,
        "processing" | "rendering" => VideoStatus::Processing,
        "completed" | "success" => VideoStatus::Completed,
        "failed" | "error" => VideoStatus::Failed,
        _ => VideoStatus::Unknown,
    }
}

/// The text of the session's newest error message, if any.
fn session_error(messages: &[Message]) -> Option<String> {
    messages
        .iter()
        .find(|m| m.kind.as_deref() == Some("error"))
        .and_then(|m| match &m.content {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        })
        .map(|s| one_line(&s, 500))
}

/// The session (and its video, once named) as one snapshot.
pub fn snapshot_of(task_id: &str, session: &Session, video: Option<&Video>) -> TaskSnapshot {
    let s_raw = session.status.clone().unwrap_or_default();
    let s_status = session_status(&s_raw);
    let messages = session.messages.as_deref().unwrap_or_default();
    let (status, upstream_status) = match video {
        Some(v) => {
            let v_raw = v.status.clone().unwrap_or_default();
            let v_status = video_status(&v_raw);
            // A failed or stopped session that never finished its video ends
            // the task, whatever the video says.
            let status = match (s_status, v_status) {
                (VideoStatus::Failed | VideoStatus::Cancelled, s) if !s.is_finished() => s_status,
                (_, v) => v,
            };
            (status, format!("{s_raw}/{v_raw}"))
        }
        None => (s_status, s_raw.clone()),
    };
    let progress = match status {
        VideoStatus::Completed => 100,
        _ => session
            .progress
            .map(|p| if p > 0.0 && p < 1.0 { p * 100.0 } else { p })
            .map_or(0, |p| p.clamp(0.0, 99.0).floor() as u8),
    };
    let video_urls = match (status, video) {
        (VideoStatus::Completed, Some(v)) => v
            .video_url
            .iter()
            .filter(|u| !u.trim().is_empty())
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let links_expire_at = video_urls.first().and_then(|u| link_expiry(u));
    let error = match status {
        VideoStatus::Failed | VideoStatus::Cancelled => {
            let from_video = video.and_then(|v| {
                let message = v.failure_message.clone().filter(|m| !m.is_empty());
                (message.is_some() || v.failure_code.is_some()).then(|| TaskErrorView {
                    code: v.failure_code.clone(),
                    message: message.unwrap_or_default(),
                })
            });
            from_video.or_else(|| {
                session_error(messages).map(|message| TaskErrorView {
                    code: None,
                    message,
                })
            })
        }
        _ => None,
    };
    let completed = video.filter(|_| status == VideoStatus::Completed);
    TaskSnapshot {
        task_id: session
            .session_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| task_id.to_string()),
        status,
        upstream_status,
        progress,
        created_at: session.created_at.and_then(unix),
        video_urls,
        links_expire_at,
        error,
        estimated_seconds: None,
        thumbnail_url: completed.and_then(|v| v.thumbnail_url.clone()),
        captioned_video_url: completed
            .and_then(|v| v.captioned_video_url.clone())
            .filter(|u| !u.trim().is_empty()),
        duration: completed
            .and_then(|v| v.duration)
            .filter(|d| *d >= 0.0)
            .map(Duration::from_secs_f64),
    }
}

/// The balance, whichever of the three account kinds answered.
fn credits_of(me: &Me) -> Option<Credits> {
    if let Some(w) = &me.wallet
        && let Some(left) = w.remaining_balance
    {
        return Some(Credits {
            remaining: Some(left),
            used: None,
            total: None,
            unlimited: false,
            unit: Some(
                w.currency
                    .clone()
                    .unwrap_or_else(|| "usd".into())
                    .to_uppercase(),
            ),
        });
    }
    if let Some(u) = &me.usage_based
        && let Some(left) = u.remaining_credits
    {
        return Some(Credits {
            remaining: Some(left),
            used: u.included_credits.map(|i| (i - left).max(0.0)),
            total: u.included_credits,
            unlimited: false,
            unit: Some("credits".into()),
        });
    }
    if let Some(credits) = me.subscription.as_ref().and_then(|s| s.credits.as_ref()) {
        let premium = credits.premium_credits.as_ref().and_then(|c| c.remaining);
        let add_on = credits.add_on_credits.as_ref().and_then(|c| c.remaining);
        if premium.is_some() || add_on.is_some() {
            return Some(Credits {
                remaining: Some(premium.unwrap_or(0.0) + add_on.unwrap_or(0.0)),
                used: None,
                total: None,
                unlimited: false,
                unit: Some("credits".into()),
            });
        }
    }
    None
}

/// The v3 error envelope: `code`, `message`, `param`; the request id from
/// `X-Request-Id`; a non-envelope body (a WAF page) reduced to an excerpt.
fn api_error(status: StatusCode, headers: &HeaderMap, bytes: &[u8], key: &ApiKey) -> UpstreamError {
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = serde_json::from_slice::<ErrorEnvelope>(bytes)
        .ok()
        .and_then(|e| e.error)
        .unwrap_or_default();
    let mut message = match body.message {
        Some(m) => one_line(&m, 500),
        None if bytes.is_empty() => String::new(),
        None => format!("non-JSON answer: {}", excerpt(bytes)),
    };
    message = key.scrub(&message);
    if message.is_empty()
        && let Some(reason) = status.canonical_reason()
    {
        message = reason.to_string();
    }
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| key.scrub(&one_line(s, 100)));
    UpstreamError::Api {
        upstream: Upstream::Heygen,
        status: status.as_u16(),
        code: body.code.map(|c| key.scrub(&one_line(&c, 100))),
        param: body.param.map(|p| key.scrub(&one_line(&p, 100))),
        message,
        request_id,
        retry_after,
    }
}

impl VideoBackend for HeygenClient {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn http_config(&self) -> &crate::backend::http::HttpConfig {
        self.config()
    }

    fn create<'a>(
        &'a self,
        key: &'a ApiKey,
        video: &'a NewVideo,
    ) -> BoxFuture<'a, Result<TaskSnapshot, UpstreamError>> {
        Box::pin(async move {
            let session = self.create_session(key, video).await?;
            let mut snap = snapshot_of("", &session, None);
            if snap.created_at.is_none() {
                snap.created_at = Some(SystemTime::now());
            }
            Ok(snap)
        })
    }

    fn status<'a>(
        &'a self,
        key: &'a ApiKey,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskSnapshot, UpstreamError>> {
        Box::pin(self.snapshot(key, task_id))
    }

    fn balance<'a>(&'a self, key: &'a ApiKey) -> BoxFuture<'a, Result<Balance, UpstreamError>> {
        Box::pin(self.me(key))
    }

    fn upload<'a>(
        &'a self,
        key: &'a ApiKey,
        file_name: &'a str,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<FileRef, UpstreamError>> {
        Box::pin(async move {
            let id = self.upload_asset(key, file_name, data).await?;
            Ok(FileRef::Asset(id))
        })
    }

    fn cancel<'a>(
        &'a self,
        key: &'a ApiKey,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Cancelled, UpstreamError>> {
        Box::pin(async move {
            self.stop(key, task_id).await?;
            Ok(Cancelled::Requested)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(v: Value) -> Session {
        serde_json::from_value(v).unwrap()
    }

    fn video(v: Value) -> Video {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_session_without_a_video_is_pending_with_its_progress() {
        let s = session(
            json!({"session_id": "s1", "status": "thinking", "progress": 7, "created_at": 1796126400}),
        );
        let snap = snapshot_of("s1", &s, None);
        assert_eq!(snap.status, VideoStatus::Pending);
        assert_eq!(snap.progress, 7);
        assert_eq!(snap.upstream_status, "thinking");
        assert!(snap.video_urls.is_empty());
        assert_eq!(snap.created_at, unix(1_796_126_400.0));
    }

    #[test]
    fn a_completed_video_carries_its_link_expiry_and_details() {
        let s = session(
            json!({"session_id": "s1", "status": "completed", "progress": 100, "video_id": "v1"}),
        );
        let v = video(
            json!({"id": "v1", "status": "completed", "duration": "31.5",
            "video_url": "https://cdn/v1.mp4?Expires=1796126400&Signature=x", "thumbnail_url": "https://cdn/t.jpg"}),
        );
        let snap = snapshot_of("s1", &s, Some(&v));
        assert_eq!(snap.status, VideoStatus::Completed);
        assert_eq!(snap.progress, 100);
        assert_eq!(snap.upstream_status, "completed/completed");
        assert_eq!(snap.video_urls.len(), 1);
        assert_eq!(snap.links_expire_at, unix(1_796_126_400.0));
        assert_eq!(snap.duration, Some(Duration::from_millis(31_500)));
        assert_eq!(snap.thumbnail_url.as_deref(), Some("https://cdn/t.jpg"));
        assert_eq!(snap.captioned_video_url, None);
    }

    #[test]
    fn failures_come_from_the_video_or_the_session() {
        let s = session(json!({"session_id": "s1", "status": "generating", "video_id": "v1"}));
        let v = video(
            json!({"status": "failed", "failure_code": "rendering_failed", "failure_message": "Avatar rendering timed out"}),
        );
        let snap = snapshot_of("s1", &s, Some(&v));
        assert_eq!(snap.status, VideoStatus::Failed);
        let e = snap.error.unwrap();
        assert_eq!(e.code.as_deref(), Some("rendering_failed"));
        let s = session(json!({"status": "failed", "messages": [
            {"role": "model", "type": "error", "content": "Could not plan the video"},
            {"role": "user", "type": "text", "content": "hi"}]}));
        let snap = snapshot_of("s1", &s, None);
        assert_eq!(snap.status, VideoStatus::Failed);
        assert_eq!(snap.task_id, "s1");
        assert_eq!(snap.error.unwrap().message, "Could not plan the video");
    }

    #[test]
    fn unknown_words_count_as_running() {
        let s = session(json!({"status": "pondering"}));
        assert_eq!(snapshot_of("s", &s, None).status, VideoStatus::Unknown);
        let s = session(json!({"status": "generating", "video_id": "v"}));
        let v = video(json!({"status": "upscaling"}));
        let snap = snapshot_of("s", &s, Some(&v));
        assert_eq!(snap.status, VideoStatus::Unknown);
        assert!(!snap.status.is_finished());
    }

    #[test]
    fn balances_of_each_account_kind() {
        let me = |v: Value| credits_of(&serde_json::from_value::<Me>(v).unwrap());
        let w = me(json!({"billing_type": "wallet", "wallet": {"currency": "usd", "remaining_balance": 12.5}})).unwrap();
        assert_eq!((w.remaining, w.unit.as_deref()), (Some(12.5), Some("USD")));
        let u =
            me(json!({"usage_based": {"included_credits": 100, "remaining_credits": 40}})).unwrap();
        assert_eq!(
            (u.remaining, u.used, u.total),
            (Some(40.0), Some(60.0), Some(100.0))
        );
        let s = me(json!({"subscription": {"credits": {"premium_credits": {"remaining": 5}, "add_on_credits": {"remaining": 2}}}})).unwrap();
        assert_eq!(s.remaining, Some(7.0));
        assert!(me(json!({"billing_type": "wallet"})).is_none());
    }

    #[test]
    fn auto_ids_are_left_out() {
        assert!(is_auto(" Auto ") && is_auto("") && !is_auto("look_1"));
    }
}

//! Wire types of the upstream task API (`shared/UPSTREAM.md`), tolerant by design:
//! unknown fields are ignored, optional fields may be missing or null, numbers may
//! arrive as strings, an unknown status is kept verbatim, and the result URLs are
//! accepted both as `results: [{url}]` and as `output: {url, urls}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only model this server drives.
pub const MODEL: &str = "heygen-video-agent";

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::video::Orientation;
use crate::{
    backend::lenient::{lenient_bool, lenient_f64, lenient_i64, lenient_string, value_to_string},
    video::{TaskErrorView, TaskSnapshot, VideoStatus},
};

/// Result links live 24 h after the task was created (UPSTREAM.md).
pub const LINK_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Unix seconds (or milliseconds, which some gateways send) as a time.
fn unix(secs: i64) -> Option<SystemTime> {
    let secs = u64::try_from(secs).ok()?;
    let secs = if secs > 100_000_000_000 {
        secs / 1000
    } else {
        secs
    };
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Body of `POST /v1/videos/generations`. `None` fields are not serialised:
/// the upstream treats an omitted field as "let the agent decide".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateVideoRequest {
    pub model: &'static str,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation: Option<Orientation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incognito_mode: Option<bool>,
}

impl From<&crate::video::NewVideo> for CreateVideoRequest {
    fn from(v: &crate::video::NewVideo) -> Self {
        let urls = v.file_urls();
        Self {
            model: MODEL,
            prompt: v.prompt.clone(),
            avatar_id: v.avatar_id.clone(),
            voice_id: v.voice_id.clone(),
            style_id: v.style_id.clone(),
            orientation: v.orientation,
            file_urls: (!urls.is_empty()).then_some(urls),
            incognito_mode: v.incognito_mode,
        }
    }
}

impl CreateVideoRequest {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            model: MODEL,
            prompt: prompt.into(),
            avatar_id: None,
            voice_id: None,
            style_id: None,
            orientation: None,
            file_urls: None,
            incognito_mode: None,
        }
    }
}

/// The upstream's task status. Anything not documented is kept as `Other` and
/// treated as "still running" (UPSTREAM.md: never crash on a new value).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Other(String),
}

impl TaskStatus {
    pub fn parse(raw: &str) -> Self {
        match raw.trim().to_ascii_lowercase().as_str() {
            "pending" | "queued" | "submitted" => TaskStatus::Pending,
            "processing" | "running" | "in_progress" => TaskStatus::Processing,
            "completed" | "succeeded" | "success" => TaskStatus::Completed,
            "failed" | "failure" | "error" => TaskStatus::Failed,
            "cancelled" | "canceled" => TaskStatus::Cancelled,
            _ => TaskStatus::Other(raw.to_string()),
        }
    }

    /// The status in domain terms; an undocumented word counts as running.
    pub fn domain(&self) -> VideoStatus {
        match self {
            TaskStatus::Pending => VideoStatus::Pending,
            TaskStatus::Processing => VideoStatus::Processing,
            TaskStatus::Completed => VideoStatus::Completed,
            TaskStatus::Failed => VideoStatus::Failed,
            TaskStatus::Cancelled => VideoStatus::Cancelled,
            TaskStatus::Other(_) => VideoStatus::Unknown,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// A task object as returned by create and by `GET /v1/tasks/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskObject {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// Raw status string; see [`TaskObject::status`].
    #[serde(default, rename = "status", deserialize_with = "lenient_string")]
    pub raw_status: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub progress: Option<f64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub created: Option<i64>,
    #[serde(default)]
    pub results: Option<Value>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub task_info: Option<TaskInfo>,
    #[serde(default)]
    pub usage: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskInfo {
    #[serde(default, deserialize_with = "lenient_bool")]
    pub can_cancel: Option<bool>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub estimated_time: Option<f64>,
}

/// The failure reported by a failed task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub code: Option<String>,
    pub message: String,
}

impl TaskObject {
    pub fn status(&self) -> TaskStatus {
        match &self.raw_status {
            Some(s) => TaskStatus::parse(s),
            None => TaskStatus::Other(String::new()),
        }
    }

    /// Progress clamped to 0–100; a completed task always reports 100.
    pub fn progress_percent(&self) -> u8 {
        if self.status() == TaskStatus::Completed {
            return 100;
        }
        match self.progress {
            Some(p) if p.is_finite() => {
                // Some gateways report a fraction (0.0–1.0) instead of a percentage.
                let p = if p > 0.0 && p < 1.0 { p * 100.0 } else { p };
                p.clamp(0.0, 100.0).floor() as u8
            }
            _ => 0,
        }
    }

    /// Every result URL, from `results` or `output`, deduplicated, in order.
    pub fn video_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        let mut push = |u: &str| {
            let u = u.trim();
            if !u.is_empty() && !urls.iter().any(|x| x == u) {
                urls.push(u.to_string());
            }
        };
        fn collect(v: &Value, push: &mut dyn FnMut(&str)) {
            match v {
                Value::String(s) => push(s),
                Value::Array(items) => items.iter().for_each(|i| collect(i, push)),
                Value::Object(map) => {
                    if let Some(Value::String(u)) = map.get("url") {
                        push(u);
                    }
                    if let Some(v @ Value::Array(_)) = map.get("urls") {
                        collect(v, push);
                    }
                    if let Some(v @ Value::Array(_)) = map.get("results") {
                        collect(v, push);
                    }
                }
                _ => {}
            }
        }
        if let Some(r) = &self.results {
            collect(r, &mut push);
        }
        if let Some(o) = &self.output {
            collect(o, &mut push);
        }
        urls
    }

    /// The task's failure, when the upstream reported one.
    pub fn failure(&self) -> Option<TaskFailure> {
        match self.error.as_ref()? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(TaskFailure {
                code: None,
                message: s.clone(),
            }),
            Value::Object(map) => {
                let code = map.get("code").and_then(value_to_string);
                let message = map
                    .get("message")
                    .and_then(value_to_string)
                    .unwrap_or_default();
                if code.is_none() && message.is_empty() {
                    None
                } else {
                    Some(TaskFailure { code, message })
                }
            }
            other => Some(TaskFailure {
                code: None,
                message: other.to_string(),
            }),
        }
    }

    pub fn estimated_seconds(&self) -> Option<u64> {
        let t = self.task_info.as_ref()?.estimated_time?;
        (t.is_finite() && t >= 0.0).then(|| t.round() as u64)
    }

    /// The task in domain terms. Result links live [`LINK_LIFETIME`] after
    /// creation; `fallback_id` names a task whose answer omitted its id.
    pub fn snapshot(&self, fallback_id: &str) -> TaskSnapshot {
        let status = self.status().domain();
        let created_at = self.created.and_then(unix);
        let video_urls = if status == VideoStatus::Completed {
            self.video_urls()
        } else {
            Vec::new()
        };
        let links_expire_at = match (created_at, video_urls.is_empty()) {
            (Some(c), false) => c.checked_add(LINK_LIFETIME),
            _ => None,
        };
        let error = matches!(status, VideoStatus::Failed | VideoStatus::Cancelled)
            .then(|| self.failure())
            .flatten()
            .map(|f| TaskErrorView {
                code: f.code,
                message: f.message,
            });
        TaskSnapshot {
            task_id: self
                .id
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| fallback_id.to_string()),
            status,
            upstream_status: self.raw_status.clone().unwrap_or_default(),
            progress: self.progress_percent(),
            created_at,
            video_urls,
            links_expire_at,
            error,
            estimated_seconds: self.estimated_seconds(),
            thumbnail_url: None,
            captioned_video_url: None,
            duration: None,
        }
    }
}

/// The error envelope of non-2xx answers: `{"error": {"message", "type", "code"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub code: Option<String>,
}

/// The fields of an upstream error body, wherever the gateway put them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub message: Option<String>,
    pub code: Option<String>,
    pub kind: Option<String>,
}

impl ErrorEnvelope {
    pub fn into_body(self) -> ErrorBody {
        let mut body = ErrorBody {
            message: self.message,
            code: self.code,
            kind: None,
        };
        match self.error {
            Some(Value::Object(map)) => {
                if let Some(m) = map.get("message").and_then(value_to_string) {
                    body.message = Some(m);
                }
                if let Some(c) = map.get("code").and_then(value_to_string) {
                    body.code = Some(c);
                }
                body.kind = map.get("type").and_then(value_to_string);
            }
            Some(Value::String(s)) => body.message = Some(s),
            _ => {}
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(v: Value) -> TaskObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_body_omits_unset_fields() {
        let body = serde_json::to_value(CreateVideoRequest::new("hi")).unwrap();
        assert_eq!(body, json!({"model": "heygen-video-agent", "prompt": "hi"}));
    }

    #[test]
    fn decodes_the_documented_create_answer() {
        let t = task(json!({
            "id": "task-unified-1757165031-uyujaw3d", "object": "video.generation.task",
            "type": "video", "model": "heygen-video-agent", "status": "pending", "progress": 0,
            "created": 1757165031, "task_info": {"can_cancel": true, "estimated_time": 45},
            "usage": {"credits_reserved": 5, "user_group": "default"}
        }));
        assert_eq!(t.id.as_deref(), Some("task-unified-1757165031-uyujaw3d"));
        assert_eq!(t.status(), TaskStatus::Pending);
        assert_eq!(t.created, Some(1757165031));
        assert_eq!(t.estimated_seconds(), Some(45));
        assert!(t.video_urls().is_empty());
    }

    #[test]
    fn accepts_both_result_shapes() {
        let a = task(
            json!({"id": "a", "status": "completed", "results": [{"url": "https://x/1.mp4", "width": 1}]}),
        );
        let b = task(
            json!({"id": "b", "status": "completed", "output": {"url": "https://x/2.mp4", "urls": ["https://x/2.mp4", "https://x/3.mp4"]}}),
        );
        assert_eq!(a.video_urls(), vec!["https://x/1.mp4"]);
        assert_eq!(b.video_urls(), vec!["https://x/2.mp4", "https://x/3.mp4"]);
    }

    #[test]
    fn unknown_status_and_odd_types_do_not_fail() {
        let t = task(
            json!({"id": 17, "status": "Rendering", "progress": "42", "created": "1757165031", "results": null, "extra": {"x": 1}}),
        );
        assert_eq!(t.id.as_deref(), Some("17"));
        assert_eq!(t.status(), TaskStatus::Other("Rendering".into()));
        assert!(!t.status().is_terminal());
        assert_eq!(t.progress_percent(), 42);
        assert_eq!(t.created, Some(1757165031));
    }

    #[test]
    fn missing_optional_fields_are_fine() {
        let t = task(json!({"id": "x"}));
        assert_eq!(t.progress_percent(), 0);
        assert!(t.failure().is_none());
        assert!(t.estimated_seconds().is_none());
    }

    #[test]
    fn failure_is_read_from_object_or_string() {
        let t = task(
            json!({"id": "x", "status": "failed", "error": {"code": "content_policy", "message": "nope"}}),
        );
        assert_eq!(
            t.failure(),
            Some(TaskFailure {
                code: Some("content_policy".into()),
                message: "nope".into()
            })
        );
        let s = task(json!({"id": "x", "status": "failed", "error": "boom"}));
        assert_eq!(s.failure().unwrap().message, "boom");
        let n = task(json!({"id": "x", "status": "failed", "error": null}));
        assert!(n.failure().is_none());
    }

    #[test]
    fn progress_is_clamped() {
        assert_eq!(
            task(json!({"status": "processing", "progress": 250})).progress_percent(),
            100
        );
        assert_eq!(
            task(json!({"status": "processing", "progress": -3})).progress_percent(),
            0
        );
        assert_eq!(
            task(json!({"status": "completed", "progress": 10})).progress_percent(),
            100
        );
    }

    #[test]
    fn error_envelope_reads_nested_and_flat_shapes() {
        let nested: ErrorEnvelope = serde_json::from_value(
            json!({"error": {"message": "m", "type": "t", "code": "no_compatible_channel"}}),
        )
        .unwrap();
        let b = nested.into_body();
        assert_eq!(b.code.as_deref(), Some("no_compatible_channel"));
        assert_eq!(b.kind.as_deref(), Some("t"));
        let flat: ErrorEnvelope =
            serde_json::from_value(json!({"message": "m2", "code": 7})).unwrap();
        let b = flat.into_body();
        assert_eq!(b.message.as_deref(), Some("m2"));
        assert_eq!(b.code.as_deref(), Some("7"));
    }
}

/// `GET /dashboard/billing/subscription` (New API, OpenAI-compatible):
/// `hard_limit_usd` is the key's total quota, in whatever unit the site shows.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Subscription {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub hard_limit_usd: Option<f64>,
    /// Some gateways name their unit; none is documented.
    #[serde(default, deserialize_with = "lenient_string")]
    pub unit: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub currency: Option<String>,
}

/// `GET /dashboard/billing/usage`: `total_usage` in hundredths of the quota unit.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub total_usage: Option<f64>,
}

/// The public `GET /api/pricing` answer (only the fields used).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pricing {
    #[serde(default)]
    pub data: Vec<ModelPrice>,
    #[serde(default)]
    pub group_ratio: std::collections::HashMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelPrice {
    #[serde(default, deserialize_with = "lenient_string")]
    pub model_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub quota_type: Option<i64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub model_price: Option<f64>,
}

impl Pricing {
    /// The fixed price of one call of [`MODEL`] for `group` (`quota_type` 1:
    /// `model_price × group_ratio[group]`, a missing ratio counting as 1).
    pub fn video_price(&self, group: &str) -> Option<f64> {
        let entry = self
            .data
            .iter()
            .find(|m| m.model_name.as_deref() == Some(MODEL))?;
        if entry.quota_type != Some(1) {
            return None;
        }
        let ratio = self
            .group_ratio
            .get(group)
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        entry
            .model_price
            .map(|p| p * ratio)
            .filter(|p| p.is_finite() && *p >= 0.0)
    }
}

/// `GET /v1/models` (OpenAI format): the models the key's group may call.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelList {
    #[serde(default)]
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelEntry {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
}

/// Body of `POST /v1/files/upload/base64`.
#[derive(Debug, Clone, Serialize)]
pub struct UploadRequest<'a> {
    pub file_data: &'a str,
    pub file_name: &'a str,
}

/// Answer of the upload endpoint: the URL to pass in `file_urls`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UploadedFile {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub size: Option<i64>,
}

//! `VideoTask`: the one view of a video task that every tool returns as
//! `structuredContent` (DESIGN.md §8), its readable text summary, and the
//! next-step sentence that tells the model what to do.

use std::time::{Duration, SystemTime};

use rmcp::model::{CallToolResult, ContentBlock, Resource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::video::{TaskErrorView, VideoStatus, human_bytes, rfc3339};
use crate::{
    backend::Capabilities,
    ledger::{LedgerRecord, unix_secs},
    video::TaskSnapshot,
};

/// How next steps offer a server-side wait: opt-in, because many clients end
/// a tool call after a few seconds (the OpenAI Agents SDK after 5 s).
pub const WAIT_HINT: &str = "or pass wait_seconds, up to 45, to wait on the server, only if your client allows tool \
     calls that long";

/// A HeyGen Video Agent task as this server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)] // list_videos nests it: no "$ref" in outputSchema
pub struct VideoTask {
    /// The handle for get_video_status and download_video.
    pub task_id: String,
    /// completed, failed and cancelled are final; unknown counts as running.
    pub status: VideoStatus,
    /// The upstream's raw status.
    pub upstream_status: String,
    /// Percent complete, 0–100.
    #[schemars(range(min = 0, max = 100))]
    pub progress: u8,
    /// RFC 3339, UTC.
    pub created_at: Option<String>,
    /// The URLs stay valid until then.
    pub links_expire_at: Option<String>,
    /// MP4 URLs; empty until completed.
    pub video_urls: Vec<String>,
    /// Why it failed.
    pub error: Option<TaskErrorView>,
    /// The upstream's render time estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_seconds: Option<u64>,
    /// What to do next, in one sentence.
    pub next_step: String,
    /// The saved MP4 on the server's disk; without size_bytes still downloading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_path: Option<String>,
    /// Checked on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// An earlier identical create answered: nothing was spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<bool>,
    /// The start of the prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The key it was created with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The links expired: only a saved copy remains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links_expired: Option<bool>,
    /// A still of the video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// Length of the video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// The captioned MP4, shown in the text only (it is not for saving).
    #[serde(skip)]
    #[schemars(skip)]
    pub captioned_video_url: Option<String>,
}

impl VideoTask {
    /// Builds the view of a backend's snapshot.
    pub fn from_snapshot(task: &TaskSnapshot, now: SystemTime, caps: &Capabilities) -> Self {
        let mut view = VideoTask {
            task_id: task.task_id.clone(),
            status: task.status,
            upstream_status: task.upstream_status.clone(),
            progress: task.progress,
            created_at: task.created_at.map(rfc3339),
            links_expire_at: task.links_expire_at.map(rfc3339),
            video_urls: task.video_urls.clone(),
            error: task.error.clone(),
            estimated_seconds: task.estimated_seconds,
            next_step: String::new(),
            saved_path: None,
            size_bytes: None,
            reused: None,
            prompt: None,
            idempotency_key: None,
            links_expired: None,
            thumbnail_url: task.thumbnail_url.clone(),
            duration_seconds: task
                .duration
                .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            captioned_video_url: task.captioned_video_url.clone(),
        };
        view.next_step = view.status_next_step(task.links_expire_at, now, caps);
        view
    }

    /// A ledger record as the view (without `next_step`, which the caller
    /// fills in for the situation).
    pub fn from_record(r: &LedgerRecord) -> Self {
        let status = r.status.unwrap_or(VideoStatus::Pending);
        VideoTask {
            task_id: r.task_id.clone().unwrap_or_default(),
            status,
            upstream_status: r
                .upstream_status
                .clone()
                .unwrap_or_else(|| status.as_str().to_string()),
            progress: r.progress.min(100),
            created_at: r.created_at.and_then(unix_secs).map(rfc3339),
            links_expire_at: r.links_expire_at.and_then(unix_secs).map(rfc3339),
            video_urls: r.video_urls.clone(),
            error: r.error.clone(),
            estimated_seconds: r.estimated_seconds,
            next_step: String::new(),
            saved_path: r.saved_path.clone(),
            size_bytes: r.size_bytes,
            reused: None,
            prompt: Some(r.prompt_preview.clone()),
            idempotency_key: r.idempotency_key.clone(),
            links_expired: None,
            thumbnail_url: None,
            duration_seconds: None,
            captioned_video_url: None,
        }
    }

    /// Recomputes `next_step` from the view's own fields (for a view rebuilt
    /// from the ledger rather than from an upstream answer).
    pub fn refresh_next_step(&mut self, now: SystemTime, caps: &Capabilities) {
        let expires = self
            .links_expire_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        self.next_step = self.status_next_step(expires, now, caps);
    }

    fn status_next_step(
        &self,
        expires: Option<SystemTime>,
        now: SystemTime,
        caps: &Capabilities,
    ) -> String {
        let lifetime = caps.links.describe();
        let id = &self.task_id;
        match self.status {
            VideoStatus::Completed if self.video_urls.is_empty() => format!(
                "The task reports completed but no video URL yet: call get_video_status for \
                 task_id {id} again in about 30 s."
            ),
            VideoStatus::Completed => match expires {
                Some(t) if t <= now => match caps.links {
                    crate::backend::LinkLifetime::AfterCreation(_) => format!(
                        "The video link has probably expired (links live {lifetime}); if the \
                         download fails, the video is gone and must be created again."
                    ),
                    crate::backend::LinkLifetime::Renewed(_) => format!(
                        "The video link has probably expired (links live {lifetime}): call \
                         get_video_status for task_id {id} for a fresh link, then save the file."
                    ),
                },
                Some(t) => format!(
                    "The video is ready: save the file now (download_video, or give the user the \
                     URL); the link expires at {} ({} from now).",
                    rfc3339(t),
                    human_duration(t.duration_since(now).unwrap_or_default())
                ),
                None => format!(
                    "The video is ready: save the file now (download_video, or give the user \
                     the URL); links expire {lifetime}."
                ),
            },
            VideoStatus::Failed => {
                let why = match &self.error {
                    Some(e) => match &e.code {
                        Some(c) => format!(" ({c}: {})", e.message),
                        None => format!(" ({})", e.message),
                    },
                    None => String::new(),
                };
                format!(
                    "The video failed{why}. Tell the user; if they want to try again, adjust the \
                     prompt or arguments as the error suggests and call create_video once."
                )
            }
            VideoStatus::Cancelled => "The task was cancelled and will not produce a video; \
                 call create_video again only if the user still wants one."
                .to_string(),
            VideoStatus::Pending | VideoStatus::Processing | VideoStatus::Unknown => {
                format!(
                    "Still rendering ({}%): call get_video_status for task_id {id} again in about \
                     {} s ({WAIT_HINT}). Do not call create_video again for this video.",
                    self.progress,
                    self.poll_hint_secs(caps)
                )
            }
        }
    }

    /// A sensible pause before the next status check: the backend's usual
    /// pause, shorter near the end, the estimate when there is one.
    pub fn poll_hint_secs(&self, caps: &Capabilities) -> u64 {
        let usual = caps.poll_after.as_secs().max(5);
        match self.estimated_seconds {
            Some(e) if e > 0 && self.progress == 0 => e.clamp(15, usual.max(60)),
            _ if self.progress >= 80 => 15.min(usual),
            _ => usual,
        }
    }

    /// The view right after a successful create.
    pub fn created(task: &TaskSnapshot, now: SystemTime, caps: &Capabilities) -> Self {
        let mut view = Self::from_snapshot(task, now, caps);
        if view.created_at.is_none() {
            view.created_at = Some(rfc3339(now));
        }
        if !view.status.is_finished() {
            let usual = caps.poll_after.as_secs().max(5);
            let wait = view
                .estimated_seconds
                .map_or(usual, |e| e.clamp(15, usual.max(60)));
            view.next_step = format!(
                "Video task created (credits are reserved). The agent chooses the length; \
                 rendering usually takes {}. Call get_video_status with task_id {} in about \
                 {wait} s to follow it ({WAIT_HINT}); do not call create_video again for this \
                 video.",
                caps.typical_render, view.task_id
            );
        }
        view
    }

    /// The readable summary put in the text content.
    pub fn summary(&self, headline: &str) -> String {
        let mut s = format!(
            "{headline}\ntask_id: {}\nstatus: {}",
            self.task_id,
            self.status.as_str()
        );
        if self.status == VideoStatus::Unknown && !self.upstream_status.is_empty() {
            s.push_str(&format!(" (upstream: {})", self.upstream_status));
        }
        s.push_str(&format!("\nprogress: {}%", self.progress));
        if let Some(c) = &self.created_at {
            s.push_str(&format!("\ncreated_at: {c}"));
        }
        if let Some(p) = &self.prompt {
            s.push_str(&format!("\nprompt: {p:?}"));
        }
        if let Some(k) = &self.idempotency_key {
            s.push_str(&format!("\nidempotency_key: {k}"));
        }
        if let Some(e) = self.estimated_seconds
            && !self.status.is_finished()
        {
            s.push_str(&format!("\nestimated render time: about {e} s"));
        }
        for url in &self.video_urls {
            s.push_str(&format!("\nvideo_url: {url}"));
        }
        if let Some(url) = &self.captioned_video_url
            && self.status == VideoStatus::Completed
        {
            s.push_str(&format!("\nwith captions: {url}"));
        }
        if let Some(d) = self.duration_seconds {
            s.push_str(&format!("\nduration: {d} s"));
        }
        if let Some(t) = &self.links_expire_at {
            if self.links_expired == Some(true) {
                s.push_str(&format!("\nlinks expired at: {t}"));
            } else {
                s.push_str(&format!("\nlinks valid at least until: {t}"));
            }
        }
        if let Some(e) = &self.error {
            match &e.code {
                Some(c) => s.push_str(&format!("\nerror: {c}: {}", e.message)),
                None => s.push_str(&format!("\nerror: {}", e.message)),
            }
        }
        if let Some(p) = &self.saved_path {
            match self.size_bytes {
                Some(n) => s.push_str(&format!("\nsaved to: {p} ({})", human_bytes(n))),
                None => s.push_str(&format!("\nsaving to: {p} (download in progress)")),
            }
        }
        s.push_str(&format!("\nnext step: {}", self.next_step));
        s
    }

    /// A successful tool result: readable text plus `structuredContent`.
    /// A completed video's links also come as `resource_link` items (after
    /// the text), unless they expired.
    pub fn into_result(self, headline: &str) -> CallToolResult {
        let text = self.summary(headline);
        self.result(text)
    }

    /// A successful tool result with the given text, `structuredContent` and
    /// the video's `resource_link`s (see [`Self::video_links`]).
    pub fn result(&self, text: String) -> CallToolResult {
        let mut result = structured_result(text, self);
        result.content.extend(self.video_links());
        result
    }

    /// One `resource_link` (`video/mp4`, its expiry in the description) per
    /// video URL of a completed task whose links have not expired.
    pub fn video_links(&self) -> Vec<ContentBlock> {
        if self.status != VideoStatus::Completed || self.links_expired == Some(true) {
            return Vec::new();
        }
        let many = self.video_urls.len() > 1;
        self.video_urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let name = if many {
                    format!("{}-{}.mp4", self.task_id, i + 1)
                } else {
                    format!("{}.mp4", self.task_id)
                };
                ContentBlock::resource_link(
                    Resource::new(url.clone(), name)
                        .with_title("HeyGen video")
                        .with_mime_type("video/mp4")
                        .with_description(super::player::link_description(
                            self.links_expire_at.as_deref(),
                        )),
                )
            })
            .collect()
    }
}

/// A success result with the given text and `structuredContent`.
pub fn structured_result<T: Serialize>(text: String, value: &T) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = serde_json::to_value(value).ok();
    result
}

/// An error result: text only, `isError: true`.
pub fn error_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text.into())])
}

pub fn human_duration(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    match (mins / 60, mins % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{TaskObject, backend::capabilities};
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    fn task(v: serde_json::Value) -> TaskObject {
        serde_json::from_value(v).unwrap()
    }

    fn unix(secs: u64) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    }

    fn view_of(t: TaskObject, fallback: &str, now: SystemTime) -> VideoTask {
        VideoTask::from_snapshot(&t.snapshot(fallback), now, &capabilities())
    }

    #[test]
    fn completed_task_reports_urls_and_expiry() {
        let created = 1_757_165_031;
        let now = unix(created + 3600).unwrap();
        let v = view_of(
            task(
                json!({"id": "t1", "status": "completed", "progress": 100, "created": created,
                "results": [{"url": "https://cdn/x.mp4"}]}),
            ),
            "fallback",
            now,
        );
        assert_eq!(v.task_id, "t1");
        assert_eq!(v.status, VideoStatus::Completed);
        assert_eq!(v.video_urls, vec!["https://cdn/x.mp4"]);
        assert_eq!(v.created_at.as_deref(), Some("2025-09-06T13:23:51Z"));
        assert_eq!(v.links_expire_at.as_deref(), Some("2025-09-07T13:23:51Z"));
        assert!(v.next_step.contains("save the file now"), "{}", v.next_step);
        assert!(v.next_step.contains("23 h"), "{}", v.next_step);
        let text = v.summary("Video ready.");
        assert!(text.contains("https://cdn/x.mp4") && text.contains("2025-09-07T13:23:51Z"));
    }

    #[test]
    fn running_task_says_check_again() {
        let v = view_of(
            task(json!({"status": "processing", "progress": 40})),
            "t2",
            SystemTime::now(),
        );
        assert_eq!(v.task_id, "t2");
        assert!(v.video_urls.is_empty() && v.links_expire_at.is_none());
        assert!(
            v.next_step.contains("again in about 30 s"),
            "{}",
            v.next_step
        );
    }

    #[test]
    fn unknown_status_is_running_not_an_error() {
        let v = view_of(
            task(json!({"id": "t", "status": "queued_for_gpu"})),
            "t",
            SystemTime::now(),
        );
        assert_eq!(v.status, VideoStatus::Unknown);
        assert_eq!(v.upstream_status, "queued_for_gpu");
        assert!(v.next_step.contains("Still rendering"));
    }

    #[test]
    fn failed_task_carries_the_error() {
        let v = view_of(
            task(
                json!({"id": "t", "status": "failed", "error": {"code": "content_policy", "message": "blocked"}}),
            ),
            "t",
            SystemTime::now(),
        );
        assert_eq!(
            v.error,
            Some(TaskErrorView {
                code: Some("content_policy".into()),
                message: "blocked".into()
            })
        );
        assert!(v.next_step.contains("content_policy: blocked"));
    }

    #[test]
    fn expired_links_are_called_expired() {
        let created = 1_757_165_031;
        let v = view_of(
            task(
                json!({"id": "t", "status": "completed", "created": created, "results": [{"url": "https://x"}]}),
            ),
            "t",
            unix(created + 25 * 3600).unwrap(),
        );
        assert!(v.next_step.contains("expired"), "{}", v.next_step);
    }

    #[test]
    fn structured_content_matches_field_names() {
        let v = VideoTask::created(
            &task(
                json!({"id": "t", "status": "pending", "created": 1, "task_info": {"estimated_time": 45}}),
            )
            .snapshot(""),
            SystemTime::now(),
            &capabilities(),
        );
        let r = v.into_result("created");
        let sc = r.structured_content.unwrap();
        for k in [
            "task_id",
            "status",
            "upstream_status",
            "progress",
            "created_at",
            "links_expire_at",
            "video_urls",
            "error",
            "estimated_seconds",
            "next_step",
        ] {
            assert!(sc.get(k).is_some(), "{k} missing in {sc}");
        }
        assert_eq!(sc["estimated_seconds"], 45);
        assert_eq!(r.is_error, Some(false));
    }
}

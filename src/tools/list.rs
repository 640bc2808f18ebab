//! `list_videos`: the videos made through this server with the caller's key,
//! from the task ledger, newest first; optionally re-checked upstream first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, stream};
use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    VideoServer,
    view::{VideoStatus, VideoTask, WAIT_HINT, error_result, rfc3339, structured_result},
};
use crate::{
    backend::Operation,
    ledger::{LedgerError, LedgerRecord, ListQuery, RecordState},
};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Most still-running videos re-checked upstream by one `refresh`.
const MAX_REFRESH: usize = 20;
/// Re-checks running at once.
const REFRESH_PARALLEL: usize = 4;

// A status filter of `list_videos` (plain comments, not doc comments: a
// documented variant would turn the schema's `enum` into a `oneOf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum StatusFilter {
    // pending, processing or unknown.
    Running,
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Unknown,
}

impl StatusFilter {
    fn statuses(self) -> Vec<VideoStatus> {
        match self {
            StatusFilter::Running => vec![
                VideoStatus::Pending,
                VideoStatus::Processing,
                VideoStatus::Unknown,
            ],
            StatusFilter::Pending => vec![VideoStatus::Pending],
            StatusFilter::Processing => vec![VideoStatus::Processing],
            StatusFilter::Completed => vec![VideoStatus::Completed],
            StatusFilter::Failed => vec![VideoStatus::Failed],
            StatusFilter::Cancelled => vec![VideoStatus::Cancelled],
            StatusFilter::Unknown => vec![VideoStatus::Unknown],
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Running => "running",
            StatusFilter::Pending => "pending",
            StatusFilter::Processing => "processing",
            StatusFilter::Completed => "completed",
            StatusFilter::Failed => "failed",
            StatusFilter::Cancelled => "cancelled",
            StatusFilter::Unknown => "unknown",
        }
    }
}

/// Arguments of `list_videos`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListVideosParams {
    /// "running" = pending, processing or unknown. Omit for all.
    #[serde(default, deserialize_with = "status_or_empty")]
    pub status: Option<StatusFilter>,
    /// RFC 3339 time or a span back, e.g. "24h". Omit for all.
    #[serde(default)]
    #[schemars(length(min = 1, max = 64))]
    pub since: Option<String>,
    /// Default 20.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// Re-check running videos first (slower).
    #[serde(default)]
    pub refresh: Option<bool>,
}

fn status_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StatusFilter>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    let Some(s) = raw.map(|s| s.trim().to_ascii_lowercase()) else {
        return Ok(None);
    };
    if s.is_empty() || s == "all" {
        return Ok(None);
    }
    serde_json::from_value(serde_json::Value::String(s.clone())).map_err(|_| {
        serde::de::Error::custom(format!(
            "status must be one of running, pending, processing, completed, failed, cancelled, \
             unknown (or omitted), got {:?}",
            super::excerpt(&s)
        ))
    })
}

/// A create whose outcome is not known: it may have made (and billed) a video.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(inline)]
pub struct UnconfirmedCreate {
    /// RFC 3339, UTC.
    pub requested_at: String,
    /// "maybe_created", or "creating" (in flight).
    pub state: String,
    /// The start of the prompt.
    pub prompt: String,
    /// Its idempotency_key.
    pub idempotency_key: Option<String>,
    /// Why it is unconfirmed.
    pub note: Option<String>,
}

/// The result of `list_videos`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VideoList {
    /// Newest first; URLs only while the links are valid.
    pub videos: Vec<VideoTask>,
    /// Creates that may have made (and billed) a video with no task id: do not
    /// repeat them blindly.
    pub unconfirmed: Vec<UnconfirmedCreate>,
    /// More videos match than were returned.
    pub more: bool,
    /// False: no ledger, nothing to list.
    pub ledger_enabled: bool,
    /// What to do next.
    pub next_step: String,
}

/// Reports expired links as expired: no URLs, `links_expired`, and a next step
/// pointing at the saved file if there is one.
pub fn apply_expiry(view: &mut VideoTask, now: SystemTime) {
    if view.status != VideoStatus::Completed {
        return;
    }
    let Some(expires) = view
        .links_expire_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    else {
        return;
    };
    if expires > now {
        view.links_expired = Some(false);
        return;
    }
    view.links_expired = Some(true);
    view.video_urls.clear();
    let at = rfc3339(expires);
    view.next_step = match &view.saved_path {
        Some(p) => {
            format!("The video's links expired at {at}, but it was saved at {p}: use that file.")
        }
        None => format!(
            "The video's links expired at {at} (24 h after creation), so it can no longer be \
             downloaded; making it again with create_video costs credits."
        ),
    };
}

/// `since`: RFC 3339 (UTC `Z`, an offset, or a plain date) or a span back from
/// now ("30m", "24h", "7d", "1h 30m"). Returns milliseconds since the epoch.
pub fn parse_since(raw: &str, now: SystemTime) -> Result<i64, String> {
    let s = raw.trim();
    let bad = || {
        format!(
            "since {s:?} is neither an RFC 3339 time (e.g. \"2026-11-28T09:00:00Z\") nor a span \
             back from now (e.g. \"30m\", \"24h\", \"7d\")"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    let span = s.trim_start_matches('-').trim();
    let as_span = span.strip_suffix(" ago").unwrap_or(span).replace(' ', "");
    let t = if let Ok(d) = humantime::parse_duration(&as_span) {
        now.checked_sub(d).unwrap_or(UNIX_EPOCH)
    } else {
        parse_time_with_offset(s).ok_or_else(bad)?
    };
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn parse_time_with_offset(s: &str) -> Option<SystemTime> {
    // A plain date means its midnight, UTC.
    if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        return humantime::parse_rfc3339(&format!("{s}T00:00:00Z")).ok();
    }
    // "…+02:00" / "…-05:30": humantime only knows UTC, so shift by hand.
    let bytes = s.as_bytes();
    if s.len() > 16 {
        let at = s.len() - 6;
        let sign = bytes.get(at).copied();
        if matches!(sign, Some(b'+' | b'-')) && bytes.get(at + 3) == Some(&b':') {
            let hours: u64 = s.get(at + 1..at + 3)?.parse().ok()?;
            let mins: u64 = s.get(at + 4..)?.parse().ok()?;
            let base = humantime::parse_rfc3339_weak(s.get(..at)?).ok()?;
            let offset = Duration::from_secs(hours * 3600 + mins * 60);
            // Local time = UTC + offset, so UTC = local − offset.
            return if sign == Some(b'+') {
                base.checked_sub(offset)
            } else {
                base.checked_add(offset)
            };
        }
    }
    humantime::parse_rfc3339_weak(s).ok()
}

fn disabled(why: &str) -> CallToolResult {
    let next_step = "Use get_video_status with a task_id you know; without a ledger, duplicate \
                     protection only covers identical calls made at the same moment."
        .to_string();
    let list = VideoList {
        videos: Vec::new(),
        unconfirmed: Vec::new(),
        more: false,
        ledger_enabled: false,
        next_step: next_step.clone(),
    };
    let text = format!(
        "No list available: {why}, so this server has no record of past videos (this is not an \
         error in your request).\nnext step: {next_step}"
    );
    structured_result(text, &list)
}

fn unconfirmed_of(rec: &LedgerRecord) -> UnconfirmedCreate {
    UnconfirmedCreate {
        requested_at: rfc3339(rec.requested_at()),
        state: rec.state.as_str().to_string(),
        prompt: rec.prompt_preview.clone(),
        idempotency_key: rec.idempotency_key.clone(),
        note: match rec.state {
            RecordState::Creating => Some("the create is being sent right now".into()),
            _ => rec.note.clone(),
        },
    }
}

fn describe_filter(params: &ListVideosParams) -> String {
    let mut parts = Vec::new();
    if let Some(s) = params.status {
        parts.push(format!("status {}", s.as_str()));
    }
    if let Some(s) = &params.since {
        parts.push(format!("since {}", s.trim()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn summary(list: &VideoList, filter: &str, notes: &[String]) -> String {
    let mut s = if list.videos.is_empty() && list.unconfirmed.is_empty() {
        format!("No videos recorded for this API key{filter}.")
    } else {
        format!(
            "{} video(s) made through this server with this API key{filter}, newest first:",
            list.videos.len()
        )
    };
    for (i, v) in list.videos.iter().enumerate() {
        s.push_str(&format!(
            "\n{}. {} — {} {}%",
            i + 1,
            v.task_id,
            v.status.as_str(),
            v.progress
        ));
        if let Some(c) = &v.created_at {
            s.push_str(&format!(" — created {c}"));
        }
        if let Some(p) = &v.prompt {
            s.push_str(&format!(" — {p:?}"));
        }
        if let Some(k) = &v.idempotency_key {
            s.push_str(&format!(" — idempotency_key {k}"));
        }
        for url in &v.video_urls {
            s.push_str(&format!("\n   video_url: {url}"));
        }
        match (&v.links_expire_at, v.links_expired) {
            (Some(t), Some(true)) => s.push_str(&format!("\n   links expired at {t}")),
            (Some(t), _) if !v.video_urls.is_empty() => {
                s.push_str(&format!("\n   links valid until {t}"))
            }
            _ => {}
        }
        if let Some(p) = &v.saved_path {
            s.push_str(&format!("\n   saved to: {p}"));
        }
        if let Some(e) = &v.error {
            s.push_str(&format!("\n   error: {}", e.message));
        }
    }
    if !list.unconfirmed.is_empty() {
        s.push_str(
            "\nUnconfirmed creates (they may have made and billed a video; no task_id is known):",
        );
        for u in &list.unconfirmed {
            s.push_str(&format!(
                "\n - {} ({}) {:?}",
                u.requested_at, u.state, u.prompt
            ));
            if let Some(n) = &u.note {
                s.push_str(&format!(": {n}"));
            }
        }
    }
    if list.more {
        s.push_str("\nMore videos match: raise limit (at most 100) or narrow since.");
    }
    for n in notes {
        s.push_str(&format!("\nnote: {n}"));
    }
    s.push_str(&format!("\nnext step: {}", list.next_step));
    s
}

#[tool_router(router = list_router, vis = "pub(crate)")]
impl VideoServer {
    /// Videos made through this server with your key (kept across restarts),
    /// newest first: task_id, status, prompt start, URLs while valid, saved_path.
    /// Use it to find a task_id again, and ALWAYS after a create_video error
    /// saying the video may exist (see unconfirmed). Free.
    #[tool(
        output_schema = schema_for_output::<VideoList>(),
        annotations(
            title = "List HeyGen videos made through this server",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn list_videos(
        &self,
        Parameters(params): Parameters<ListVideosParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let now = SystemTime::now();
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(error_result(format!(
                "Invalid arguments: limit must be between 1 and {MAX_LIMIT}, got {limit}."
            )));
        }
        let since_ms = match params.since.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(
                parse_since(s, now)
                    .map_err(|e| error_result(format!("Invalid arguments: {e}.")))?,
            ),
            _ => None,
        };
        let statuses = params
            .status
            .map(StatusFilter::statuses)
            .unwrap_or_default();
        let Some(ledger) = self.state.options.ledger.clone() else {
            return Ok(disabled(
                "this server keeps no video ledger (it was started with --no-ledger or \
                 HEYGEN_NO_LEDGER, or has no data folder)",
            ));
        };
        let key = self
            .resolve_key(&ctx)
            .map_err(|e| error_result(e.user_message(Operation::GetTask)))?;
        let tenant = key.tenant();
        // A shared store being down is an error (it should be there); the
        // embedded file being unusable only means no history.
        let unavailable = |e: LedgerError| {
            if ledger.shared() {
                Err(error_result(format!(
                    "The video list is unavailable right now: the shared video ledger ({}) could \
                     not be reached ({e}). Try again in a moment; get_video_status works with a \
                     task_id you know.",
                    ledger.describe()
                )))
            } else {
                Ok(disabled(&format!(
                    "the video ledger ({}) cannot be used right now ({e}; the server's log says \
                     more)",
                    ledger.describe()
                )))
            }
        };

        let mut notes = Vec::new();
        if params.refresh.unwrap_or(false) {
            let running = match ledger
                .list(ListQuery {
                    tenant: tenant.clone(),
                    statuses: StatusFilter::Running.statuses(),
                    since_ms,
                    limit: MAX_REFRESH + 1,
                })
                .await
            {
                Ok(r) => r,
                Err(e) => return unavailable(e),
            };
            if running.len() > MAX_REFRESH {
                notes.push(format!(
                    "only the {MAX_REFRESH} newest running videos were re-checked"
                ));
            }
            let ids: Vec<String> = running
                .into_iter()
                .take(MAX_REFRESH)
                .filter_map(|r| r.task_id)
                .collect();
            let failures: Vec<String> = stream::iter(ids)
                .map(|id| {
                    let key = key.clone();
                    async move {
                        match self.lookup_with_key(&key, &id).await {
                            Ok(_) => None,
                            Err(_) => Some(id),
                        }
                    }
                })
                .buffer_unordered(REFRESH_PARALLEL)
                .filter_map(|r| async move { r })
                .collect()
                .await;
            if !failures.is_empty() {
                notes.push(format!(
                    "re-checking failed for {} (shown with their last known state); \
                     get_video_status tells why",
                    failures.join(", ")
                ));
            }
        }

        let limit = usize::try_from(limit).unwrap_or(20);
        let mut rows = match ledger
            .list(ListQuery {
                tenant,
                statuses,
                since_ms,
                limit: limit + 1,
            })
            .await
        {
            Ok(r) => r,
            Err(e) => return unavailable(e),
        };
        let more = rows.len() > limit;
        rows.truncate(limit);
        let mut videos = Vec::new();
        let mut unconfirmed = Vec::new();
        for rec in &rows {
            if rec.state == RecordState::Created && rec.task_id.is_some() {
                let mut v = VideoTask::from_record(rec);
                v.refresh_next_step(now, self.state.caps());
                apply_expiry(&mut v, now);
                videos.push(v);
            } else {
                unconfirmed.push(unconfirmed_of(rec));
            }
        }
        let next_step = if !unconfirmed.is_empty() {
            "Unconfirmed creates may have made a video that cannot be shown here: do not repeat \
             them blindly; ask the user, and to create one anyway call create_video with a new \
             idempotency_key."
                .to_string()
        } else if videos.iter().any(|v| !v.status.is_finished()) {
            format!(
                "Follow running videos with get_video_status about every 30 s ({WAIT_HINT}), or \
                 call list_videos with refresh true later."
            )
        } else if videos.is_empty() {
            "Nothing to follow: videos appear here once create_video made them through this \
             server."
                .to_string()
        } else {
            "Save completed videos whose links are still valid with download_video.".to_string()
        };
        let list = VideoList {
            videos,
            unconfirmed,
            more,
            ledger_enabled: true,
            next_step,
        };
        let text = summary(&list, &describe_filter(&params), &notes);
        Ok(structured_result(text, &list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc).unwrap()
    }

    fn ms(t: SystemTime) -> i64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
    }

    #[test]
    fn since_accepts_times_and_spans() {
        let now = at("2026-11-29T12:00:00Z");
        assert_eq!(
            parse_since("24h", now).unwrap(),
            ms(at("2026-11-28T12:00:00Z"))
        );
        assert_eq!(
            parse_since("30m", now).unwrap(),
            ms(at("2026-11-29T11:30:00Z"))
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            ms(at("2026-11-22T12:00:00Z"))
        );
        assert_eq!(
            parse_since("1h 30m", now).unwrap(),
            ms(at("2026-11-29T10:30:00Z"))
        );
        assert_eq!(
            parse_since("2 hours ago", now).unwrap(),
            ms(at("2026-11-29T10:00:00Z"))
        );
        assert_eq!(
            parse_since("2026-11-28T09:00:00Z", now).unwrap(),
            ms(at("2026-11-28T09:00:00Z"))
        );
        assert_eq!(
            parse_since("2026-11-28T10:00:00+01:00", now).unwrap(),
            ms(at("2026-11-28T09:00:00Z"))
        );
        assert_eq!(
            parse_since("2026-11-28T04:00:00-05:00", now).unwrap(),
            ms(at("2026-11-28T09:00:00Z"))
        );
        assert_eq!(
            parse_since("2026-11-28", now).unwrap(),
            ms(at("2026-11-28T00:00:00Z"))
        );
        for bad in ["", "yesterday", "12", "2026-13-01T00:00:00Z"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expired_links_are_reported_as_expired() {
        let now = at("2026-11-29T12:00:00Z");
        let mut v = VideoTask {
            task_id: "t".into(),
            status: VideoStatus::Completed,
            upstream_status: "completed".into(),
            progress: 100,
            created_at: Some("2026-11-28T09:00:00Z".into()),
            links_expire_at: Some("2026-11-29T09:00:00Z".into()),
            video_urls: vec!["https://cdn/x.mp4".into()],
            error: None,
            estimated_seconds: None,
            next_step: String::new(),
            saved_path: None,
            size_bytes: None,
            reused: None,
            prompt: None,
            idempotency_key: None,
            links_expired: None,
            thumbnail_url: None,
            duration_seconds: None,
            captioned_video_url: None,
        };
        let mut fresh = v.clone();
        apply_expiry(&mut fresh, at("2026-11-29T08:00:00Z"));
        assert_eq!(fresh.links_expired, Some(false));
        assert_eq!(fresh.video_urls.len(), 1);
        apply_expiry(&mut v, now);
        assert_eq!(v.links_expired, Some(true));
        assert!(v.video_urls.is_empty());
        assert!(v.next_step.contains("expired"), "{}", v.next_step);
        let mut saved = VideoTask {
            saved_path: Some("/v/t.mp4".into()),
            links_expired: None,
            ..v
        };
        apply_expiry(&mut saved, now);
        assert!(saved.next_step.contains("/v/t.mp4"), "{}", saved.next_step);
    }

    #[test]
    fn status_filters_parse_leniently() {
        let p = |v: serde_json::Value| serde_json::from_value::<ListVideosParams>(v);
        assert_eq!(
            p(serde_json::json!({"status": "Completed"}))
                .unwrap()
                .status,
            Some(StatusFilter::Completed)
        );
        assert_eq!(
            p(serde_json::json!({"status": "all"})).unwrap().status,
            None
        );
        assert!(p(serde_json::json!({"status": "done"})).is_err());
        assert!(p(serde_json::json!({"bogus": 1})).is_err());
    }
}

//! `get_video_status`: one status lookup of a task, reported as a `VideoTask`
//! with the video URL(s), the link expiry and the next step.

use std::time::{Duration, SystemTime};

use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use tokio::time::Instant;

use super::{
    VideoServer,
    progress::ProgressReporter,
    view::{VideoStatus, VideoTask, WAIT_HINT, error_result},
};
use crate::backend::{ApiKey, Operation, http::validate_task_id};

/// Arguments of `get_video_status`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetVideoStatusParams {
    /// From create_video.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub task_id: String,
    /// Opt-in: wait on the server up to this many seconds (e.g. 45),
    /// only if your client allows tool calls that long. Default 0: answer at once.
    #[serde(default, deserialize_with = "lenient_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub wait_seconds: Option<u32>,
}

/// Accepts `30`, `30.5` (rounded up) or null; refuses negatives and non-numbers.
fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    let Some(v) = raw else { return Ok(None) };
    let secs = match &v {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(s.ceil().min(f64::from(u32::MAX)) as u32)),
        _ => Err(serde::de::Error::custom(format!(
            "wait_seconds must be a number of seconds, 0 or more (e.g. 30), got {}",
            super::excerpt(&v.to_string())
        ))),
    }
}

/// How far past `wait_seconds` a slow status lookup may carry a wait.
const WAIT_GRACE: Duration = Duration::from_secs(5);

/// How a wait ended.
enum WaitEnd {
    /// Completed, failed or cancelled upstream.
    Finished(VideoTask),
    /// The wait ran out while the video was still rendering.
    RanOut(VideoTask),
    /// The client cancelled the request.
    Cancelled,
}

impl VideoServer {
    /// Checks the task id and resolves the caller's key, before any upstream call.
    pub(crate) fn key_and_id(
        &self,
        ctx: &RequestContext<RoleServer>,
        task_id: &str,
    ) -> Result<(ApiKey, String), CallToolResult> {
        let task_id = task_id.trim();
        validate_task_id(task_id).map_err(|e| error_result(e.user_message(Operation::GetTask)))?;
        let key = self
            .resolve_key(ctx)
            .map_err(|e| error_result(e.user_message(Operation::GetTask)))?;
        Ok((key, task_id.to_string()))
    }

    /// Looks a task up; the building block of status checks, waits and downloads.
    #[tracing::instrument(name = "tool.lookup", level = "debug", skip_all, fields(task_id = %task_id))]
    pub(crate) async fn lookup_with_key(
        &self,
        key: &ApiKey,
        task_id: &str,
    ) -> Result<VideoTask, CallToolResult> {
        let task = self
            .state
            .backend
            .status(key, task_id)
            .await
            .map_err(|e| error_result(e.user_message(Operation::GetTask)))?;
        let view = VideoTask::from_snapshot(&task, SystemTime::now(), self.state.caps());
        self.remember(key, &task);
        Ok(view)
    }

    /// Polls the task until it finishes, the wait runs out or the client
    /// cancels, sending progress notifications when the request asked for them.
    async fn wait_for(
        &self,
        ctx: &RequestContext<RoleServer>,
        key: &ApiKey,
        task_id: &str,
        wait: Duration,
    ) -> Result<WaitEnd, CallToolResult> {
        let options = &self.state.options;
        let deadline = Instant::now() + wait;
        // Never a hot loop, whatever the configuration says.
        let interval = options.poll_interval.max(Duration::from_millis(50));
        let mut progress = ProgressReporter::new(ctx, options.progress_heartbeat);
        // A lookup after the first may not carry the call past its bound: a slow
        // upstream ends the wait with the last known state instead.
        let hard_end = deadline + WAIT_GRACE;
        let mut last: Option<VideoTask> = None;
        loop {
            let lookup = self.lookup_with_key(key, task_id);
            let view = match &last {
                None => tokio::select! {
                    biased;
                    _ = ctx.ct.cancelled() => return Ok(WaitEnd::Cancelled),
                    r = lookup => r?,
                },
                Some(previous) => tokio::select! {
                    biased;
                    _ = ctx.ct.cancelled() => return Ok(WaitEnd::Cancelled),
                    r = tokio::time::timeout_at(hard_end, lookup) => match r {
                        Ok(r) => r?,
                        Err(_) => return Ok(WaitEnd::RanOut(previous.clone())),
                    },
                },
            };
            progress.observe(&view).await;
            if view.status.is_finished() {
                return Ok(WaitEnd::Finished(view));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(WaitEnd::RanOut(view));
            }
            last = Some(view.clone());
            let next_poll = (now + interval).min(deadline);
            // Sleep until the next poll, sending heartbeats in between.
            loop {
                let wake = match progress.heartbeat_at() {
                    Some(hb) if hb < next_poll => hb,
                    _ => next_poll,
                };
                tokio::select! {
                    biased;
                    _ = ctx.ct.cancelled() => return Ok(WaitEnd::Cancelled),
                    _ = tokio::time::sleep_until(wake) => {}
                }
                if wake >= next_poll {
                    break;
                }
                progress.beat(&view).await;
            }
        }
    }
}

pub fn headline(view: &VideoTask) -> &'static str {
    match view.status {
        VideoStatus::Completed if !view.video_urls.is_empty() => "The video is ready.",
        VideoStatus::Completed => "The task reports completed.",
        VideoStatus::Failed => "The video failed.",
        VideoStatus::Cancelled => "The video task was cancelled.",
        _ => "The video is still rendering.",
    }
}

#[tool_router(router = status_router, vis = "pub(crate)")]
impl VideoServer {
    /// Status and progress of a create_video task; when completed, the MP4 URLs
    /// and links_expire_at (24 h after creation: save it before, with
    /// download_video). Rendering takes minutes: check about every 30 s, or set
    /// wait_seconds only if your client allows tool calls that long. Still
    /// rendering is a normal answer: never call create_video again. Free.
    #[tool(
        output_schema = schema_for_output::<VideoTask>(),
        annotations(
            title = "Get a HeyGen video's status",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn get_video_status(
        &self,
        Parameters(params): Parameters<GetVideoStatusParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let (key, task_id) = self.key_and_id(&ctx, &params.task_id)?;
        let requested = params.wait_seconds.unwrap_or(0);
        let cap = self.state.options.max_wait;
        let wait = Duration::from_secs(u64::from(requested)).min(cap);
        let clamped = Duration::from_secs(u64::from(requested)) > cap;

        let (mut view, headline) = if wait.is_zero() {
            let view = self.lookup_with_key(&key, &task_id).await?;
            let h = headline(&view).to_string();
            (view, h)
        } else {
            let started = Instant::now();
            match self.wait_for(&ctx, &key, &task_id, wait).await? {
                WaitEnd::Finished(view) => {
                    let h = headline(&view).to_string();
                    (view, h)
                }
                WaitEnd::RanOut(mut view) => {
                    let waited = started.elapsed().as_secs_f64().round();
                    view.next_step = still_rendering_step(&view, self.state.caps());
                    (
                        view,
                        format!("Still rendering after waiting {waited} s (this is normal)."),
                    )
                }
                WaitEnd::Cancelled => {
                    tracing::info!(%task_id, "wait cancelled by the client");
                    return Err(error_result(format!(
                        "The wait was cancelled by the client. The video keeps rendering upstream; \
                         check it later with get_video_status (task_id {task_id})."
                    )));
                }
            }
        };
        if view.status == VideoStatus::Completed {
            self.auto_save(&key, &mut view).await;
        }
        let mut text = view.summary(&headline);
        if clamped {
            text.push_str(&format!(
                "\nnote: wait_seconds {requested} was shortened to this server's limit of {} s.",
                cap.as_secs()
            ));
        }
        Ok(view.result(text))
    }
}

/// The next step after a wait that ran out: ask again, never re-create.
fn still_rendering_step(view: &VideoTask, caps: &crate::backend::Capabilities) -> String {
    format!(
        "Still rendering ({}%): the wait ran out, which is normal (nothing failed). Call \
         get_video_status for task_id {} again in about {} s ({WAIT_HINT}). Do not call \
         create_video again for this video.",
        view.progress,
        view.task_id,
        view.poll_hint_secs(caps)
    )
}

//! `get_video_status`: one status lookup of a task, reported as a `VideoTask`
//! with the video URL(s), the link expiry and the next step.

use std::time::SystemTime;

use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    VideoServer,
    view::{VideoStatus, VideoTask, error_result},
};
use crate::gateway::{Operation, validate_task_id};

/// Arguments of `get_video_status`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetVideoStatusParams {
    /// The task_id returned by create_video.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub task_id: String,
}

impl VideoServer {
    /// Looks a task up; the building block of status checks and waits.
    pub(crate) async fn lookup(
        &self,
        ctx: &RequestContext<RoleServer>,
        task_id: &str,
    ) -> Result<VideoTask, CallToolResult> {
        let task_id = task_id.trim();
        validate_task_id(task_id).map_err(|e| error_result(e.user_message(Operation::GetTask)))?;
        let key = self
            .resolve_key(ctx)
            .map_err(|e| error_result(e.user_message(Operation::GetTask)))?;
        let task = self
            .state
            .gateway
            .get_task(&key, task_id, self.state.options.sync_upstream)
            .await
            .map_err(|e| error_result(e.user_message(Operation::GetTask)))?;
        Ok(VideoTask::from_upstream(&task, task_id, SystemTime::now()))
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
    /// Check a video task started with create_video: status (pending, processing,
    /// completed, failed, cancelled, or unknown = still running), progress, and when
    /// completed the MP4 URL(s) with the time until which the links stay valid
    /// (24 h after creation: save the file before then). A video takes minutes;
    /// while it renders, check again in about 30 s. Read-only and free.
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
        let view = self.lookup(&ctx, &params.task_id).await?;
        let headline = headline(&view);
        Ok(view.into_result(headline))
    }
}

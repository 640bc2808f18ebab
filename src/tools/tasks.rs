//! The MCP Tasks extension (`io.modelcontextprotocol/tasks`, protocol
//! 2026-07-28), served statelessly: the MCP task id IS the upstream task id,
//! so `tasks/get` on any replica (or after a restart) looks the task up
//! upstream; nothing is kept per process. rmcp's in-memory `TaskManager` is
//! deliberately not used: it mints its own ids and lives in one process.
//!
//! `create_video` answers with a task only when the request declares the
//! extension AND speaks 2026-07-28 or later; this is decided before the
//! upstream is called (rmcp turns a task returned to any other client into an
//! error, after the video would already have been bought). The create itself
//! runs synchronously (about a second) through the normal path, with all its
//! duplicate protection; only its answer changes shape.

use std::time::{Duration, SystemTime};

use rmcp::{
    ErrorData,
    handler::server::tool::ToolCallContext,
    model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, CreateTaskResult, DetailedTask,
        ErrorCode, GetTaskParams, GetTaskResult, JsonObject, ProtocolVersion, Task, TaskPayload,
        TaskStatus, UpdateTaskParams,
    },
    service::{RequestContext, RoleServer},
};
use serde_json::{Value, json};

use super::{
    VideoServer,
    status::headline,
    view::{VideoStatus, VideoTask, error_result, rfc3339},
};
use crate::backend::{Cancelled, Operation, http::validate_task_id};

/// The smallest poll interval announced.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Tools that may answer with a task.
const TASK_TOOLS: [&str; 1] = ["create_video"];

/// Whether this request may be answered with a task: the client declared the
/// extension and speaks 2026-07-28 or later.
pub fn wants_task(context: &RequestContext<RoleServer>) -> bool {
    let declared = context
        .client_capabilities()
        .is_some_and(|c| c.supports_tasks());
    let modern = context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    declared && modern
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn not_found(task_id: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "Task not found: {task_id:?} is not a video task of this API key (task ids are the \
             task_id values create_video returns)."
        ),
        Some(json!({ "taskId": task_id })),
    )
}

impl VideoServer {
    /// The poll interval announced: the configured pause, at least the
    /// backend's own minimum (renders of 20–45 minutes need no 5 s polls).
    fn poll_interval_ms(&self) -> u64 {
        let caps = self.state.caps();
        ms(self
            .state
            .options
            .poll_interval
            .max(caps.min_task_poll)
            .max(MIN_POLL))
    }

    /// How long a task stays retrievable, as announced to clients: as long
    /// as its result links live.
    fn task_ttl(&self) -> Duration {
        match self.state.caps().links {
            crate::backend::LinkLifetime::AfterCreation(d)
            | crate::backend::LinkLifetime::Renewed(d) => d,
        }
    }

    fn task_of(&self, view: &VideoTask, status: TaskStatus, message: String) -> Task {
        let now = rfc3339(SystemTime::now());
        let created = view.created_at.clone().unwrap_or_else(|| now.clone());
        let mut task = Task::new(view.task_id.clone(), status, created, now)
            .with_ttl_ms(ms(self.task_ttl()))
            .with_status_message(message);
        if !status.is_terminal() {
            task = task.with_poll_interval_ms(self.poll_interval_ms());
        }
        task
    }

    /// `tools/call`: the router's normal result, or for `create_video` with a
    /// Tasks client, the created video as a task.
    pub(crate) async fn call_tool_with_tasks(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Decided before anything reaches the upstream.
        let as_task = TASK_TOOLS.contains(&request.name.as_ref()) && wants_task(&context);
        let response = self
            .tool_router()
            .call(ToolCallContext::new(self, request, context))
            .await?;
        if !as_task {
            return Ok(response);
        }
        let CallToolResponse::Complete(result) = response else {
            return Ok(response);
        };
        // A create that failed (nothing to follow) stays a normal error result.
        if result.is_error == Some(true) {
            return Ok(CallToolResponse::Complete(result));
        }
        let view: Option<VideoTask> = result
            .structured_content
            .clone()
            .and_then(|v| serde_json::from_value(v).ok());
        let Some(view) = view.filter(|v| !v.task_id.is_empty()) else {
            return Ok(CallToolResponse::Complete(result));
        };
        let message = if view.reused == Some(true) {
            format!(
                "An identical request already made this video (task {}); no new video, no credits \
                 spent. {}",
                view.task_id, view.next_step
            )
        } else {
            "Video task created (credits are reserved); rendering takes a few minutes.".to_string()
        };
        tracing::info!(task_id = %view.task_id, "create_video answered as an MCP task");
        Ok(CallToolResponse::Task(CreateTaskResult::new(self.task_of(
            &view,
            TaskStatus::Working,
            message,
        ))))
    }

    /// `tasks/get`: the upstream status; the final `create_video` result
    /// inlined once the video is finished (a failed video is a completed task
    /// whose result has `isError: true`).
    pub(crate) async fn get_task_upstream(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let task_id = request.task_id.trim().to_string();
        validate_task_id(&task_id).map_err(|_| not_found(&task_id))?;
        let key = self
            .resolve_key(&context)
            .map_err(|e| ErrorData::invalid_request(e.user_message(Operation::GetTask), None))?;
        let lookup = self.state.backend.status(&key, &task_id).await;
        let task = match lookup {
            Ok(t) => t,
            Err(e) if e.is_not_found() => return Err(not_found(&task_id)),
            Err(e) if e.is_transient() => {
                // Keep the client polling: the video renders regardless.
                let view = VideoTask {
                    task_id: task_id.clone(),
                    ..placeholder()
                };
                let message = format!(
                    "Could not check the video just now ({}); it keeps rendering, ask again.",
                    e.user_message(Operation::GetTask)
                );
                return Ok(GetTaskResult::new(DetailedTask::new(
                    self.task_of(&view, TaskStatus::Working, message),
                    TaskPayload::Working,
                )));
            }
            Err(e) => {
                return Err(ErrorData::new(
                    ErrorCode::INVALID_REQUEST,
                    e.user_message(Operation::GetTask),
                    Some(json!({ "taskId": task_id })),
                ));
            }
        };
        let mut view = VideoTask::from_snapshot(&task, SystemTime::now(), self.state.caps());
        self.remember(&key, &task);
        let detailed = match view.status {
            VideoStatus::Completed => {
                self.auto_save(&key, &mut view).await;
                let h = headline(&view).to_string();
                let message = h.clone();
                let result = view.clone().into_result(&h);
                DetailedTask::new(
                    self.task_of(&view, TaskStatus::Completed, message),
                    TaskPayload::Completed {
                        result: to_object(&result),
                    },
                )
            }
            VideoStatus::Failed | VideoStatus::Cancelled => {
                let h = headline(&view).to_string();
                let result = error_result(view.summary(&h));
                DetailedTask::new(
                    self.task_of(&view, TaskStatus::Completed, h),
                    TaskPayload::Completed {
                        result: to_object(&result),
                    },
                )
            }
            _ => {
                let mut message = format!(
                    "Rendering: {} {}%",
                    if view.upstream_status.is_empty() {
                        view.status.as_str()
                    } else {
                        view.upstream_status.as_str()
                    },
                    view.progress
                );
                if let Some(e) = view.estimated_seconds {
                    message.push_str(&format!(" (estimated render time about {e} s)"));
                }
                DetailedTask::new(
                    self.task_of(&view, TaskStatus::Working, message),
                    TaskPayload::Working,
                )
            }
        };
        Ok(GetTaskResult::new(detailed))
    }

    /// `tasks/cancel`: a finished task has nothing left to cancel and is
    /// acknowledged. A running one is stopped when the backend can stop it
    /// (saying honestly that a stopped run may still be billed); otherwise
    /// this says so instead of pretending.
    pub(crate) async fn cancel_task_upstream(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let task_id = request.task_id.trim().to_string();
        validate_task_id(&task_id).map_err(|_| not_found(&task_id))?;
        let key = self
            .resolve_key(&context)
            .map_err(|e| ErrorData::invalid_request(e.user_message(Operation::GetTask), None))?;
        let status = match self.state.backend.status(&key, &task_id).await {
            Ok(task) => Some(task.status),
            Err(e) if e.is_not_found() => return Err(not_found(&task_id)),
            Err(_) => None,
        };
        if status.is_some_and(VideoStatus::is_finished) {
            return Ok(());
        }
        match self.state.backend.cancel(&key, &task_id).await {
            Ok(Cancelled::Requested) => {
                tracing::info!(%task_id, "tasks/cancel: the upstream was asked to stop");
                Ok(())
            }
            Ok(Cancelled::Unsupported) => {
                tracing::info!(%task_id, "tasks/cancel refused: the upstream cannot cancel a video");
                Err(ErrorData::new(
                    ErrorCode::INVALID_REQUEST,
                    format!(
                        "This video cannot be cancelled: the task API has no cancel endpoint, \
                         so task {task_id} keeps rendering and its credits stay spent. Its \
                         result will still be reported by tasks/get; if the user does not want \
                         it, simply ignore it."
                    ),
                    Some(json!({ "taskId": task_id, "cancellable": false })),
                ))
            }
            Err(e) if e.is_not_found() => Err(not_found(&task_id)),
            Err(e) => Err(ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!(
                    "Stopping the video failed: {}",
                    e.user_message(Operation::Cancel)
                ),
                Some(json!({ "taskId": task_id })),
            )),
        }
    }

    /// `tasks/update`: these tasks never ask for input.
    pub(crate) fn update_task_refused(&self, request: UpdateTaskParams) -> ErrorData {
        ErrorData::invalid_params(
            format!(
                "Task {} never asks for input, so there is nothing to update.",
                request.task_id
            ),
            Some(json!({ "taskId": request.task_id })),
        )
    }
}

fn placeholder() -> VideoTask {
    VideoTask {
        task_id: String::new(),
        status: VideoStatus::Unknown,
        upstream_status: String::new(),
        progress: 0,
        created_at: None,
        links_expire_at: None,
        video_urls: Vec::new(),
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
    }
}

fn to_object<T: serde::Serialize>(v: &T) -> JsonObject {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => JsonObject::new(),
    }
}

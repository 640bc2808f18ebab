//! `download_video` and `--auto-download`: save a completed task's MP4 into the
//! download folder before its link expires (DESIGN.md §8 "Downloads").//! The tool itself; the saving (jobs, transfer, placement, quota) is
//! [`crate::downloads`].

use std::{path::Path, time::SystemTime};

use rmcp::{
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{
    VideoServer,
    view::{VideoStatus, VideoTask, WAIT_HINT, error_result, human_bytes},
};
pub use crate::downloads::{Downloads, TenantQuota};
use crate::{
    backend::{ApiKey, Operation},
    downloads::{
        FreshLink, Job, JobSpec, JobState, LinkRefresh, OnSaved, caller_dir, default_file_name,
        free_path, reusable, sanitize_file_name,
    },
};

/// Arguments of `download_video`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadVideoParams {
    /// A completed video's task_id.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub task_id: String,
    /// Plain file name, e.g. "demo.mp4". Default "<task_id>.mp4".
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub file_name: Option<String>,
    /// Replace a file of that name (default: pick a free name).
    #[serde(default)]
    pub overwrite: Option<bool>,
}

fn refusal(http_mode: bool) -> String {
    if http_mode {
        "download_video is turned off on this server: it is a remote (HTTP) server, so the file \
         would be saved on the server's disk, and its operator has not configured a download \
         folder (HEYGEN_DOWNLOAD_DIR / --download-dir). Give the user the video URL from \
         get_video_status instead; it stays valid until 24 h after the video was created."
            .into()
    } else {
        "No download folder is available: set HEYGEN_DOWNLOAD_DIR (or --download-dir) to an \
         absolute folder path in this server's configuration and restart the client. Meanwhile \
         give the user the video URL from get_video_status."
            .into()
    }
}

/// Puts a download's state into a view: path, size and the next step.
fn annotate(view: &mut VideoTask, job: &Job, retry_tool: &str) {
    match job.current() {
        JobState::Running => {
            view.saved_path = Some(job.target.display().to_string());
            view.size_bytes = None;
            let expiry = view
                .links_expire_at
                .as_deref()
                .map(|t| format!(" (the link stays valid until {t})"))
                .unwrap_or_default();
            view.next_step = format!(
                "The video is being saved in the background to {}{expiry}. Call {retry_tool} for \
                 task_id {} again in about a minute to confirm it is saved (it will not download \
                 twice); meanwhile you can give the user the URL.",
                job.target.display(),
                view.task_id
            );
        }
        JobState::Saved { path, size } => {
            view.saved_path = Some(path.display().to_string());
            view.size_bytes = Some(size);
            view.next_step = format!(
                "The video is saved at {} ({}, verified on disk): tell the user where to find it.",
                path.display(),
                human_bytes(size)
            );
        }
        JobState::Failed(msg) => {
            view.saved_path = None;
            view.size_bytes = None;
            view.next_step = format!(
                "Saving the video automatically failed ({msg}). Call download_video for task_id \
                 {} to try again, or give the user the URL before the link expires.",
                view.task_id
            );
        }
    }
}

impl VideoServer {
    /// Looks the task up again for a fresh result link.
    fn link_refresh(&self, key: &ApiKey, task_id: &str) -> LinkRefresh {
        let (state, key, task_id) = (self.state.clone(), key.clone(), task_id.to_string());
        Box::new(move || {
            let (state, key, task_id) = (state.clone(), key.clone(), task_id.clone());
            Box::pin(async move {
                let task = state
                    .backend
                    .status(&key, &task_id)
                    .await
                    .map_err(|e| e.user_message(Operation::GetTask))?;
                let view = VideoTask::from_snapshot(&task, SystemTime::now(), state.caps());
                Ok(match view.video_urls.first() {
                    Some(u) => FreshLink::Url(u.clone()),
                    None => FreshLink::Missing {
                        status: view.status.as_str().to_string(),
                    },
                })
            })
        })
    }

    /// Records a saved file in the ledger, if there is one.
    fn record_saved(&self, key: &ApiKey, task_id: &str) -> Option<OnSaved> {
        let ledger = self.state.options.ledger.clone()?;
        let (tenant, task_id) = (key.tenant(), task_id.to_string());
        Some(Box::new(move |path: &Path, size: u64| {
            // Queued now; list_videos reports the saved file.
            drop(ledger.record_saved(&tenant, &task_id, &path.display().to_string(), size));
        }))
    }

    /// `--auto-download`: the first time a status check sees a task completed,
    /// start saving it in the background; report where it is (or will be).
    pub(crate) async fn auto_save(&self, key: &ApiKey, view: &mut VideoTask) {
        let options = &self.state.options;
        if !options.auto_download || view.status != VideoStatus::Completed {
            return;
        }
        let Some(dir) = options.download_dir.clone() else {
            return;
        };
        let Some(url) = view.video_urls.first().cloned() else {
            return;
        };
        let downloads = &options.downloads;
        let dir = caller_dir(&dir, options.http_mode, &key.tenant());
        let dir = match downloads.prepare_dir(&dir).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("auto-download: {e}");
                return;
            }
        };
        let requested = dir.join(default_file_name(&view.task_id));
        if let Some(job) = downloads.job(&view.task_id, &requested) {
            annotate(view, &job, "get_video_status");
            return;
        }
        if !downloads.first_auto(&view.task_id) {
            return;
        }
        // Saved by an earlier run under the same name: report it, do not fetch again.
        if let Ok(meta) = tokio::fs::metadata(&requested).await
            && meta.is_file()
            && meta.len() > 0
        {
            let job = downloads.record_existing(&view.task_id, &requested, meta.len());
            annotate(view, &job, "get_video_status");
            return;
        }
        let quota_held = if options.http_mode {
            let guard = downloads.quota_guard().await;
            if let Err(e) = downloads.check_quota(&dir, None).await {
                tracing::warn!(task_id = %view.task_id, "auto-download skipped: {e}");
                return;
            }
            Some(guard)
        } else {
            None
        };
        let target = free_path(&requested).await;
        let job = downloads.start(
            JobSpec {
                upstream_base: self.state.backend.base_url().to_string(),
                max_bytes: options.max_download_bytes,
                refresh: self.link_refresh(key, &view.task_id),
                on_saved: self.record_saved(key, &view.task_id),
                task_id: view.task_id.clone(),
                url,
                created_at: view.created_at.clone(),
                dir,
                requested,
                target,
                overwrite: false,
                ct: CancellationToken::new(),
            },
            true,
        );
        drop(quota_held);
        tracing::info!(task_id = %view.task_id, "auto-download started");
        annotate(view, &job, "get_video_status");
    }
}

#[tool_router(router = download_router, vis = "pub(crate)")]
impl VideoServer {
    /// Save a completed video's MP4 in the server's download folder
    /// (HEYGEN_DOWNLOAD_DIR, locally ~/Downloads/heygen-videos) and return its
    /// path and size. Do it once completed: links expire 24 h after creation. A
    /// long download goes on in the background: call again to confirm. Over HTTP
    /// the file stays on the server; off unless a folder is set. Free.
    #[tool(
        output_schema = schema_for_output::<VideoTask>(),
        annotations(
            title = "Save a HeyGen video as an MP4 file",
            read_only_hint = false,
            // overwrite: true replaces an existing file.
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    pub async fn download_video(
        &self,
        Parameters(params): Parameters<DownloadVideoParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, CallToolResult> {
        let options = &self.state.options;
        let Some(dir) = options.download_dir.clone() else {
            return Err(error_result(refusal(options.http_mode)));
        };
        let name = match params.file_name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => Some(
                sanitize_file_name(n)
                    .map_err(|e| error_result(format!("Invalid arguments: {e}.")))?,
            ),
            _ => None,
        };
        let overwrite = params.overwrite.unwrap_or(false);
        let (key, task_id) = self.key_and_id(&ctx, &params.task_id)?;
        let mut view = self.lookup_with_key(&key, &task_id).await?;
        match view.status {
            VideoStatus::Completed if !view.video_urls.is_empty() => {}
            VideoStatus::Completed => {
                return Err(error_result(format!(
                    "The task reports completed but has no video URL yet: call get_video_status \
                     for task_id {task_id} in about 30 s, then download_video again."
                )));
            }
            VideoStatus::Failed | VideoStatus::Cancelled => {
                return Err(error_result(format!(
                    "There is no video to save: the task {}. {}",
                    if view.status == VideoStatus::Failed {
                        "failed"
                    } else {
                        "was cancelled"
                    },
                    view.next_step
                )));
            }
            _ => {
                return Err(error_result(format!(
                    "The video is not ready yet (status {}, {}%): follow it with \
                     get_video_status (task_id {task_id}) about every 30 s ({WAIT_HINT}), then \
                     call download_video again. Do not call create_video again.",
                    view.status.as_str(),
                    view.progress
                )));
            }
        }
        let downloads = &options.downloads;
        let dir = caller_dir(&dir, options.http_mode, &key.tenant());
        let dir = downloads
            .prepare_dir(&dir)
            .await
            .map_err(|e| error_result(format!("Saving the video failed: {e}.")))?;
        let file_name = name.unwrap_or_else(|| default_file_name(&task_id));
        let requested = dir.join(&file_name);
        // Defence in depth: the name is one plain component inside the folder.
        if requested.parent() != Some(dir.as_path()) {
            return Err(error_result(
                "Invalid arguments: file_name must be a plain name.",
            ));
        }
        // A shared (HTTP) server holds each caller to its quota; a call that
        // joins a download already running or saved adds nothing.
        let quota_held = if options.http_mode {
            let guard = downloads.quota_guard().await;
            let joins = !overwrite
                && downloads
                    .job(&task_id, &requested)
                    .is_some_and(|j| reusable(&j.current()));
            if !joins {
                let replacing = match tokio::fs::symlink_metadata(&requested).await {
                    Ok(m) if overwrite && m.is_file() => Some(m.len()),
                    _ => None,
                };
                downloads
                    .check_quota(&dir, replacing)
                    .await
                    .map_err(|e| error_result(format!("Saving the video failed: {e}.")))?;
            }
            Some(guard)
        } else {
            None
        };
        let target = if overwrite {
            requested.clone()
        } else {
            free_path(&requested).await
        };
        let call_ct = CancellationToken::new();
        let job = downloads.start(
            JobSpec {
                upstream_base: self.state.backend.base_url().to_string(),
                max_bytes: options.max_download_bytes,
                refresh: self.link_refresh(&key, &task_id),
                on_saved: self.record_saved(&key, &task_id),
                task_id: task_id.clone(),
                url: view.video_urls.first().cloned().unwrap_or_default(),
                created_at: view.created_at.clone(),
                dir,
                requested: requested.clone(),
                target,
                overwrite,
                ct: call_ct.clone(),
            },
            !overwrite,
        );
        // Registered (it counts against the quota now): let other calls check.
        drop(quota_held);

        let mut rx = job.state.clone();
        let finished = tokio::select! {
            biased;
            _ = ctx.ct.cancelled() => {
                // Stop a download this call started; one started earlier keeps going.
                call_ct.cancel();
                return Err(error_result(
                    "The download was cancelled by the client; no file was saved by this call.",
                ));
            }
            r = tokio::time::timeout(
                options.download_deadline,
                rx.wait_for(|s| *s != JobState::Running),
            ) => r.is_ok(),
        };
        let state = job.current();
        let headline = match (&state, finished) {
            (JobState::Failed(msg), _) => return Err(error_result(msg.clone())),
            (JobState::Saved { path, size }, _) => {
                if requested.exists() && *path != requested && !overwrite {
                    format!(
                        "Saved the video to {} ({}); a file named {} already existed, so it was \
                         kept and the video got a new name.",
                        path.display(),
                        human_bytes(*size),
                        file_name
                    )
                } else {
                    format!(
                        "Saved the video to {} ({}).",
                        path.display(),
                        human_bytes(*size)
                    )
                }
            }
            (JobState::Running, _) => format!(
                "The download is taking longer than {} s and continues in the background; the \
                 file will be at {}.",
                options.download_deadline.as_secs_f64().round(),
                job.target.display()
            ),
        };
        annotate(&mut view, &job, "download_video");
        Ok(view.result(view.summary(&headline)))
    }
}

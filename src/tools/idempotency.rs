//! Never pay twice (DESIGN.md §1.5, §8 "Ledger and tenants"): the path every
//! `create_video` takes between validation and the upstream.
//!
//! 1. Identical calls in flight in this process collapse into one: the first
//!    leads, the others wait for its outcome ([`Creates`]). A call whose
//!    idempotency key is in flight for *other* arguments is refused as a key
//!    conflict (never handed the other call's video).
//! 2. The leader asks the ledger ([`crate::ledger::Ledger::claim`]), atomically
//!    across processes: the same idempotency key within 24 h, or the same
//!    arguments within the dedupe window, answer with the earlier task (only a
//!    pending, processing or completed one; a running one is re-checked
//!    upstream first) — no upstream call. A create that failed ambiguously
//!    ("maybe created") blocks a same-arguments retry unless a new key is
//!    given. Otherwise the ledger reserves the create.
//! 3. The leader's whole turn — the ledger claim, the upstream create, the
//!    ledger's record of its outcome, publishing it to the waiting calls —
//!    runs in a task detached from the request, which holds the in-process
//!    slot until the outcome is published. A request future that is dropped
//!    mid-create (a cancelled call, a closed connection) therefore neither
//!    frees the slot for a second paid create nor leaves a claim without its
//!    settlement.
//!
//! Everything is scoped by the tenant (the signed-in user, else the key's
//! fingerprint; see [`crate::backend::ApiKey::tenant`]). Without a
//! ledger only step 1 applies.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use rmcp::model::CallToolResult;

use super::budget::Charge;
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    VideoServer,
    files::LocalFile,
    list,
    view::{VideoTask, error_result, human_duration},
};
use crate::{
    backend::{ApiKey, Operation},
    ledger::{
        Claim, ClaimPolicy, CreateIdentity, HEARTBEAT_EVERY, KEY_LIFETIME, LedgerRecord,
        ORPHANED_AFTER, Settle,
    },
    video::{FileRef, NewVideo, TaskSnapshot},
};

/// Longest an identical create running elsewhere (another process) is waited for.
const MAX_INFLIGHT_WAIT: Duration = Duration::from_secs(45);
/// Pause between ledger checks while another process creates.
const INFLIGHT_POLL: Duration = Duration::from_millis(150);
/// Most statuses remembered to skip writing an unchanged one again.
const MAX_REMEMBERED: usize = 10_000;

/// How to deliberately ask for another video with the same arguments.
pub const SECOND_TAKE: &str = "If the user deliberately wants another, separate video with the \
same arguments, call create_video again with a new idempotency_key (any new short string, e.g. \
\"take-2\").";

/// Appended to an ambiguous create failure that the ledger recorded.
const RECORDED: &str = " This attempt is recorded: repeating the same create_video call will not \
send it again; to create the video anyway after checking, call create_video with a new \
idempotency_key.";

type Outcome = Result<VideoTask, CallToolResult>;

/// A create in flight: the leader's id, the arguments it creates (their hash
/// and prompt excerpt: a keyed slot must not answer for other arguments) and
/// where its outcome appears.
struct Slot {
    id: u64,
    args_hash: String,
    prompt_preview: String,
    rx: watch::Receiver<Option<Outcome>>,
}
/// What was last written for a task: upstream status, progress, URL count, expiry.
type Observed = (String, u8, usize, Option<SystemTime>);

/// Creates in flight in this process, by tenant and identity, plus the last
/// status written to the ledger per task (to skip unchanged writes).
#[derive(Clone, Default)]
pub struct Creates {
    inner: Arc<CreatesInner>,
}

#[derive(Default)]
struct CreatesInner {
    next: AtomicU64,
    in_flight: Mutex<HashMap<String, Slot>>,
    recorded: Mutex<HashMap<(String, String), Observed>>,
}

impl std::fmt::Debug for Creates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.in_flight.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Creates").field("in_flight", &n).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Turn {
    Lead(Lead),
    Follow(watch::Receiver<Option<Outcome>>),
    /// The idempotency key is in flight for other arguments (their prompt
    /// excerpt): a key conflict.
    Conflict(String),
}

/// The leader's claim on a slot; dropping it frees the slot (followers whose
/// leader vanished without an outcome try again). It lives in the detached
/// task that runs the create, never in the request future.
struct Lead {
    creates: Creates,
    slot: String,
    id: u64,
    tx: watch::Sender<Option<Outcome>>,
}

impl Lead {
    fn publish(&self, outcome: &Outcome) {
        let _ = self.tx.send(Some(outcome.clone()));
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        let mut map = lock(&self.creates.inner.in_flight);
        if map.get(&self.slot).is_some_and(|s| s.id == self.id) {
            map.remove(&self.slot);
        }
    }
}

impl Creates {
    /// Joins the create in flight for `identity`, takes the lead of a new one,
    /// or (same tenant and key, other arguments) reports a key conflict.
    fn enter(&self, identity: &CreateIdentity) -> Turn {
        let slot = slot_of(identity);
        let mut map = lock(&self.inner.in_flight);
        if let Some(s) = map.get(&slot) {
            return if s.args_hash == identity.args_hash {
                Turn::Follow(s.rx.clone())
            } else {
                Turn::Conflict(s.prompt_preview.clone())
            };
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(
            slot.clone(),
            Slot {
                id,
                args_hash: identity.args_hash.clone(),
                prompt_preview: identity.prompt_preview.clone(),
                rx,
            },
        );
        Turn::Lead(Lead {
            creates: self.clone(),
            slot,
            id,
            tx,
        })
    }

    /// True when `view` differs from what was last written for the task.
    fn changed(&self, tenant: &str, view: &TaskSnapshot) -> bool {
        let seen = (
            view.upstream_status.clone(),
            view.progress,
            view.video_urls.len(),
            view.links_expire_at,
        );
        let mut map = lock(&self.inner.recorded);
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
        map.insert((tenant.to_string(), view.task_id.clone()), seen.clone()) != Some(seen)
    }
}

/// Refreshes a reservation's heartbeat while its create is in flight, so
/// other processes can tell a live create from one whose process died;
/// stops when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(ledger: std::sync::Arc<dyn crate::ledger::Ledger>, row: i64) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if let Err(e) = ledger.heartbeat(row).await {
                    tracing::debug!("the reservation's heartbeat was not recorded: {e}");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the leader's create came to.
enum Made {
    Fresh(VideoTask),
    /// An identical create that was in flight when this call arrived.
    Joined(VideoTask),
    Reused {
        view: VideoTask,
        ago: Duration,
        by_key: bool,
    },
}

/// The in-process slot: tenant and key for a keyed call (the slot also holds
/// the arguments' hash, so the same key for other arguments is a conflict,
/// not a join), tenant and arguments otherwise.
fn slot_of(id: &CreateIdentity) -> String {
    match &id.idempotency_key {
        Some(k) => format!("{}\u{0}k\u{0}{k}", id.tenant),
        None => format!("{}\u{0}h\u{0}{}", id.tenant, id.args_hash),
    }
}

/// Why a create was refused when the shared ledger could not record it.
fn shared_ledger_down_text(e: &crate::ledger::LedgerError) -> String {
    format!(
        "The video was not created: the shared video ledger could not record this create ({e}). \
         Nothing was sent to the video service and nothing was charged. Try the same \
         create_video call again in a moment; if this persists, the server's database needs \
         attention (an operator can run heygen-video-mcp --check)."
    )
}

/// "42 s", "3 min", "2 h 5 min".
fn ago(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{} s", d.as_secs())
    } else {
        human_duration(d)
    }
}

impl VideoServer {
    /// Records what a lookup learned about a task in the ledger (unchanged
    /// observations are skipped; the write happens off the runtime).
    pub(crate) fn remember(&self, key: &ApiKey, task: &TaskSnapshot) {
        let Some(ledger) = &self.state.options.ledger else {
            return;
        };
        let tenant = key.tenant();
        if self.state.options.creates.changed(&tenant, task) {
            // Both stores start the write when called (their own thread, or
            // a spawned task): dropping the future abandons only the wait.
            drop(ledger.record_status(&tenant, task));
        }
    }

    fn claim_policy(&self) -> ClaimPolicy {
        ClaimPolicy {
            window: self.state.options.dedupe_window,
            key_lifetime: KEY_LIFETIME,
            stale_after: self.state.backend.create_deadline() + Duration::from_secs(60),
            orphaned_after: ORPHANED_AFTER,
            joined: None,
        }
    }

    /// Creates the video at most once for identical requests (see the module
    /// docs); returns the tool result.
    #[tracing::instrument(name = "tool.create_video", level = "debug", skip_all)]
    pub(crate) async fn create_once(
        &self,
        key: ApiKey,
        body: NewVideo,
        idempotency_key: Option<String>,
        files: Vec<LocalFile>,
        charge: Option<Charge>,
    ) -> Result<CallToolResult, CallToolResult> {
        let digests: Vec<&str> = files.iter().map(|f| f.digest.as_str()).collect();
        let identity =
            CreateIdentity::new(key.tenant(), &body, idempotency_key).with_files(&digests);
        loop {
            match self.state.options.creates.enter(&identity) {
                Turn::Conflict(preview) => {
                    return Err(error_result(in_flight_conflict_text(&preview, &identity)));
                }
                Turn::Follow(mut rx) => {
                    let shared = match rx.wait_for(Option::is_some).await {
                        Ok(v) => v.clone(),
                        // The leader went away without an outcome: try again.
                        Err(_) => continue,
                    };
                    match shared {
                        Some(Ok(view)) => return Ok(concurrent_result(view, &identity)),
                        Some(Err(e)) => return Err(e),
                        None => continue,
                    }
                }
                Turn::Lead(lead) => {
                    // Detached, and owning the slot: dropping this request's
                    // future (a cancelled call) leaves the create, its ledger
                    // claim and settlement, and the waiting calls intact.
                    let server = self.clone();
                    let (key, body, id) = (key.clone(), body.clone(), identity.clone());
                    let files = files.clone();
                    let job = tokio::spawn(
                        async move {
                            let made = server.create_as_leader(&key, &body, &id, &files).await;
                            // Only a video bought here counts against the user's budget.
                            if let (Ok(Made::Fresh(_)), Some(c)) = (&made, charge) {
                                c.keep();
                            }
                            let outcome: Outcome = match &made {
                                Ok(
                                    Made::Fresh(v) | Made::Joined(v) | Made::Reused { view: v, .. },
                                ) => Ok(v.clone()),
                                Err(e) => Err(e.clone()),
                            };
                            lead.publish(&outcome);
                            drop(lead);
                            made
                        }
                        .in_current_span(),
                    );
                    let made = job.await.map_err(|e| {
                        error_result(format!(
                            "Creating the video was interrupted inside the server ({e}). The \
                             video may have been created: check with list_videos before trying \
                             again."
                        ))
                    })?;
                    return match made? {
                        Made::Fresh(view) => {
                            tracing::info!(task_id = %view.task_id, "video task created");
                            Ok(view.into_result("Video task created."))
                        }
                        Made::Joined(view) => {
                            tracing::info!(task_id = %view.task_id, "create answered with an identical one in flight");
                            Ok(concurrent_result(view, &identity))
                        }
                        Made::Reused { view, ago, by_key } => {
                            tracing::info!(task_id = %view.task_id, by_key, "create answered with an earlier task");
                            Ok(reused_result(view, ago, by_key, &identity))
                        }
                    };
                }
            }
        }
    }

    /// The leader's turn: claim in the ledger, create upstream, settle the
    /// claim. Runs in the detached task of [`Self::create_once`], so every
    /// reservation it makes is settled (nothing between the claim and the
    /// settlement can be cancelled by the caller).
    async fn create_as_leader(
        &self,
        key: &ApiKey,
        body: &NewVideo,
        identity: &CreateIdentity,
        files: &[LocalFile],
    ) -> Result<Made, CallToolResult> {
        let mut reservation = None;
        let mut heartbeat = None;
        if let Some(ledger) = self.state.options.ledger.clone() {
            let mut policy = self.claim_policy();
            let deadline = Instant::now() + policy.stale_after.min(MAX_INFLIGHT_WAIT);
            let mut rechecks = 0;
            loop {
                match ledger.claim(identity.clone(), policy).await {
                    Ok(Claim::Reserved(row)) => {
                        reservation = Some(row);
                        heartbeat = Some(Heartbeat::start(ledger.clone(), row));
                        break;
                    }
                    Ok(Claim::Existing { record, by_key }) => {
                        let ago = SystemTime::now()
                            .duration_since(record.requested_at())
                            .unwrap_or_default();
                        // The earlier task failed after all: it must not
                        // answer for this one; claim again.
                        match self.reuse(key, &record, rechecks >= 2).await {
                            Some(view) if policy.joined == Some(record.row_id) => {
                                return Ok(Made::Joined(view));
                            }
                            Some(view) => return Ok(Made::Reused { view, ago, by_key }),
                            None => {
                                rechecks += 1;
                                policy.joined = None;
                            }
                        }
                    }
                    Ok(Claim::MaybeCreated(record)) => {
                        return Err(error_result(maybe_created_text(&record, identity)));
                    }
                    Ok(Claim::KeyConflict(record)) => {
                        return Err(error_result(key_conflict_text(&record, identity)));
                    }
                    Ok(Claim::InProgress(row)) => {
                        // An identical create in flight (here or in another
                        // process): its outcome answers this call, whatever
                        // the dedupe window.
                        policy.joined = Some(row);
                        if Instant::now() >= deadline {
                            return Err(error_result(IN_PROGRESS));
                        }
                        tokio::time::sleep(INFLIGHT_POLL).await;
                    }
                    // A shared store that cannot record the claim: another
                    // replica could not see this create, so it is not sent.
                    Err(e) if ledger.shared() => {
                        tracing::warn!("create refused: the shared ledger is unavailable: {e}");
                        return Err(error_result(shared_ledger_down_text(&e)));
                    }
                    Err(e) => {
                        tracing::debug!("creating without the ledger: {e}");
                        break;
                    }
                }
            }
        }

        let uploaded;
        let body = if files.is_empty() {
            body
        } else {
            match self.upload_all(key, files).await {
                Ok(refs) => {
                    let mut with = body.clone();
                    with.files.extend(refs);
                    uploaded = with;
                    &uploaded
                }
                Err(msg) => {
                    if let (Some(ledger), Some(row)) =
                        (self.state.options.ledger.as_ref(), reservation)
                        && let Err(e) = ledger.settle(row, Settle::NotCreated).await
                    {
                        tracing::warn!("the ledger did not record the failed upload: {e}");
                    }
                    return Err(error_result(msg));
                }
            }
        };

        tracing::info!(prompt_chars = body.prompt.chars().count(), "creating video");
        let now = SystemTime::now();
        let result = self.state.backend.create(key, body).await.map(|mut task| {
            // The creation time as this server saw it when the upstream omits it.
            task.created_at.get_or_insert(now);
            task
        });
        let view = result.as_ref().ok().map(|task: &TaskSnapshot| {
            let mut v = VideoTask::created(task, now, self.state.caps());
            v.idempotency_key = identity.idempotency_key.clone();
            v
        });
        if let (Some(ledger), Some(row)) = (self.state.options.ledger.as_ref(), reservation) {
            let settle = match (&result, &view) {
                (Ok(task), Some(v)) => Settle::Created(Box::new(TaskSnapshot {
                    task_id: v.task_id.clone(),
                    ..task.clone()
                })),
                (Err(e), _) if e.create_may_have_happened() => {
                    Settle::MaybeCreated(key.scrub(&e.to_string()))
                }
                _ => Settle::NotCreated,
            };
            drop(heartbeat.take());
            if let Err(e) = ledger.settle(row, settle).await {
                tracing::warn!("the ledger did not record the create's outcome: {e}");
            }
        }
        match (result, view) {
            (Ok(_), Some(view)) => Ok(Made::Fresh(view)),
            (Err(e), _) => {
                tracing::warn!(error = %e, "create failed");
                let mut msg = e.user_message(Operation::Create);
                if e.create_may_have_happened() && reservation.is_some() {
                    msg.push_str(RECORDED);
                }
                Err(error_result(msg))
            }
            (Ok(_), None) => Err(error_result(
                "Creating the video returned no task (an internal error). Check with list_videos \
                 before trying again.",
            )),
        }
    }

    /// Uploads each local file once, in order; the first failure ends it with
    /// a message saying that no video was created.
    async fn upload_all(&self, key: &ApiKey, files: &[LocalFile]) -> Result<Vec<FileRef>, String> {
        let mut urls = Vec::with_capacity(files.len());
        for file in files {
            let data = super::files::read_for_upload(file, self.state.caps().max_upload_bytes)
                .await
                .map_err(|e| format!("Creating the video failed: {e}. Nothing was created."))?;
            tracing::info!(bytes = data.len(), "uploading a reference file");
            let url = self
                .state
                .backend
                .upload(key, &file.name, &data)
                .await
                .map_err(|e| {
                    format!(
                        "Uploading {} failed, so no video was created: {}",
                        file.name,
                        e.user_message(Operation::Upload)
                    )
                })?;
            urls.push(url);
        }
        Ok(urls)
    }

    /// The view of an earlier task to answer with, re-checked upstream while it
    /// may still be running; `None` when it turned out failed or cancelled.
    /// With `accept_any` the record is used as it is (no more re-checks).
    async fn reuse(
        &self,
        key: &ApiKey,
        record: &LedgerRecord,
        accept_any: bool,
    ) -> Option<VideoTask> {
        let now = SystemTime::now();
        let mut view = VideoTask::from_record(record);
        let running = record.status.is_none_or(|s| !s.is_finished());
        if running
            && !accept_any
            && let Some(task_id) = &record.task_id
        {
            match self.state.backend.status(key, task_id).await {
                Ok(task) => {
                    let fresh = VideoTask::from_snapshot(&task, now, self.state.caps());
                    if let Some(ledger) = &self.state.options.ledger {
                        // Awaited: the next claim must see it.
                        let _ = ledger.record_status(&record.tenant, &task).await;
                    }
                    if !record_dedupable(&fresh) {
                        return None;
                    }
                    view = VideoTask {
                        saved_path: view.saved_path,
                        size_bytes: view.size_bytes,
                        prompt: view.prompt,
                        idempotency_key: view.idempotency_key,
                        ..fresh
                    };
                }
                Err(e) => tracing::debug!(%task_id, "re-checking an earlier task failed: {e}"),
            }
        }
        view.refresh_next_step(now, self.state.caps());
        list::apply_expiry(&mut view, now);
        view.reused = Some(true);
        Some(view)
    }
}

fn record_dedupable(view: &VideoTask) -> bool {
    !matches!(
        view.status,
        super::view::VideoStatus::Failed | super::view::VideoStatus::Cancelled
    )
}

const IN_PROGRESS: &str = "An identical create_video request is being sent to the video service \
right now by another call (another window or session sharing this server's ledger). This call \
sent nothing. Check list_videos in a minute to find that video; do not call create_video again \
meanwhile.";

fn reused_result(
    mut view: VideoTask,
    elapsed: Duration,
    by_key: bool,
    identity: &CreateIdentity,
) -> CallToolResult {
    view.reused = Some(true);
    let headline = match (&identity.idempotency_key, by_key) {
        (Some(k), true) => format!(
            "Not created again: idempotency_key {k:?} was already used {} ago for this request, \
             so this is that video (no new video was made and no credits were spent). To make \
             a new video, pass a new idempotency_key.",
            ago(elapsed)
        ),
        _ => format!(
            "Not created again: an identical create_video request (same arguments) was made {} \
             ago, so this is that video (no new video was made and no credits were spent).",
            ago(elapsed)
        ),
    };
    let mut text = view.summary(&headline);
    if identity.idempotency_key.is_none() {
        text.push_str(&format!("\nnote: {SECOND_TAKE}"));
    }
    view.result(text)
}

fn concurrent_result(mut view: VideoTask, identity: &CreateIdentity) -> CallToolResult {
    view.reused = Some(true);
    let mut text = view.summary(
        "Not created twice: an identical create_video request arrived at the same moment and \
         this is its video; this call made no second video (no extra credits).",
    );
    if identity.idempotency_key.is_none() {
        text.push_str(&format!("\nnote: {SECOND_TAKE}"));
    }
    view.result(text)
}

fn when(record: &LedgerRecord) -> String {
    let elapsed = SystemTime::now()
        .duration_since(record.requested_at())
        .unwrap_or_default();
    format!(
        "{} ago ({})",
        ago(elapsed),
        super::view::rfc3339(record.requested_at())
    )
}

fn maybe_created_text(record: &LedgerRecord, identity: &CreateIdentity) -> String {
    let which = match &identity.idempotency_key {
        Some(k) => format!("the create_video request with idempotency_key {k:?}"),
        None => "an identical create_video request (same arguments)".to_string(),
    };
    let why = record
        .note
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    format!(
        "Not sent: {which} made {} failed in a way that may still have created and billed the \
         video{why}. To avoid paying twice, this server does not send it again. Check with \
         list_videos in a minute or two whether the video appeared (or with get_video_status, \
         if the user has its task_id). If the user still wants the \
         video, call create_video again with a new idempotency_key (any new short string) to \
         create it deliberately.",
        when(record)
    )
}

/// The same key is being used right now, in this process, for other arguments.
fn in_flight_conflict_text(other_prompt: &str, identity: &CreateIdentity) -> String {
    let key = identity.idempotency_key.as_deref().unwrap_or_default();
    format!(
        "Invalid arguments: idempotency_key {key:?} is being used right now by another \
         create_video call for a different request (prompt {other_prompt:?}); this call sent \
         nothing. An idempotency_key names one video: use a new key for a different video, or \
         repeat the original arguments to get that video back."
    )
}

fn key_conflict_text(record: &LedgerRecord, identity: &CreateIdentity) -> String {
    let key = identity.idempotency_key.as_deref().unwrap_or_default();
    let task = record
        .task_id
        .as_deref()
        .map(|t| format!("task_id {t}, "))
        .unwrap_or_default();
    format!(
        "Invalid arguments: idempotency_key {key:?} was already used {} for a different request \
         ({task}prompt {:?}). An idempotency_key names one video: use a new key for a different \
         video, or repeat the original arguments to get that video back.",
        when(record),
        record.prompt_preview
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::future::BoxFuture;
    use serde_json::Value;

    use super::*;
    use crate::{
        gateway::{GatewayClient, GatewayConfig},
        ledger::{Ledger, LedgerError, ListQuery, RecordState, SqliteLedger},
        simulator::{SimConfig, Simulator},
        tools::{AppState, ToolOptions},
    };

    const KEY: &str = "unit-test-key-0123456789";

    async fn sim() -> Simulator {
        Simulator::start(SimConfig {
            render_time: Duration::from_secs(60),
            ..SimConfig::default()
        })
        .await
        .unwrap()
    }

    fn server(sim: &Simulator, ledger: Option<Arc<dyn Ledger>>) -> VideoServer {
        VideoServer::new(Arc::new(AppState::new(
            Arc::new(GatewayClient::new(GatewayConfig::new(sim.base_url()))),
            ApiKey::new(KEY),
            ToolOptions {
                ledger,
                ..ToolOptions::default()
            },
        )))
    }

    fn key() -> ApiKey {
        ApiKey::new(KEY).unwrap()
    }

    /// Starts a create_once call as its own task (aborting it drops the
    /// request future, as a cancelled call would).
    fn call(
        s: &VideoServer,
        prompt: &str,
        idem: Option<&str>,
    ) -> tokio::task::JoinHandle<Result<CallToolResult, CallToolResult>> {
        let (s, body, idem) = (s.clone(), NewVideo::new(prompt), idem.map(String::from));
        tokio::spawn(async move { s.create_once(key(), body, idem, Vec::new(), None).await })
    }

    fn json(r: &CallToolResult) -> Value {
        serde_json::to_value(r).unwrap()
    }

    fn text(r: &CallToolResult) -> String {
        json(r)["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn task_id(r: &CallToolResult) -> String {
        json(r)["structuredContent"]["task_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn reused(r: &CallToolResult) -> bool {
        json(r)["structuredContent"]["reused"] == Value::Bool(true)
    }

    /// Finding A: the same key with other arguments, at the same moment, is a
    /// key conflict (as it is one after the other), never the other video.
    async fn same_key_other_arguments_at_once(ledger: Option<Arc<dyn Ledger>>) {
        let sim = sim().await;
        let s = server(&sim, ledger);
        let first = call(&s, "Original video [slow:1]", Some("k-1"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = call(&s, "Something else entirely", Some("k-1"));
        let first = first.await.unwrap().unwrap();
        let second = second.await.unwrap();
        assert!(!reused(&first), "{first:?}");
        let refused = second.expect_err("the same key for other arguments must be refused");
        let msg = text(&refused);
        assert!(msg.contains("different request"), "{msg}");
        assert!(msg.contains("k-1"), "{msg}");
        assert_eq!(sim.state.count("create"), 1);
    }

    #[tokio::test]
    async fn same_key_other_arguments_at_once_conflicts_without_a_ledger() {
        same_key_other_arguments_at_once(None).await;
    }

    #[tokio::test]
    async fn same_key_other_arguments_at_once_conflicts_with_a_ledger() {
        same_key_other_arguments_at_once(Some(Arc::new(SqliteLedger::in_memory()))).await;
    }

    #[tokio::test]
    async fn same_key_same_arguments_at_once_still_collapse() {
        let sim = sim().await;
        let s = server(&sim, None);
        let a = call(&s, "Same words [slow:1]", Some("k-2"));
        let b = call(&s, "Same  words [slow:1]", Some("k-2"));
        let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        assert_eq!(task_id(&a), task_id(&b));
        assert!(reused(&a) != reused(&b));
        assert_eq!(sim.state.count("create"), 1);
    }

    /// Finding B: without a ledger, cancelling (dropping) the first of two
    /// identical overlapping calls must not let the second send another
    /// create; the second gets the first's task.
    #[tokio::test]
    async fn a_cancelled_leader_does_not_let_a_second_create_through() {
        let sim = sim().await;
        let s = server(&sim, None);
        let prompt = "Cancelled leader [slow:2]";
        let first = call(&s, prompt, None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = call(&s, prompt, None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        let second = second.await.unwrap().unwrap();
        assert!(reused(&second), "{second:?}");
        assert!(text(&second).contains("Not created twice"), "{second:?}");
        assert_eq!(sim.state.count("create"), 1, "one paid create");
        assert_eq!(sim.state.task_count(), 1);
        // The slot is free again once the outcome is out.
        assert_eq!(
            s.state
                .options
                .creates
                .inner
                .in_flight
                .lock()
                .unwrap()
                .len(),
            0
        );
    }

    /// A ledger whose claims answer late, like one waiting for another
    /// process's lock: the claim is queued (and its row written) at once.
    #[derive(Debug)]
    struct SlowClaims(SqliteLedger);

    impl Ledger for SlowClaims {
        fn claim(
            &self,
            identity: CreateIdentity,
            policy: ClaimPolicy,
        ) -> BoxFuture<'static, Result<Claim, LedgerError>> {
            let queued = self.0.claim(identity, policy);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                queued.await
            })
        }
        fn heartbeat(&self, row_id: i64) -> BoxFuture<'static, Result<(), LedgerError>> {
            self.0.heartbeat(row_id)
        }
        fn settle(
            &self,
            row_id: i64,
            outcome: Settle,
        ) -> BoxFuture<'static, Result<(), LedgerError>> {
            self.0.settle(row_id, outcome)
        }
        fn record_status(
            &self,
            tenant: &str,
            view: &TaskSnapshot,
        ) -> BoxFuture<'static, Result<(), LedgerError>> {
            self.0.record_status(tenant, view)
        }
        fn record_saved(
            &self,
            tenant: &str,
            task_id: &str,
            path: &str,
            size: u64,
        ) -> BoxFuture<'static, Result<(), LedgerError>> {
            self.0.record_saved(tenant, task_id, path, size)
        }
        fn list(
            &self,
            query: ListQuery,
        ) -> BoxFuture<'static, Result<Vec<LedgerRecord>, LedgerError>> {
            self.0.list(query)
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
    }

    /// Finding C: a call cancelled while its ledger claim is pending must not
    /// leave a "creating" row that nothing settles (which would answer
    /// identical retries with IN_PROGRESS, then block them as maybe-created).
    #[tokio::test]
    async fn a_call_cancelled_during_its_claim_leaves_no_unsettled_row() {
        let sim = sim().await;
        let ledger: Arc<dyn Ledger> = Arc::new(SlowClaims(SqliteLedger::in_memory()));
        let s = server(&sim, Some(ledger.clone()));
        let prompt = "Cancelled while claiming";
        let first = call(&s, prompt, None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());

        let rows = || {
            ledger.list(ListQuery {
                tenant: key().fingerprint(),
                statuses: vec![],
                since_ms: None,
                limit: 10,
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let row = loop {
            let rows = rows().await.unwrap();
            assert!(rows.len() <= 1, "{rows:?}");
            if let Some(r) = rows.first()
                && r.state != RecordState::Creating
            {
                break r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the claim was never settled: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The claim was followed through: created and recorded.
        assert_eq!(row.state, RecordState::Created, "{row:?}");
        assert_eq!(sim.state.count("create"), 1);
        // An identical retry is answered with that video at once, not told
        // that a create is in progress.
        let started = Instant::now();
        let again = call(&s, prompt, None).await.unwrap().unwrap();
        assert!(reused(&again), "{again:?}");
        assert_eq!(Some(task_id(&again)), row.task_id);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(sim.state.count("create"), 1);
    }
}

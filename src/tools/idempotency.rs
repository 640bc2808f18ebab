//! Never pay twice (DESIGN.md §1.5, §8 "Ledger and tenants"): the path every
//! `create_video` takes between validation and the upstream.
//!
//! 1. Identical calls in flight in this process collapse into one: the first
//!    leads, the others wait for its outcome ([`Creates`]).
//! 2. The leader asks the ledger ([`crate::ledger::Ledger::claim`]), atomically
//!    across processes: the same idempotency key within 24 h, or the same
//!    arguments within the dedupe window, answer with the earlier task (only a
//!    pending, processing or completed one; a running one is re-checked
//!    upstream first) — no upstream call. A create that failed ambiguously
//!    ("maybe created") blocks a same-arguments retry unless a new key is
//!    given. Otherwise the ledger reserves the create.
//! 3. The upstream create and the ledger's record of its outcome run detached
//!    from the request, so a client that gives up mid-create cannot leave the
//!    ledger without the outcome.
//!
//! Everything is scoped by the tenant (the key's fingerprint). Without a
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
use tokio::sync::watch;

use super::{
    VideoServer, list,
    view::{VideoTask, error_result, human_duration},
};
use crate::{
    gateway::{ApiKey, CreateVideoRequest, Operation, TaskObject},
    ledger::{Claim, ClaimPolicy, CreateIdentity, KEY_LIFETIME, LedgerRecord, Settle},
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
/// A create in flight: the leader's id and where its outcome appears.
type Slot = (u64, watch::Receiver<Option<Outcome>>);
/// What was last written for a task: upstream status, progress, URL count, expiry.
type Observed = (String, u8, usize, Option<String>);

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
}

/// The leader's claim on a slot; dropping it frees the slot (followers whose
/// leader vanished without an outcome try again).
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
        if map.get(&self.slot).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.slot);
        }
    }
}

impl Creates {
    fn enter(&self, slot: &str) -> Turn {
        let mut map = lock(&self.inner.in_flight);
        if let Some((_, rx)) = map.get(slot) {
            return Turn::Follow(rx.clone());
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(slot.to_string(), (id, rx));
        Turn::Lead(Lead {
            creates: self.clone(),
            slot: slot.to_string(),
            id,
            tx,
        })
    }

    /// True when `view` differs from what was last written for the task.
    fn changed(&self, tenant: &str, view: &VideoTask) -> bool {
        let seen = (
            view.upstream_status.clone(),
            view.progress,
            view.video_urls.len(),
            view.links_expire_at.clone(),
        );
        let mut map = lock(&self.inner.recorded);
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
        map.insert((tenant.to_string(), view.task_id.clone()), seen.clone()) != Some(seen)
    }
}

/// What the leader's create came to.
enum Made {
    Fresh(VideoTask),
    Reused {
        view: VideoTask,
        ago: Duration,
        by_key: bool,
    },
}

fn slot_of(id: &CreateIdentity) -> String {
    match &id.idempotency_key {
        Some(k) => format!("{}\u{0}k\u{0}{k}", id.tenant),
        None => format!("{}\u{0}h\u{0}{}", id.tenant, id.args_hash),
    }
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
    pub(crate) fn remember(&self, key: &ApiKey, view: &VideoTask) {
        let Some(ledger) = &self.state.options.ledger else {
            return;
        };
        let tenant = key.fingerprint();
        if self.state.options.creates.changed(&tenant, view) {
            // Queued now; nothing to wait for.
            drop(ledger.record_status(&tenant, view));
        }
    }

    fn claim_policy(&self) -> ClaimPolicy {
        let gw = self.state.gateway.config();
        ClaimPolicy {
            window: self.state.options.dedupe_window,
            key_lifetime: KEY_LIFETIME,
            stale_after: gw.timeout + gw.retry.create_budget + Duration::from_secs(60),
        }
    }

    /// Creates the video at most once for identical requests (see the module
    /// docs); returns the tool result.
    pub(crate) async fn create_once(
        &self,
        key: ApiKey,
        body: CreateVideoRequest,
        idempotency_key: Option<String>,
    ) -> Result<CallToolResult, CallToolResult> {
        let identity = CreateIdentity::new(key.fingerprint(), &body, idempotency_key);
        let slot = slot_of(&identity);
        loop {
            match self.state.options.creates.enter(&slot) {
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
                    let made = self.create_as_leader(&key, &body, &identity).await;
                    let outcome: Outcome = match &made {
                        Ok(Made::Fresh(v) | Made::Reused { view: v, .. }) => Ok(v.clone()),
                        Err(e) => Err(e.clone()),
                    };
                    lead.publish(&outcome);
                    return match made? {
                        Made::Fresh(view) => {
                            tracing::info!(task_id = %view.task_id, "video task created");
                            Ok(view.into_result("Video task created."))
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

    async fn create_as_leader(
        &self,
        key: &ApiKey,
        body: &CreateVideoRequest,
        identity: &CreateIdentity,
    ) -> Result<Made, CallToolResult> {
        let mut reservation = None;
        if let Some(ledger) = self.state.options.ledger.clone() {
            let policy = self.claim_policy();
            let deadline = Instant::now() + policy.stale_after.min(MAX_INFLIGHT_WAIT);
            let mut rechecks = 0;
            loop {
                match ledger.claim(identity.clone(), policy).await {
                    Ok(Claim::Reserved(row)) => {
                        reservation = Some(row);
                        break;
                    }
                    Ok(Claim::Existing { record, by_key }) => {
                        let ago = SystemTime::now()
                            .duration_since(record.requested_at())
                            .unwrap_or_default();
                        // The earlier task failed after all: it must not
                        // answer for this one; claim again.
                        match self.reuse(key, &record, rechecks >= 2).await {
                            Some(view) => return Ok(Made::Reused { view, ago, by_key }),
                            None => rechecks += 1,
                        }
                    }
                    Ok(Claim::MaybeCreated(record)) => {
                        return Err(error_result(maybe_created_text(&record, identity)));
                    }
                    Ok(Claim::KeyConflict(record)) => {
                        return Err(error_result(key_conflict_text(&record, identity)));
                    }
                    Ok(Claim::InProgress) => {
                        if Instant::now() >= deadline {
                            return Err(error_result(IN_PROGRESS));
                        }
                        tokio::time::sleep(INFLIGHT_POLL).await;
                    }
                    Err(e) => {
                        tracing::debug!("creating without the ledger: {e}");
                        break;
                    }
                }
            }
        }

        tracing::info!(prompt_chars = body.prompt.chars().count(), "creating video");
        let state = self.state.clone();
        let (key2, body2) = (key.clone(), body.clone());
        let idem = identity.idempotency_key.clone();
        let job = tokio::spawn(async move {
            let result = state.gateway.create_video(&key2, &body2).await;
            let view = result.as_ref().ok().map(|task: &TaskObject| {
                let mut v = VideoTask::created(task, SystemTime::now());
                v.idempotency_key = idem;
                v
            });
            if let (Some(ledger), Some(row)) = (state.options.ledger.as_ref(), reservation) {
                let settle = match (&result, &view) {
                    (Ok(_), Some(v)) => Settle::Created(Box::new(v.clone())),
                    (Err(e), _) if e.create_may_have_happened() => {
                        Settle::MaybeCreated(key2.scrub(&e.to_string()))
                    }
                    _ => Settle::NotCreated,
                };
                if let Err(e) = ledger.settle(row, settle).await {
                    tracing::warn!("the ledger did not record the create's outcome: {e}");
                }
            }
            (result, view)
        });
        let (result, view) = job.await.map_err(|e| {
            error_result(format!(
                "Creating the video was interrupted inside the server ({e}). The video may have \
                 been created: check with list_videos before trying again."
            ))
        })?;
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
        let mut view = record.to_view();
        let running = record.status.is_none_or(|s| !s.is_finished());
        if running
            && !accept_any
            && let Some(task_id) = &record.task_id
        {
            match self
                .state
                .gateway
                .get_task(key, task_id, self.state.options.sync_upstream)
                .await
            {
                Ok(task) => {
                    let fresh = VideoTask::from_upstream(&task, task_id, now);
                    if let Some(ledger) = &self.state.options.ledger {
                        // Awaited: the next claim must see it.
                        let _ = ledger.record_status(&record.tenant, &fresh).await;
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
        view.refresh_next_step(now);
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
    super::view::structured_result(text, &view)
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
    super::view::structured_result(text, &view)
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
         list_videos in a minute or two whether the video appeared. If the user still wants the \
         video, call create_video again with a new idempotency_key (any new short string) to \
         create it deliberately.",
        when(record)
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

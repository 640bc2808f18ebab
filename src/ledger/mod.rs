//! The task ledger: a local memory of every video created through this server
//! (for `list_videos`) and the record that keeps a repeated `create_video`
//! from paying twice (idempotency keys, the dedupe window, "maybe created").
//!
//! [`Ledger`] is a small trait so a shared store can replace the embedded
//! SQLite file ([`sqlite::SqliteLedger`]) for multi-replica hosting. Every row
//! and every lookup is scoped by a tenant: a hash of the upstream key
//! ([`crate::backend::ApiKey::fingerprint`]), never the key itself
//! (DESIGN.md §8 "Ledger and tenants"). The embedded ledger is an
//! optimisation and a convenience: when it cannot be used, video creation goes
//! on without it. A shared store ([`postgres::PostgresLedger`], configured for
//! several replicas) is required instead: a create whose claim it could not
//! record is refused ([`Ledger::shared`]).

mod pg_sessions;
pub mod policy;
pub mod postgres;
pub mod sessions;
pub mod sqlite;

use std::{
    fmt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::video::{FileRef, NewVideo, Orientation, TaskErrorView, TaskSnapshot, VideoStatus};

pub use pg_sessions::PostgresSessions;
pub use postgres::{PostgresLedger, PostgresUrl};
pub use sessions::SharedSessions;
pub use sqlite::SqliteLedger;

/// An idempotency key is honoured this long after its first use.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How often the call holding a reservation proves it is still alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A reservation without a heartbeat for this long belongs to a process that
/// died mid-create (killed, crashed): it becomes "maybe created" at once
/// instead of blocking identical calls until `stale_after`.
pub const ORPHANED_AFTER: Duration = Duration::from_secs(10);
/// Longest prompt excerpt kept for display (the full prompt is only hashed).
pub const PROMPT_PREVIEW_CHARS: usize = 200;

/// Where the ledger lives, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerChoice {
    /// No ledger (`--no-ledger`, or no data folder).
    Off,
    /// A temporary ledger that disappears with the process (`--simulate`).
    Memory,
    /// A SQLite file shared by every server process of the user.
    File(PathBuf),
    /// A PostgreSQL database shared by every replica.
    Postgres(PostgresUrl),
}

/// Why a ledger operation did not happen; the caller carries on without it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("the ledger is not available: {0}")]
    Unavailable(String),
    #[error("the ledger failed: {0}")]
    Failed(String),
}

/// What makes two create requests "the same": the tenant, the hash of the
/// full normalised arguments and, when given, the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateIdentity {
    pub tenant: String,
    pub args_hash: String,
    pub idempotency_key: Option<String>,
    /// The prompt, shortened for display.
    pub prompt_preview: String,
}

impl CreateIdentity {
    pub fn new(tenant: String, body: &NewVideo, idempotency_key: Option<String>) -> Self {
        Self {
            tenant,
            args_hash: args_hash(body),
            idempotency_key,
            prompt_preview: preview(&body.prompt, PROMPT_PREVIEW_CHARS),
        }
    }
}

impl CreateIdentity {
    /// Local reference files count as arguments by their content.
    pub fn with_files(mut self, digests: &[&str]) -> Self {
        if !digests.is_empty() {
            let mut h = Sha256::new();
            h.update(self.args_hash.as_bytes());
            for d in digests {
                h.update(b"\0file:");
                h.update(d.as_bytes());
            }
            self.args_hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        }
        self
    }
}

/// SHA-256 (hex) of the normalised create arguments: the validated upstream
/// body with the prompt's whitespace runs collapsed, so a retry that differs
/// only in spacing counts as the same request.
pub fn args_hash(body: &NewVideo) -> String {
    let urls = body.file_urls();
    let assets: Vec<&str> = body
        .files
        .iter()
        .filter_map(|f| match f {
            FileRef::Asset(a) => Some(a.as_str()),
            FileRef::Url(_) => None,
        })
        .collect();
    let normalised = Canonical {
        model: "heygen-video-agent",
        prompt: body.prompt.split_whitespace().collect::<Vec<_>>().join(" "),
        avatar_id: body.avatar_id.as_deref(),
        voice_id: body.voice_id.as_deref(),
        style_id: body.style_id.as_deref(),
        orientation: body.orientation,
        file_urls: (!urls.is_empty()).then_some(urls),
        asset_ids: (!assets.is_empty()).then_some(assets),
        incognito_mode: body.incognito_mode,
    };
    let canonical = serde_json::to_vec(&normalised).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The arguments as hashed: the field names and order of the first ledger
/// format, so fingerprints recorded by earlier versions still match.
#[derive(Serialize)]
struct Canonical<'a> {
    model: &'static str,
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    voice_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    style_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orientation: Option<Orientation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asset_ids: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incognito_mode: Option<bool>,
}

/// The first `max` characters of `text` on one line, with `…` when cut.
pub fn preview(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut s: String = flat.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// How long the rules of a claim reach back.
///
/// The window only decides whether identical arguments *after* an earlier
/// create finished answer with it. Whatever the window (zero included), an
/// identical create in flight is waited for and then answers this call, and
/// a "maybe created" one blocks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// Identical arguments without a key within this window are one request
    /// (zero turns the window off).
    pub window: Duration,
    /// How long an idempotency key (and a "maybe created" record) is honoured.
    pub key_lifetime: Duration,
    /// A reservation older than this belongs to a call that died mid-create:
    /// it becomes "maybe created".
    pub stale_after: Duration,
    /// A reservation whose heartbeat ([`Ledger::heartbeat`]) is older than
    /// this is orphaned: it becomes "maybe created".
    pub orphaned_after: Duration,
    /// The reservation this call found in flight ([`Claim::InProgress`]) and
    /// waits for: once it is settled, its outcome answers this call whatever
    /// the window.
    pub joined: Option<i64>,
}

/// The state of a ledger row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Reserved: a call is sending the create upstream right now.
    Creating,
    /// The upstream accepted the create; `task_id` is set.
    Created,
    /// The create failed in a way that may still have created (and billed)
    /// the video; there is no task id.
    MaybeCreated,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Creating => "creating",
            RecordState::Created => "created",
            RecordState::MaybeCreated => "maybe_created",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "creating" => Some(RecordState::Creating),
            "created" => Some(RecordState::Created),
            "maybe_created" => Some(RecordState::MaybeCreated),
            _ => None,
        }
    }
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRecord {
    pub row_id: i64,
    pub tenant: String,
    pub state: RecordState,
    pub task_id: Option<String>,
    /// When this server was asked to create it (milliseconds since the epoch).
    pub requested_at_ms: i64,
    /// The upstream's creation time (seconds since the epoch).
    pub created_at: Option<i64>,
    pub prompt_preview: String,
    pub args_hash: String,
    pub idempotency_key: Option<String>,
    pub status: Option<VideoStatus>,
    pub upstream_status: Option<String>,
    pub progress: u8,
    pub video_urls: Vec<String>,
    /// Seconds since the epoch.
    pub links_expire_at: Option<i64>,
    pub error: Option<TaskErrorView>,
    pub estimated_seconds: Option<u64>,
    pub saved_path: Option<String>,
    pub size_bytes: Option<u64>,
    /// Why a create is "maybe created" (an excerpt of the error).
    pub note: Option<String>,
}

impl LedgerRecord {
    pub fn requested_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.requested_at_ms).unwrap_or(0))
    }

    /// Whether dedupe may answer with this task: only pending, processing or
    /// completed ones (an unknown or not yet observed status counts as running).
    pub fn dedupable(&self) -> bool {
        !matches!(
            self.status,
            Some(VideoStatus::Failed | VideoStatus::Cancelled)
        )
    }
}

pub fn unix_secs(secs: i64) -> Option<SystemTime> {
    u64::try_from(secs)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
}

/// Seconds since the epoch of an RFC 3339 time as the views carry it.
pub fn parse_time(rfc: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(rfc).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The answer to "may this call create the video?".
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Nothing matches: this call holds the reservation (row id), must send
    /// the create and then [`Ledger::settle`] it.
    Reserved(i64),
    /// A matching task exists: answer with it instead of creating another.
    /// `by_key` says whether the idempotency key (not the window) matched.
    Existing { record: LedgerRecord, by_key: bool },
    /// A matching create may have happened (it failed ambiguously).
    MaybeCreated(LedgerRecord),
    /// A matching create is being sent right now by another call (the row id
    /// of its reservation, to pass back as [`ClaimPolicy::joined`]).
    InProgress(i64),
    /// The idempotency key was used for different arguments.
    KeyConflict(LedgerRecord),
}

/// How a reserved create ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// The upstream accepted it: the task as first seen.
    Created(Box<TaskSnapshot>),
    /// It failed in a way that may still have created it: why.
    MaybeCreated(String),
    /// It provably did not create anything: the reservation is dropped.
    NotCreated,
}

/// Which videos `list_videos` wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub tenant: String,
    /// Only these statuses (empty: all, including unconfirmed creates).
    pub statuses: Vec<VideoStatus>,
    /// Only videos requested at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// At most this many rows.
    pub limit: usize,
}

/// A store of video tasks. Methods return boxed futures so an implementation
/// may do its work anywhere (the SQLite one uses its own thread); each write
/// is issued when the method is called, so a caller that does not need to
/// wait may drop the future.
pub trait Ledger: Send + Sync + fmt::Debug {
    /// Finds a create matching `identity` or reserves it for this call,
    /// atomically across every process sharing the store.
    fn claim(
        &self,
        identity: CreateIdentity,
        policy: ClaimPolicy,
    ) -> BoxFuture<'static, Result<Claim, LedgerError>>;

    /// Proves that the call holding reservation `row_id` is alive; sent every
    /// [`HEARTBEAT_EVERY`] while the create is in flight.
    fn heartbeat(&self, row_id: i64) -> BoxFuture<'static, Result<(), LedgerError>>;

    /// Records how a reserved create ended.
    fn settle(&self, row_id: i64, outcome: Settle) -> BoxFuture<'static, Result<(), LedgerError>>;

    /// Records what a status check, wait or download learned about a task
    /// created through this store (unknown tasks are ignored).
    fn record_status(
        &self,
        tenant: &str,
        task: &TaskSnapshot,
    ) -> BoxFuture<'static, Result<(), LedgerError>>;

    /// Records where a task's video was saved.
    fn record_saved(
        &self,
        tenant: &str,
        task_id: &str,
        path: &str,
        size: u64,
    ) -> BoxFuture<'static, Result<(), LedgerError>>;

    /// The tenant's tasks, newest first.
    fn list(&self, query: ListQuery) -> BoxFuture<'static, Result<Vec<LedgerRecord>, LedgerError>>;

    /// How many creates of `tenant` were requested at or after `since_ms`
    /// (milliseconds since the epoch): recorded, in flight and "maybe
    /// created" ones alike. A create that provably created nothing leaves no
    /// row, so it is not counted. A store that cannot count says so (the
    /// caller then counts on its own).
    fn count_since(
        &self,
        tenant: &str,
        since_ms: i64,
    ) -> BoxFuture<'static, Result<u64, LedgerError>> {
        let _ = (tenant, since_ms);
        Box::pin(async {
            Err(LedgerError::Unavailable(
                "this ledger does not count creates".into(),
            ))
        })
    }

    /// Where the ledger lives, for messages ("/home/u/.local/share/…", "memory").
    fn describe(&self) -> String;

    /// Whether this is a shared store that several replicas rely on: then no
    /// create is sent whose claim could not be recorded (with the embedded
    /// file, creation goes on without the ledger).
    fn shared(&self) -> bool {
        false
    }

    /// Legacy HTTP sessions kept in this store, so every replica sharing it
    /// serves every session; `None` keeps them in each process.
    fn sessions(&self) -> Option<Arc<dyn SharedSessions>> {
        None
    }
}

/// Builds the configured ledger. Opening is lazy (the SQLite file on the
/// ledger's own thread, PostgreSQL connections at first use), so start-up
/// does not wait for it.
pub fn open(choice: &LedgerChoice) -> Option<Arc<dyn Ledger>> {
    match choice {
        LedgerChoice::Off => None,
        LedgerChoice::Memory => Some(Arc::new(SqliteLedger::in_memory())),
        LedgerChoice::File(path) => Some(Arc::new(SqliteLedger::open(path.clone()))),
        LedgerChoice::Postgres(url) => Some(Arc::new(PostgresLedger::open(url.clone()))),
    }
}

/// A ledger row as both stores read it (columns in the order of their
/// SELECTs), turned into a [`LedgerRecord`] in one place.
pub(crate) struct RecordRow {
    pub row_id: i64,
    pub tenant: String,
    pub state: String,
    pub task_id: Option<String>,
    pub requested_at_ms: i64,
    pub created_at: Option<i64>,
    pub prompt_preview: String,
    pub args_hash: String,
    pub idempotency_key: Option<String>,
    pub status: Option<String>,
    pub upstream_status: Option<String>,
    pub progress: i64,
    pub video_urls: String,
    pub links_expire_at: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub estimated_seconds: Option<i64>,
    pub saved_path: Option<String>,
    pub size_bytes: Option<i64>,
    pub note: Option<String>,
}

impl From<RecordRow> for LedgerRecord {
    fn from(r: RecordRow) -> Self {
        LedgerRecord {
            row_id: r.row_id,
            tenant: r.tenant,
            state: RecordState::parse(&r.state).unwrap_or(RecordState::MaybeCreated),
            task_id: r.task_id,
            requested_at_ms: r.requested_at_ms,
            created_at: r.created_at,
            prompt_preview: r.prompt_preview,
            args_hash: r.args_hash,
            idempotency_key: r.idempotency_key,
            status: r.status.as_deref().and_then(parse_status),
            upstream_status: r.upstream_status,
            progress: u8::try_from(r.progress.clamp(0, 100)).unwrap_or(0),
            video_urls: serde_json::from_str(&r.video_urls).unwrap_or_default(),
            links_expire_at: r.links_expire_at,
            error: match (r.error_code, r.error_message) {
                (code, Some(message)) => Some(TaskErrorView { code, message }),
                (Some(code), None) => Some(TaskErrorView {
                    code: Some(code),
                    message: String::new(),
                }),
                (None, None) => None,
            },
            estimated_seconds: r.estimated_seconds.and_then(|e| u64::try_from(e).ok()),
            saved_path: r.saved_path,
            size_bytes: r.size_bytes.and_then(|s| u64::try_from(s).ok()),
            note: r.note,
        }
    }
}

/// The stored status word back as a status (the inverse of `as_str`).
pub(crate) fn parse_status(s: &str) -> Option<VideoStatus> {
    Some(match s {
        "pending" => VideoStatus::Pending,
        "processing" => VideoStatus::Processing,
        "completed" => VideoStatus::Completed,
        "failed" => VideoStatus::Failed,
        "cancelled" => VideoStatus::Cancelled,
        "unknown" => VideoStatus::Unknown,
        _ => return None,
    })
}

/// The columns a status observation writes, from a snapshot (both stores).
pub(crate) struct Observed {
    pub status: &'static str,
    pub upstream_status: String,
    pub progress: u8,
    /// JSON array of the URLs.
    pub urls: String,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    pub links_expire_at: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub estimated: Option<i64>,
}

/// Seconds since the epoch.
fn epoch_secs(t: SystemTime) -> Option<i64> {
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

impl Observed {
    pub fn of(task: &TaskSnapshot) -> Self {
        Self {
            status: task.status.as_str(),
            upstream_status: task.upstream_status.clone(),
            progress: task.progress.min(100),
            urls: serde_json::to_string(&task.video_urls).unwrap_or_else(|_| "[]".into()),
            created_at: task.created_at.and_then(epoch_secs),
            links_expire_at: task.links_expire_at.and_then(epoch_secs),
            error_code: task.error.as_ref().and_then(|e| e.code.clone()),
            error_message: task.error.as_ref().map(|e| e.message.clone()),
            estimated: task.estimated_seconds.and_then(|e| i64::try_from(e).ok()),
        }
    }
}

/// A duration in whole milliseconds, as the stores keep times.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_whitespace_but_not_arguments() {
        let a = NewVideo::new("A  cat\nsurfing ");
        let b = NewVideo::new("A cat surfing");
        assert_eq!(args_hash(&a), args_hash(&b));
        let mut c = NewVideo::new("A cat surfing");
        c.voice_id = Some("en-US-Studio-O".into());
        assert_ne!(args_hash(&b), args_hash(&c));
        assert_ne!(args_hash(&b), args_hash(&NewVideo::new("A dog surfing")));
        assert_eq!(args_hash(&a).len(), 64);
        // The fingerprint of the first ledger format: the gateway body.
        let old = r#"{"model":"heygen-video-agent","prompt":"A cat surfing","voice_id":"en-US-Studio-O"}"#;
        let digest: String = Sha256::digest(old.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(args_hash(&c), digest);
    }

    #[test]
    fn previews_are_short_and_flat() {
        assert_eq!(preview("a\n b", 10), "a b");
        let p = preview(&"x".repeat(500), 200);
        assert_eq!(p.chars().count(), 200);
        assert!(p.ends_with('…'));
    }

    #[test]
    fn times_round_trip() {
        let secs = 1_757_165_031;
        let text = crate::video::rfc3339(unix_secs(secs).unwrap());
        assert_eq!(parse_time(&text), Some(secs));
        assert_eq!(parse_time("nonsense"), None);
    }
}

//! The embedded ledger: one SQLite file (WAL mode, busy timeout) that several
//! server processes may share, e.g. one per Claude Desktop window.
//!
//! All SQLite work runs on one dedicated thread per process, fed by a queue,
//! so the async runtime never blocks on the disk. The thread and the file are
//! opened lazily (start-up stays in milliseconds); a file that cannot be
//! opened or turns out corrupt switches the ledger off with one warning on
//! stderr, and every later operation reports it as unavailable: video
//! creation never depends on it.
//!
//! Concurrency: a claim runs in an `IMMEDIATE` transaction, which takes the
//! file's write lock first, so "look for a matching create, else reserve one"
//! is atomic across processes; unique indexes on (tenant, task id) and
//! (tenant, idempotency key) back it up.

use std::{
    path::{Path, PathBuf},
    sync::{OnceLock, mpsc},
    time::Duration,
};

use futures::future::BoxFuture;
use rusqlite::{
    Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter, types::Value,
};

use super::{
    Claim, ClaimPolicy, CreateIdentity, Ledger, LedgerError, LedgerRecord, ListQuery, Observed,
    RecordRow, Settle, now_ms, policy,
};
use crate::video::{TaskSnapshot, VideoStatus};

/// How long a statement waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long dropping the ledger waits for queued writes.
const FLUSH_ON_DROP: Duration = Duration::from_secs(3);
/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS videos (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant            TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    task_id           TEXT,
    requested_at      INTEGER NOT NULL,
    created_at        INTEGER,
    updated_at        INTEGER NOT NULL,
    prompt            TEXT    NOT NULL,
    args_hash         TEXT    NOT NULL,
    idempotency_key   TEXT,
    status            TEXT,
    upstream_status   TEXT,
    progress          INTEGER NOT NULL DEFAULT 0,
    video_urls        TEXT    NOT NULL DEFAULT '[]',
    links_expire_at   INTEGER,
    error_code        TEXT,
    error_message     TEXT,
    estimated_seconds INTEGER,
    saved_path        TEXT,
    size_bytes        INTEGER,
    note              TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS videos_task ON videos(tenant, task_id) WHERE task_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS videos_key ON videos(tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS videos_args ON videos(tenant, args_hash, requested_at);
CREATE INDEX IF NOT EXISTS videos_recent ON videos(tenant, requested_at);
";

const COLUMNS: &str = "id, tenant, state, task_id, requested_at, created_at, prompt, args_hash, \
    idempotency_key, status, upstream_status, progress, video_urls, links_expire_at, error_code, \
    error_message, estimated_seconds, saved_path, size_bytes, note";

#[derive(Debug, Clone)]
enum Target {
    Memory,
    File(PathBuf),
}

enum Db {
    Open(Connection),
    /// Switched off; the reason was logged once.
    Off(String),
}

type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// The SQLite ledger. Cheap to build: the thread and the file open on first use
/// (or right away in the background, see [`super::open`]).
#[derive(Debug)]
pub struct SqliteLedger {
    target: Target,
    queue: OnceLock<Result<mpsc::Sender<Job>, String>>,
}

impl SqliteLedger {
    /// A ledger in `path`, opened on its own thread at first use, so start-up
    /// (and a session that never creates a video) pays nothing for it.
    pub fn open(path: PathBuf) -> Self {
        Self {
            target: Target::File(path),
            queue: OnceLock::new(),
        }
    }

    /// A temporary ledger that lives as long as the process (`--simulate`).
    pub fn in_memory() -> Self {
        Self {
            target: Target::Memory,
            queue: OnceLock::new(),
        }
    }

    fn queue(&self) -> Result<&mpsc::Sender<Job>, LedgerError> {
        self.queue
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel::<Job>();
                let target = self.target.clone();
                std::thread::Builder::new()
                    .name("heygen-ledger".into())
                    .spawn(move || {
                        let mut db = match open_db_patiently(&target) {
                            Ok(conn) => Db::Open(conn),
                            Err(why) => {
                                tracing::warn!(
                                    "the video ledger {} cannot be used ({why}); continuing without \
                                     it: list_videos has no history and repeated create_video calls \
                                     are only collapsed within this process. Move or delete the \
                                     file (or set HEYGEN_LEDGER / --no-ledger) to fix this.",
                                    describe(&target)
                                );
                                Db::Off(why)
                            }
                        };
                        while let Ok(job) = rx.recv() {
                            job(&mut db);
                        }
                    })
                    .map(|_| tx)
                    .map_err(|e| format!("the ledger thread could not start: {e}"))
            })
            .as_ref()
            .map_err(|e| LedgerError::Unavailable(e.clone()))
    }

    /// Runs `f` on the ledger thread; the job is queued now, the future waits for it.
    fn run<T, F>(&self, what: &'static str, f: F) -> BoxFuture<'static, Result<T, LedgerError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let target = self.target.clone();
        let job: Job = Box::new(move |db: &mut Db| {
            let result = match db {
                Db::Off(why) => Err(LedgerError::Unavailable(why.clone())),
                Db::Open(conn) => match f(conn) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        let broken = matches!(
                            e.sqlite_error_code(),
                            Some(
                                rusqlite::ErrorCode::DatabaseCorrupt
                                    | rusqlite::ErrorCode::NotADatabase
                            )
                        );
                        if broken {
                            tracing::warn!(
                                "the video ledger {} is damaged ({e}); continuing without it. Move \
                                 or delete the file to start a fresh one.",
                                describe(&target)
                            );
                            *db = Db::Off(e.to_string());
                        } else {
                            tracing::warn!("video ledger: {what} failed: {e}");
                        }
                        Err(LedgerError::Failed(e.to_string()))
                    }
                },
            };
            let _ = tx.send(result);
        });
        let queued = self
            .queue()
            .and_then(|q| q.send(job).map_err(|_| stopped()));
        Box::pin(async move {
            queued?;
            rx.await.unwrap_or_else(|_| Err(stopped()))
        })
    }
}

impl Drop for SqliteLedger {
    /// Waits briefly for queued writes (status updates are fire-and-forget) so
    /// a server that exits does not lose its last observations.
    fn drop(&mut self) {
        let Some(Ok(queue)) = self.queue.get() else {
            return;
        };
        let (tx, rx) = mpsc::channel::<()>();
        let barrier: Job = Box::new(move |_db: &mut Db| {
            let _ = tx.send(());
        });
        if queue.send(barrier).is_ok() {
            let _ = rx.recv_timeout(FLUSH_ON_DROP);
        }
    }
}

fn stopped() -> LedgerError {
    LedgerError::Unavailable("the ledger thread stopped".into())
}

fn describe(target: &Target) -> String {
    match target {
        Target::Memory => "(temporary, in memory)".into(),
        Target::File(p) => p.display().to_string(),
    }
}

/// Creates the parent folder and the file (owner-only on Unix: it holds
/// prompts), opens it in WAL mode with a busy timeout and brings the schema up.
/// Opens the ledger, waiting out another process that is creating or
/// migrating the same file at this very moment (several clients often start
/// their servers together): SQLite answers "locked" for a journal-mode change
/// or a schema upgrade without consulting the busy timeout.
fn open_db_patiently(target: &Target) -> Result<Connection, String> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match open_db(target) {
            Ok(conn) => return Ok(conn),
            Err(why)
                if started.elapsed() < BUSY_TIMEOUT
                    && (why.contains("locked") || why.contains("busy")) =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(why) => return Err(why),
        }
    }
}

fn open_db(target: &Target) -> Result<Connection, String> {
    let conn = match target {
        Target::Memory => Connection::open_in_memory().map_err(|e| e.to_string())?,
        Target::File(path) => {
            prepare_file(path)?;
            Connection::open(path).map_err(|e| e.to_string())?
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    if matches!(target, Target::File(_)) {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::debug!("video ledger: journal mode is {mode}, not WAL");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| e.to_string())?;
    }
    migrate(&conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn prepare_file(path: &Path) -> Result<(), String> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("its folder {} cannot be created: {e}", parent.display()))?;
    }
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process created it a moment ago.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("it cannot be created: {e}")),
    }
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        // Also proves the file is a readable database with our table.
        conn.query_row("SELECT count(*) FROM videos LIMIT 1", [], |_| Ok(()))?;
        return Ok(());
    }
    // IMMEDIATE: take the write lock first (waiting on the busy timeout), then
    // re-check, so two processes never migrate the same file at once.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn status_str(s: VideoStatus) -> &'static str {
    s.as_str()
}

fn read_record(row: &Row<'_>) -> Result<LedgerRecord, rusqlite::Error> {
    Ok(RecordRow {
        row_id: row.get(0)?,
        tenant: row.get(1)?,
        state: row.get(2)?,
        task_id: row.get(3)?,
        requested_at_ms: row.get(4)?,
        created_at: row.get(5)?,
        prompt_preview: row.get(6)?,
        args_hash: row.get(7)?,
        idempotency_key: row.get(8)?,
        status: row.get(9)?,
        upstream_status: row.get(10)?,
        progress: row.get(11)?,
        video_urls: row.get(12)?,
        links_expire_at: row.get(13)?,
        error_code: row.get(14)?,
        error_message: row.get(15)?,
        estimated_seconds: row.get(16)?,
        saved_path: row.get(17)?,
        size_bytes: row.get(18)?,
        note: row.get(19)?,
    }
    .into())
}

fn claim(
    conn: &mut Connection,
    id: &CreateIdentity,
    policy: ClaimPolicy,
) -> rusqlite::Result<Claim> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (requested_before, heartbeat_before) = policy::stale_before(now, &policy);
    tx.execute(
        "UPDATE videos SET state = 'maybe_created', updated_at = ?1, note = COALESCE(note, \
         'the server stopped or timed out while this video was being created') \
         WHERE state = 'creating' AND (requested_at < ?2 OR updated_at < ?3)",
        params![now, requested_before, heartbeat_before],
    )?;
    let select = format!("SELECT {COLUMNS} FROM videos");
    let mut found = policy::Found::default();
    if let Some(row_id) = policy.joined {
        found.joined = tx
            .query_row(
                &format!("{select} WHERE id = ?1 AND tenant = ?2 AND args_hash = ?3"),
                params![row_id, id.tenant, id.args_hash],
                read_record,
            )
            .optional()?;
    }
    if let Some(key) = &id.idempotency_key {
        found.by_key = tx
            .query_row(
                &format!("{select} WHERE tenant = ?1 AND idempotency_key = ?2"),
                params![id.tenant, key],
                read_record,
            )
            .optional()?;
    } else {
        let mut stmt = tx.prepare(&format!(
            "{select} WHERE tenant = ?1 AND args_hash = ?2 \
             AND (state = 'creating' OR requested_at >= ?3) \
             ORDER BY requested_at DESC, id DESC LIMIT ?4"
        ))?;
        found.same_args = stmt
            .query_map(
                params![
                    id.tenant,
                    id.args_hash,
                    policy::oldest_relevant(now, &policy),
                    policy::SAME_ARGS_SCAN
                ],
                read_record,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    match policy::decide(id, &policy, now, found) {
        policy::Decision::Answer(answer) => {
            tx.commit()?;
            return Ok(*answer);
        }
        policy::Decision::Reserve {
            free_key: Some(row_id),
        } => {
            tx.execute(
                "UPDATE videos SET idempotency_key = NULL WHERE id = ?1",
                params![row_id],
            )?;
        }
        policy::Decision::Reserve { free_key: None } => {}
    }
    tx.execute(
        "INSERT INTO videos (tenant, state, requested_at, updated_at, prompt, args_hash, \
         idempotency_key) VALUES (?1, 'creating', ?2, ?2, ?3, ?4, ?5)",
        params![
            id.tenant,
            now,
            id.prompt_preview,
            id.args_hash,
            id.idempotency_key
        ],
    )?;
    let row_id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Claim::Reserved(row_id))
}

fn settle(conn: &mut Connection, row_id: i64, outcome: Settle) -> rusqlite::Result<()> {
    let now = now_ms();
    match outcome {
        Settle::NotCreated => {
            // Also when another call already declared it orphaned: its owner
            // knows for sure that nothing was created.
            conn.execute(
                "DELETE FROM videos WHERE id = ?1 AND state != 'created'",
                params![row_id],
            )?;
        }
        Settle::MaybeCreated(why) => {
            conn.execute(
                "UPDATE videos SET state = 'maybe_created', note = ?2, updated_at = ?3 WHERE id = ?1",
                params![row_id, why, now],
            )?;
        }
        Settle::Created(view) => {
            let o = Observed::of(&view);
            let updated = conn.execute(
                "UPDATE videos SET state = 'created', task_id = ?2, status = ?3, \
                 upstream_status = ?4, progress = ?5, video_urls = ?6, created_at = ?7, \
                 links_expire_at = ?8, error_code = ?9, error_message = ?10, \
                 estimated_seconds = ?11, updated_at = ?12, note = NULL WHERE id = ?1",
                params![
                    row_id,
                    view.task_id,
                    o.status,
                    o.upstream_status,
                    i64::from(o.progress),
                    o.urls,
                    o.created_at,
                    o.links_expire_at,
                    o.error_code,
                    o.error_message,
                    o.estimated,
                    now
                ],
            );
            if let Err(e) = updated {
                // The task id is already recorded (the upstream answered with a
                // known id): keep that row, drop the reservation.
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                    conn.execute("DELETE FROM videos WHERE id = ?1", params![row_id])?;
                } else {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn record_status(conn: &mut Connection, tenant: &str, view: &TaskSnapshot) -> rusqlite::Result<()> {
    let o = Observed::of(view);
    conn.execute(
        "UPDATE videos SET status = ?3, upstream_status = ?4, progress = ?5, video_urls = ?6, \
         created_at = COALESCE(?7, created_at), links_expire_at = COALESCE(?8, links_expire_at), \
         error_code = ?9, error_message = ?10, \
         estimated_seconds = COALESCE(?11, estimated_seconds), updated_at = ?12 \
         WHERE tenant = ?1 AND task_id = ?2",
        params![
            tenant,
            view.task_id,
            o.status,
            o.upstream_status,
            i64::from(o.progress),
            o.urls,
            o.created_at,
            o.links_expire_at,
            o.error_code,
            o.error_message,
            o.estimated,
            now_ms()
        ],
    )?;
    Ok(())
}

fn list(conn: &mut Connection, q: &ListQuery) -> rusqlite::Result<Vec<LedgerRecord>> {
    let mut sql = format!("SELECT {COLUMNS} FROM videos WHERE tenant = ?");
    let mut args: Vec<Value> = vec![Value::Text(q.tenant.clone())];
    if !q.statuses.is_empty() {
        sql.push_str(" AND state = 'created' AND status IN (");
        for (i, s) in q.statuses.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(Value::Text(status_str(*s).to_string()));
        }
        sql.push(')');
    }
    if let Some(since) = q.since_ms {
        sql.push_str(" AND requested_at >= ?");
        args.push(Value::Integer(since));
    }
    sql.push_str(" ORDER BY requested_at DESC, id DESC LIMIT ?");
    args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), read_record)?;
    rows.collect()
}

impl Ledger for SqliteLedger {
    fn claim(
        &self,
        identity: CreateIdentity,
        policy: ClaimPolicy,
    ) -> BoxFuture<'static, Result<Claim, LedgerError>> {
        self.run("claiming a create", move |conn| {
            claim(conn, &identity, policy)
        })
    }

    fn heartbeat(&self, row_id: i64) -> BoxFuture<'static, Result<(), LedgerError>> {
        self.run("refreshing a reservation", move |conn| {
            conn.execute(
                "UPDATE videos SET updated_at = ?2 WHERE id = ?1 AND state = 'creating'",
                params![row_id, now_ms()],
            )
            .map(|_| ())
        })
    }

    fn settle(&self, row_id: i64, outcome: Settle) -> BoxFuture<'static, Result<(), LedgerError>> {
        self.run("recording a create", move |conn| {
            settle(conn, row_id, outcome)
        })
    }

    fn record_status(
        &self,
        tenant: &str,
        view: &TaskSnapshot,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let tenant = tenant.to_string();
        let view = view.clone();
        self.run("recording a status", move |conn| {
            record_status(conn, &tenant, &view)
        })
    }

    fn record_saved(
        &self,
        tenant: &str,
        task_id: &str,
        path: &str,
        size: u64,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let (tenant, task_id, path) = (tenant.to_string(), task_id.to_string(), path.to_string());
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.run("recording a saved file", move |conn| {
            conn.execute(
                "UPDATE videos SET saved_path = ?3, size_bytes = ?4, updated_at = ?5 \
                 WHERE tenant = ?1 AND task_id = ?2",
                params![tenant, task_id, path, size, now_ms()],
            )
            .map(|_| ())
        })
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'static, Result<Vec<LedgerRecord>, LedgerError>> {
        self.run("listing videos", move |conn| list(conn, &query))
    }

    fn count_since(
        &self,
        tenant: &str,
        since_ms: i64,
    ) -> BoxFuture<'static, Result<u64, LedgerError>> {
        let tenant = tenant.to_string();
        self.run("counting creates", move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM videos WHERE tenant = ?1 AND requested_at >= ?2",
                params![tenant, since_ms],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn describe(&self) -> String {
        describe(&self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::NewVideo;

    fn identity(tenant: &str, prompt: &str, key: Option<&str>) -> CreateIdentity {
        CreateIdentity::new(tenant.into(), &NewVideo::new(prompt), key.map(String::from))
    }

    fn policy(window_ms: u64) -> ClaimPolicy {
        ClaimPolicy {
            window: Duration::from_millis(window_ms),
            key_lifetime: Duration::from_secs(24 * 3600),
            stale_after: Duration::from_secs(120),
            orphaned_after: Duration::from_secs(60),
            joined: None,
        }
    }

    fn view(task_id: &str, status: VideoStatus) -> TaskSnapshot {
        TaskSnapshot {
            task_id: task_id.into(),
            status,
            upstream_status: status.as_str().into(),
            ..TaskSnapshot::default()
        }
    }

    async fn reserve(l: &SqliteLedger, id: &CreateIdentity, p: ClaimPolicy) -> i64 {
        match l.claim(id.clone(), p).await.unwrap() {
            Claim::Reserved(r) => r,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn window_and_keys_decide_what_is_the_same_create() {
        let l = SqliteLedger::in_memory();
        let p = policy(60_000);
        let a = identity("t1", "a cat", None);
        let row = reserve(&l, &a, p).await;
        // While the first is being sent, an identical one waits.
        assert_eq!(l.claim(a.clone(), p).await.unwrap(), Claim::InProgress(row));
        l.settle(
            row,
            Settle::Created(Box::new(view("task-1", VideoStatus::Pending))),
        )
        .await
        .unwrap();
        match l.claim(a.clone(), p).await.unwrap() {
            Claim::Existing { record, by_key } => {
                assert_eq!(record.task_id.as_deref(), Some("task-1"));
                assert!(!by_key);
            }
            other => panic!("{other:?}"),
        }
        // Another tenant, other arguments or a new key: a new create.
        reserve(&l, &identity("t2", "a cat", None), p).await;
        reserve(&l, &identity("t1", "a dog", None), p).await;
        let keyed = identity("t1", "a cat", Some("take-2"));
        let row = reserve(&l, &keyed, p).await;
        l.settle(
            row,
            Settle::Created(Box::new(view("task-2", VideoStatus::Pending))),
        )
        .await
        .unwrap();
        match l.claim(keyed.clone(), p).await.unwrap() {
            Claim::Existing { record, by_key } => {
                assert_eq!(record.task_id.as_deref(), Some("task-2"));
                assert!(by_key);
            }
            other => panic!("{other:?}"),
        }
        // The same key with other arguments is refused.
        assert!(matches!(
            l.claim(identity("t1", "a bird", Some("take-2")), p)
                .await
                .unwrap(),
            Claim::KeyConflict(_)
        ));
    }

    #[tokio::test]
    async fn failed_tasks_do_not_dedupe_and_maybe_created_blocks() {
        let l = SqliteLedger::in_memory();
        let p = policy(60_000);
        let a = identity("t", "x", None);
        let row = reserve(&l, &a, p).await;
        l.settle(
            row,
            Settle::Created(Box::new(view("task-1", VideoStatus::Pending))),
        )
        .await
        .unwrap();
        l.record_status("t", &view("task-1", VideoStatus::Failed))
            .await
            .unwrap();
        let row = reserve(&l, &a, p).await;
        l.settle(row, Settle::MaybeCreated("HTTP 500".into()))
            .await
            .unwrap();
        assert!(matches!(
            l.claim(a.clone(), p).await.unwrap(),
            Claim::MaybeCreated(r) if r.note.as_deref() == Some("HTTP 500")
        ));
        // Even with the window off, a "maybe created" still blocks...
        assert!(matches!(
            l.claim(a.clone(), policy(0)).await.unwrap(),
            Claim::MaybeCreated(_)
        ));
        // ...unless a new key asks for it deliberately.
        reserve(&l, &identity("t", "x", Some("k")), p).await;
        // A provably failed create leaves nothing behind.
        let b = identity("t", "y", None);
        let row = reserve(&l, &b, p).await;
        l.settle(row, Settle::NotCreated).await.unwrap();
        reserve(&l, &b, p).await;
    }

    #[tokio::test]
    async fn a_zero_window_turns_dedupe_off() {
        let l = SqliteLedger::in_memory();
        let a = identity("t", "x", None);
        let row = reserve(&l, &a, policy(0)).await;
        l.settle(
            row,
            Settle::Created(Box::new(view("task-1", VideoStatus::Pending))),
        )
        .await
        .unwrap();
        reserve(&l, &a, policy(0)).await;
    }

    #[tokio::test]
    async fn a_zero_window_still_waits_for_an_identical_create_in_flight() {
        let l = SqliteLedger::in_memory();
        let a = identity("t", "x", None);
        let row = reserve(&l, &a, policy(0)).await;
        // Racing: the identical call waits for the one in flight...
        assert_eq!(
            l.claim(a.clone(), policy(0)).await.unwrap(),
            Claim::InProgress(row)
        );
        l.settle(
            row,
            Settle::Created(Box::new(view("task-1", VideoStatus::Pending))),
        )
        .await
        .unwrap();
        // ...and is answered with its task, not a second create.
        let joined = ClaimPolicy {
            joined: Some(row),
            ..policy(0)
        };
        match l.claim(a.clone(), joined).await.unwrap() {
            Claim::Existing { record, .. } => assert_eq!(record.row_id, row),
            other => panic!("{other:?}"),
        }
        // A call arriving after it finished creates anew (that is window 0).
        reserve(&l, &a, policy(0)).await;
    }

    #[tokio::test]
    async fn a_reservation_without_a_heartbeat_is_maybe_created_for_every_window() {
        let l = SqliteLedger::in_memory();
        let quick = |window_ms| ClaimPolicy {
            orphaned_after: Duration::from_millis(300),
            ..policy(window_ms)
        };
        let a = identity("t", "orphan", None);
        let row = reserve(&l, &a, quick(0)).await;
        // Alive: heartbeats keep it in flight past the orphan limit.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            l.heartbeat(row).await.unwrap();
        }
        assert_eq!(
            l.claim(a.clone(), quick(0)).await.unwrap(),
            Claim::InProgress(row)
        );
        // Its process died: no heartbeat, so it may have been created.
        tokio::time::sleep(Duration::from_millis(400)).await;
        for window in [0, 60_000] {
            assert!(matches!(
                l.claim(a.clone(), quick(window)).await.unwrap(),
                Claim::MaybeCreated(r) if r.row_id == row
            ));
        }
        // The owner settling "nothing created" after all frees the arguments.
        l.settle(row, Settle::NotCreated).await.unwrap();
        reserve(&l, &a, quick(0)).await;
    }

    #[tokio::test]
    async fn list_filters_and_orders() {
        let l = SqliteLedger::in_memory();
        let p = policy(0);
        for (i, status) in [
            VideoStatus::Completed,
            VideoStatus::Processing,
            VideoStatus::Failed,
        ]
        .into_iter()
        .enumerate()
        {
            let row = reserve(&l, &identity("t", &format!("v{i}"), None), p).await;
            l.settle(
                row,
                Settle::Created(Box::new(view(&format!("task-{i}"), status))),
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        l.record_saved("t", "task-0", "/v/task-0.mp4", 42)
            .await
            .unwrap();
        let all = l
            .list(ListQuery {
                tenant: "t".into(),
                statuses: vec![],
                since_ms: None,
                limit: 10,
            })
            .await
            .unwrap();
        let ids: Vec<_> = all.iter().filter_map(|r| r.task_id.clone()).collect();
        assert_eq!(ids, ["task-2", "task-1", "task-0"]);
        assert_eq!(all[2].saved_path.as_deref(), Some("/v/task-0.mp4"));
        assert_eq!(all[2].size_bytes, Some(42));
        let done = l
            .list(ListQuery {
                tenant: "t".into(),
                statuses: vec![VideoStatus::Completed],
                since_ms: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        let other = l
            .list(ListQuery {
                tenant: "someone-else".into(),
                statuses: vec![],
                since_ms: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert!(other.is_empty());
    }

    #[tokio::test]
    async fn a_garbage_file_switches_the_ledger_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
        let l = SqliteLedger::open(path);
        let err = l
            .claim(identity("t", "x", None), policy(1000))
            .await
            .unwrap_err();
        assert!(matches!(err, LedgerError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_file_is_shared_between_ledgers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("ledger.sqlite3");
        let a = SqliteLedger::open(path.clone());
        let b = SqliteLedger::open(path.clone());
        let id = identity("t", "x", None);
        let row = reserve(&a, &id, policy(60_000)).await;
        assert_eq!(
            b.claim(id.clone(), policy(60_000)).await.unwrap(),
            Claim::InProgress(row)
        );
        a.settle(
            row,
            Settle::Created(Box::new(view("task-1", VideoStatus::Pending))),
        )
        .await
        .unwrap();
        assert!(matches!(
            b.claim(id, policy(60_000)).await.unwrap(),
            Claim::Existing { .. }
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the ledger is private: {mode:o}");
        }
    }
}

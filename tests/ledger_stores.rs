//! The ledger's semantics, one suite run against both stores: the embedded
//! SQLite file and PostgreSQL (`HEYGEN_TEST_POSTGRES_URL`; skipped when
//! unset). Each case takes a factory that opens another handle on the same
//! store, standing in for another process or replica.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pg;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use heygen_video_mcp::{
    ledger::{
        Claim, ClaimPolicy, CreateIdentity, Ledger, LedgerError, ListQuery, PostgresLedger,
        PostgresUrl, RecordState, Settle, SharedSessions, SqliteLedger,
        sessions::{Binding, Reserved, SessionCaps},
    },
    tools::view::VideoStatus,
    video::NewVideo,
    video::TaskSnapshot,
};

type Open = Arc<dyn Fn() -> Arc<dyn Ledger> + Send + Sync>;

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

async fn reserve(l: &Arc<dyn Ledger>, id: &CreateIdentity, p: ClaimPolicy) -> i64 {
    match l.claim(id.clone(), p).await.unwrap() {
        Claim::Reserved(r) => r,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

async fn created(l: &Arc<dyn Ledger>, row: i64, task: &str) {
    l.settle(
        row,
        Settle::Created(Box::new(view(task, VideoStatus::Pending))),
    )
    .await
    .unwrap();
}

fn all(tenant: &str) -> ListQuery {
    ListQuery {
        tenant: tenant.into(),
        statuses: vec![],
        since_ms: None,
        limit: 10,
    }
}

async fn window_and_keys_decide_what_is_the_same_create(open: Open) {
    let l = open();
    let p = policy(60_000);
    let a = identity("t1", "a cat", None);
    let row = reserve(&l, &a, p).await;
    // While the first is being sent, an identical one waits.
    assert_eq!(l.claim(a.clone(), p).await.unwrap(), Claim::InProgress(row));
    created(&l, row, "task-1").await;
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
    created(&l, row, "task-2").await;
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
    // The same key in another tenant is another create.
    reserve(&l, &identity("t2", "a bird", Some("take-2")), p).await;
}

async fn failed_tasks_do_not_dedupe_and_maybe_created_blocks(open: Open) {
    let l = open();
    let p = policy(60_000);
    let a = identity("t", "x", None);
    let row = reserve(&l, &a, p).await;
    created(&l, row, "task-1").await;
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
    // A failed keyed task frees its key for a new attempt.
    let k = identity("t", "z", Some("kz"));
    let row = reserve(&l, &k, p).await;
    created(&l, row, "task-z").await;
    l.record_status("t", &view("task-z", VideoStatus::Failed))
        .await
        .unwrap();
    reserve(&l, &k, p).await;
}

async fn a_zero_window_turns_dedupe_off(open: Open) {
    let l = open();
    let a = identity("t", "x", None);
    let row = reserve(&l, &a, policy(0)).await;
    created(&l, row, "task-1").await;
    reserve(&l, &a, policy(0)).await;
}

async fn a_zero_window_still_waits_for_an_identical_create_in_flight(open: Open) {
    let l = open();
    let a = identity("t", "x", None);
    let row = reserve(&l, &a, policy(0)).await;
    assert_eq!(
        l.claim(a.clone(), policy(0)).await.unwrap(),
        Claim::InProgress(row)
    );
    created(&l, row, "task-1").await;
    let joined = ClaimPolicy {
        joined: Some(row),
        ..policy(0)
    };
    match l.claim(a.clone(), joined).await.unwrap() {
        Claim::Existing { record, .. } => assert_eq!(record.row_id, row),
        other => panic!("{other:?}"),
    }
    reserve(&l, &a, policy(0)).await;
}

async fn a_reservation_without_a_heartbeat_is_maybe_created_for_every_window(open: Open) {
    let l = open();
    let quick = |window_ms| ClaimPolicy {
        orphaned_after: Duration::from_millis(300),
        ..policy(window_ms)
    };
    let a = identity("t", "orphan", None);
    let row = reserve(&l, &a, quick(0)).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        l.heartbeat(row).await.unwrap();
    }
    assert_eq!(
        l.claim(a.clone(), quick(0)).await.unwrap(),
        Claim::InProgress(row)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    for window in [0, 60_000] {
        assert!(matches!(
            l.claim(a.clone(), quick(window)).await.unwrap(),
            Claim::MaybeCreated(r) if r.row_id == row
        ));
    }
    // The list shows it as unconfirmed.
    let rows = l.list(all("t")).await.unwrap();
    assert_eq!(rows[0].state, RecordState::MaybeCreated);
    l.settle(row, Settle::NotCreated).await.unwrap();
    reserve(&l, &a, quick(0)).await;
}

async fn creates_are_counted_per_tenant_since_a_time(open: Open) {
    let (l, other_handle) = (open(), open());
    let p = policy(0);
    let count = |l: &Arc<dyn Ledger>, tenant: &str, since: i64| {
        let f = l.count_since(tenant, since);
        async move { f.await.unwrap() }
    };
    assert_eq!(count(&l, "t", 0).await, 0);
    // Created, in flight and "maybe created" count; a create that provably
    // created nothing does not.
    let row = reserve(&l, &identity("t", "created", None), p).await;
    created(&l, row, "task-1").await;
    let in_flight = reserve(&l, &identity("t", "in flight", None), p).await;
    let row = reserve(&l, &identity("t", "maybe", None), p).await;
    l.settle(row, Settle::MaybeCreated("HTTP 502".into()))
        .await
        .unwrap();
    let row = reserve(&l, &identity("t", "not created", None), p).await;
    l.settle(row, Settle::NotCreated).await.unwrap();
    assert_eq!(count(&l, "t", 0).await, 3);
    // Every handle on the store sees the same count; other tenants have their own.
    assert_eq!(count(&other_handle, "t", 0).await, 3);
    assert_eq!(count(&l, "someone-else", 0).await, 0);
    reserve(&l, &identity("someone-else", "created", None), p).await;
    assert_eq!(count(&other_handle, "someone-else", 0).await, 1);
    // Only creates requested at or after the time count.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mark = heygen_video_mcp::ledger::now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(count(&l, "t", mark).await, 0);
    reserve(&other_handle, &identity("t", "later", None), p).await;
    assert_eq!(count(&l, "t", mark).await, 1);
    assert_eq!(count(&l, "t", 0).await, 4);
    // Settling the one in flight as not created gives it back.
    l.settle(in_flight, Settle::NotCreated).await.unwrap();
    assert_eq!(count(&other_handle, "t", 0).await, 3);
}

async fn list_filters_and_orders(open: Open) {
    let l = open();
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
    let rows = l.list(all("t")).await.unwrap();
    let ids: Vec<_> = rows.iter().filter_map(|r| r.task_id.clone()).collect();
    assert_eq!(ids, ["task-2", "task-1", "task-0"]);
    assert_eq!(rows[2].saved_path.as_deref(), Some("/v/task-0.mp4"));
    assert_eq!(rows[2].size_bytes, Some(42));
    assert_eq!(rows[0].status, Some(VideoStatus::Failed));
    let done = l
        .list(ListQuery {
            statuses: vec![VideoStatus::Completed, VideoStatus::Processing],
            ..all("t")
        })
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    let limited = l
        .list(ListQuery {
            limit: 1,
            ..all("t")
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    let future = l
        .list(ListQuery {
            since_ms: Some(rows[0].requested_at_ms + 60_000),
            ..all("t")
        })
        .await
        .unwrap();
    assert!(future.is_empty());
    let since_second = l
        .list(ListQuery {
            since_ms: Some(rows[1].requested_at_ms),
            ..all("t")
        })
        .await
        .unwrap();
    assert_eq!(since_second.len(), 2);
    assert!(l.list(all("someone-else")).await.unwrap().is_empty());
}

async fn a_store_is_shared_between_handles(open: Open) {
    let (a, b) = (open(), open());
    let id = identity("t", "x", None);
    let row = reserve(&a, &id, policy(60_000)).await;
    assert_eq!(
        b.claim(id.clone(), policy(60_000)).await.unwrap(),
        Claim::InProgress(row)
    );
    created(&a, row, "task-1").await;
    assert!(matches!(
        b.claim(id, policy(60_000)).await.unwrap(),
        Claim::Existing { .. }
    ));
    let seen = b.list(all("t")).await.unwrap();
    assert_eq!(seen[0].task_id.as_deref(), Some("task-1"));
}

/// Twenty identical claims at the same moment over two handles: the store
/// grants exactly one reservation, whatever the window.
async fn concurrent_identical_claims_reserve_once(open: Open) {
    let handles = [open(), open()];
    for (window, prompt, key) in [
        (60_000, "race", None),
        (0, "race zero", None),
        (60_000, "race keyed", Some("k1")),
    ] {
        let id = identity("t", prompt, key);
        let claims = (0..20).map(|i| {
            let l = handles[i % 2].clone();
            let id = id.clone();
            async move { l.claim(id, policy(window)).await.unwrap() }
        });
        let answers = futures::future::join_all(claims).await;
        let reserved: Vec<_> = answers
            .iter()
            .filter_map(|c| match c {
                Claim::Reserved(r) => Some(*r),
                _ => None,
            })
            .collect();
        assert_eq!(reserved.len(), 1, "{answers:?}");
        assert!(
            answers
                .iter()
                .all(|c| matches!(c, Claim::Reserved(_)) || *c == Claim::InProgress(reserved[0])),
            "{answers:?}"
        );
    }
    // The same key for different arguments at once: one reservation, the rest
    // refused as conflicts or waiting for the reserved one.
    let claims = (0..10).map(|i| {
        let l = handles[i % 2].clone();
        async move {
            l.claim(
                identity("t", &format!("keyed {i}"), Some("shared")),
                policy(0),
            )
            .await
            .unwrap()
        }
    });
    let answers = futures::future::join_all(claims).await;
    let reserved = answers
        .iter()
        .filter(|c| matches!(c, Claim::Reserved(_)))
        .count();
    assert_eq!(reserved, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|c| matches!(c, Claim::Reserved(_) | Claim::KeyConflict(_))),
        "{answers:?}"
    );
}

fn sqlite_store() -> (Open, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let open: Open =
        Arc::new(move || Arc::new(SqliteLedger::open(path.clone())) as Arc<dyn Ledger>);
    (open, dir)
}

fn postgres_open(url: &str) -> Open {
    let url = PostgresUrl::parse(url).unwrap();
    Arc::new(move || Arc::new(PostgresLedger::open(url.clone())) as Arc<dyn Ledger>)
}

macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let (open, _dir) = sqlite_store();
                    tokio::time::timeout(Duration::from_secs(60), super::$case(open))
                        .await
                        .expect("the case finishes in time");
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(schema) = pg::schema(concat!(stringify!($case), "::postgres")).await
                    else {
                        return;
                    };
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        super::$case(postgres_open(&schema.url)),
                    )
                    .await
                    .expect("the case finishes in time");
                }
            }
        )*
    };
}

both_stores!(
    window_and_keys_decide_what_is_the_same_create,
    failed_tasks_do_not_dedupe_and_maybe_created_blocks,
    a_zero_window_turns_dedupe_off,
    a_zero_window_still_waits_for_an_identical_create_in_flight,
    a_reservation_without_a_heartbeat_is_maybe_created_for_every_window,
    list_filters_and_orders,
    creates_are_counted_per_tenant_since_a_time,
    a_store_is_shared_between_handles,
    concurrent_identical_claims_reserve_once,
);

/// Replicas starting together migrate the schema once, without errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(schema) = pg::schema("replicas_starting_together_migrate_once").await else {
        return;
    };
    let open = postgres_open(&schema.url);
    let firsts = (0..6).map(|i| {
        let l = open();
        async move { l.list(all(&format!("t{i}"))).await }
    });
    for r in futures::future::join_all(firsts).await {
        assert!(r.unwrap().is_empty());
    }
    let client = pg::connect(&schema.url).await;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT version), max(version) \
                 FROM {}.heygen_schema_version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let (rows, versions, latest): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(latest, 2, "the ledger and the session table");
    assert_eq!((rows, versions), (2, 2), "each version applied once");
}

/// A database that does not answer: every operation fails as unavailable
/// within a bounded time, and the password never shows.
#[tokio::test]
async fn an_unreachable_database_is_unavailable_quickly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url =
        PostgresUrl::parse(&format!("postgres://app:hunter2@127.0.0.1:{port}/heygen")).unwrap();
    let l = PostgresLedger::open(url);
    assert!(l.shared());
    assert!(!l.describe().contains("hunter2"), "{}", l.describe());
    let started = Instant::now();
    let err = l
        .claim(identity("t", "x", None), policy(0))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, LedgerError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // A black hole (accepts, never answers) is bounded too.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let l = PostgresLedger::open(
        PostgresUrl::parse(&format!("postgres://app@127.0.0.1:{hole_port}/heygen")).unwrap(),
    );
    let started = Instant::now();
    let err = l.list(all("t")).await.unwrap_err();
    assert!(matches!(err, LedgerError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The embedded store is not a shared one.
    let (open, _dir) = sqlite_store();
    assert!(!open().shared());
}

// ---------------------------------------------------------------------------
// Legacy HTTP sessions in the PostgreSQL database
// ---------------------------------------------------------------------------

fn caps(total: usize, per_caller: usize) -> SessionCaps {
    SessionCaps {
        max_total: total,
        max_per_caller: per_caller,
        idle: Duration::from_secs(300),
    }
}

fn sessions_of(open: &Open) -> Arc<dyn SharedSessions> {
    open().sessions().expect("PostgreSQL keeps sessions")
}

fn slot(r: Reserved) -> String {
    match r {
        Reserved::Slot(k) => k,
        other => panic!("expected a slot, got {other:?}"),
    }
}

fn binding(reservation: String, session_id: &str, idle: Duration) -> Binding {
    Binding {
        reservation,
        session_id: session_id.into(),
        version: "2025-11-25".into(),
        init_params: r#"{"protocolVersion":"2025-11-25"}"#.into(),
        idle,
    }
}

/// Many replicas reserving at once never exceed the caps; released and
/// ended sessions free their slots; only the owner reaches a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_slots_are_counted_once_across_replicas() {
    let Some(schema) = pg::schema("session_slots_are_counted_once_across_replicas").await else {
        return;
    };
    let open = postgres_open(&schema.url);
    let replicas: Vec<_> = (0..4).map(|_| sessions_of(&open)).collect();
    let tries = (0..24).map(|i| replicas[i % 4].reserve("alice", caps(100, 5)));
    let answers: Vec<Reserved> = futures::future::join_all(tries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let slots: Vec<String> = answers
        .iter()
        .filter_map(|r| match r {
            Reserved::Slot(k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(slots.len(), 5, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|r| matches!(r, Reserved::Slot(_) | Reserved::CallerFull(5))),
        "{answers:?}"
    );
    // Another owner still fits, up to the overall cap.
    let s = &replicas[0];
    let bob = slot(s.reserve("bob", caps(7, 5)).await.unwrap());
    assert_eq!(
        s.reserve("bob", caps(6, 5)).await.unwrap(),
        Reserved::ServerFull(6)
    );
    // A released reservation frees its slot.
    s.release(&slots[0]).await.unwrap();
    let again = slot(replicas[1].reserve("alice", caps(100, 5)).await.unwrap());

    // Bound on one replica, the session is its owner's on every other.
    assert!(
        replicas[2]
            .bind(binding(
                again.clone(),
                "session-a",
                Duration::from_secs(300)
            ))
            .await
            .unwrap()
    );
    assert_eq!(
        replicas[3]
            .touch("session-a", "alice", Duration::from_secs(300))
            .await
            .unwrap()
            .as_deref(),
        Some("2025-11-25")
    );
    assert_eq!(
        replicas[3]
            .touch("session-a", "bob", Duration::from_secs(300))
            .await
            .unwrap(),
        None
    );
    assert!(
        replicas[0]
            .load("session-a")
            .await
            .unwrap()
            .unwrap()
            .contains("2025-11-25")
    );
    assert_eq!(
        replicas[0]
            .live_of(vec!["session-a".into(), "nope".into()])
            .await
            .unwrap(),
        vec!["session-a".to_string()]
    );
    // A reservation binds once.
    assert!(
        !replicas[1]
            .bind(binding(
                again.clone(),
                "session-b",
                Duration::from_secs(300)
            ))
            .await
            .unwrap()
    );
    // Only the owner ends it; then it is gone everywhere.
    assert!(!replicas[1].end("session-a", Some("bob")).await.unwrap());
    assert!(replicas[1].end("session-a", Some("alice")).await.unwrap());
    assert!(!replicas[2].end("session-a", None).await.unwrap());
    for r in &replicas {
        assert_eq!(
            r.touch("session-a", "alice", Duration::from_secs(300))
                .await
                .unwrap(),
            None
        );
        assert_eq!(r.load("session-a").await.unwrap(), None);
    }
    s.release(&bob).await.unwrap();
}

/// A session whose idle time has run out is gone for every replica, and its
/// slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_gone_and_frees_its_slot() {
    let Some(schema) = pg::schema("an_expired_session_is_gone_and_frees_its_slot").await else {
        return;
    };
    let open = postgres_open(&schema.url);
    let (a, b) = (sessions_of(&open), sessions_of(&open));
    let k = slot(a.reserve("alice", caps(10, 1)).await.unwrap());
    assert_eq!(
        b.reserve("alice", caps(10, 1)).await.unwrap(),
        Reserved::CallerFull(1)
    );
    // Bound with no idle time at all: it expires at once.
    assert!(a.bind(binding(k, "short", Duration::ZERO)).await.unwrap());
    assert_eq!(
        b.touch("short", "alice", Duration::from_secs(300))
            .await
            .unwrap(),
        None
    );
    assert_eq!(b.load("short").await.unwrap(), None);
    assert!(b.live_of(vec!["short".into()]).await.unwrap().is_empty());
    slot(b.reserve("alice", caps(10, 1)).await.unwrap());
}

/// A database with the version-1 schema (the ledger alone) is brought to
/// version 2 and keeps its videos.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_gains_the_session_table() {
    let Some(schema) = pg::schema("a_version_1_database_gains_the_session_table").await else {
        return;
    };
    let open = postgres_open(&schema.url);
    let first = open();
    let Claim::Reserved(row) = first
        .claim(identity("t", "kept", None), policy(0))
        .await
        .unwrap()
    else {
        panic!("reserved")
    };
    first
        .settle(
            row,
            Settle::Created(Box::new(view("task-kept", VideoStatus::Pending))),
        )
        .await
        .unwrap();
    let client = pg::connect(&schema.url).await;
    client
        .batch_execute(&format!(
            "DROP TABLE {0}.heygen_sessions; DELETE FROM {0}.heygen_schema_version WHERE version = 2",
            schema.name
        ))
        .await
        .unwrap();
    let upgraded = open();
    let s = upgraded.sessions().unwrap();
    slot(s.reserve("alice", caps(10, 10)).await.unwrap());
    let listed = upgraded.list(all("t")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].task_id.as_deref(), Some("task-kept"));
    let max: i32 = client
        .query_one(
            &format!(
                "SELECT max(version) FROM {}.heygen_schema_version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(max, 2);
}

/// The embedded store keeps sessions in each process.
#[test]
fn sqlite_keeps_no_shared_sessions() {
    let (open, _dir) = sqlite_store();
    assert!(open().sessions().is_none());
}

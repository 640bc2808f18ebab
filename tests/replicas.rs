//! Several server processes on one PostgreSQL ledger, as replicas behind a
//! load balancer: identical creates fired at once on two replicas buy one
//! video, an idempotency key holds across replicas, every replica lists the
//! same videos, and a replica whose database goes away refuses creates
//! (bounded, nothing sent upstream) and recovers by itself. Over HTTP, with
//! requests spread over three replicas as a round-robin load balancer would:
//! a 2025-11-25 session opened on one replica continues on the others, ends
//! everywhere when deleted or idle, is another caller's 404, and counts
//! against the session caps on every replica; a database cut mid-run makes
//! calls fail cleanly (isError, 503) until it is back, without restarting
//! anything; and 200 concurrent clients are served without a failed call.
//! Needs `HEYGEN_TEST_POSTGRES_URL`; skipped when unset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod harness;
mod pg;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use harness::{HttpServer, Spawn};
use heygen_video_mcp::simulator::Simulator;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Mutex, task::JoinHandle};

async fn replica(sim: &Simulator, ledger_url: &str) -> McpChild {
    McpChild::modern(ServerOpts::for_sim(sim).env("HEYGEN_LEDGER", ledger_url)).await
}

fn creates(sim: &Simulator) -> usize {
    sim.state
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("task") && r.body.is_some())
        .count()
        .max(sim.state.task_count())
}

fn listed(r: &Value) -> Vec<String> {
    expect_ok(r)["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["task_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_truth() {
    let Some(schema) = pg::schema("replicas_share_one_truth").await else {
        return;
    };
    let sim = start_sim().await;
    let (a, b) = tokio::join!(replica(&sim, &schema.url), replica(&sim, &schema.url));
    let replicas = [&a, &b];

    // Ten identical creates at the same moment, alternating between replicas.
    let args = json!({ "prompt": "Two replicas, one video: a lighthouse at dusk." });
    let calls = (0..10).map(|i| replicas[i % 2].call("create_video", args.clone()));
    let results = futures::future::join_all(calls).await;
    let ids: Vec<String> = results.iter().map(task_id_of).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(sim.state.task_count(), 1, "one upstream create");

    // An idempotency key used on A and repeated on B answers with A's task;
    // the same key with other arguments on B is refused.
    let keyed = json!({ "prompt": "A keyed video.", "idempotency_key": "replica-key-1" });
    let first = task_id_of(&a.call("create_video", keyed.clone()).await);
    let again = b.call("create_video", keyed.clone()).await;
    assert_eq!(task_id_of(&again), first);
    let other = b
        .call(
            "create_video",
            json!({ "prompt": "Something else.", "idempotency_key": "replica-key-1" }),
        )
        .await;
    let text = expect_tool_error(&other);
    assert!(text.contains("idempotency_key"), "{text}");
    assert_eq!(sim.state.task_count(), 2);

    // Every replica lists the same videos.
    let on_a = listed(&a.call("list_videos", json!({})).await);
    let on_b = listed(&b.call("list_videos", json!({})).await);
    assert_eq!(on_a, on_b);
    assert!(on_a.contains(&ids[0]) && on_a.contains(&first), "{on_a:?}");
    let _ = creates(&sim);
}

/// A loopback TCP proxy to the database that the test can cut and restore.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                c.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            port,
            open,
            conns,
            _accept: accept,
        }
    }

    /// Drops every connection and refuses new ones.
    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_refuses_creates_and_recovers() {
    let Some(schema) = pg::schema("a_lost_database_refuses_creates_and_recovers").await else {
        return;
    };
    let proxy = Proxy::start(db_target(&schema.url)).await;
    let sim = start_sim().await;
    let c = replica(&sim, &via_proxy(&schema.url, &proxy)).await;

    let ok = c
        .call("create_video", json!({ "prompt": "Before the outage." }))
        .await;
    let before = task_id_of(&ok);
    assert_eq!(sim.state.task_count(), 1);

    proxy.cut().await;
    let started = Instant::now();
    let refused = c
        .call("create_video", json!({ "prompt": "During the outage." }))
        .await;
    let elapsed = started.elapsed();
    let text = expect_tool_error(&refused);
    assert!(
        text.contains("not created") && text.contains("ledger"),
        "{text}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "refused after {elapsed:?}"
    );
    assert_eq!(sim.state.task_count(), 1, "nothing was sent upstream");
    let listing = c.call("list_videos", json!({})).await;
    assert!(is_error(&listing), "{listing}");
    // A status check does not need the ledger.
    expect_ok(
        &c.call("get_video_status", json!({ "task_id": before }))
            .await,
    );

    // The database is back: the pool reconnects by itself.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .call("create_video", json!({ "prompt": "After the outage." }))
            .await;
        if !is_error(&r) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {r}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(sim.state.task_count(), 2);
    let after = listed(&c.call("list_videos", json!({})).await);
    assert!(after.contains(&before) && after.len() == 2, "{after:?}");
    let stderr = c.shutdown().await;
    assert!(
        !stderr.contains("postgres://postgres:"),
        "no password shown"
    );
}

// ---------------------------------------------------------------------------
// Three HTTP replicas, requests spread over them
// ---------------------------------------------------------------------------

const TOKENS: &str = "token-of-alice-0123456789,token-of-bob-0123456789";
const ALICE: &str = "token-of-alice-0123456789";
const BOB: &str = "token-of-bob-0123456789";
/// Bound of every single HTTP exchange.
const STEP: Duration = Duration::from_secs(20);

/// Three `--http` replicas against `sim`, all on the ledger at `ledger_url`.
async fn http_replicas(sim: &Simulator, ledger_url: &str, args: &[&str]) -> [HttpServer; 3] {
    let spec = Spawn::new(BIN)
        .upstream(sim.base_url(), TEST_KEY)
        .args(args.iter().copied())
        .env("HEYGEN_LEDGER", ledger_url)
        .env("HEYGEN_MCP_AUTH_TOKEN", TOKENS)
        .log("warn");
    let (a, b, c) = tokio::join!(
        HttpServer::spawn(&spec),
        HttpServer::spawn(&spec),
        HttpServer::spawn(&spec)
    );
    [a, b, c]
}

/// An HTTP answer as the client saw it.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn session(&self) -> String {
        self.headers
            .get("mcp-session-id")
            .unwrap_or_else(|| panic!("no Mcp-Session-Id: {} {}", self.status, self.body))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The JSON-RPC answer in the body (one JSON object, or an SSE event).
    fn message(&self) -> Value {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            return v;
        }
        self.body
            .replace("\r\n", "\n")
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC answer: {} {}", self.status, self.body))
    }

    /// The JSON-RPC result of a successful exchange.
    fn result(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        let m = self.message();
        m.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("not a result: {m}"))
    }
}

async fn send(rb: reqwest::RequestBuilder) -> Answer {
    let r = rb.timeout(STEP).send().await.expect("answered within STEP");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.text().await.expect("a readable body");
    Answer {
        status,
        headers,
        body,
    }
}

fn to(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    http.request(method, url)
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
}

/// A POST in a 2025-11-25 session (or, without one, an initialize).
async fn legacy_post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> Answer {
    let mut rb = to(http, reqwest::Method::POST, url, token)
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(s) = session {
        rb = rb
            .header("Mcp-Session-Id", s)
            .header("MCP-Protocol-Version", LEGACY);
    }
    send(rb).await
}

async fn initialize(http: &reqwest::Client, url: &str, token: &str) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {},
        "clientInfo": {"name": "replica-test", "version": "0.0.0"}}});
    legacy_post(http, url, token, None, body).await
}

/// `initialize` on `first`, `notifications/initialized` on `second`: the
/// session id.
async fn open(http: &reqwest::Client, first: &str, second: &str, token: &str) -> String {
    let init = initialize(http, first, token).await;
    assert_eq!(init.result()["protocolVersion"], LEGACY);
    let id = init.session();
    let n = legacy_post(
        http,
        second,
        token,
        Some(&id),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(
        n.status.is_success(),
        "initialized: {} {}",
        n.status,
        n.body
    );
    id
}

async fn tools_list(http: &reqwest::Client, url: &str, token: &str, session: &str) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    legacy_post(http, url, token, Some(session), body).await
}

async fn legacy_call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: &str,
    id: u64,
    tool: &str,
    args: Value,
) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args}});
    legacy_post(http, url, token, Some(session), body).await
}

async fn delete(http: &reqwest::Client, url: &str, token: &str, session: &str) -> Answer {
    send(
        to(http, reqwest::Method::DELETE, url, token)
            .header("Mcp-Session-Id", session)
            .header("MCP-Protocol-Version", LEGACY),
    )
    .await
}

/// A stateless 2026-07-28 `tools/call`.
async fn modern_call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    tool: &str,
    args: Value,
) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": args, "_meta": modern_meta()}});
    send(
        to(http, reqwest::Method::POST, url, token)
            .header("Content-Type", "application/json")
            .header("MCP-Protocol-Version", MODERN)
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", tool)
            .body(body.to_string()),
    )
    .await
}

fn tool_count(a: &Answer) -> usize {
    a.result()["tools"].as_array().expect("tools").len()
}

async fn live_sessions(schema: &pg::PgSchema) -> i64 {
    pg::connect(&schema.url)
        .await
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.heygen_sessions WHERE bound",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn assert_no_panic(replicas: &[HttpServer]) {
    for r in replicas {
        assert!(r.alive(), "a replica exited:\n{}", r.stderr.joined());
        assert!(
            !r.stderr.any(|l| l.contains("panicked")),
            "{}",
            r.stderr.joined()
        );
    }
}

/// (4) A session opened on replica 1 is used on 2 and 3, is another caller's
/// 404 everywhere, and once deleted on 3 is gone on 1 and 2 as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_continues_on_every_replica_and_ends_everywhere() {
    let Some(schema) = pg::schema("a_legacy_session_continues_on_every_replica").await else {
        return;
    };
    let sim = start_sim().await;
    let r = http_replicas(&sim, &schema.url, &[]).await;
    let http = harness::loopback_client();
    let (r1, r2, r3) = (&r[0].url, &r[1].url, &r[2].url);

    let s = open(&http, r1, r2, ALICE).await;
    assert!(tool_count(&tools_list(&http, r2, ALICE, &s).await) > 0);
    let credits = legacy_call(&http, r3, ALICE, &s, 3, "get_credits", json!({})).await;
    expect_ok(&credits.result());
    let videos = legacy_call(&http, r2, ALICE, &s, 4, "list_videos", json!({})).await;
    expect_ok(&videos.result());
    let videos = legacy_call(&http, r1, ALICE, &s, 5, "list_videos", json!({})).await;
    expect_ok(&videos.result());

    // The table holds a hash of the session id, the owner's hash and the
    // revision: neither the id nor a token.
    let rows = pg::connect(&schema.url)
        .await
        .query(
            &format!(
                "SELECT id, owner, coalesce(protocol_version, ''), coalesce(init_params, '') \
                 FROM {}.heygen_sessions",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let (id, owner, version, params): (String, String, String, String) = (
        rows[0].get(0),
        rows[0].get(1),
        rows[0].get(2),
        rows[0].get(3),
    );
    assert_eq!(version, LEGACY);
    for text in [&id, &owner, &params] {
        assert!(!text.contains(&s) && !text.contains(ALICE), "{text}");
    }

    // Another caller naming the session gets 404 on every replica and
    // whatever the method; the session is untouched.
    for url in [r1, r2, r3] {
        let b = tools_list(&http, url, BOB, &s).await;
        assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.body);
        let b = legacy_call(&http, url, BOB, &s, 6, "get_credits", json!({})).await;
        assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.body);
        assert_eq!(
            delete(&http, url, BOB, &s).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let unknown = tools_list(&http, r2, BOB, "no-such-session").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(tool_count(&tools_list(&http, r3, ALICE, &s).await) > 0);

    // Deleted on replica 3: gone on 1 and 2 (and 3).
    let d = delete(&http, r3, ALICE, &s).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);
    for url in [r1, r2, r3] {
        let gone = tools_list(&http, url, ALICE, &s).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
    }
    assert_eq!(
        delete(&http, r1, ALICE, &s).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(live_sessions(&schema).await, 0);
    // No replica keeps a copy of it.
    for replica in &r {
        assert_eq!(replica.health().await["sessions"], 0);
    }
    assert_no_panic(&r);
}

/// The caps count every replica's sessions, and idle expiry ends a session
/// on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_caps_and_idle_expiry_hold_across_replicas() {
    let Some(schema) = pg::schema("session_caps_and_idle_expiry_hold_across_replicas").await else {
        return;
    };
    let sim = start_sim().await;
    let http = harness::loopback_client();
    let r = http_replicas(
        &sim,
        &schema.url,
        &["--max-sessions-per-caller", "2", "--max-sessions", "3"],
    )
    .await;
    let (r1, r2, r3) = (&r[0].url, &r[1].url, &r[2].url);
    let a1 = open(&http, r1, r2, ALICE).await;
    open(&http, r2, r3, ALICE).await;
    let refused = initialize(&http, r3, ALICE).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert_eq!(refused.message()["error"]["data"]["scope"], "caller");
    assert!(refused.headers.get("mcp-session-id").is_none());
    open(&http, r3, r1, BOB).await;
    let full = initialize(&http, r1, BOB).await;
    assert_eq!(
        full.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        full.body
    );
    assert_eq!(full.message()["error"]["data"]["scope"], "server");
    assert!(full.headers.get("retry-after").is_some());
    // A session ended on one replica frees its slot on every replica.
    assert_eq!(
        delete(&http, r2, ALICE, &a1).await.status,
        StatusCode::NO_CONTENT
    );
    open(&http, r3, r2, ALICE).await;
    assert_eq!(
        initialize(&http, r2, BOB).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_no_panic(&r);
    drop(r);

    // Idle expiry: one session per caller, idle for 1 s.
    let Some(schema) = pg::schema("session_idle_expiry_across_replicas").await else {
        return;
    };
    let r = http_replicas(
        &sim,
        &schema.url,
        &[
            "--max-sessions-per-caller",
            "1",
            "--session-idle-timeout",
            "1",
        ],
    )
    .await;
    let (r1, r2, r3) = (&r[0].url, &r[1].url, &r[2].url);
    let s = open(&http, r1, r2, ALICE).await;
    // Refused while the session is live; once it has expired (in the
    // database, whichever replica served it) its slot is free.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        let a = initialize(&http, r3, ALICE).await;
        if a.status == StatusCode::OK {
            break a.session();
        }
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
        assert!(Instant::now() < deadline, "the idle session did not expire");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for url in [r1, r2, r3] {
        let gone = tools_list(&http, url, ALICE, &s).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
    }
    assert_ne!(fresh, s);
    assert_no_panic(&r);
}

fn via_proxy(url: &str, proxy: &Proxy) -> String {
    let mut via = url::Url::parse(url).unwrap();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    via.to_string()
}

fn db_target(url: &str) -> String {
    let base = url::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        base.host_str().unwrap(),
        base.port().unwrap_or(5432)
    )
}

/// (6) The database connections are cut mid-run: tool calls that need the
/// database fail with isError, session requests with 503, each answered
/// within a bound and without a panic; once the database is back every
/// replica recovers by itself and the session opened before the cut goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_fails_cleanly_and_every_replica_recovers() {
    let Some(schema) = pg::schema("a_database_cut_fails_cleanly_and_every_replica_recovers").await
    else {
        return;
    };
    let proxy = Proxy::start(db_target(&schema.url)).await;
    let sim = start_sim().await;
    let http = harness::loopback_client();
    let r = http_replicas(&sim, &via_proxy(&schema.url, &proxy), &[]).await;
    let urls = [&r[0].url, &r[1].url, &r[2].url];

    let s = open(&http, urls[0], urls[1], ALICE).await;
    let created = modern_call(
        &http,
        urls[1],
        ALICE,
        "create_video",
        json!({"prompt": "Before the cut."}),
    )
    .await;
    let task = task_id_of(&created.result());
    for url in urls {
        expect_ok(
            &modern_call(&http, url, ALICE, "list_videos", json!({}))
                .await
                .result(),
        );
    }

    proxy.cut().await;
    for (i, url) in urls.into_iter().enumerate() {
        let listing = modern_call(&http, url, ALICE, "list_videos", json!({})).await;
        let text = expect_tool_error(&listing.result());
        assert!(text.to_lowercase().contains("ledger"), "{text}");
        let create = modern_call(
            &http,
            url,
            ALICE,
            "create_video",
            json!({"prompt": format!("During the cut {i}.")}),
        )
        .await;
        let text = expect_tool_error(&create.result());
        assert!(text.contains("not created"), "{text}");
        // A session can be neither continued nor opened.
        let cont = tools_list(&http, url, ALICE, &s).await;
        assert_eq!(
            cont.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            cont.body
        );
        assert!(cont.headers.get("retry-after").is_some());
        assert!(cont.body.contains("2026-07-28"), "{}", cont.body);
        let init = initialize(&http, url, BOB).await;
        assert_eq!(
            init.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            init.body
        );
        assert_eq!(
            init.message()["error"]["data"]["reason"],
            "session_store_unavailable"
        );
        // A status check needs no database.
        expect_ok(
            &modern_call(
                &http,
                url,
                ALICE,
                "get_video_status",
                json!({"task_id": task}),
            )
            .await
            .result(),
        );
    }
    assert_eq!(
        sim.state.task_count(),
        1,
        "nothing was created during the cut"
    );
    assert_no_panic(&r);

    // Back: every replica recovers without a restart.
    proxy.restore();
    for url in urls {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = modern_call(&http, url, ALICE, "list_videos", json!({})).await;
            if !is_error(&a.result()) {
                break;
            }
            assert!(Instant::now() < deadline, "no recovery: {}", a.body);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for url in urls {
        assert!(tool_count(&tools_list(&http, url, ALICE, &s).await) > 0);
    }
    open(&http, urls[2], urls[0], BOB).await;
    let after = modern_call(
        &http,
        urls[2],
        ALICE,
        "create_video",
        json!({"prompt": "After the cut."}),
    )
    .await;
    task_id_of(&after.result());
    assert_eq!(sim.state.task_count(), 2);
    assert_no_panic(&r);
    for replica in &r {
        assert!(!replica.stderr.joined().contains("postgres://postgres:"));
    }
}

/// (7) 200 concurrent clients, 2026-07-28 and 2025-11-25, each request sent
/// to the next of three replicas in turn: status checks and listings for a
/// few seconds, without one failed call; every session the clients ended is
/// gone from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_over_three_replicas_without_a_failed_call() {
    let Some(schema) = pg::schema("two_hundred_clients_over_three_replicas").await else {
        return;
    };
    let clients: usize = std::env::var("LOAD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seconds: f64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let sim = start_sim().await;
    let r = Arc::new(http_replicas(&sim, &schema.url, &[]).await);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let task = task_id_of(
        &modern_call(
            &http,
            &r[0].url,
            ALICE,
            "create_video",
            json!({"prompt": "The video every load client follows."}),
        )
        .await
        .result(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let runs = (0..clients).map(|i| {
        let (r, http, next, calls, failures, task) = (
            r.clone(),
            http.clone(),
            next.clone(),
            calls.clone(),
            failures.clone(),
            task.clone(),
        );
        tokio::spawn(async move {
            let url = || r[next.fetch_add(1, Ordering::Relaxed) % 3].url.clone();
            let token = if (i / 4) % 2 == 0 { ALICE } else { BOB };
            // Every fourth client speaks 2025-11-25 in a session of its own.
            let session = if i % 4 == 3 {
                let init = initialize(&http, &url(), token).await;
                if init.status != StatusCode::OK {
                    failures.lock().await.push(format!(
                        "client {i} initialize: {} {}",
                        init.status, init.body
                    ));
                    return;
                }
                let s = init.session();
                let n = legacy_post(
                    &http,
                    &url(),
                    token,
                    Some(&s),
                    json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                )
                .await;
                if !n.status.is_success() {
                    failures
                        .lock()
                        .await
                        .push(format!("client {i} initialized: {} {}", n.status, n.body));
                    return;
                }
                Some(s)
            } else {
                None
            };
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let (tool, args) = if n.is_multiple_of(2) {
                    ("list_videos", json!({}))
                } else {
                    ("get_video_status", json!({"task_id": task}))
                };
                let a = match &session {
                    Some(s) => legacy_call(&http, &url(), token, s, n + 10, tool, args).await,
                    None => modern_call(&http, &url(), token, tool, args).await,
                };
                let ok = a.status == StatusCode::OK
                    && a.message().get("result").is_some_and(|res| !is_error(res));
                if ok {
                    calls.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.lock().await.push(format!(
                        "client {i} {tool}: {} {}",
                        a.status,
                        a.body.chars().take(300).collect::<String>()
                    ));
                }
            }
            if let Some(s) = session {
                let d = delete(&http, &url(), token, &s).await;
                if d.status != StatusCode::NO_CONTENT {
                    failures
                        .lock()
                        .await
                        .push(format!("client {i} DELETE: {} {}", d.status, d.body));
                }
            }
        })
    });
    for run in futures::future::join_all(runs).await {
        run.expect("a client task ran to its end");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failures = failures.lock().await;
    assert!(
        failures.is_empty(),
        "{} failed calls, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let done = calls.load(Ordering::Relaxed);
    assert!(done >= clients, "every client made calls: {done}");
    eprintln!(
        "{clients} clients over 3 replicas: {done} calls in {elapsed:.1} s ({:.0} calls/s)",
        done as f64 / elapsed
    );
    assert_eq!(live_sessions(&schema).await, 0);
    assert_no_panic(&r[..]);
}

//! Legacy (2025-11-25 and older) Streamable HTTP sessions, seen on the wire:
//! raw HTTP with reqwest against the built binary (`--http 127.0.0.1:0
//! --simulate`, legacy sessions on). Session caps overall and per caller,
//! sessions bound to the caller that created them (token, and with caller keys
//! the upstream key), idle expiry, the SSE priming event only for revisions that
//! define it, DELETE's status, and (over stdio) the final progress update
//! arriving before the result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use harness::{HttpServer, Spawn, StdioServer, loopback_client};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
const TOKENS: &str = "token-of-alice-0123456789,token-of-bob-0123456789";
const ALICE: &str = "token-of-alice-0123456789";
const BOB: &str = "token-of-bob-0123456789";
/// Bound of every single HTTP exchange in these tests.
const STEP: Duration = Duration::from_secs(20);

async fn server(args: &[&str]) -> HttpServer {
    let spec = Spawn::new(BIN)
        .args(["--simulate", "--simulate-render-seconds", "1"])
        .args(args.iter().copied())
        .env("HEYGEN_MCP_AUTH_TOKEN", TOKENS)
        .log("warn");
    HttpServer::spawn(&spec).await
}

/// One caller: a bearer token and optionally an upstream key.
#[derive(Clone, Copy)]
struct Caller {
    token: &'static str,
    key: Option<&'static str>,
}

const A: Caller = Caller {
    token: ALICE,
    key: None,
};
const B: Caller = Caller {
    token: BOB,
    key: None,
};

struct Raw {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn session(&self) -> String {
        self.headers
            .get("mcp-session-id")
            .unwrap_or_else(|| panic!("no Mcp-Session-Id: {} {}", self.status, self.body))
            .to_str()
            .unwrap()
            .to_string()
    }
}

async fn read(r: Response) -> Raw {
    let status = r.status();
    let headers = r.headers().clone();
    let body = tokio::time::timeout(STEP, r.text())
        .await
        .expect("the response body ends")
        .expect("a readable body");
    Raw {
        status,
        headers,
        body,
    }
}

fn request(
    method: reqwest::Method,
    url: &str,
    who: Caller,
    session: Option<&str>,
    version: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut rb = loopback_client()
        .request(method, url)
        .bearer_auth(who.token)
        .header("Accept", "application/json, text/event-stream")
        .timeout(STEP);
    if let Some(k) = who.key {
        rb = rb.header("X-HeyGen-Api-Key", k);
    }
    if let Some(s) = session {
        rb = rb.header("Mcp-Session-Id", s);
    }
    if let Some(v) = version {
        rb = rb.header("MCP-Protocol-Version", v);
    }
    rb
}

async fn post(url: &str, who: Caller, session: Option<&str>, version: &str, body: Value) -> Raw {
    let r = request(reqwest::Method::POST, url, who, session, Some(version))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST answered");
    read(r).await
}

/// `initialize` without a session; the raw answer.
async fn initialize(url: &str, who: Caller, version: &str) -> Raw {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "http-sessions-test", "version": "0.0.0"}}});
    let r = request(reqwest::Method::POST, url, who, None, None)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("initialize answered");
    read(r).await
}

/// A full handshake: initialize, then `notifications/initialized`; the session id.
async fn open(url: &str, who: Caller, version: &str) -> String {
    let r = initialize(url, who, version).await;
    assert_eq!(r.status, StatusCode::OK, "initialize: {}", r.body);
    let id = r.session();
    let n = post(
        url,
        who,
        Some(&id),
        version,
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

async fn tools_list(url: &str, who: Caller, session: &str, version: &str) -> Raw {
    post(
        url,
        who,
        Some(session),
        version,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}),
    )
    .await
}

async fn delete(url: &str, who: Caller, session: &str) -> Raw {
    let r = request(reqwest::Method::DELETE, url, who, Some(session), None)
        .send()
        .await
        .expect("DELETE answered");
    read(r).await
}

/// The JSON-RPC messages in an SSE body.
fn sse_messages(body: &str) -> Vec<Value> {
    sse_events(body)
        .into_iter()
        .filter(|data| !data.is_empty())
        .map(|data| serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}")))
        .collect()
}

/// The data of each SSE event (comments and keep-alives skipped).
fn sse_events(body: &str) -> Vec<String> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// An SSE event whose data is empty: the priming event.
fn has_priming(body: &str) -> bool {
    sse_events(body).iter().any(String::is_empty)
}

fn tools_of(raw: &Raw) -> usize {
    assert_eq!(raw.status, StatusCode::OK, "tools/list: {}", raw.body);
    let msgs = sse_messages(&raw.body);
    let result = msgs
        .iter()
        .find(|m| m["id"] == 2)
        .unwrap_or_else(|| panic!("no tools/list answer: {}", raw.body));
    result["result"]["tools"].as_array().expect("tools").len()
}

/// Opens the GET stream of a session and reads it for `window`.
async fn get_stream(
    url: &str,
    who: Caller,
    session: &str,
    window: Duration,
) -> (StatusCode, String) {
    let mut r = request(reqwest::Method::GET, url, who, Some(session), None)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("GET answered");
    let status = r.status();
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, r.chunk()).await {
        bytes.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn assert_session_limit_error(raw: &Raw, scope: &str) {
    assert_eq!(
        raw.headers.get("content-type").unwrap(),
        "application/json",
        "{}",
        raw.body
    );
    let v = raw.json();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 1, "the error answers the initialize: {v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("DELETE") && message.contains("Mcp-Session-Id"),
        "says how to free a session: {message}"
    );
    assert!(
        message.contains("stateless 2026-07-28"),
        "names the stateless revision: {message}"
    );
    assert_eq!(v["error"]["data"]["scope"], scope);
    assert!(!raw.body.contains(ALICE) && !raw.body.contains(BOB));
}

#[tokio::test]
async fn a_caller_at_its_session_cap_is_refused_cleanly_others_are_served_and_delete_frees_a_slot()
{
    let s = server(&["--max-sessions-per-caller", "3", "--max-sessions", "50"]).await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(open(&s.url, A, "2025-11-25").await);
    }
    let refused = initialize(&s.url, A, "2025-11-25").await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(refused.headers.get("mcp-session-id").is_none());
    assert_session_limit_error(&refused, "caller");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit is 3")
    );

    // Another caller is not affected, and the capped caller's sessions work.
    let bobs = open(&s.url, B, "2025-11-25").await;
    assert!(tools_of(&tools_list(&s.url, B, &bobs, "2025-11-25").await) > 0);
    assert!(tools_of(&tools_list(&s.url, A, &mine[0], "2025-11-25").await) > 0);

    // DELETE ends a session with 204 (not 202), frees its slot, and the
    // session is gone afterwards.
    let d = delete(&s.url, A, &mine[0]).await;
    assert!(
        matches!(d.status, StatusCode::OK | StatusCode::NO_CONTENT),
        "DELETE answered {}",
        d.status
    );
    let gone = tools_list(&s.url, A, &mine[0], "2025-11-25").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
    assert_eq!(
        delete(&s.url, A, &mine[0]).await.status,
        StatusCode::NOT_FOUND
    );
    open(&s.url, A, "2025-11-25").await;
    assert_eq!(
        initialize(&s.url, A, "2025-11-25").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(s.health().await["sessions"], 4);
    assert!(s.alive());
    s.stop().await;
}

#[tokio::test]
async fn the_server_wide_session_cap_answers_503_with_retry_after() {
    let s = server(&["--max-sessions-per-caller", "5", "--max-sessions", "2"]).await;
    let a = open(&s.url, A, "2025-11-25").await;
    open(&s.url, B, "2025-06-18").await;
    let refused = initialize(&s.url, B, "2025-11-25").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert!(refused.headers.get("retry-after").is_some());
    assert_session_limit_error(&refused, "server");
    // Stateless 2026-07-28 requests need no session and are still served.
    let discover = json!({"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}}}});
    let modern = request(reqwest::Method::POST, &s.url, B, None, Some("2026-07-28"))
        .header("Content-Type", "application/json")
        .header("Mcp-Method", "server/discover")
        .body(discover.to_string())
        .send()
        .await
        .expect("server/discover answered");
    let modern = read(modern).await;
    assert_eq!(modern.status, StatusCode::OK, "{}", modern.body);
    // A freed slot can be taken by anyone.
    assert!(delete(&s.url, A, &a).await.status.is_success());
    open(&s.url, B, "2025-11-25").await;
    s.stop().await;
}

#[tokio::test]
async fn another_callers_session_id_is_not_found_for_post_get_and_delete() {
    let s = server(&[]).await;
    let a = open(&s.url, A, "2025-11-25").await;

    let post_b = tools_list(&s.url, B, &a, "2025-11-25").await;
    assert_eq!(post_b.status, StatusCode::NOT_FOUND, "{}", post_b.body);
    let (get_b, _) = get_stream(&s.url, B, &a, Duration::from_millis(300)).await;
    assert_eq!(get_b, StatusCode::NOT_FOUND);
    let del_b = delete(&s.url, B, &a).await;
    assert_eq!(del_b.status, StatusCode::NOT_FOUND);
    // The same answer as for a session that never existed: no oracle.
    let unknown = tools_list(&s.url, B, "no-such-session", "2025-11-25").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body, post_b.body);

    // Alice's session is untouched.
    assert!(tools_of(&tools_list(&s.url, A, &a, "2025-11-25").await) > 0);
    let (get_a, _) = get_stream(&s.url, A, &a, Duration::from_millis(300)).await;
    assert_eq!(get_a, StatusCode::OK);
    assert!(delete(&s.url, A, &a).await.status.is_success());
    s.stop().await;
}

#[tokio::test]
async fn with_caller_keys_the_same_token_with_another_key_is_another_caller() {
    let s = server(&["--caller-keys"]).await;
    let k1 = Caller {
        token: ALICE,
        key: Some("caller-key-one-0123456789"),
    };
    let k2 = Caller {
        token: ALICE,
        key: Some("caller-key-two-0123456789"),
    };
    let no_key = Caller {
        token: ALICE,
        key: None,
    };
    let id = open(&s.url, k1, "2025-11-25").await;
    for other in [k2, no_key] {
        let r = tools_list(&s.url, other, &id, "2025-11-25").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        let (g, _) = get_stream(&s.url, other, &id, Duration::from_millis(300)).await;
        assert_eq!(g, StatusCode::NOT_FOUND);
        assert_eq!(
            delete(&s.url, other, &id).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert!(tools_of(&tools_list(&s.url, k1, &id, "2025-11-25").await) > 0);
    assert!(delete(&s.url, k1, &id).await.status.is_success());
    s.stop().await;
}

#[tokio::test]
async fn idle_sessions_expire_and_free_their_slots() {
    let s = server(&[
        "--max-sessions-per-caller",
        "2",
        "--session-idle-timeout",
        "1",
    ])
    .await;
    let first = open(&s.url, A, "2025-11-25").await;
    open(&s.url, A, "2025-11-25").await;
    assert_eq!(
        initialize(&s.url, A, "2025-11-25").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Both sessions expire after 1 s without a request.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.health().await["sessions"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = tools_list(&s.url, A, &first, "2025-11-25").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    open(&s.url, A, "2025-11-25").await;
    open(&s.url, A, "2025-11-25").await;
    s.stop().await;
}

#[tokio::test]
async fn the_priming_event_is_sent_only_to_revisions_that_define_it() {
    let s = server(&[]).await;
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let expect = version == "2025-11-25";
        let init = initialize(&s.url, A, version).await;
        assert_eq!(init.status, StatusCode::OK, "{version}: {}", init.body);
        let negotiated = &sse_messages(&init.body)[0]["result"]["protocolVersion"];
        assert_eq!(negotiated, version, "{}", init.body);
        assert_eq!(
            has_priming(&init.body),
            expect,
            "{version} initialize: {:?}",
            init.body
        );
        if expect {
            assert!(
                init.body.starts_with("data: \nid: 0\nretry: 3000\n\n"),
                "{:?}",
                init.body
            );
        }
        let id = init.session();
        post(
            &s.url,
            A,
            Some(&id),
            version,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        let list = tools_list(&s.url, A, &id, version).await;
        assert!(tools_of(&list) > 0);
        assert_eq!(
            has_priming(&list.body),
            expect,
            "{version} tools/list: {:?}",
            list.body
        );
        // Every data line of an older revision's stream is JSON.
        if !expect {
            for data in sse_events(&list.body).iter().chain(&sse_events(&init.body)) {
                serde_json::from_str::<Value>(data)
                    .unwrap_or_else(|e| panic!("{version}: data {data:?} is not JSON: {e}"));
            }
        }
        let (status, stream) = get_stream(&s.url, A, &id, Duration::from_millis(700)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(has_priming(&stream), expect, "{version} GET: {stream:?}");
        assert!(delete(&s.url, A, &id).await.status.is_success());
    }
    s.stop().await;
}

/// Over stdio, raw JSON lines: every progress notification of a waiting status
/// call, the last one at 100, precedes the call's result, and none follows it.
#[tokio::test]
async fn the_final_progress_update_precedes_the_result() {
    let spec = Spawn::new(BIN)
        .args([
            "--simulate",
            "--simulate-render-seconds",
            "1.5",
            "--poll-interval",
            "0.2",
            "--progress-heartbeat",
            "0.5",
        ])
        .log("warn");
    let child = StdioServer::legacy(&spec).await;
    let created = child
        .call(
            "create_video",
            json!({"prompt": format!("Progress ordering {}", harness::nonce())}),
            STEP,
        )
        .await
        .unwrap();
    let task_id = created["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let r = child
        .request(
            "tools/call",
            json!({"name": "get_video_status",
                   "arguments": {"task_id": task_id, "wait_seconds": 30},
                   "_meta": {"progressToken": "ordering-token"}}),
            Duration::from_secs(45),
        )
        .await
        .unwrap();
    assert_eq!(
        r["result"]["structuredContent"]["status"], "completed",
        "{r}"
    );
    let result_id = r["id"].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines: Vec<Value> = child
        .stdout
        .snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let is_mine = |m: &Value| {
        m["method"] == "notifications/progress" && m["params"]["progressToken"] == "ordering-token"
    };
    let result_at = lines
        .iter()
        .position(|m| m["id"] == result_id && m.get("result").is_some())
        .expect("the result line");
    let progress: Vec<usize> = (0..lines.len()).filter(|&i| is_mine(&lines[i])).collect();
    assert!(progress.len() >= 2, "{lines:?}");
    let last = *progress.last().unwrap();
    assert!(
        last < result_at,
        "a progress update after the result: {lines:?}"
    );
    assert_eq!(lines[last]["params"]["progress"], 100.0);
    child.close().await;
}

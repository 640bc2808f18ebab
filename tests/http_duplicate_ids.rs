//! Every request gets an answer over legacy (2025-11-25) Streamable HTTP
//! sessions, also when a client reuses the JSON-RPC id of a request still in
//! flight in the same session: the duplicate is refused at once with a
//! JSON-RPC error, the first request still gets its result, the id is free
//! again once the first is answered (also when its client went away), other
//! sessions may use the same id meanwhile, and a batch body is refused with a
//! clear error. Raw HTTP with reqwest against the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::{HttpServer, Spawn, loopback_client};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
const VERSION: &str = "2025-11-25";
/// Bound of every single HTTP exchange in these tests.
const STEP: Duration = Duration::from_secs(8);

async fn server() -> HttpServer {
    // Renders never finish during a test, so a status wait runs its full length.
    let spec = Spawn::new(BIN)
        .args(["--simulate", "--simulate-render-seconds", "600"])
        .log("warn");
    HttpServer::spawn(&spec).await
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
    session: Option<String>,
}

impl Answer {
    /// The JSON-RPC messages of the body (one JSON object or an SSE stream).
    fn messages(&self) -> Vec<Value> {
        if self.content_type.starts_with("application/json") {
            return vec![
                serde_json::from_str(&self.body)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body)),
            ];
        }
        self.body
            .replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .filter(|d| !d.is_empty())
            .map(|d| serde_json::from_str(&d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect()
    }

    /// The one answer to the request with `id`.
    fn answer_to(&self, id: &Value) -> Value {
        let found: Vec<Value> = self
            .messages()
            .into_iter()
            .filter(|m| &m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one answer to id {id} expected: {} {}",
            self.status,
            self.body
        );
        found.into_iter().next().unwrap()
    }
}

fn post_builder(url: &str, session: Option<&str>, body: String) -> reqwest::RequestBuilder {
    let mut rb = loopback_client()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .header("MCP-Protocol-Version", VERSION)
        .timeout(STEP)
        .body(body);
    if let Some(s) = session {
        rb = rb.header("Mcp-Session-Id", s);
    }
    rb
}

/// POSTs `body`; the whole answer (the body read to its end within [`STEP`]).
async fn post(url: &str, session: Option<&str>, body: String) -> Answer {
    let r = post_builder(url, session, body)
        .send()
        .await
        .expect("POST answered");
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let session = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r
        .text()
        .await
        .expect("the response body ends within the bound");
    Answer {
        status,
        content_type,
        body,
        session,
    }
}

async fn post_json(url: &str, session: Option<&str>, body: Value) -> Answer {
    post(url, session, body.to_string()).await
}

/// A full 2025-11-25 handshake; the session id.
async fn open(url: &str) -> String {
    let init = post_json(
        url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {},
            "clientInfo": {"name": "http-duplicate-ids-test", "version": "0.0.0"}}}),
    )
    .await;
    assert_eq!(init.status, StatusCode::OK, "initialize: {}", init.body);
    let session = init.session.expect("a session id");
    let n = post_json(
        url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(
        n.status.is_success(),
        "initialized: {} {}",
        n.status,
        n.body
    );
    session
}

/// A video task that stays in progress for the whole test.
async fn create_task(url: &str, session: &str) -> String {
    let a = post_json(
        url,
        Some(session),
        json!({"jsonrpc": "2.0", "id": "create", "method": "tools/call", "params": {
            "name": "create_video",
            "arguments": {"prompt": "A presenter explains request ids in one minute"}}}),
    )
    .await;
    let answer = a.answer_to(&json!("create"));
    answer["result"]["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("create_video failed: {answer}"))
        .to_string()
}

/// A `get_video_status` call that waits `wait` seconds, with JSON-RPC id `id`.
fn wait_call(id: &Value, task: &str, wait: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "get_video_status", "arguments": {"task_id": task, "wait_seconds": wait}}})
    .to_string()
}

fn assert_result(answer: &Value) {
    assert!(
        answer["result"]["structuredContent"].is_object(),
        "a result expected: {answer}"
    );
}

fn assert_duplicate_refusal(a: &Answer, id: &Value) {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.content_type.starts_with("application/json"),
        "{} {}",
        a.content_type,
        a.body
    );
    let answer = a.answer_to(id);
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let msg = answer["error"]["message"].as_str().unwrap_or_default();
    let shown = id.to_string();
    assert!(
        msg.contains("already in flight in this session") && msg.contains(&shown),
        "{answer}"
    );
}

/// Two concurrent POSTs in one session with the same id: both are answered
/// within the bound (the duplicate at once, with a JSON-RPC error naming the
/// id; the first with its result), and the id can be used again afterwards.
#[tokio::test]
async fn a_duplicate_id_in_one_session_is_refused_and_the_first_still_answered() {
    let s = server().await;
    let session = open(&s.url).await;
    let task = create_task(&s.url, &session).await;
    let id = json!(7);

    let first = tokio::spawn({
        let (url, session, body) = (s.url.clone(), session.clone(), wait_call(&id, &task, 3));
        async move {
            let a = post(&url, Some(&session), body).await;
            (a, Instant::now())
        }
    });
    // Let the first request reach the server and start waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = post(&s.url, Some(&session), wait_call(&id, &task, 3)).await;
    let second_done = Instant::now();
    assert_duplicate_refusal(&second, &id);

    let (first, first_done) = tokio::time::timeout(STEP, first)
        .await
        .expect("the first request is answered within the bound")
        .expect("the first request's task");
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_result(&first.answer_to(&id));
    assert!(
        second_done < first_done,
        "the duplicate was refused only after the first request ended"
    );

    // Once the first is answered the id is free again.
    let again = post(&s.url, Some(&session), wait_call(&id, &task, 0)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_result(&again.answer_to(&id));

    // A string id that looks like the number is another id.
    let text = post(&s.url, Some(&session), wait_call(&json!("7"), &task, 0)).await;
    assert_result(&text.answer_to(&json!("7")));
    s.stop().await;
}

/// Different sessions may use the same id at the same time.
#[tokio::test]
async fn different_sessions_may_use_the_same_id_at_once() {
    let s = server().await;
    let one = open(&s.url).await;
    let two = open(&s.url).await;
    let task = create_task(&s.url, &one).await;
    let id = json!("same");
    let calls = [one, two].map(|session| {
        let (url, body) = (s.url.clone(), wait_call(&id, &task, 2));
        tokio::spawn(async move { post(&url, Some(&session), body).await })
    });
    for call in calls {
        let a = tokio::time::timeout(STEP, call)
            .await
            .expect("answered within the bound")
            .expect("the request's task");
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_result(&a.answer_to(&id));
    }
    s.stop().await;
}

/// A client that goes away does not make the server forget its request: the
/// call still runs, so its id stays taken until the call is answered (its
/// answer would otherwise land on the next request with that id), and is free
/// again afterwards; nothing stays behind.
#[tokio::test]
async fn an_abandoned_request_keeps_its_id_until_answered_then_frees_it() {
    let s = server().await;
    let session = open(&s.url).await;
    let task = create_task(&s.url, &session).await;
    let id = json!(9);

    let started = Instant::now();
    let abandoned = post_builder(&s.url, Some(&session), wait_call(&id, &task, 3))
        .timeout(Duration::from_millis(600))
        .send()
        .await;
    if let Ok(r) = abandoned {
        // Headers came in time: abandon the body instead.
        let _ = tokio::time::timeout(Duration::from_millis(300), r.text()).await;
    }

    let refused = post(&s.url, Some(&session), wait_call(&id, &task, 0)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the check came too late to see the call running"
    );
    assert_duplicate_refusal(&refused, &id);

    // Once the abandoned call has been answered, the id is free again.
    let deadline = Instant::now() + STEP;
    loop {
        let a = post(&s.url, Some(&session), wait_call(&id, &task, 0)).await;
        let answer = a.answer_to(&id);
        if answer.get("result").is_some() {
            assert_result(&answer);
            assert!(
                started.elapsed() >= Duration::from_millis(2500),
                "the id was freed before the abandoned call ended"
            );
            break;
        }
        assert_duplicate_refusal(&a, &id);
        assert!(Instant::now() < deadline, "the id was never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}

/// A JSON array (a batch, not part of 2025-11-25) is refused with a clear
/// error, and the session goes on.
#[tokio::test]
async fn a_batch_body_is_refused_clearly_and_the_session_goes_on() {
    let s = server().await;
    let session = open(&s.url).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 20, "method": "ping"},
        {"jsonrpc": "2.0", "id": 21, "method": "ping"},
    ]);
    let a = post_json(&s.url, Some(&session), batch).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.content_type.starts_with("application/json"), "{}", a.body);
    let answer = a.answer_to(&Value::Null);
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let msg = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("batch"), "{answer}");

    let ping = post_json(
        &s.url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 22, "method": "ping"}),
    )
    .await;
    assert!(
        ping.answer_to(&json!(22))["result"].is_object(),
        "{}",
        ping.body
    );
    s.stop().await;
}

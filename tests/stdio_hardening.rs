//! Stdio under a misbehaving client, driven over real pipes with raw JSON-RPC
//! lines the test writes and reads itself: a client that floods requests
//! without reading its answers is held back by the pipe (the server's memory
//! stays bounded) and gets every answer once it reads; two requests with one
//! id in flight both get an answer; a request whose id cannot be represented
//! gets an error answer; and after each the session goes on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::{collections::HashMap, process::Stdio, time::Duration};

use harness::Spawn;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout},
    task::JoinHandle,
    time::{Instant, timeout},
};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
/// Bound on the server's peak resident memory under a flood.
const PEAK_BOUND_KIB: u64 = 64 * 1024;
/// Bound on how far the peak may grow over the peak right after start-up
/// (the answers in flight, a few MB, plus allocator slack).
const GROWTH_BOUND_KIB: u64 = 24 * 1024;

/// The server child on raw pipes: nothing reads stdout unless the test does.
struct Raw {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    _home: tempfile::TempDir,
}

impl Raw {
    /// Spawned with `--simulate` (videos render in `render_seconds`) and
    /// initialised with the 2025-11-25 handshake.
    async fn start(render_seconds: u32) -> Self {
        let home = tempfile::tempdir().expect("temporary home");
        let spec = Spawn::new(BIN).log("warn").args([
            "--simulate".to_string(),
            "--simulate-render-seconds".to_string(),
            render_seconds.to_string(),
        ]);
        let mut cmd = spec.command(home.path());
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the server");
        let pid = child.id().expect("child pid");
        // Drain stderr so logging can never block the child.
        let mut stderr = child.stderr.take().expect("stderr piped");
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = stderr.read_to_end(&mut sink).await;
        });
        let mut raw = Self {
            pid,
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("stdout piped")),
            child,
            _home: home,
        };
        raw.send(
            json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "stdio-hardening", "version": "0.0.0"}}}),
        )
        .await;
        let init = raw
            .next(Duration::from_secs(30))
            .await
            .expect("initialize answered");
        assert!(init["result"].is_object(), "initialize failed: {init}");
        raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        raw
    }

    async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still held by the test");
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        timeout(Duration::from_secs(30), stdin.write_all(&bytes))
            .await
            .expect("the server reads stdin")
            .expect("write to the server");
    }

    async fn send(&mut self, msg: Value) {
        self.send_line(&msg.to_string()).await;
    }

    /// The next stdout line as JSON, or `None` on timeout / end of stream.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        let mut line = String::new();
        match timeout(wait, self.stdout.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}")),
            ),
            _ => None,
        }
    }

    /// Every stdout message within `wait`.
    async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let end = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(v) = self
            .next(end.saturating_duration_since(Instant::now()))
            .await
        {
            out.push(v);
        }
        out
    }

    /// Sends a ping with `id` and waits for its answer (skipping other lines).
    async fn ping_ok(&mut self, id: &str) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}))
            .await;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let msg = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("ping {id} got no answer"));
            if msg["id"] == id {
                assert!(msg["result"].is_object(), "ping {id} failed: {msg}");
                return;
            }
        }
    }

    /// Creates a simulated video and returns its task id.
    async fn create_video(&mut self) -> String {
        self.send(
            json!({"jsonrpc": "2.0", "id": "create", "method": "tools/call", "params": {
            "name": "create_video",
            "arguments": {"prompt": "A presenter explains backpressure in one minute"}}}),
        )
        .await;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let msg = self.next(left).await.expect("create_video answered");
            if msg["id"] == "create" {
                let id = msg["result"]["structuredContent"]["task_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("create_video failed: {msg}"));
                return id.to_string();
            }
        }
    }

    async fn close(mut self) {
        drop(self.stdin.take());
        if timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(target_os = "linux")]
fn hwm_kib(pid: u32) -> u64 {
    harness::hwm_kib(pid).expect("VmHWM of the child")
}

/// Writes `count` tools/list requests (ids 1..=count) on a task of its own,
/// which hands stdin back once every byte is written.
fn flood(stdin: ChildStdin, count: i64) -> JoinHandle<ChildStdin> {
    tokio::spawn(async move {
        let mut stdin = stdin;
        let mut batch = Vec::new();
        for id in 1..=count {
            batch.extend_from_slice(
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
                    .to_string()
                    .as_bytes(),
            );
            batch.push(b'\n');
            if batch.len() > 16 * 1024 || id == count {
                stdin.write_all(&batch).await.expect("write the flood");
                batch.clear();
            }
        }
        stdin.flush().await.expect("flush the flood");
        stdin
    })
}

/// Reads until every id in 1..=count has an answer; each must be a result
/// and arrive exactly once.
async fn read_answers(raw: &mut Raw, count: i64, wait: Duration) {
    #[derive(serde::Deserialize)]
    struct Head {
        id: Option<Value>,
        result: Option<serde::de::IgnoredAny>,
    }
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let end = Instant::now() + wait;
    let mut line = String::new();
    while seen.len() < count as usize {
        line.clear();
        let left = end.saturating_duration_since(Instant::now());
        let n = timeout(left, raw.stdout.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} answers arrived", seen.len()))
            .expect("read stdout");
        assert!(n > 0, "stdout ended after {} answers", seen.len());
        let head: Head = serde_json::from_str(&line).expect("answer is JSON");
        let id = head
            .id
            .and_then(|v| v.as_i64())
            .unwrap_or_else(|| panic!("answer without a numeric id: {line:.300}"));
        assert!(head.result.is_some(), "tools/list {id} failed: {line:.300}");
        *seen.entry(id).or_default() += 1;
        assert_eq!(seen[&id], 1, "id {id} answered twice");
    }
    assert!((1..=count).all(|id| seen.contains_key(&id)));
}

/// A client writes requests worth about 70 MB of answers without reading:
/// the server stops reading (the client's writes block), its peak memory
/// stays bounded, and once the client reads, every request is answered
/// exactly once and the session goes on.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_flood_is_held_back_and_then_answered() {
    const COUNT: i64 = 3_000;
    let mut raw = Raw::start(1).await;
    let idle = hwm_kib(raw.pid);
    let writer = flood(raw.stdin.take().expect("stdin"), COUNT);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = hwm_kib(raw.pid);
    assert!(
        !writer.is_finished(),
        "the server read all {COUNT} requests while none of its answers were read"
    );
    assert!(
        peak < PEAK_BOUND_KIB,
        "peak memory {peak} KiB under an unread flood (bound {PEAK_BOUND_KIB} KiB)"
    );
    assert!(
        peak < idle + GROWTH_BOUND_KIB,
        "peak memory grew from {idle} KiB to {peak} KiB under an unread flood"
    );

    read_answers(&mut raw, COUNT, Duration::from_secs(240)).await;
    raw.stdin = Some(
        timeout(Duration::from_secs(30), writer)
            .await
            .expect("the flood is fully written once answers are read")
            .expect("flood task"),
    );
    raw.ping_ok("fresh").await;
    let peak = hwm_kib(raw.pid);
    assert!(
        peak < PEAK_BOUND_KIB,
        "peak memory {peak} KiB after the flood (bound {PEAK_BOUND_KIB} KiB)"
    );
    raw.close().await;
}

/// The heavier measurement: 60,000 unread tools/list requests (about 1.3 GB
/// of answers). Prints the peak; run with `--ignored --nocapture`.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: about 1.3 GB through the pipe"]
async fn heavy_unread_flood_peak() {
    const COUNT: i64 = 60_000;
    let mut raw = Raw::start(1).await;
    let idle = hwm_kib(raw.pid);
    let writer = flood(raw.stdin.take().expect("stdin"), COUNT);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let flooded = hwm_kib(raw.pid);
    read_answers(&mut raw, COUNT, Duration::from_secs(1200)).await;
    raw.stdin = Some(writer.await.expect("flood task"));
    raw.ping_ok("fresh").await;
    let after = hwm_kib(raw.pid);
    println!(
        "VmHWM idle {idle} KiB, after 5 s of unread flood {flooded} KiB, after all {COUNT} answers {after} KiB"
    );
    assert!(after < PEAK_BOUND_KIB, "peak {after} KiB");
    raw.close().await;
}

/// Two get_video_status waits with the same id in flight: both are answered
/// (the second is refused at once with a JSON-RPC error naming the id), the
/// first still gets its result, and the id can be used again afterwards.
#[tokio::test]
async fn duplicate_in_flight_id_gets_two_answers() {
    let mut raw = Raw::start(60).await;
    let task_id = raw.create_video().await;
    let slow = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "get_video_status", "arguments": {"task_id": task_id, "wait_seconds": 3}}});
    raw.send(slow.clone()).await;
    raw.send(slow.clone()).await;

    let answers: Vec<Value> = raw
        .drain(Duration::from_secs(10))
        .await
        .into_iter()
        .filter(|m| m["id"] == 7)
        .collect();
    assert_eq!(
        answers.len(),
        2,
        "two requests with id 7, answers: {answers:?}"
    );
    let results = answers.iter().filter(|m| m["result"].is_object()).count();
    assert!(
        results >= 1,
        "the first request lost its result: {answers:?}"
    );
    for a in answers.iter().filter(|m| m.get("error").is_some()) {
        assert_eq!(a["error"]["code"], -32600, "{a}");
        let msg = a["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("already in flight") && msg.contains('7'),
            "{a}"
        );
    }

    // Once answered, the id is free again.
    raw.send(slow).await;
    let again: Vec<Value> = raw
        .drain(Duration::from_secs(10))
        .await
        .into_iter()
        .filter(|m| m["id"] == 7)
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0]["result"].is_object(), "{again:?}");
    raw.ping_ok("after-duplicate").await;
    raw.close().await;
}

/// Requests whose id is neither an integer nor a string get a JSON-RPC
/// Invalid Request answer without an id (MCP omits the id it cannot read);
/// the next request is answered as usual.
#[tokio::test]
async fn unrepresentable_ids_get_an_error_answer() {
    let mut raw = Raw::start(1).await;
    let lines = [
        r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1e300,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":true,"method":"tools/list"}"#,
    ];
    for (n, line) in lines.iter().enumerate() {
        raw.send_line(line).await;
        let answer = raw
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no answer to {line}"));
        assert_eq!(answer["error"]["code"], -32600, "{line} -> {answer}");
        assert!(
            answer.get("id").is_none_or(Value::is_null),
            "{line} -> {answer}"
        );
        raw.ping_ok(&format!("good-{n}")).await;
    }
    raw.close().await;
}

/// Cancelled requests stop counting as in flight: two waves of long waits,
/// each under the in-flight bound but together over it, the first cancelled
/// before the second starts; a ping after the second wave is answered at once,
/// not once the cancelled waits would have run out.
#[tokio::test]
async fn cancelled_requests_free_their_slots() {
    const WAVE: i64 = 50;
    let mut raw = Raw::start(300).await;
    let task_id = raw.create_video().await;
    let wait = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "get_video_status", "arguments": {"task_id": task_id, "wait_seconds": 45}}})
    };
    for id in 1..=WAVE {
        raw.send(wait(id)).await;
    }
    for id in 1..=WAVE {
        raw.send(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": "test"}}),
        )
        .await;
    }
    for id in WAVE + 1..=2 * WAVE {
        raw.send(wait(id)).await;
    }
    // Answered well inside the 45 s waits.
    raw.ping_ok("after-cancel").await;
    raw.close().await;
}

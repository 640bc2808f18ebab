//! `--dedupe-window 0` turns off exactly one thing: answering identical
//! arguments *later* (after the first create finished) with the earlier video.
//! Two protections hold for every window, 0 included: identical calls racing
//! each other across processes sharing a ledger make one video, and a create
//! that a crash interrupted after the upstream got it is not repeated blindly.
//!
//! The upstream is a plain HTTP fake (wiremock) on loopback that counts the
//! creates it receives; the servers are the built binary over stdio.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{method, path, path_regex},
};

/// A fake task API: every create answers after `delay` with a new task id
/// (`task-zero-N`); every lookup says the task is pending.
async fn upstream(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let n = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(move |_: &Request| {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(200)
                .set_delay(delay)
                .set_body_json(json!({
                    "id": format!("task-zero-{i}"),
                    "status": "pending",
                    "progress": 0,
                    "created": 1757165031
                }))
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/v1/tasks/task-zero-[0-9]+$"))
        .respond_with(|req: &Request| {
            let id = req
                .url
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "status": "pending", "progress": 0, "created": 1757165031
            }))
        })
        .mount(&server)
        .await;
    server
}

async fn posts(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
}

fn opts(server: &MockServer, ledger: &std::path::Path) -> ServerOpts {
    ServerOpts {
        api_base: Some(server.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    }
    .arg("--dedupe-window")
    .arg("0")
    .ledger(ledger)
}

fn reused(r: &Value) -> bool {
    expect_ok(r).get("reused") == Some(&json!(true))
}

#[tokio::test]
async fn identical_calls_racing_across_two_processes_buy_one_video_with_window_zero() {
    let server = upstream(Duration::from_millis(1500)).await;
    let shared = TestHome::new();
    let ledger = shared.path().join("shared-ledger.sqlite3");
    let one = McpChild::legacy(opts(&server, &ledger)).await;
    let two = McpChild::legacy(opts(&server, &ledger)).await;
    let args = json!({"prompt": "Two windows, one moment, window zero"});
    let (a, b) = tokio::join!(
        one.call("create_video", args.clone()),
        two.call("create_video", args.clone()),
    );
    let bought = posts(&server).await;
    assert_eq!(
        bought, 1,
        "racing identical calls bought {bought} videos\n{a}\n{b}"
    );
    assert_eq!(task_id_of(&a), task_id_of(&b));
    assert!(
        reused(&a) != reused(&b),
        "exactly one is the original\n{a}\n{b}"
    );
    let follower = if reused(&a) { &a } else { &b };
    assert!(result_text(follower).contains("same moment"), "{follower}");
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn with_window_zero_the_same_call_after_the_first_finished_buys_again() {
    let server = upstream(Duration::ZERO).await;
    let home = TestHome::new();
    let c = McpChild::legacy(opts(&server, &home.ledger())).await;
    let args = json!({"prompt": "Window zero means a new take each time"});
    let first = c.call("create_video", args.clone()).await;
    let second = c.call("create_video", args.clone()).await;
    assert_ne!(task_id_of(&first), task_id_of(&second));
    assert!(!reused(&first) && !reused(&second), "{first}\n{second}");
    assert_eq!(posts(&server).await, 2);
    c.shutdown().await;
}

/// A server killed (SIGKILL) while the upstream holds its create: the
/// restarted server, with the same ledger and window 0, does not send the
/// same create again; it says the earlier call may have created the video,
/// how to check, and how to make a new one deliberately.
#[cfg(unix)]
#[tokio::test]
async fn a_create_interrupted_by_a_crash_is_not_repeated_with_window_zero() {
    let server = upstream(Duration::from_secs(20)).await;
    let shared = TestHome::new();
    let ledger = shared.path().join("shared-ledger.sqlite3");
    let args = json!({"prompt": "Crash while buying"});

    let (mut doomed, _) = RawChild::legacy(opts(&server, &ledger)).await;
    doomed
        .send(&json!({"jsonrpc": "2.0", "id": 99, "method": "tools/call",
                        "params": {"name": "create_video", "arguments": args}}))
        .await;
    let deadline = Instant::now() + DEADLINE;
    while posts(&server).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the create never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill().await;

    let restarted = McpChild::legacy(opts(&server, &ledger)).await;
    let started = Instant::now();
    let r = restarted.call("create_video", args.clone()).await;
    let text = expect_tool_error(&r);
    assert_eq!(
        posts(&server).await,
        1,
        "the interrupted create was sent again: {text}"
    );
    assert!(text.contains("may"), "{text}");
    assert!(text.contains("created"), "{text}");
    assert!(text.contains("list_videos"), "{text}");
    assert!(text.contains("get_video_status"), "{text}");
    assert!(text.contains("new idempotency_key"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "answered within the heartbeat grace, not after the stale limit"
    );
    // Asked again, the same answer, still without an upstream call.
    let again = expect_tool_error(&restarted.call("create_video", args).await);
    assert!(again.contains("list_videos"), "{again}");
    assert_eq!(posts(&server).await, 1);
    restarted.shutdown().await;
}

//! Never pay twice, end to end: the built binary over stdio against the
//! in-process simulator, counting the creates that reach the upstream.
//! Idempotency keys, the dedupe window (and its end), concurrent identical
//! calls in one process and across two processes sharing a ledger, failed
//! tasks that must not be reused, and ambiguous failures that block a blind
//! retry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use heygen_video_mcp::simulator::Simulator;
use serde_json::{Value, json};

async fn child(sim: &Simulator, args: &[&str]) -> McpChild {
    let mut opts = ServerOpts::for_sim(sim);
    for a in args {
        opts = opts.arg(*a);
    }
    McpChild::legacy(opts).await
}

fn creates(sim: &Simulator) -> u64 {
    sim.state.count("create")
}

fn reused(r: &Value) -> bool {
    expect_ok(r).get("reused") == Some(&json!(true))
}

#[tokio::test]
async fn the_same_idempotency_key_twice_creates_one_video() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let args = json!({"prompt": "Quarterly update [after:30]", "idempotency_key": "q3-update"});

    let first = c.call("create_video", args.clone()).await;
    let id = task_id_of(&first);
    assert!(!reused(&first), "{first}");
    assert_eq!(expect_ok(&first)["idempotency_key"], "q3-update");
    let again = c.call("create_video", args.clone()).await;
    assert_eq!(task_id_of(&again), id);
    assert!(reused(&again), "{again}");
    let text = result_text(&again);
    assert!(text.contains("Not created again"), "{text}");
    assert!(text.contains("q3-update"), "{text}");
    assert_eq!(
        creates(&sim),
        1,
        "a repeated key must not reach the upstream"
    );
    assert_video_task_shape(structured(&again));

    // The same key for other arguments is refused, without an upstream call.
    let other = c
        .call(
            "create_video",
            json!({"prompt": "Something else", "idempotency_key": "q3-update"}),
        )
        .await;
    let text = expect_tool_error(&other);
    assert!(text.contains("different request"), "{text}");
    assert!(text.contains(&id), "{text}");
    assert_eq!(creates(&sim), 1);

    // A new key deliberately makes another take with the same arguments.
    let take2 = c
        .call(
            "create_video",
            json!({"prompt": "Quarterly update [after:30]", "idempotency_key": "q3-update-take-2"}),
        )
        .await;
    assert_ne!(task_id_of(&take2), id);
    assert!(!reused(&take2));
    assert_eq!(creates(&sim), 2);

    // A malformed key is refused before anything is sent.
    let bad = c
        .call(
            "create_video",
            json!({"prompt": "x", "idempotency_key": "no spaces please"}),
        )
        .await;
    assert!(expect_tool_error(&bad).contains("idempotency_key"));
    assert_eq!(creates(&sim), 2);
    c.shutdown().await;
}

#[tokio::test]
async fn identical_arguments_within_the_window_create_one_video() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let args = json!({"prompt": "A product demo [after:30]", "orientation": "portrait"});
    let first = task_id_of(&c.call("create_video", args.clone()).await);
    let again = c.call("create_video", args.clone()).await;
    assert_eq!(task_id_of(&again), first);
    assert!(reused(&again), "{again}");
    let text = result_text(&again);
    assert!(text.contains("identical create_video request"), "{text}");
    // The text says how to ask for a deliberate second take.
    assert!(text.contains("new idempotency_key"), "{text}");
    assert_eq!(creates(&sim), 1);

    // Differences in whitespace only are the same request...
    let spaced = c
        .call(
            "create_video",
            json!({"prompt": "A product  demo\n[after:30] ", "orientation": "portrait"}),
        )
        .await;
    assert_eq!(task_id_of(&spaced), first);
    assert_eq!(creates(&sim), 1);
    // ...other arguments are not.
    let landscape = c
        .call(
            "create_video",
            json!({"prompt": "A product demo [after:30]", "orientation": "landscape"}),
        )
        .await;
    assert_ne!(task_id_of(&landscape), first);
    assert_eq!(creates(&sim), 2);
    c.shutdown().await;
}

#[tokio::test]
async fn identical_arguments_after_the_window_create_again() {
    let sim = start_sim().await;
    let c = child(&sim, &["--dedupe-window", "0.5"]).await;
    let args = json!({"prompt": "Window test [after:30]"});
    let first = task_id_of(&c.call("create_video", args.clone()).await);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let second = c.call("create_video", args.clone()).await;
    assert_ne!(task_id_of(&second), first);
    assert!(!reused(&second));
    assert_eq!(creates(&sim), 2);
    c.shutdown().await;
}

#[tokio::test]
async fn concurrent_identical_calls_create_one_video() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    // [slow:1]: the upstream answers after a second, so the calls overlap.
    let args = json!({"prompt": "Racing calls [slow:1] [after:30]"});
    let (a, b, d) = tokio::join!(
        c.call("create_video", args.clone()),
        c.call("create_video", args.clone()),
        c.call("create_video", args.clone()),
    );
    let ids: Vec<String> = [&a, &b, &d].iter().map(|r| task_id_of(r)).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(creates(&sim), 1, "three racing calls, one upstream create");
    let reused_count = [&a, &b, &d].iter().filter(|r| reused(r)).count();
    assert_eq!(reused_count, 2, "{a}\n{b}\n{d}");
    c.shutdown().await;
}

#[tokio::test]
async fn concurrent_identical_calls_in_two_processes_create_one_video() {
    let sim = start_sim().await;
    let shared = TestHome::new();
    let ledger = shared.path().join("shared-ledger.sqlite3");
    let one = McpChild::legacy(ServerOpts::for_sim(&sim).ledger(&ledger)).await;
    let two = McpChild::legacy(ServerOpts::for_sim(&sim).ledger(&ledger)).await;
    let args = json!({"prompt": "Two windows [slow:1] [after:30]"});
    let (a, b) = tokio::join!(
        one.call("create_video", args.clone()),
        two.call("create_video", args.clone()),
    );
    assert_eq!(task_id_of(&a), task_id_of(&b));
    assert_eq!(creates(&sim), 1, "the shared ledger lets only one through");
    assert!(reused(&a) != reused(&b), "exactly one is the original");
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn failed_videos_are_not_reused() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let args = json!({"prompt": "Doomed [fail] [after:0.2]"});
    let first = task_id_of(&c.call("create_video", args.clone()).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The ledger still thinks it is pending: the server re-checks, sees it
    // failed, and creates anew.
    let second = c.call("create_video", args.clone()).await;
    assert_ne!(task_id_of(&second), first);
    assert!(!reused(&second));
    assert_eq!(creates(&sim), 2);
    c.shutdown().await;
}

#[tokio::test]
async fn an_ambiguous_failure_blocks_a_blind_retry() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    // [500]: the upstream answered 500, so the video may exist.
    let args = json!({"prompt": "Flaky gateway [500]"});
    let first = expect_tool_error(&c.call("create_video", args.clone()).await);
    assert!(first.contains("may already have been created"), "{first}");
    assert!(first.contains("recorded"), "{first}");
    assert_eq!(creates(&sim), 1);

    let again = expect_tool_error(&c.call("create_video", args.clone()).await);
    assert!(again.contains("Not sent"), "{again}");
    assert!(again.contains("list_videos"), "{again}");
    assert!(again.contains("new idempotency_key"), "{again}");
    assert_eq!(
        creates(&sim),
        1,
        "a blind retry must not reach the upstream"
    );

    // list_videos shows it as unconfirmed.
    let list = c.call("list_videos", json!({})).await;
    let sc = expect_ok(&list);
    assert_eq!(sc["unconfirmed"].as_array().unwrap().len(), 1, "{sc}");
    assert_eq!(sc["unconfirmed"][0]["state"], "maybe_created");

    // A new key is a deliberate decision: it is sent.
    let deliberate = c
        .call(
            "create_video",
            json!({"prompt": "Flaky gateway [500]", "idempotency_key": "retry-1"}),
        )
        .await;
    expect_tool_error(&deliberate);
    assert_eq!(creates(&sim), 2);
    // And that key is now itself blocked.
    let blocked = c
        .call(
            "create_video",
            json!({"prompt": "Flaky gateway [500]", "idempotency_key": "retry-1"}),
        )
        .await;
    assert!(expect_tool_error(&blocked).contains("Not sent"));
    assert_eq!(creates(&sim), 2);
    c.shutdown().await;
}

#[tokio::test]
async fn a_provable_failure_does_not_block_a_retry() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    // 402: the gateway refused it; nothing was created.
    let args = json!({"prompt": "No money [402]"});
    expect_tool_error(&c.call("create_video", args.clone()).await);
    expect_tool_error(&c.call("create_video", args.clone()).await);
    assert_eq!(creates(&sim), 2, "a refused create may be tried again");
    c.shutdown().await;
}

#[tokio::test]
async fn without_a_ledger_only_simultaneous_calls_collapse() {
    let sim = start_sim().await;
    let c = child(&sim, &["--no-ledger"]).await;
    let args = json!({"prompt": "No ledger [slow:1] [after:30]"});
    let (a, b) = tokio::join!(
        c.call("create_video", args.clone()),
        c.call("create_video", args.clone()),
    );
    assert_eq!(task_id_of(&a), task_id_of(&b));
    assert_eq!(creates(&sim), 1);
    // Sequential repeats are not remembered without a ledger.
    c.call("create_video", args.clone()).await;
    assert_eq!(creates(&sim), 2);
    c.shutdown().await;
}

#[tokio::test]
async fn keys_and_windows_are_per_api_key() {
    // Two servers with different keys sharing one ledger file: neither reuses
    // the other's video.
    let sim = start_sim_with(heygen_video_mcp::simulator::SimConfig {
        render_time: Duration::from_secs(30),
        api_key: None,
        ..Default::default()
    })
    .await;
    let shared = TestHome::new();
    let ledger = shared.path().join("ledger.sqlite3");
    let alice = McpChild::legacy(ServerOpts {
        api_key: Some("alice-key-0123456789".into()),
        ..ServerOpts::for_sim(&sim).ledger(&ledger)
    })
    .await;
    let bob = McpChild::legacy(ServerOpts {
        api_key: Some("bob-key-0123456789".into()),
        ..ServerOpts::for_sim(&sim).ledger(&ledger)
    })
    .await;
    let args = json!({"prompt": "Same words", "idempotency_key": "k1"});
    let a = task_id_of(&alice.call("create_video", args.clone()).await);
    let b = bob.call("create_video", args.clone()).await;
    assert!(!reused(&b), "{b}");
    assert_ne!(task_id_of(&b), a);
    let plain = json!({"prompt": "Same words again"});
    alice.call("create_video", plain.clone()).await;
    let b2 = bob.call("create_video", plain.clone()).await;
    assert!(!reused(&b2), "{b2}");
    assert_eq!(creates(&sim), 4);
    alice.shutdown().await;
    bob.shutdown().await;
}

/// The same key with other arguments at the same moment is a key conflict,
/// exactly as it is one after the other: never the other call's video.
async fn same_key_other_arguments_at_once(args: &[&str]) {
    let sim = start_sim().await;
    let c = child(&sim, args).await;
    let (first, second) = tokio::join!(
        c.call(
            "create_video",
            json!({"prompt": "The original [slow:1] [after:30]", "idempotency_key": "shared-key"}),
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.call(
                "create_video",
                json!({"prompt": "A different video", "idempotency_key": "shared-key"}),
            )
            .await
        },
    );
    assert!(!reused(&first), "{first}");
    let text = expect_tool_error(&second);
    assert!(text.contains("different request"), "{text}");
    assert!(text.contains("shared-key"), "{text}");
    assert_eq!(creates(&sim), 1, "the conflicting call sends nothing");
    c.shutdown().await;
}

#[tokio::test]
async fn one_key_with_other_arguments_at_the_same_moment_is_a_conflict() {
    same_key_other_arguments_at_once(&[]).await;
}

#[tokio::test]
async fn one_key_with_other_arguments_at_the_same_moment_is_a_conflict_without_a_ledger() {
    same_key_other_arguments_at_once(&["--no-ledger"]).await;
}

#[tokio::test]
async fn cancelling_the_first_of_two_identical_calls_creates_one_video() {
    // Over stdio, without a ledger: the first call is cancelled with
    // notifications/cancelled while its (slow) create is in flight; the
    // second, identical call must get the first's task, not send another.
    // (rmcp 3.11 only fires the handler's cancellation token here and lets
    // the handler future run on; the unit test
    // `a_cancelled_leader_does_not_let_a_second_create_through` drops the
    // future itself. This one guards the transport path.)
    let sim = start_sim().await;
    let (mut raw, _) = RawChild::legacy(ServerOpts::for_sim(&sim).arg("--no-ledger")).await;
    let call = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "create_video",
            "arguments": {"prompt": "Cancelled first [slow:2] [after:30]"}
        }})
    };
    raw.send(&call(1001)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send(&call(1002)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.notify(
        "notifications/cancelled",
        Some(json!({"requestId": 1001, "reason": "user gave up"})),
    )
    .await;
    let second = raw.response(1002).await;
    let result = &second["result"];
    assert!(reused(result), "{second}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(creates(&sim), 1, "one paid create");
    raw.close().await;
}

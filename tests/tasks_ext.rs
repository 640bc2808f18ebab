//! The MCP Tasks extension (`io.modelcontextprotocol/tasks`, 2026-07-28), on
//! the wire: raw JSON-RPC lines to the built binary over stdio. A client that
//! declares the extension gets a task whose id is the upstream task id and
//! follows it with `tasks/get` to the inlined result (on any process: the
//! lookup is stateless); every other client gets the normal result;
//! `tasks/cancel` says honestly that a video cannot be cancelled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use heygen_video_mcp::simulator::Simulator;
use serde_json::{Value, json};

fn opts(sim: &Simulator) -> ServerOpts {
    ServerOpts::for_sim(sim).arg("--poll-interval").arg("0.2")
}

async fn tasks_client(sim: &Simulator) -> RawChild {
    RawChild::modern_with_capabilities(opts(sim), tasks_capabilities())
        .await
        .0
}

/// Polls `tasks/get` until the task is terminal; returns the last result.
async fn follow(raw: &mut RawChild, task_id: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    let mut polls = 0;
    loop {
        let got = raw
            .request_ok("tasks/get", json!({ "taskId": task_id }))
            .await;
        polls += 1;
        assert_eq!(got["taskId"], task_id, "{got}");
        assert_eq!(got["resultType"], "complete", "{got}");
        match got["status"].as_str() {
            Some("working") => {
                assert!(got["pollIntervalMs"].as_u64().is_some(), "{got}");
                assert!(got["statusMessage"].is_string(), "{got}");
            }
            Some("completed" | "failed" | "cancelled") => {
                assert!(polls > 1, "the task was finished before it was followed");
                return got;
            }
            other => panic!("unexpected task status {other:?}: {got}"),
        }
        assert!(Instant::now() < deadline, "the task did not finish: {got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_tasks_client_gets_a_task_and_follows_it_to_the_result() {
    let sim = start_sim().await;
    let (mut raw, discover) =
        RawChild::modern_with_capabilities(opts(&sim), tasks_capabilities()).await;
    assert!(
        discover["capabilities"]["extensions"]
            .get("io.modelcontextprotocol/tasks")
            .is_some(),
        "the server declares the extension: {discover}"
    );

    let created = raw
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "Task flow [after:1.5]"}}),
        )
        .await;
    assert_eq!(created["resultType"], "task", "{created}");
    let task_id = created["taskId"].as_str().unwrap().to_string();
    assert!(
        task_id.starts_with("task-unified-"),
        "the upstream id: {created}"
    );
    assert_eq!(created["status"], "working");
    assert!(created["pollIntervalMs"].as_u64().unwrap() >= 100);
    assert!(created["ttlMs"].as_u64().unwrap() > 0);
    assert!(created["createdAt"].is_string() && created["lastUpdatedAt"].is_string());
    assert_eq!(sim.state.count("create"), 1);

    let done = follow(&mut raw, &task_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let result = &done["result"];
    assert_ne!(result["isError"], true, "{done}");
    let sc = &result["structuredContent"];
    assert_video_task_shape(sc);
    assert_eq!(sc["task_id"], task_id.as_str());
    assert_eq!(sc["status"], "completed");
    assert!(!sc["video_urls"].as_array().unwrap().is_empty(), "{sc}");
    assert!(
        result_text(result).contains("The video is ready"),
        "{result}"
    );
    assert_eq!(sim.state.count("create"), 1, "following never creates");
    raw.close().await;
}

#[tokio::test]
async fn any_process_can_answer_tasks_get() {
    let sim = start_sim().await;
    let mut first = tasks_client(&sim).await;
    let created = first
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "Stateless [after:0.5]"}}),
        )
        .await;
    let task_id = created["taskId"].as_str().unwrap().to_string();
    first.close().await;
    // A different process (think: another replica) knows nothing of it locally.
    let mut second = tasks_client(&sim).await;
    let done = follow_or_done(&mut second, &task_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["result"]["structuredContent"]["task_id"],
        task_id.as_str()
    );
    second.close().await;
}

/// Like [`follow`], but the task may already be finished.
async fn follow_or_done(raw: &mut RawChild, task_id: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = raw
            .request_ok("tasks/get", json!({ "taskId": task_id }))
            .await;
        if got["status"] != "working" {
            return got;
        }
        assert!(Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_failed_video_is_a_completed_task_with_an_error_result() {
    let sim = start_sim().await;
    let mut raw = tasks_client(&sim).await;
    let created = raw
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "Doomed [fail] [after:1.5]"}}),
        )
        .await;
    assert_eq!(created["resultType"], "task");
    let task_id = created["taskId"].as_str().unwrap().to_string();
    let done = follow(&mut raw, &task_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["isError"], true, "{done}");
    let text = result_text(&done["result"]);
    assert!(
        text.contains("failed") && text.contains("render_failed"),
        "{text}"
    );
    raw.close().await;
}

#[tokio::test]
async fn a_create_that_fails_at_once_is_a_normal_error_result() {
    let sim = start_sim().await;
    let mut raw = tasks_client(&sim).await;
    let r = raw
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "Broke [402]"}}),
        )
        .await;
    assert_ne!(r["resultType"], "task", "{r}");
    assert!(expect_tool_error(&r).contains("HTTP 402"));
    // Other tools are never turned into tasks.
    let credits = raw
        .request_ok(
            "tools/call",
            json!({"name": "get_credits", "arguments": {}}),
        )
        .await;
    assert_ne!(credits["resultType"], "task", "{credits}");
    expect_ok(&credits);
    raw.close().await;
}

#[tokio::test]
async fn a_repeated_create_is_the_same_task() {
    let sim = start_sim().await;
    let mut raw = tasks_client(&sim).await;
    let call = json!({"name": "create_video", "arguments": {"prompt": "Twice [after:30]", "idempotency_key": "once"}});
    let a = raw.request_ok("tools/call", call.clone()).await;
    let b = raw.request_ok("tools/call", call).await;
    assert_eq!(a["taskId"], b["taskId"]);
    assert!(
        b["statusMessage"]
            .as_str()
            .unwrap()
            .contains("no new video"),
        "{b}"
    );
    assert_eq!(sim.state.count("create"), 1);
    raw.close().await;
}

#[tokio::test]
async fn clients_without_the_extension_get_the_normal_result() {
    let sim = start_sim().await;
    // 2026-07-28 without the extension.
    let (mut modern, _) = RawChild::modern(opts(&sim)).await;
    let r = modern
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "Plain modern"}}),
        )
        .await;
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_video_task_shape(expect_ok(&r));
    // tasks/* without the extension: rmcp's MissingRequiredClientCapability.
    let refused = modern
        .request("tasks/get", json!({"taskId": task_id_of(&r)}))
        .await;
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    modern.close().await;

    // 2025-11-25, even when its initialize declares the extension: a task
    // would reach it as an error after the video was bought, so it never gets one.
    let mut legacy = RawChild::spawn(opts(&sim));
    legacy
        .initialize_with_capabilities(LEGACY, tasks_capabilities())
        .await;
    let r = legacy
        .call("create_video", json!({"prompt": "Plain legacy"}))
        .await;
    assert!(r.get("taskId").is_none(), "{r}");
    assert_video_task_shape(expect_ok(&r));
    legacy.close().await;
    assert_eq!(sim.state.count("create"), 2);
}

#[tokio::test]
async fn tasks_cancel_says_the_video_cannot_be_cancelled() {
    let sim = start_sim().await;
    let mut raw = tasks_client(&sim).await;
    let created = raw
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "Unstoppable [after:30]"}}),
        )
        .await;
    let task_id = created["taskId"].as_str().unwrap().to_string();
    let refused = raw
        .request("tasks/cancel", json!({ "taskId": task_id }))
        .await;
    let err = &refused["error"];
    assert!(err.is_object(), "{refused}");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("cannot be cancelled"), "{msg}");
    assert!(msg.contains("no cancel endpoint"), "{msg}");
    assert_eq!(err["data"]["cancellable"], false);
    // The task is untouched and still followable.
    let still = raw
        .request_ok("tasks/get", json!({ "taskId": task_id }))
        .await;
    assert_eq!(still["status"], "working");

    // A finished video has nothing to cancel: an empty acknowledgement.
    let quick = raw
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "Quick [after:0]"}}),
        )
        .await;
    let quick_id = quick["taskId"].as_str().unwrap().to_string();
    let ack = raw
        .request_ok("tasks/cancel", json!({ "taskId": quick_id }))
        .await;
    assert_eq!(ack["resultType"], "complete", "{ack}");

    // Unknown and malformed ids are "not found" (-32602).
    for bad in ["task-unified-0-nosuch", "../etc"] {
        for method in ["tasks/cancel", "tasks/get"] {
            let r = raw.request(method, json!({ "taskId": bad })).await;
            assert_eq!(r["error"]["code"], -32602, "{method} {bad}: {r}");
        }
    }
    // These tasks never ask for input.
    let update = raw
        .request(
            "tasks/update",
            json!({ "taskId": task_id, "inputResponses": {} }),
        )
        .await;
    assert_eq!(update["error"]["code"], -32602, "{update}");
    assert_eq!(sim.state.count("create"), 2);
    raw.close().await;
}

//! End to end over stdio: the built binary spawned as a child, driven the way
//! real clients drive it (rmcp's client, or raw JSON-RPC lines), against the
//! simulator running in the test process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn names(tools: &[Value]) -> BTreeSet<String> {
    tools
        .iter()
        .map(|t| t["name"].as_str().expect("tool name").to_string())
        .collect()
}

/// The two core tools are listed (the exact, reviewed tool set is pinned by
/// the snapshots in tool_schemas.rs), and every tool sets all four annotations.
fn assert_tool_set(tools: &[Value]) {
    let names = names(tools);
    assert_eq!(names.len(), tools.len(), "duplicate tool names: {names:?}");
    for core in CORE_TOOLS {
        assert!(names.contains(core), "{core} is not listed: {names:?}");
    }
    for t in tools {
        let a = &t["annotations"];
        for hint in [
            "readOnlyHint",
            "destructiveHint",
            "idempotentHint",
            "openWorldHint",
        ] {
            assert!(a[hint].is_boolean(), "{} lacks {hint}: {a}", t["name"]);
        }
    }
}

fn tool<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

/// Checks a completed task end to end: every VideoTask field, the URL in
/// structuredContent and in the text, and the file behind it.
async fn check_completed(result: &Value, task_id: &str) {
    let sc = expect_ok(result);
    assert_video_task_shape(sc);
    assert_eq!(sc["task_id"], task_id);
    assert_eq!(sc["status"], "completed", "{sc}");
    assert_eq!(sc["upstream_status"], "completed", "{sc}");
    assert_eq!(sc["progress"], 100, "{sc}");
    assert!(sc["error"].is_null(), "{sc}");
    assert!(sc["created_at"].is_string(), "{sc}");
    assert!(sc["links_expire_at"].is_string(), "{sc}");
    let urls = sc["video_urls"].as_array().expect("video_urls");
    assert_eq!(urls.len(), 1, "{sc}");
    let url = urls[0].as_str().expect("url string");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let text = result_text(result);
    assert!(text.contains(url), "text lacks the URL:\n{text}");
    assert!(text.contains("completed"), "text lacks the status:\n{text}");
    assert!(text.contains(task_id), "text lacks the task id:\n{text}");
    assert!(
        text.contains(sc["links_expire_at"].as_str().unwrap()),
        "text lacks the link expiry:\n{text}"
    );
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "text is raw JSON, not a readable summary:\n{text}"
    );

    assert_iso_bmff(&fetch_bytes(url).await);
}

/// Checks a just-created task and returns its id.
fn check_created(result: &Value) -> String {
    let sc = expect_ok(result);
    assert_video_task_shape(sc);
    let id = task_id_of(result);
    assert!(!id.is_empty());
    assert!(
        matches!(sc["status"].as_str(), Some("pending" | "processing")),
        "{sc}"
    );
    assert_eq!(sc["video_urls"], json!([]), "{sc}");
    assert!(sc["error"].is_null(), "{sc}");
    let text = result_text(result);
    assert!(text.contains(&id), "text lacks the task id:\n{text}");
    assert!(
        text.contains("get_video_status"),
        "text lacks the next step:\n{text}"
    );
    id
}

#[tokio::test]
async fn lists_annotated_tools_and_names_itself() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;

    let info = child
        .client
        .peer_info()
        .expect("server info after initialize");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    let server = info.server_info.as_ref().expect("serverInfo");
    assert_eq!(server.name, "heygen-video-mcp");
    assert_eq!(server.version, VERSION);
    let instructions = info.instructions.as_deref().expect("instructions");
    assert!(instructions.contains("create_video"), "{instructions}");
    assert!(instructions.contains("get_video_status"), "{instructions}");
    assert!(info.capabilities.tools.is_some());

    let tools = child.list_tools().await;
    assert_tool_set(&tools);
    for t in &tools {
        assert!(
            t["description"].as_str().is_some_and(|d| d.len() > 40),
            "{}",
            t["name"]
        );
        assert!(t["outputSchema"].is_object(), "{}", t["name"]);
    }
    let create = &tool(&tools, "create_video")["annotations"];
    assert_eq!(create["readOnlyHint"], false);
    assert_eq!(create["destructiveHint"], false);
    assert_eq!(create["idempotentHint"], false);
    assert_eq!(create["openWorldHint"], true);
    let status = &tool(&tools, "get_video_status")["annotations"];
    assert_eq!(status["readOnlyHint"], true);
    assert_eq!(status["destructiveHint"], false);
    assert_eq!(status["idempotentHint"], true);
    assert_eq!(status["openWorldHint"], true);

    child.shutdown().await;
    assert_eq!(
        upstream_total(&sim),
        0,
        "listing tools must not call upstream"
    );
}

#[tokio::test]
async fn full_flow_on_2025_11_25() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;

    let created = child
        .call(
            "create_video",
            json!({"prompt": "A presenter explains MCP in one minute [after:1]", "orientation": "portrait"}),
        )
        .await;
    let id = check_created(&created);
    assert_eq!(sim.state.count("create"), 1);
    let tools = child.list_tools().await;
    let create_schema = &tool(&tools, "create_video")["outputSchema"];
    let status_schema = &tool(&tools, "get_video_status")["outputSchema"];
    assert_conforms(create_schema, structured(&created));

    let first = child
        .call("get_video_status", json!({ "task_id": id }))
        .await;
    assert_conforms(status_schema, expect_ok(&first));
    let done = child.wait_finished(&id).await;
    assert_conforms(status_schema, structured(&done));
    check_completed(&done, &id).await;
    assert!(sim.state.count("get") >= 1);
    assert_eq!(sim.state.count("create"), 1, "polling must never create");

    let stderr = child.shutdown().await;
    assert_no_key("stderr", &stderr.joined(), TEST_KEY);
}

#[tokio::test]
async fn full_flow_on_2026_07_28_with_rmcp_client() {
    let sim = start_sim().await;
    let child = McpChild::modern(ServerOpts::for_sim(&sim)).await;

    let info = child
        .client
        .peer_info()
        .expect("server info after discover");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    let server = info
        .server_info
        .as_ref()
        .expect("serverInfo in discover _meta");
    assert_eq!(server.name, "heygen-video-mcp");
    assert_eq!(server.version, VERSION);

    let tools = child.list_tools().await;
    assert_tool_set(&tools);

    let created = child
        .call(
            "create_video",
            json!({"prompt": "A 2026 client makes a video [after:1]"}),
        )
        .await;
    let id = check_created(&created);
    let done = child.wait_finished(&id).await;
    check_completed(&done, &id).await;
    assert_eq!(sim.state.count("create"), 1);

    let stderr = child.shutdown().await;
    assert_no_key("stderr", &stderr.joined(), TEST_KEY);
}

#[tokio::test]
async fn full_flow_on_2026_07_28_raw() {
    let sim = start_sim().await;
    let (mut raw, discover) = RawChild::modern(ServerOpts::for_sim(&sim)).await;

    let versions = discover["supportedVersions"]
        .as_array()
        .expect("supportedVersions");
    assert!(versions.contains(&json!(MODERN)), "{discover}");
    assert!(versions.contains(&json!(LEGACY)), "{discover}");
    assert!(discover["capabilities"]["tools"].is_object(), "{discover}");
    let server_info = &discover["_meta"]["io.modelcontextprotocol/serverInfo"];
    assert_eq!(server_info["name"], "heygen-video-mcp", "{discover}");
    assert_eq!(server_info["version"], VERSION, "{discover}");
    let instructions = discover["instructions"].as_str().expect("instructions");
    assert!(instructions.contains("create_video") && instructions.contains("get_video_status"));

    let list = raw.list_tools().await;
    assert_eq!(list["resultType"], "complete", "{list}");
    let tools = list["tools"].as_array().expect("tools").clone();
    assert_tool_set(&tools);

    let created = raw
        .call(
            "create_video",
            json!({"prompt": "A raw 2026 client [after:1]"}),
        )
        .await;
    assert_eq!(created["resultType"], "complete", "{created}");
    let id = check_created(&created);
    let done = raw.wait_finished(&id).await;
    assert_eq!(done["resultType"], "complete", "{done}");
    check_completed(&done, &id).await;

    // A 2026-07-28 request without the protocol _meta is a protocol error,
    // not a tool call that runs.
    let before = upstream_total(&sim);
    let id_no_meta = 9_999;
    raw.send(
        &json!({"jsonrpc": "2.0", "id": id_no_meta, "method": "tools/call",
        "params": {"name": "get_video_status", "arguments": {"task_id": id}}}),
    )
    .await;
    let resp = raw.response(id_no_meta).await;
    assert!(resp.get("error").is_some(), "{resp}");
    assert_eq!(upstream_total(&sim), before);

    let (status, stdout, stderr) = raw.close().await;
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    for line in stdout.snapshot() {
        assert_jsonrpc_line(&line);
    }
    assert_no_key("stderr", &stderr.joined(), TEST_KEY);
}

#[tokio::test]
async fn failed_task_is_reported_not_an_error() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;

    let created = child
        .call(
            "create_video",
            json!({"prompt": "This one will not render [fail] [after:0.5]"}),
        )
        .await;
    let id = check_created(&created);
    let done = child.wait_finished(&id).await;
    assert!(
        !is_error(&done),
        "a failed task is a fact, not a tool error: {done}"
    );
    let sc = structured(&done);
    assert_video_task_shape(sc);
    let tools = child.list_tools().await;
    assert_conforms(&tool(&tools, "get_video_status")["outputSchema"], sc);
    assert_eq!(sc["status"], "failed", "{sc}");
    assert_eq!(sc["upstream_status"], "failed", "{sc}");
    assert_eq!(sc["video_urls"], json!([]), "{sc}");
    assert!(sc["links_expire_at"].is_null(), "{sc}");
    let code = sc["error"]["code"].as_str().expect("error.code");
    assert!(!code.is_empty());
    assert!(
        sc["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let text = result_text(&done);
    assert!(text.contains("failed") && text.contains(code), "{text}");
    assert!(
        text.contains("create_video"),
        "the next step should say how to retry:\n{text}"
    );

    child.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_reach_the_user_with_advice() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;

    // No credits: one request, an error result that says to top up.
    let r = child
        .call("create_video", json!({"prompt": "Broke account [402]"}))
        .await;
    let text = expect_tool_error(&r);
    assert!(
        r.get("structuredContent").is_none(),
        "error results carry text only: {r}"
    );
    assert!(text.contains("402"), "{text}");
    assert!(text.to_lowercase().contains("top up"), "{text}");
    assert_eq!(sim.state.count("create"), 1);

    // A 500 on create: sent exactly once, and the user is told it may exist.
    let r = child
        .call("create_video", json!({"prompt": "Server trouble [500]"}))
        .await;
    let text = expect_tool_error(&r);
    assert!(r.get("structuredContent").is_none(), "{r}");
    assert!(text.contains("500"), "{text}");
    assert!(text.contains("may already have been created"), "{text}");
    assert_eq!(
        sim.state.count("create"),
        2,
        "a 500 on create must not be retried"
    );

    // An unknown task: isError with advice, not a JSON-RPC error.
    let r = child
        .call(
            "get_video_status",
            json!({"task_id": "task-unified-0-nosuch"}),
        )
        .await;
    let text = expect_tool_error(&r);
    assert!(text.contains("404"), "{text}");
    assert!(text.contains("task_id"), "{text}");

    child.shutdown().await;
}

#[tokio::test]
async fn the_api_key_never_appears_in_any_output() {
    let sim = start_sim().await;
    let (mut raw, _) = RawChild::legacy(ServerOpts::for_sim(&sim)).await;
    let mut texts = Vec::new();

    // The upstream echoes the bearer key in its 422 message.
    let r = raw
        .call(
            "create_video",
            json!({"prompt": "Echo my key please [echo-key]"}),
        )
        .await;
    let text = expect_tool_error(&r);
    assert!(text.contains("422"), "{text}");
    texts.push(text);
    // The key did go upstream (so the check above means something).
    assert!(
        sim.state
            .requests()
            .iter()
            .any(|req| req.key.as_deref() == Some(TEST_KEY)),
        "the simulator never saw the key"
    );

    // A whole successful flow and some other errors, for more log lines.
    let created = raw
        .call(
            "create_video",
            json!({"prompt": "Normal video [after:0.5]"}),
        )
        .await;
    texts.push(result_text(&created));
    let id = task_id_of(&created);
    let done = raw.wait_finished(&id).await;
    texts.push(result_text(&done));
    for prompt in ["Bad key [401]", "Server trouble [502]", "Rate [429-bare]"] {
        let r = raw.call("create_video", json!({ "prompt": prompt })).await;
        texts.push(expect_tool_error(&r));
    }
    let r = raw
        .call(
            "get_video_status",
            json!({"task_id": "task-unified-0-nosuch"}),
        )
        .await;
    texts.push(expect_tool_error(&r));

    let (_, stdout, stderr) = raw.close().await;
    for t in &texts {
        assert_no_key("a tool result", t, TEST_KEY);
    }
    assert_no_key("stdout", &stdout.joined(), TEST_KEY);
    let stderr = stderr.joined();
    assert!(
        stderr.lines().count() > 5,
        "expected debug logs on stderr:\n{stderr}"
    );
    assert_no_key("stderr", &stderr, TEST_KEY);
}

#[tokio::test]
async fn without_a_key_tools_list_and_calls_explain_the_setup() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim).without_key()).await;

    let tools = child.list_tools().await;
    assert_tool_set(&tools);

    let r = child
        .call("create_video", json!({"prompt": "A video without a key"}))
        .await;
    let text = expect_tool_error(&r);
    assert!(text.contains("HEYGEN_API_KEY"), "{text}");
    assert!(text.contains("env"), "should say where to set it: {text}");

    let r = child
        .call("get_video_status", json!({"task_id": "task-unified-1-abc"}))
        .await;
    let text = expect_tool_error(&r);
    assert!(text.contains("HEYGEN_API_KEY"), "{text}");

    child.shutdown().await;
    assert_eq!(
        upstream_total(&sim),
        0,
        "no key: nothing may be sent upstream"
    );
}

#[tokio::test]
async fn stdout_carries_only_jsonrpc_over_a_whole_flow() {
    let sim = start_sim().await;
    let (mut raw, init) = RawChild::legacy(ServerOpts::for_sim(&sim)).await;
    assert_eq!(init["protocolVersion"], LEGACY, "{init}");
    assert_eq!(init["serverInfo"]["name"], "heygen-video-mcp");
    assert_eq!(init["serverInfo"]["version"], VERSION);

    raw.request_ok("ping", json!({})).await;
    raw.list_tools().await;
    let created = raw
        .call(
            "create_video",
            json!({"prompt": "Stdout hygiene [after:0.5]"}),
        )
        .await;
    let id = task_id_of(&created);
    // Bad inputs and upstream errors in between: still only JSON-RPC.
    expect_tool_error(&raw.call("create_video", json!({"prompt": ""})).await);
    expect_tool_error(
        &raw.call("create_video", json!({"prompt": "x", "bogus": 1}))
            .await,
    );
    expect_tool_error(
        &raw.call("get_video_status", json!({"task_id": "../x"}))
            .await,
    );
    expect_tool_error(&raw.call("create_video", json!({"prompt": "[503]"})).await);
    let unknown = raw
        .request(
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
        )
        .await;
    assert!(unknown.get("error").is_some(), "{unknown}");
    let done = raw.wait_finished(&id).await;
    assert_eq!(done["structuredContent"]["status"], "completed");

    let (status, stdout, stderr) = raw.close().await;
    assert!(
        status.is_some_and(|s| s.success()),
        "closing stdin should end the server cleanly: {status:?}\n{}",
        stderr.joined()
    );
    let lines = stdout.snapshot();
    assert!(lines.len() >= 10, "too few stdout lines: {lines:?}");
    for line in &lines {
        assert_jsonrpc_line(line);
    }
    // The logs went somewhere: stderr.
    assert!(
        stderr.snapshot().len() > 3,
        "expected log lines on stderr with RUST_LOG=debug"
    );
}

#[test]
fn help_and_version_exit_zero() {
    let run = |arg: &str| {
        std::process::Command::new(BIN)
            .arg(arg)
            .env_clear()
            .env("HEYGEN_API_KEY", TEST_KEY)
            .env("HOME", std::env::temp_dir())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the binary")
    };

    let out = run("--version");
    assert!(out.status.success(), "--version: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("heygen-video-mcp"), "{stdout}");
    assert!(stdout.contains(VERSION), "{stdout}");

    let out = run("--help");
    assert!(out.status.success(), "--help: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("heygen-video-mcp"), "{stdout}");
    assert!(stdout.contains("HEYGEN_API_KEY"), "{stdout}");
    assert!(stdout.contains("--simulate"), "{stdout}");
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_no_key("--help output", &all, TEST_KEY);
}

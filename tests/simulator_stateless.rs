//! The simulator answers from the task id alone, as the real upstream answers
//! whichever process asks: a task created through one `--simulate` process is
//! followed to completed and downloaded through another (the MCP Inspector CLI
//! starts a process per command); ids no simulator made, or altered ones, are
//! unknown tasks; fault markers travel with the id. Also the billing, pricing,
//! upload and model endpoints the simulator serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, time::Duration};

use common::{
    McpChild, ServerOpts, TEST_KEY, expect_ok, expect_tool_error, http_client, start_sim,
    task_id_of,
};
use heygen_video_mcp::simulator::{SAMPLE_MP4, Simulator};
use serde_json::{Value, json};

/// A `--simulate` server of its own (its own embedded simulator and port).
async fn simulate(args: &[&str]) -> McpChild {
    let mut opts = ServerOpts::default()
        .without_key()
        .arg("--simulate")
        .arg("--poll-interval")
        .arg("0.2");
    for a in args {
        opts = opts.arg(*a);
    }
    McpChild::legacy(opts).await
}

/// Replaces the character at `at` with a different base32 one.
fn tamper(id: &str, at: usize) -> String {
    let mut out = id.to_string();
    let c = if &id[at..=at] == "a" { "b" } else { "a" };
    out.replace_range(at..=at, c);
    out
}

#[tokio::test]
async fn a_task_created_in_one_process_completes_and_downloads_in_another() {
    let first = simulate(&["--simulate-render-seconds", "1"]).await;
    let created = first
        .call("create_video", json!({"prompt": "Hello from process one"}))
        .await;
    let task_id = task_id_of(&created);
    assert!(task_id.starts_with("task-unified-"), "{task_id}");
    assert!(task_id.len() <= 128, "{task_id}");
    // The first process (and its simulator) is gone before the second starts.
    first.shutdown().await;

    // The second one renders slowly itself: the task keeps the render time it
    // was created with.
    let second = simulate(&["--simulate-render-seconds", "600"]).await;
    let done = second.wait_finished(&task_id).await;
    let sc = expect_ok(&done);
    assert_eq!(sc["status"], "completed", "{done}");
    assert_eq!(sc["task_id"], task_id.as_str());
    let url = sc["video_urls"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{done}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let saved = second
        .call("download_video", json!({"task_id": task_id}))
        .await;
    let path = PathBuf::from(expect_ok(&saved)["saved_path"].as_str().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), SAMPLE_MP4);
    second.shutdown().await;
}

#[tokio::test]
async fn an_altered_or_foreign_task_id_is_an_unknown_task() {
    let c = simulate(&["--simulate-render-seconds", "0"]).await;
    let task_id = task_id_of(&c.call("create_video", json!({"prompt": "Real"})).await);
    let ok = c
        .call("get_video_status", json!({"task_id": task_id}))
        .await;
    expect_ok(&ok);
    let payload_start = "task-unified-sim-".len();
    for bad in [
        tamper(&task_id, payload_start + 3),
        tamper(&task_id, task_id.len() - 1),
        "task-unified-1757165031-uyujaw3d".to_string(),
    ] {
        let r = c.call("get_video_status", json!({"task_id": bad})).await;
        let text = expect_tool_error(&r);
        assert!(text.contains("HTTP 404"), "{bad}: {text}");
        assert!(
            text.contains("task_id is wrong, or the task belongs to another"),
            "{bad}: {text}"
        );
    }
    c.shutdown().await;
}

// ---------------------------------------------------------------------------
// Two simulators in this process, spoken to over HTTP as the client would
// ---------------------------------------------------------------------------

async fn post(sim: &Simulator, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http_client()
        .post(format!("{}{path}", sim.base_url()))
        .json(&body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = http_client().get(format!("{base}{path}"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create(sim: &Simulator, prompt: &str) -> String {
    let (status, body) = post(
        sim,
        "/v1/videos/generations",
        Some(TEST_KEY),
        json!({"model": "heygen-video-agent", "prompt": prompt}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn lookup(sim: &Simulator, id: &str) -> (u16, Value) {
    get(&sim.base_url(), &format!("/v1/tasks/{id}"), Some(TEST_KEY)).await
}

/// Looks the task up on `sim` until it is finished.
async fn finished(sim: &Simulator, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        let (status, body) = lookup(sim, id).await;
        assert_eq!(status, 200, "{body}");
        if matches!(body["status"].as_str(), Some("completed" | "failed")) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn fault_markers_travel_with_the_id() {
    let (a, b) = (start_sim().await, start_sim().await);

    let failing = create(&a, "Doomed [fail] [after:0.3]").await;
    let body = finished(&b, &failing).await;
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["error"]["code"], "render_failed", "{body}");

    let odd = create(&a, "Odd [status:rendering] [after:30] [minimal]").await;
    let (_, body) = lookup(&b, &odd).await;
    assert_eq!(body, json!({"id": odd, "status": "rendering"}));

    // Lookup faults count this process's lookups.
    let flaky = create(&a, "Flaky [get:500:1] [after:0.2] [output]").await;
    assert_eq!(lookup(&b, &flaky).await.0, 500);
    let body = finished(&b, &flaky).await;
    assert_eq!(body["status"], "completed", "{body}");
    let url = body["output"]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&b.base_url()), "{url}");

    // A stale first link, then the fresh one from the next lookup.
    let signed = create(&a, "Signed [link:403] [after:0.2]").await;
    let body = finished(&b, &signed).await;
    let stale = body["results"][0]["url"].as_str().unwrap().to_string();
    let resp = http_client().get(&stale).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let (_, body) = lookup(&b, &signed).await;
    let fresh = body["results"][0]["url"].as_str().unwrap().to_string();
    assert_ne!(fresh, stale);
    let resp = http_client().get(&fresh).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), SAMPLE_MP4);

    // The file faults too, fetched from the simulator that did not create it.
    let html = create(&a, "Web page [file:html] [after:0]").await;
    let (_, body) = lookup(&b, &html).await;
    let resp = http_client()
        .get(body["results"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    assert_eq!(a.state.task_count(), 5);
    assert_eq!(b.state.task_count(), 0);
}

#[tokio::test]
async fn unknown_altered_and_other_keys_tasks_are_404() {
    let a = start_sim().await;
    let id = create(&a, "Mine [after:0]").await;
    assert_eq!(lookup(&a, &id).await.0, 200);
    for bad in [
        tamper(&id, "task-unified-sim-".len()),
        tamper(&id, id.len() - 2),
        format!("{id}a"),
        "task-unified-0-nosuch".to_string(),
    ] {
        let (status, body) = lookup(&a, &bad).await;
        assert_eq!(status, 404, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "task_not_found", "{body}");
        // Nor is there a file behind it.
        let (status, _) = get(&a.base_url(), &format!("/files/{bad}.mp4"), None).await;
        assert_eq!(status, 404, "{bad}");
    }
    // A simulator that accepts any key: another key's task does not exist.
    let open = common::start_sim_with(Default::default()).await;
    let theirs = create(&open, "Theirs [after:0]").await;
    let (status, _) = get(
        &open.base_url(),
        &format!("/v1/tasks/{theirs}"),
        Some("someone-else"),
    )
    .await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------
// Billing, pricing, uploads, models
// ---------------------------------------------------------------------------

#[tokio::test]
async fn billing_endpoints_follow_the_balance() {
    let sim = start_sim().await;
    let base = sim.base_url();
    let (status, sub) = get(&base, "/dashboard/billing/subscription", Some(TEST_KEY)).await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["hard_limit_usd"], 1000.0);
    let (_, usage) = get(&base, "/dashboard/billing/usage", Some(TEST_KEY)).await;
    assert_eq!(usage["total_usage"], 0.0);

    create(&sim, "Costs five").await;
    let (_, usage) = get(&base, "/dashboard/billing/usage", Some(TEST_KEY)).await;
    let used = usage["total_usage"].as_f64().unwrap() / 100.0;
    let remaining = sub["hard_limit_usd"].as_f64().unwrap() - used;
    let (_, credits) = get(&base, "/v1/account/credits", Some(TEST_KEY)).await;
    assert_eq!(remaining, credits["balance"].as_f64().unwrap());
    assert_eq!(remaining, 995.0);

    for path in [
        "/dashboard/billing/subscription",
        "/dashboard/billing/usage",
        "/v1/models",
    ] {
        assert_eq!(get(&base, path, None).await.0, 401, "{path}");
        assert_eq!(get(&base, path, Some("wrong")).await.0, 401, "{path}");
    }

    // Pricing is public.
    let (status, pricing) = get(&base, "/api/pricing", None).await;
    assert_eq!(status, 200);
    let model = &pricing["data"][0];
    assert_eq!(model["model_name"], "heygen-video-agent");
    assert_eq!(model["quota_type"], 1);
    assert!(model["model_price"].as_f64().unwrap() > 0.0);
    assert!(pricing["group_ratio"]["default"].as_f64().is_some());

    let (status, models) = get(&base, "/v1/models", Some(TEST_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "heygen-video-agent");

    assert_eq!(sim.state.count("subscription"), 3);
    assert_eq!(sim.state.count("usage"), 4);
    assert_eq!(sim.state.count("pricing"), 1);
    assert_eq!(sim.state.count("models"), 3);
}

#[tokio::test]
async fn an_upload_is_served_back_at_its_url() {
    let sim = start_sim().await;
    let path = "/v1/files/upload/base64";
    // "%PDF-1.4 hello" in base64.
    let (status, up) = post(
        &sim,
        path,
        Some(TEST_KEY),
        json!({"file_data": "JVBERi0xLjQgaGVsbG8=", "file_name": "notes.pdf"}),
    )
    .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["filename"], "notes.pdf");
    assert_eq!(up["size"], 14);
    assert!(up["id"].as_str().is_some_and(|s| !s.is_empty()), "{up}");
    assert!(up["created"].as_u64().is_some(), "{up}");
    let url = up["url"].as_str().unwrap();
    assert!(url.starts_with(&sim.base_url()), "{url}");
    let resp = http_client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.bytes().await.unwrap(), &b"%PDF-1.4 hello"[..]);

    // A data: URL brings its own type.
    let (status, up) = post(
        &sim,
        path,
        Some(TEST_KEY),
        json!({"file_data": "data:image/png;base64,iVBORw0KGgo="}),
    )
    .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["size"], 8);

    for (body, code) in [
        (json!({"file_data": "not base64!"}), "invalid_file_data"),
        (json!({"file_data": ""}), "invalid_file_data"),
        (json!({"file_name": "a.png"}), "invalid_parameter"),
        (
            json!({"file_data": "aGVsbG8=", "file_name": "run.exe"}),
            "invalid_file_type",
        ),
    ] {
        let (status, err) = post(&sim, path, Some(TEST_KEY), body.clone()).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
    }
    let (status, _) = post(&sim, path, None, json!({"file_data": "aGVsbG8="})).await;
    assert_eq!(status, 401);
    // Uploads never appear in the request log with their content.
    assert!(sim.state.requests().iter().all(|r| {
        !r.body
            .as_ref()
            .is_some_and(|b| b.to_string().contains("JVBERi0"))
    }));
}

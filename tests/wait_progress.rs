//! The bounded server-side wait of `get_video_status` and its progress
//! notifications, end to end: the built binary over stdio against an
//! in-process simulator, and the HTTP router over rmcp's Streamable HTTP
//! client. Timings are shortened with flags so each test takes seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use common::{
    DEADLINE, RawChild, ServerOpts, TestHome, expect_ok, is_error, result_text, server_command,
    start_sim, task_id_of,
};
use heygen_video_mcp::{
    config::{Cli, HttpSettings},
    gateway::{ApiKey, GatewayClient, GatewayConfig},
    simulator::Simulator,
    tools::{AppState, ToolOptions},
    transport::http::build,
};
use rmcp::{
    ClientHandler, ClientServiceExt, RoleClient, ServiceExt,
    model::{
        CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest,
        Implementation, ProgressNotificationParam, ProgressToken, ProtocolVersion, ServerResult,
    },
    service::{NotificationContext, PeerRequestOptions, RequestHandle, RunningService},
    transport::{StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// Flags that make waits fast: poll every 0.2 s, heartbeat every 0.5 s.
const FAST: &[&str] = &["--poll-interval", "0.2", "--progress-heartbeat", "0.5"];

/// A client that records every progress notification it receives.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl Recorder {
    fn for_token(&self, token: &ProgressToken) -> Vec<ProgressNotificationParam> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| &p.progress_token == token)
            .cloned()
            .collect()
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen.lock().unwrap().push(params);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("wait-progress-tests", "0.0.0"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// The binary over stdio, driven by a [`Recorder`] client.
struct Child {
    client: RunningService<RoleClient, Recorder>,
    recorder: Recorder,
    stderr: Arc<Mutex<String>>,
    _home: TestHome,
}

impl Child {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// Spawns the binary with `args` (use [`FAST`] for the usual quick timings).
async fn spawn(sim: &Simulator, args: &[&str]) -> Child {
    let mut opts = ServerOpts::for_sim(sim);
    for a in args {
        opts = opts.arg(*a);
    }
    let home = TestHome::new();
    let (transport, pipe) = TokioChildProcess::builder(server_command(&opts, &home))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(mut pipe) = pipe {
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let recorder = Recorder::default();
    let client = tokio::time::timeout(DEADLINE, recorder.clone().serve(transport))
        .await
        .expect("connects in time")
        .expect("connects");
    Child {
        client,
        recorder,
        stderr,
        _home: home,
    }
}

fn params(name: &str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_string()).with_arguments(args.as_object().unwrap().clone())
}

/// Sends `tools/call`; rmcp puts a fresh progressToken on every request.
async fn send(
    client: &RunningService<RoleClient, Recorder>,
    name: &str,
    args: Value,
) -> RequestHandle<RoleClient> {
    client
        .peer()
        .send_cancellable_request(
            ClientRequest::CallToolRequest(CallToolRequest::new(params(name, args))),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("request sent")
}

/// Awaits a call's result in wire form.
async fn answer(handle: RequestHandle<RoleClient>) -> Value {
    let r = tokio::time::timeout(DEADLINE * 2, handle.await_response())
        .await
        .expect("answered in time")
        .expect("answered");
    match r {
        ServerResult::CallToolResult(r) => serde_json::to_value(r).unwrap(),
        other => panic!("unexpected answer {other:?}"),
    }
}

async fn call(client: &RunningService<RoleClient, Recorder>, name: &str, args: Value) -> Value {
    answer(send(client, name, args).await).await
}

async fn create(client: &RunningService<RoleClient, Recorder>, prompt: &str) -> String {
    task_id_of(&call(client, "create_video", json!({ "prompt": prompt })).await)
}

/// Values strictly increase, total is 100, values stay in 0..=100, and only
/// the last may be 100.
fn assert_monotonic(notes: &[ProgressNotificationParam]) {
    assert!(!notes.is_empty(), "no progress notifications");
    for w in notes.windows(2) {
        assert!(
            w[1].progress > w[0].progress,
            "progress did not strictly increase: {} then {}",
            w[0].progress,
            w[1].progress
        );
    }
    for (i, n) in notes.iter().enumerate() {
        assert_eq!(n.total, Some(100.0), "total");
        assert!((0.0..=100.0).contains(&n.progress), "{}", n.progress);
        if i + 1 < notes.len() {
            assert!(n.progress < 100.0, "100 before the end: {notes:?}");
        }
        assert!(
            n.message.as_deref().is_some_and(|m| !m.is_empty()),
            "message carries the status"
        );
    }
}

#[tokio::test]
async fn a_wait_that_ends_in_completion_returns_the_url() {
    let sim = start_sim().await;
    let child = spawn(&sim, FAST).await;
    let task_id = create(&child.client, "A short clip [after:2]").await;

    let started = Instant::now();
    let r = call(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 30 }),
    )
    .await;
    let elapsed = started.elapsed();
    let sc = expect_ok(&r);
    assert_eq!(sc["status"], "completed", "{r}");
    let url = sc["video_urls"][0].as_str().expect("a video URL");
    assert!(result_text(&r).contains(url), "the text carries the URL");
    assert!(elapsed < Duration::from_secs(30), "waited {elapsed:?}");
    // Gentle polling: about one lookup per 0.2 s over ~2 s, never a hot loop.
    let gets = sim.state.count("get");
    assert!((2..=40).contains(&gets), "{gets} status lookups");
}

#[tokio::test]
async fn a_wait_that_runs_out_is_a_normal_still_rendering_result() {
    let sim = start_sim().await;
    let child = spawn(&sim, FAST).await;
    let task_id = create(&child.client, "A long film [after:120]").await;

    let started = Instant::now();
    let r = call(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 2 }),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(!is_error(&r), "a wait that runs out is not an error: {r}");
    let sc = expect_ok(&r);
    assert!(
        matches!(sc["status"].as_str(), Some("pending" | "processing")),
        "{sc}"
    );
    let text = result_text(&r);
    assert!(text.to_lowercase().contains("still rendering"), "{text}");
    let next = sc["next_step"].as_str().unwrap();
    assert!(next.contains("get_video_status"), "{next}");
    assert!(next.contains("Do not call create_video"), "{next}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "returned early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2 + 10),
        "overran the bound: {elapsed:?}"
    );
    assert_eq!(sim.state.count("create"), 1, "never re-created");
}

#[tokio::test]
async fn a_slow_upstream_cannot_carry_a_wait_past_its_bound() {
    // given a task whose every status lookup after the first hangs for 30 s
    let sim = start_sim().await;
    let child = spawn(&sim, FAST).await;
    let task_id = create(
        &child.client,
        "A stuck gateway [after:120] [get:slow=30:after1]",
    )
    .await;
    // when the client waits 2 s
    let started = Instant::now();
    let r = call(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 2 }),
    )
    .await;
    let elapsed = started.elapsed();
    // then the wait ends as a normal "still rendering" answer with the last known
    // state, long before the hanging lookup would have answered
    assert!(!is_error(&r), "{r}");
    let sc = expect_ok(&r);
    assert!(
        matches!(sc["status"].as_str(), Some("pending" | "processing")),
        "{sc}"
    );
    // The bound is the wait plus the server's 5 s grace for a lookup in
    // flight; the hanging lookup alone would take 30 s.
    assert!(
        elapsed >= Duration::from_secs(2),
        "returned before the wait: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2 + 5 + 3),
        "waited for the slow lookup: {elapsed:?}"
    );
    assert!(sim.state.count("get") >= 2, "a second lookup was attempted");
}

#[tokio::test]
async fn wait_seconds_over_the_cap_is_clamped_not_refused() {
    let sim = start_sim().await;
    let child = spawn(&sim, FAST).await;
    let task_id = create(&child.client, "Quick [after:1]").await;
    // 10,000 s is far over the 120 s cap; the task finishes in ~1 s anyway.
    let r = call(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 10000 }),
    )
    .await;
    assert_eq!(expect_ok(&r)["status"], "completed", "{r}");
    assert!(result_text(&r).contains("shortened to this server's limit of 120 s"));
    // Bad values are refused before any lookup.
    let before = sim.state.count("get");
    let bad = call(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": -1 }),
    )
    .await;
    assert!(is_error(&bad), "{bad}");
    assert!(result_text(&bad).contains("wait_seconds"), "{bad}");
    assert_eq!(sim.state.count("get"), before);
}

#[tokio::test]
async fn a_client_cancellation_stops_polling() {
    let sim = start_sim().await;
    let child = spawn(&sim, FAST).await;
    let task_id = create(&child.client, "Never ends [after:600]").await;

    let handle = send(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 60 }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let polling = sim.state.count("get");
    assert!(polling >= 3, "the wait polls: {polling} lookups");
    handle
        .cancel(Some("user pressed stop".into()))
        .await
        .unwrap();
    // Let a lookup that was already in flight land, then watch the counter.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after_cancel = sim.state.count("get");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sim.state.count("get"),
        after_cancel,
        "status lookups continued after the cancellation"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !child.stderr().contains("wait cancelled by the client") {
        assert!(Instant::now() < deadline, "stderr: {}", child.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server still answers.
    let r = call(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id }),
    )
    .await;
    expect_ok(&r);
}

#[tokio::test]
async fn progress_notifications_arrive_in_order_and_increase_over_stdio() {
    let sim = start_sim().await;
    let child = spawn(&sim, FAST).await;
    let task_id = create(&child.client, "Progress please [after:3]").await;

    let handle = send(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 30 }),
    )
    .await;
    let token = handle.progress_token.clone();
    let r = answer(handle).await;
    assert_eq!(expect_ok(&r)["status"], "completed", "{r}");
    // Notifications are handled on their own tasks: let the last one land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notes = child.recorder.for_token(&token);
    assert!(notes.len() >= 3, "{notes:?}");
    assert_monotonic(&notes);
    let last = notes.last().unwrap();
    assert_eq!(last.progress, 100.0);
    assert_eq!(last.message.as_deref(), Some("completed"));
    for n in &notes {
        assert!(
            matches!(
                n.message.as_deref(),
                Some("pending" | "processing" | "completed")
            ),
            "message is the upstream status: {n:?}"
        );
    }
    // None after the result.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(child.recorder.for_token(&token).len(), notes.len());
}

#[tokio::test]
async fn heartbeats_keep_progress_flowing_while_the_upstream_is_silent() {
    let sim = start_sim().await;
    // Slow polls (5 s) but a 0.3 s heartbeat; [minimal] answers carry no progress.
    let child = spawn(
        &sim,
        &["--poll-interval", "5", "--progress-heartbeat", "0.3"],
    )
    .await;
    let task_id = create(&child.client, "Quiet [minimal] [after:600]").await;
    let before = sim.state.count("get");

    let handle = send(
        &child.client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 2 }),
    )
    .await;
    let token = handle.progress_token.clone();
    let r = answer(handle).await;
    assert!(!is_error(&r), "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notes = child.recorder.for_token(&token);
    assert!(
        notes.len() >= 4,
        "heartbeats every 0.3 s over 2 s: {notes:?}"
    );
    assert_monotonic(&notes);
    assert!(notes.iter().all(|n| n.progress < 100.0), "{notes:?}");
    // One lookup at the start and one when the wait ends: no more than that.
    assert_eq!(sim.state.count("get") - before, 2);
}

#[tokio::test]
async fn no_progress_is_sent_without_a_progress_token() {
    let sim = start_sim().await;
    let mut opts = ServerOpts::for_sim(&sim);
    for a in FAST {
        opts = opts.arg(*a);
    }
    let (mut raw, _) = RawChild::legacy(opts).await;
    let created = raw
        .call("create_video", json!({ "prompt": "No token [after:1.5]" }))
        .await;
    let task_id = task_id_of(&created);
    let r = raw
        .call(
            "get_video_status",
            json!({ "task_id": task_id, "wait_seconds": 20 }),
        )
        .await;
    assert_eq!(expect_ok(&r)["status"], "completed", "{r}");
    let progress: Vec<_> = raw
        .stashed()
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(progress.is_empty(), "{progress:?}");
    let _ = raw.close().await;
}

/// The HTTP router bound to 127.0.0.1:0 and rmcp's Streamable HTTP client;
/// returns the progress notifications of one waiting status call.
async fn progress_over_http(modern: bool) -> Vec<ProgressNotificationParam> {
    let sim = start_sim().await;
    let mut gw = GatewayConfig::new(sim.base_url());
    gw.timeout = Duration::from_secs(10);
    let state = Arc::new(AppState {
        backend: Arc::new(GatewayClient::new(gw)),
        catalog: None,
        server_key: ApiKey::new(common::TEST_KEY),
        options: ToolOptions {
            http_mode: true,
            poll_interval: Duration::from_millis(200),
            progress_heartbeat: Duration::from_millis(500),
            ..ToolOptions::default()
        },
    });
    // Built the way the binary builds it, so new HTTP settings get their defaults.
    let http: HttpSettings = Cli::try_parse_from(["heygen-video-mcp", "--http", "127.0.0.1:0"])
        .unwrap()
        .into_settings(None, None)
        .unwrap()
        .http
        .unwrap();
    let app = build(state, &http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app.router).await;
    });

    // reqwest is built without a bundled crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let transport = StreamableHttpClientTransport::from_uri(format!("http://{addr}/mcp"));
    let recorder = Recorder::default();
    let client = if modern {
        recorder
            .clone()
            .serve_with_lifecycle(
                transport,
                rmcp::ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
    } else {
        recorder.clone().serve(transport).await
    }
    .expect("the HTTP client connects");
    let task_id = create(&client, "Over HTTP [after:2]").await;
    let handle = send(
        &client,
        "get_video_status",
        json!({ "task_id": task_id, "wait_seconds": 30 }),
    )
    .await;
    let token = handle.progress_token.clone();
    let r = answer(handle).await;
    assert_eq!(expect_ok(&r)["status"], "completed", "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notes = recorder.for_token(&token);
    let _ = client.cancel().await;
    server.abort();
    notes
}

#[tokio::test]
async fn progress_notifications_arrive_over_streamable_http_with_a_session() {
    let notes = progress_over_http(false).await;
    assert!(notes.len() >= 2, "progress over HTTP: {notes:?}");
    assert_monotonic(&notes);
    assert_eq!(notes.last().unwrap().progress, 100.0);
}

#[tokio::test]
async fn progress_notifications_arrive_over_streamable_http_2026_07_28() {
    let notes = progress_over_http(true).await;
    assert!(notes.len() >= 2, "progress over HTTP: {notes:?}");
    assert_monotonic(&notes);
    assert_eq!(notes.last().unwrap().progress, 100.0);
}

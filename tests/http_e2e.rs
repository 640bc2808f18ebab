//! Streamable HTTP, end to end: rmcp's own HTTP client against our router bound
//! to 127.0.0.1:0, the simulator as the upstream. Both protocol revisions,
//! DNS-rebinding protection, caller authentication, per-caller keys, the body
//! limit and a graceful drain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use heygen_video_mcp::{
    config::{CallerKeys, HttpSettings},
    gateway::{ApiKey, GatewayClient, GatewayConfig},
    simulator::{SimConfig, Simulator},
    tools::{AppState, ToolOptions},
    transport::http::{Drain, build},
};
use rmcp::{
    ClientServiceExt, RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion},
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

const SERVER_KEY: &str = "server-key-0123456789";

struct Server {
    addr: SocketAddr,
    sim: Simulator,
    drain: Drain,
    shutdown: tokio::sync::oneshot::Sender<Duration>,
    handle: tokio::task::JoinHandle<()>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

fn settings(tweak: impl FnOnce(&mut HttpSettings)) -> HttpSettings {
    let mut s = HttpSettings {
        addr: "127.0.0.1:0".parse().unwrap(),
        auth_tokens: vec![],
        allowed_hosts: vec![],
        allowed_origins: vec![],
        caller_keys: CallerKeys::Off,
        legacy_sessions: true,
        max_body_bytes: 64 * 1024,
        max_concurrent: 256,
        drain_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(60),
        sessions: Default::default(),
        connections: Default::default(),
        oauth: None,
    };
    tweak(&mut s);
    s
}

async fn start(http: HttpSettings, server_key: Option<&str>) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(SimConfig {
        render_time: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut gw = GatewayConfig::new(sim.base_url());
    gw.timeout = Duration::from_secs(10);
    let state = Arc::new(AppState {
        backend: Arc::new(GatewayClient::new(gw)),
        catalog: None,
        server_key: server_key.and_then(ApiKey::new),
        options: ToolOptions {
            caller_keys: http.caller_keys,
            ..ToolOptions::default()
        },
    });
    let app = build(state, &http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<Duration>();
    let drain = app.drain.clone();
    let d2 = drain.clone();
    let handle = tokio::spawn(async move {
        axum::serve(listener, app.router)
            .with_graceful_shutdown(async move {
                let t = rx.await.unwrap_or(Duration::from_secs(1));
                d2.drain(t).await;
            })
            .await
            .unwrap();
    });
    Server {
        addr,
        sim,
        drain,
        shutdown: tx,
        handle,
    }
}

fn transport(
    url: String,
    token: Option<&str>,
    headers: &[(&'static str, &str)],
) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(t) = token {
        cfg = cfg.auth_header(t.to_string());
    }
    if !headers.is_empty() {
        let map: HashMap<http::HeaderName, http::HeaderValue> = headers
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect();
        cfg = cfg.custom_headers(map);
    }
    StreamableHttpClientTransport::from_config(cfg)
}

async fn modern_client(
    url: String,
    token: Option<&str>,
    headers: &[(&'static str, &str)],
) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve_with_lifecycle(
            transport(url, token, headers),
            rmcp::ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("2026-07-28 client starts")
}

async fn legacy_client(
    url: String,
    token: Option<&str>,
    headers: &[(&'static str, &str)],
) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve(transport(url, token, headers))
        .await
        .expect("2025-11-25 client starts")
}

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &'static str,
    args: Value,
) -> CallToolResult {
    client
        .call_tool(
            CallToolRequestParams::new(tool).with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .expect("tools/call answers")
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn create_and_poll(client: &RunningService<RoleClient, ClientConfig>, prompt: &str) -> Value {
    let created = call(client, "create_video", json!({"prompt": prompt})).await;
    assert_eq!(created.is_error, Some(false), "{}", text(&created));
    let task_id = created.structured_content.as_ref().unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(client, "get_video_status", json!({"task_id": task_id})).await;
        assert_eq!(r.is_error, Some(false), "{}", text(&r));
        let sc = r.structured_content.clone().unwrap();
        if sc["status"] == "completed" {
            assert!(text(&r).contains(sc["video_urls"][0].as_str().unwrap()));
            return sc;
        }
        assert!(Instant::now() < deadline, "never completed: {sc}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_2026_07_28_client_lists_creates_and_polls_to_completion() {
    let server = start(settings(|_| {}), Some(SERVER_KEY)).await;
    let client = modern_client(server.url(), None, &[]).await;
    let info = client.peer_info().expect("discover result");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("heygen-video-mcp")
    );
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains(&"create_video".into()) && names.contains(&"get_video_status".into()));
    let done = create_and_poll(&client, "a modern client's video").await;
    let url = done["video_urls"][0].as_str().unwrap();
    assert!(url.starts_with(&server.sim.base_url()));
    assert_eq!(server.sim.state.count("create"), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_2025_11_25_client_with_a_session_lists_creates_and_polls_to_completion() {
    let server = start(settings(|_| {}), Some(SERVER_KEY)).await;
    // The handshake hands out a session id.
    let resp = reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("mcp-session-id").is_some());

    let client = legacy_client(server.url(), None, &[]).await;
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2025_11_25
    );
    create_and_poll(&client, "a legacy client's video").await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn legacy_sessions_can_be_switched_off() {
    let server = start(settings(|s| s.legacy_sessions = false), Some(SERVER_KEY)).await;
    let resp = reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("mcp-session-id").is_none());
    let client = legacy_client(server.url(), None, &[]).await;
    assert!(client.list_all_tools().await.unwrap().len() >= 2);
}

async fn raw_post(server: &Server, headers: &[(&str, &str)], body: String) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.unwrap()
}

fn create_call_body() -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "create_video", "arguments": {"prompt": "should never be created"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
}

const MODERN_HEADERS: [(&str, &str); 3] = [
    ("mcp-protocol-version", "2026-07-28"),
    ("mcp-method", "tools/call"),
    ("mcp-name", "create_video"),
];

#[tokio::test]
async fn foreign_host_and_origin_are_refused_before_authentication() {
    let server = start(
        settings(|s| s.auth_tokens = vec!["tok".into()]),
        Some(SERVER_KEY),
    )
    .await;
    let evil_host = raw_post(&server, &[("host", "evil.example")], create_call_body()).await;
    assert_eq!(evil_host.status(), 403);
    let evil_origin = raw_post(
        &server,
        &[("origin", "http://evil.example")],
        create_call_body(),
    )
    .await;
    assert_eq!(evil_origin.status(), 403);
    let null_origin = raw_post(&server, &[("origin", "null")], create_call_body()).await;
    assert_eq!(null_origin.status(), 403);
    // A loopback origin with the right token passes.
    let mut ok_headers = MODERN_HEADERS.to_vec();
    ok_headers.push(("origin", "http://localhost:6274"));
    ok_headers.push(("authorization", "Bearer tok"));
    let ok = raw_post(&server, &ok_headers, create_call_body()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(server.sim.state.count("create"), 1);
    // The health check needs neither Host nor Origin nor a token.
    let health = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn configured_public_host_and_origin_are_accepted() {
    let server = start(
        settings(|s| {
            s.allowed_hosts = vec!["mcp.example.com".into()];
            s.allowed_origins = vec!["https://app.example.com".into()];
        }),
        Some(SERVER_KEY),
    )
    .await;
    let mut h = MODERN_HEADERS.to_vec();
    h.push(("host", "mcp.example.com"));
    h.push(("origin", "https://app.example.com"));
    assert_eq!(
        raw_post(&server, &h, create_call_body()).await.status(),
        200
    );
}

#[tokio::test]
async fn missing_or_wrong_bearer_is_401_and_reaches_no_upstream() {
    let server = start(
        settings(|s| s.auth_tokens = vec!["old-token".into(), "new-token".into()]),
        Some(SERVER_KEY),
    )
    .await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic b2xkLXRva2Vu"),
        Some("Bearer "),
    ] {
        let mut h = MODERN_HEADERS.to_vec();
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        let r = raw_post(&server, &h, create_call_body()).await;
        assert_eq!(r.status(), 401, "{auth:?}");
        let www = r
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(www.starts_with("Bearer"), "{www}");
    }
    assert_eq!(server.sim.state.count("create"), 0);
    // Both rotated tokens work, through rmcp's client too.
    for token in ["old-token", "new-token"] {
        let client = modern_client(server.url(), Some(token), &[]).await;
        assert!(client.list_all_tools().await.unwrap().len() >= 2);
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_callers_spend_their_own_keys() {
    let server = start(
        settings(|s| s.caller_keys = CallerKeys::Optional),
        Some(SERVER_KEY),
    )
    .await;
    let alice = modern_client(
        server.url(),
        None,
        &[("x-heygen-api-key", "alice-key-0123456789")],
    )
    .await;
    let bob = legacy_client(
        server.url(),
        None,
        &[("x-heygen-api-key", "bob-key-0123456789")],
    )
    .await;
    let anon = modern_client(server.url(), None, &[]).await;
    // [slow:1] keeps every create in flight at the same time.
    let (a, b, c) = tokio::join!(
        call(&alice, "create_video", json!({"prompt": "alice [slow:1]"})),
        call(&bob, "create_video", json!({"prompt": "bob [slow:1]"})),
        call(&anon, "create_video", json!({"prompt": "anon [slow:1]"})),
    );
    for r in [&a, &b, &c] {
        assert_eq!(r.is_error, Some(false), "{}", text(r));
    }
    let seen = server.sim.state.requests();
    let key_for = |who: &str| {
        seen.iter()
            .find(|r| {
                r.body
                    .as_ref()
                    .and_then(|b| b["prompt"].as_str())
                    .is_some_and(|p| p.starts_with(who))
            })
            .and_then(|r| r.key.clone())
            .unwrap()
    };
    assert_eq!(key_for("alice"), "alice-key-0123456789");
    assert_eq!(key_for("bob"), "bob-key-0123456789");
    assert_eq!(key_for("anon"), SERVER_KEY);
    // Each caller can follow only its own task (the upstream scopes tasks per key).
    let alice_task = a.structured_content.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(&bob, "get_video_status", json!({"task_id": alice_task})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("HTTP 404"), "{}", text(&r));
    let r = call(&alice, "get_video_status", json!({"task_id": alice_task})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
}

#[tokio::test]
async fn required_caller_keys_refuse_a_caller_without_one() {
    let server = start(
        settings(|s| s.caller_keys = CallerKeys::Required),
        Some(SERVER_KEY),
    )
    .await;
    let anon = modern_client(server.url(), None, &[]).await;
    let r = call(&anon, "create_video", json!({"prompt": "no key"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("X-HeyGen-Api-Key"), "{}", text(&r));
    assert_eq!(server.sim.state.count("create"), 0);
    let keyed = modern_client(
        server.url(),
        None,
        &[("x-heygen-api-key", "carol-key-0123456789")],
    )
    .await;
    let r = call(&keyed, "create_video", json!({"prompt": "with key"})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert_eq!(
        server.sim.state.requests()[0].key.as_deref(),
        Some("carol-key-0123456789")
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let server = start(settings(|s| s.max_body_bytes = 16 * 1024), Some(SERVER_KEY)).await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "create_video", "arguments": {"prompt": "x".repeat(100_000)},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let r = raw_post(&server, &MODERN_HEADERS, big).await;
    assert_eq!(r.status(), 413);
    assert_eq!(server.sim.state.count("create"), 0);
    // The server is still fine afterwards.
    let client = modern_client(server.url(), None, &[]).await;
    assert!(client.list_all_tools().await.unwrap().len() >= 2);
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish_and_refuses_new_work() {
    let server = start(settings(|_| {}), Some(SERVER_KEY)).await;
    let client = modern_client(server.url(), None, &[]).await;
    let slow = tokio::spawn(async move {
        let r = call(&client, "create_video", json!({"prompt": "slow [slow:3]"})).await;
        (r, client)
    });
    // Wait until the call is in flight, then start draining.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.drain.in_flight() == 0 {
        assert!(Instant::now() < deadline, "call never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Server {
        addr,
        sim,
        drain,
        shutdown,
        handle,
    } = server;
    shutdown.send(Duration::from_secs(20)).unwrap();
    while !drain.is_draining() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // New work is refused while draining: the listener stays open until the
    // drain ends (the slow call is still running), so the late request gets
    // a clear 503 with a retry hint, not a connection error.
    let late = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::Client::new()
            .post(format!("http://{addr}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(create_call_body())
            .send(),
    )
    .await
    .expect("the late request is answered in time")
    .expect("the listener is still open while the in-flight call runs");
    assert!(
        drain.in_flight() > 0,
        "the slow call ended before the late request was answered; the check proves nothing"
    );
    assert_eq!(late.status(), 503);
    assert_eq!(
        late.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let why = late.text().await.unwrap();
    assert!(why.contains("shutting down"), "{why}");
    let (r, _client) = slow.await.unwrap();
    assert_eq!(
        r.is_error,
        Some(false),
        "the in-flight call finished: {}",
        text(&r)
    );
    tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("server stops after draining")
        .unwrap();
    assert_eq!(sim.state.count("create"), 1);
}

#[test]
fn binding_a_public_address_without_a_token_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heygen-video-mcp"))
        .args(["--http", "0.0.0.0:0", "--simulate"])
        .env_remove("HEYGEN_MCP_AUTH_TOKEN")
        .env_remove("HEYGEN_INSECURE_NO_AUTH")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HEYGEN_MCP_AUTH_TOKEN") && err.contains("--insecure-no-auth"),
        "{err}"
    );
}

#[test]
fn the_binary_drains_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_heygen-video-mcp"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--simulate",
            "--drain-timeout",
            "20",
        ])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the child if an assertion fails before it exits on its own.
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let guard = KillOnDrop(child.id());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("listening on ") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = modern_client(url, None, &[]).await;
        let pid = child.id();
        let call = tokio::spawn(async move {
            call(
                &client,
                "create_video",
                json!({"prompt": "slow [slow:1.5]"}),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let r = call.await.unwrap();
        assert_eq!(r.is_error, Some(false), "{}", text(&r));
    });
    let status = child.wait().unwrap();
    // Reaped: its pid may be reused, so the guard must not fire any more.
    std::mem::forget(guard);
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn prompts_are_empty_and_the_only_resource_is_the_player_on_both_revisions() {
    let server = start(settings(|_| {}), Some(SERVER_KEY)).await;
    let modern = modern_client(server.url(), None, &[]).await;
    let legacy = legacy_client(server.url(), None, &[]).await;
    for client in [&modern, &legacy] {
        assert!(client.list_all_prompts().await.unwrap().is_empty());
        let resources = client.list_all_resources().await.unwrap();
        assert_eq!(resources.len(), 1, "{resources:?}");
        assert_eq!(resources[0].uri, "ui://heygen-video-mcp/player.html");
        let read = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(
                "file:///etc/passwd",
            ))
            .await;
        assert!(
            read.is_err(),
            "reading a resource that does not exist fails"
        );
    }
    assert_eq!(
        server.sim.state.count("create") + server.sim.state.count("get"),
        0
    );
}

/// A second replica: its own router and state, the same upstream.
async fn replica(upstream: &str) -> SocketAddr {
    let mut gw = GatewayConfig::new(upstream.to_string());
    gw.timeout = Duration::from_secs(10);
    let state = Arc::new(AppState {
        backend: Arc::new(GatewayClient::new(gw)),
        catalog: None,
        server_key: ApiKey::new(SERVER_KEY),
        options: ToolOptions::default(),
    });
    let app = build(state, &settings(|_| {}));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app.router).await.unwrap() });
    addr
}

/// One 2026-07-28 request; the answer may come as JSON or as SSE events.
async fn modern_request(addr: SocketAddr, method: &str, name: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .header("mcp-name", name)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{method}");
    let text = resp.text().await.unwrap();
    let message = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v,
        Err(_) => text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
            .expect("a response event"),
    };
    message
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{method} failed: {message}"))
}

#[tokio::test]
async fn a_task_created_on_one_replica_is_followed_to_its_result_on_another() {
    let a = start(settings(|_| {}), Some(SERVER_KEY)).await;
    let b = replica(&a.sim.base_url()).await;
    let created = modern_request(
        a.addr,
        "tools/call",
        "create_video",
        json!({"name": "create_video", "arguments": {"prompt": "a task over HTTP [after:1]"}}),
    )
    .await;
    assert_eq!(created["resultType"], "task", "{created}");
    let task_id = created["taskId"].as_str().unwrap().to_string();
    assert!(
        task_id.starts_with("task-unified-"),
        "the task id is the upstream id: {task_id}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let got = modern_request(b, "tasks/get", &task_id, json!({"taskId": task_id})).await;
        if got["status"] == "completed" {
            break got;
        }
        assert_eq!(got["status"], "working", "{got}");
        assert!(Instant::now() < deadline, "never completed: {got}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let result = &done["result"];
    assert_eq!(result["isError"], false, "{done}");
    assert_eq!(result["structuredContent"]["status"], "completed", "{done}");
    assert!(
        result["structuredContent"]["video_urls"][0]
            .as_str()
            .is_some()
    );
    assert_eq!(a.sim.state.count("create"), 1);
}

#[tokio::test]
async fn an_unusable_caller_key_is_refused_not_replaced_by_the_servers_key() {
    let server = start(
        settings(|s| s.caller_keys = CallerKeys::Optional),
        Some(SERVER_KEY),
    )
    .await;
    let mut h = MODERN_HEADERS.to_vec();
    h.push(("x-heygen-api-key", "   "));
    let resp = raw_post(&server, &h, create_call_body()).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"isError\":true"), "{body}");
    assert!(body.contains("X-HeyGen-Api-Key"), "{body}");
    assert_eq!(
        server.sim.state.count("create"),
        0,
        "the server's key was not used"
    );
}

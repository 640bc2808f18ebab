//! `download_video` on a multi-tenant HTTP server (callers bring their own
//! upstream key): each caller saves into its own subfolder of the download
//! folder, `overwrite` only ever replaces the caller's own files, and each
//! caller is held to a quota of files and bytes. The HTTP router runs
//! in-process on loopback against the in-process simulator. On stdio the
//! folder is used as it is, without a quota.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use common::{TEST_KEY, expect_ok, expect_tool_error, task_id_of};
use heygen_video_mcp::{
    config::{CallerKeys, HttpSettings},
    gateway::{ApiKey, GatewayClient, GatewayConfig},
    simulator::{SAMPLE_MP4, SimConfig, Simulator},
    tools::{
        AppState, ToolOptions, VideoServer,
        download::{Downloads, TenantQuota},
    },
    transport::http::build,
};
use rmcp::{
    ClientServiceExt, RoleClient, ServiceExt,
    model::{CallToolRequestParams, ClientConfig, ProtocolVersion},
    service::{Peer, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";

async fn sim() -> Simulator {
    Simulator::start(SimConfig {
        render_time: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn options(dir: &Path, quota: TenantQuota, http_mode: bool) -> ToolOptions {
    ToolOptions {
        http_mode,
        caller_keys: if http_mode {
            CallerKeys::Required
        } else {
            CallerKeys::Off
        },
        download_dir: Some(dir.to_path_buf()),
        poll_interval: Duration::from_millis(200),
        downloads: Downloads::with_tenant_quota(quota),
        ..ToolOptions::default()
    }
}

/// An HTTP server in this process whose callers must bring their own key.
async fn http_server(sim: &Simulator, dir: &Path, quota: TenantQuota) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = HttpSettings {
        addr: "127.0.0.1:0".parse().unwrap(),
        auth_tokens: vec![],
        allowed_hosts: vec![],
        allowed_origins: vec![],
        caller_keys: CallerKeys::Required,
        legacy_sessions: false,
        max_body_bytes: 64 * 1024,
        max_concurrent: 64,
        drain_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(60),
        sessions: Default::default(),
        connections: Default::default(),
        oauth: None,
    };
    let state = Arc::new(AppState {
        backend: Arc::new(GatewayClient::new(GatewayConfig::new(sim.base_url()))),
        catalog: None,
        server_key: None,
        options: options(dir, quota, true),
    });
    let app = build(state, &http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.router).await;
    });
    format!("http://{addr}/mcp")
}

type Client = RunningService<RoleClient, ClientConfig>;

async fn http_client(url: &str, key: &str) -> Client {
    let headers: HashMap<http::HeaderName, http::HeaderValue> = [(
        http::HeaderName::from_static("x-heygen-api-key"),
        http::HeaderValue::from_str(key).unwrap(),
    )]
    .into_iter()
    .collect();
    let cfg =
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).custom_headers(headers);
    ClientConfig::default()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_config(cfg),
            rmcp::ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap()
}

async fn call(c: &Peer<RoleClient>, tool: &str, args: Value) -> Value {
    let r = c
        .call_tool(
            CallToolRequestParams::new(tool.to_string())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    serde_json::to_value(r).unwrap()
}

/// Creates a video and waits (server-side) until it is completed.
async fn completed(c: &Peer<RoleClient>, prompt: &str) -> String {
    let id = task_id_of(&call(c, "create_video", json!({ "prompt": prompt })).await);
    let r = call(
        c,
        "get_video_status",
        json!({ "task_id": id, "wait_seconds": 20 }),
    )
    .await;
    assert_eq!(expect_ok(&r)["status"], "completed", "{r}");
    id
}

async fn download(c: &Peer<RoleClient>, task_id: &str, name: &str, overwrite: bool) -> Value {
    call(
        c,
        "download_video",
        json!({ "task_id": task_id, "file_name": name, "overwrite": overwrite }),
    )
    .await
}

fn saved(r: &Value) -> PathBuf {
    PathBuf::from(
        expect_ok(r)["saved_path"]
            .as_str()
            .unwrap_or_else(|| panic!("no saved_path in {r}")),
    )
}

fn tenant_dir(root: &Path, key: &str) -> PathBuf {
    root.canonicalize()
        .unwrap()
        .join(ApiKey::new(key).unwrap().fingerprint())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn callers_save_into_their_own_folders_and_overwrite_only_their_own_files() {
    let sim = sim().await;
    let root = tempfile::tempdir().unwrap();
    let url = http_server(&sim, root.path(), TenantQuota::default()).await;
    let alice = http_client(&url, ALICE).await;
    let bob = http_client(&url, BOB).await;

    // download_video says it may replace a file (overwrite: true).
    let tools = alice.list_all_tools().await.unwrap();
    let tool = tools.iter().find(|t| t.name == "download_video").unwrap();
    let hints = serde_json::to_value(&tool.annotations).unwrap();
    assert_eq!(hints["destructiveHint"], true, "{hints}");

    let a_task = completed(&alice, "Alice's video").await;
    let b_task = completed(&bob, "Bob's video").await;

    let a_path = saved(&download(&alice, &a_task, "promo.mp4", false).await);
    assert_eq!(a_path, tenant_dir(root.path(), ALICE).join("promo.mp4"));
    // Alice's file is her own: make it recognisable.
    std::fs::write(&a_path, b"alice's own file").unwrap();

    // Bob asks for the same name, replacing whatever is there: his own folder.
    let b_path = saved(&download(&bob, &b_task, "promo.mp4", true).await);
    assert_eq!(b_path, tenant_dir(root.path(), BOB).join("promo.mp4"));
    assert_ne!(a_path, b_path);
    assert_eq!(std::fs::read(&a_path).unwrap(), b"alice's own file");
    assert_eq!(std::fs::read(&b_path).unwrap(), SAMPLE_MP4);

    // Bob again without overwrite: his own saved file, Alice untouched.
    let b_again = saved(&download(&bob, &b_task, "promo.mp4", false).await);
    assert_eq!(b_again, b_path);
    assert_eq!(std::fs::read(&a_path).unwrap(), b"alice's own file");

    // Alice replacing her own file works, and Bob's stay.
    let a_again = saved(&download(&alice, &a_task, "promo.mp4", true).await);
    assert_eq!(a_again, a_path);
    assert_eq!(std::fs::read(&a_path).unwrap(), SAMPLE_MP4);
    assert_eq!(std::fs::read(&b_path).unwrap(), SAMPLE_MP4);

    // Nothing lands in the shared folder itself.
    let mut expected = vec![
        ApiKey::new(ALICE).unwrap().fingerprint(),
        ApiKey::new(BOB).unwrap().fingerprint(),
    ];
    expected.sort();
    assert_eq!(names(root.path()), expected);
    assert_eq!(names(&tenant_dir(root.path(), ALICE)), ["promo.mp4"]);
    assert_eq!(names(&tenant_dir(root.path(), BOB)), ["promo.mp4"]);
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn each_caller_is_held_to_a_download_quota() {
    let sim = sim().await;
    let root = tempfile::tempdir().unwrap();
    let quota = TenantQuota {
        max_files: 2,
        max_bytes: 1024 * 1024 * 1024,
    };
    let url = http_server(&sim, root.path(), quota).await;
    let alice = http_client(&url, ALICE).await;
    let bob = http_client(&url, BOB).await;
    let a_task = completed(&alice, "Alice's video").await;
    let b_task = completed(&bob, "Bob's video").await;

    saved(&download(&alice, &a_task, "one.mp4", false).await);
    saved(&download(&alice, &a_task, "two.mp4", false).await);
    let files_before = sim.state.count("file");
    let refused = expect_tool_error(&download(&alice, &a_task, "three.mp4", false).await);
    assert!(refused.contains("full"), "{refused}");
    assert!(refused.contains("at most 2 file(s)"), "{refused}");
    assert!(refused.contains("URL"), "{refused}");
    assert_eq!(sim.state.count("file"), files_before, "nothing was fetched");
    assert!(!tenant_dir(root.path(), ALICE).join("three.mp4").exists());

    // Asking again for a video already saved adds nothing: not refused.
    saved(&download(&alice, &a_task, "two.mp4", false).await);
    // Replacing one of her own files keeps the count: allowed.
    let replaced = saved(&download(&alice, &a_task, "one.mp4", true).await);
    assert_eq!(replaced, tenant_dir(root.path(), ALICE).join("one.mp4"));
    assert_eq!(names(&tenant_dir(root.path(), ALICE)).len(), 2);

    // Bob's quota is his own.
    saved(&download(&bob, &b_task, "one.mp4", false).await);
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn stdio_saves_into_the_folder_itself_without_a_quota() {
    let sim = Simulator::start(SimConfig {
        render_time: Duration::from_secs(1),
        api_key: Some(TEST_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let quota = TenantQuota {
        max_files: 1,
        max_bytes: 1,
    };
    let state = Arc::new(AppState {
        backend: Arc::new(GatewayClient::new(GatewayConfig::new(sim.base_url()))),
        catalog: None,
        server_key: ApiKey::new(TEST_KEY),
        options: options(root.path(), quota, false),
    });
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = VideoServer::new(state).serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ().serve(client_io).await.unwrap();
    let task = completed(&client, "A local video").await;
    let first = saved(&download(&client, &task, "clip.mp4", false).await);
    let second = saved(&download(&client, &task, "clip.mp4", true).await);
    let dir = root.path().canonicalize().unwrap();
    assert_eq!(first, dir.join("clip.mp4"));
    assert_eq!(second, first);
    saved(&download(&client, &task, "other.mp4", false).await);
    assert_eq!(names(&dir), ["clip.mp4", "other.mp4"]);
    let _ = client.cancel().await;
}

//! The task ledger and `list_videos`, end to end: the built binary over stdio
//! (restarts, a corrupt file, two processes writing at once, filters, limits,
//! refresh, expired links, saved files, `--no-ledger`, `--simulate`) and the
//! HTTP router in-process with per-caller keys (tenants never see each other).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use common::*;
use heygen_video_mcp::{
    config::{CallerKeys, HttpSettings},
    gateway::{GatewayClient, GatewayConfig},
    ledger::SqliteLedger,
    simulator::{SimConfig, Simulator},
    tools::{AppState, ToolOptions},
    transport::http::build,
};
use rmcp::{
    ClientServiceExt, RoleClient,
    model::{CallToolRequestParams, ClientConfig, ProtocolVersion},
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

async fn child_on(sim: &Simulator, ledger: &Path, args: &[&str]) -> McpChild {
    let mut opts = ServerOpts::for_sim(sim).ledger(ledger);
    for a in args {
        opts = opts.arg(*a);
    }
    McpChild::legacy(opts).await
}

async fn list(c: &McpChild, args: Value) -> Value {
    let r = c.call("list_videos", args).await;
    let sc = expect_ok(&r).clone();
    assert!(sc.is_object() && sc["videos"].is_array(), "{sc}");
    assert!(!result_text(&r).is_empty());
    sc
}

fn ids(list: &Value) -> Vec<String> {
    list["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["task_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_ledger_survives_a_restart() {
    let sim = start_sim().await;
    let home = TestHome::new();
    let ledger = home.path().join("ledger.sqlite3");

    let first = child_on(&sim, &ledger, &[]).await;
    let a = task_id_of(
        &first
            .call(
                "create_video",
                json!({"prompt": "First video [after:30]", "idempotency_key": "first"}),
            )
            .await,
    );
    let b = task_id_of(
        &first
            .call("create_video", json!({"prompt": "Second video [after:30]"}))
            .await,
    );
    first.shutdown().await;

    // A new process (a new client session) remembers both, newest first.
    let second = child_on(&sim, &ledger, &[]).await;
    let listed = list(&second, json!({})).await;
    assert_eq!(ids(&listed), vec![b.clone(), a.clone()]);
    assert_eq!(listed["ledger_enabled"], true);
    let v = &listed["videos"][1];
    assert_eq!(v["prompt"], "First video [after:30]");
    assert_eq!(v["idempotency_key"], "first");
    assert_video_task_shape(v);
    // ...and still honours the key it was given.
    let again = second
        .call(
            "create_video",
            json!({"prompt": "First video [after:30]", "idempotency_key": "first"}),
        )
        .await;
    assert_eq!(task_id_of(&again), a);
    assert_eq!(sim.state.count("create"), 2);
    second.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_ledger_file_still_lets_videos_be_created() {
    let sim = start_sim().await;
    let home = TestHome::new();
    let ledger = home.path().join("ledger.sqlite3");
    std::fs::write(
        &ledger,
        b"this is not a database, just garbage ".repeat(300),
    )
    .unwrap();

    let c = child_on(&sim, &ledger, &[]).await;
    let r = c
        .call("create_video", json!({"prompt": "Despite the ledger"}))
        .await;
    assert_video_task_shape(expect_ok(&r));
    assert_eq!(sim.state.count("create"), 1);
    let listed = list(&c, json!({})).await;
    assert_eq!(listed["ledger_enabled"], false, "{listed}");
    let stderr = c.shutdown().await;
    assert!(
        stderr.contains("cannot be used") && stderr.contains("WARN"),
        "no warning on stderr:\n{}",
        stderr.joined()
    );
    // The user's file is left alone.
    assert!(std::fs::read(&ledger).unwrap().starts_with(b"this is not"));
}

#[tokio::test]
async fn an_unwritable_ledger_location_still_lets_videos_be_created() {
    let sim = start_sim().await;
    let home = TestHome::new();
    // A folder where the file should be.
    let ledger = home.path().join("ledger-dir");
    std::fs::create_dir_all(&ledger).unwrap();
    let c = child_on(&sim, &ledger, &[]).await;
    let r = c
        .call("create_video", json!({"prompt": "Still works"}))
        .await;
    expect_ok(&r);
    assert_eq!(sim.state.count("create"), 1);
    let stderr = c.shutdown().await;
    assert!(stderr.contains("cannot be used"), "{}", stderr.joined());
}

/// `n` distinct creates on `c`, all at once.
async fn create_many(c: &McpChild, who: &str, n: usize) -> Vec<Value> {
    let futs: Vec<_> = (0..n)
        .map(|i| {
            c.call(
                "create_video",
                json!({ "prompt": format!("{who} video {i} [after:30]") }),
            )
        })
        .collect();
    futures::future::join_all(futs).await
}

#[tokio::test]
async fn two_processes_writing_at_once_lose_nothing() {
    let sim = start_sim().await;
    let home = TestHome::new();
    let ledger = home.path().join("ledger.sqlite3");
    let one = child_on(&sim, &ledger, &[]).await;
    let two = child_on(&sim, &ledger, &[]).await;
    const EACH: usize = 8;
    let (a, b) = tokio::join!(
        create_many(&one, "one", EACH),
        create_many(&two, "two", EACH)
    );
    let mut made: Vec<String> = a.iter().chain(b.iter()).map(task_id_of).collect();
    assert_eq!(sim.state.count("create") as usize, 2 * EACH);
    // Status checks write too, from both processes at once.
    let checks: Vec<_> = made
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let c = if i % 2 == 0 { &one } else { &two };
            c.call("get_video_status", json!({ "task_id": id }))
        })
        .collect();
    for r in futures::future::join_all(checks).await {
        expect_ok(&r);
    }
    one.shutdown().await;
    two.shutdown().await;

    let third = child_on(&sim, &ledger, &[]).await;
    let listed = list(&third, json!({"limit": 100})).await;
    let mut seen = ids(&listed);
    made.sort();
    seen.sort();
    assert_eq!(seen, made, "every video of both processes is in the ledger");
    third.shutdown().await;
}

#[tokio::test]
async fn list_videos_filters_and_limits() {
    let sim = start_sim().await;
    let home = TestHome::new();
    let c = child_on(&sim, &home.path().join("ledger.sqlite3"), &[]).await;
    let done = task_id_of(
        &c.call("create_video", json!({"prompt": "Done [after:0]"}))
            .await,
    );
    let failed = task_id_of(
        &c.call("create_video", json!({"prompt": "Broken [fail] [after:0]"}))
            .await,
    );
    let running = task_id_of(
        &c.call("create_video", json!({"prompt": "Slow [after:60]"}))
            .await,
    );
    // Status checks teach the ledger what happened.
    for id in [&done, &failed, &running] {
        expect_ok(&c.call("get_video_status", json!({ "task_id": id })).await);
    }

    let all = list(&c, json!({})).await;
    assert_eq!(
        ids(&all),
        vec![running.clone(), failed.clone(), done.clone()]
    );
    assert_eq!(all["more"], false);
    let completed = list(&c, json!({"status": "completed"})).await;
    assert_eq!(ids(&completed), vec![done.clone()]);
    let v = &completed["videos"][0];
    assert_eq!(v["links_expired"], false);
    assert!(!v["video_urls"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["links_expire_at"].is_string());
    assert_eq!(
        ids(&list(&c, json!({"status": "failed"})).await),
        vec![failed.clone()]
    );
    assert_eq!(
        ids(&list(&c, json!({"status": "running"})).await),
        vec![running.clone()]
    );
    let two = list(&c, json!({"limit": 2})).await;
    assert_eq!(ids(&two), vec![running.clone(), failed.clone()]);
    assert_eq!(two["more"], true);
    assert_eq!(ids(&list(&c, json!({"since": "1h"})).await).len(), 3);
    assert!(ids(&list(&c, json!({"since": "2999-01-01T00:00:00Z"})).await).is_empty());

    // Bad filters are tool errors, never JSON-RPC errors.
    for bad in [
        json!({"limit": 0}),
        json!({"limit": 101}),
        json!({"since": "last tuesday"}),
        json!({"status": "done"}),
        json!({"bogus": true}),
    ] {
        expect_tool_error(&c.call("list_videos", bad).await);
    }
    c.shutdown().await;
}

#[tokio::test]
async fn refresh_rechecks_running_videos() {
    let sim = start_sim().await;
    let home = TestHome::new();
    let c = child_on(&sim, &home.path().join("ledger.sqlite3"), &[]).await;
    let id = task_id_of(
        &c.call("create_video", json!({"prompt": "Quick [after:0.3]"}))
            .await,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stale = list(&c, json!({})).await;
    assert_eq!(stale["videos"][0]["status"], "pending", "{stale}");
    let gets = sim.state.count("get");
    let fresh = list(&c, json!({"refresh": true})).await;
    assert_eq!(ids(&fresh), vec![id]);
    assert_eq!(fresh["videos"][0]["status"], "completed", "{fresh}");
    assert_eq!(sim.state.count("get"), gets + 1);
    // Nothing is running any more: another refresh asks nobody.
    list(&c, json!({"refresh": true})).await;
    assert_eq!(sim.state.count("get"), gets + 1);
    c.shutdown().await;
}

#[tokio::test]
async fn expired_links_are_reported_as_expired() {
    let sim = start_sim().await;
    let home = TestHome::new();
    let ledger = home.path().join("ledger.sqlite3");
    let c = child_on(&sim, &ledger, &[]).await;
    let id = task_id_of(
        &c.call("create_video", json!({"prompt": "Old [after:0]"}))
            .await,
    );
    expect_ok(&c.call("get_video_status", json!({ "task_id": id })).await);
    // The listing is queued behind the status write, so it is on disk now.
    let before = list(&c, json!({})).await;
    assert_eq!(before["videos"][0]["links_expired"], false, "{before}");

    // Age the video by 25 hours, as if it had been made yesterday.
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let aged = conn
        .execute(
            "UPDATE videos SET created_at = created_at - 90000, \
             links_expire_at = links_expire_at - 90000, \
             requested_at = requested_at - 90000000 WHERE task_id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(aged, 1);
    drop(conn);

    let r = c.call("list_videos", json!({})).await;
    let v = &expect_ok(&r)["videos"][0];
    assert_eq!(v["task_id"], id.as_str());
    assert_eq!(v["links_expired"], true, "{v}");
    assert_eq!(v["video_urls"], json!([]), "no dead links are handed out");
    assert!(v["links_expire_at"].is_string());
    assert!(v["next_step"].as_str().unwrap().contains("expired"), "{v}");
    assert!(
        result_text(&r).contains("links expired at"),
        "{}",
        result_text(&r)
    );
    // since "24h" no longer includes it.
    assert!(ids(&list(&c, json!({"since": "24h"})).await).is_empty());
    c.shutdown().await;
}

#[tokio::test]
async fn saved_files_are_remembered() {
    let sim = start_sim().await;
    let home = TestHome::new();
    let c = child_on(
        &sim,
        &home.path().join("ledger.sqlite3"),
        &["--poll-interval", "0.2"],
    )
    .await;
    let id = task_id_of(
        &c.call("create_video", json!({"prompt": "Keep me [after:0]"}))
            .await,
    );
    let saved = c.call("download_video", json!({ "task_id": id })).await;
    let path = expect_ok(&saved)["saved_path"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = list(&c, json!({})).await;
    assert_eq!(listed["videos"][0]["saved_path"], path.as_str(), "{listed}");
    assert!(result_text(&c.call("list_videos", json!({})).await).contains(&path));
    c.shutdown().await;
}

#[tokio::test]
async fn without_a_ledger_list_videos_says_so() {
    let sim = start_sim().await;
    let c = McpChild::legacy(ServerOpts::for_sim(&sim).arg("--no-ledger")).await;
    c.call("create_video", json!({"prompt": "Unrecorded"}))
        .await;
    let r = c.call("list_videos", json!({})).await;
    let sc = expect_ok(&r);
    assert_eq!(sc["ledger_enabled"], false);
    assert_eq!(sc["videos"], json!([]));
    let text = result_text(&r);
    assert!(text.contains("no video ledger"), "{text}");
    let ledger = c.home.ledger();
    c.shutdown().await;
    assert!(!ledger.exists(), "--no-ledger must not create the file");
}

#[tokio::test]
async fn simulated_videos_never_enter_the_real_ledger() {
    let c = McpChild::legacy(ServerOpts::default().without_key().arg("--simulate")).await;
    let id = task_id_of(&c.call("create_video", json!({"prompt": "Pretend"})).await);
    // A temporary ledger still works for the session...
    assert_eq!(ids(&list(&c, json!({})).await), vec![id]);
    // ...but nothing was written where the real one lives.
    let real = c.home.ledger();
    c.shutdown().await;
    assert!(!real.exists(), "{} was created", real.display());
}

// ---------------------------------------------------------------------------
// Tenants over HTTP: each caller key sees only its own videos
// ---------------------------------------------------------------------------

async fn http_server(ledger: &Path) -> (String, Simulator) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(SimConfig {
        render_time: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .unwrap();
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
        options: ToolOptions {
            caller_keys: CallerKeys::Required,
            ledger: Some(Arc::new(SqliteLedger::open(ledger.to_path_buf()))),
            ..ToolOptions::default()
        },
    });
    let app = build(state, &http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.router).await;
    });
    (format!("http://{addr}/mcp"), sim)
}

async fn http_client(url: &str, key: &str) -> RunningService<RoleClient, ClientConfig> {
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

async fn http_call(c: &RunningService<RoleClient, ClientConfig>, tool: &str, args: Value) -> Value {
    let r = c
        .call_tool(
            CallToolRequestParams::new(tool.to_string())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    serde_json::to_value(r).unwrap()
}

#[tokio::test]
async fn tenants_see_only_their_own_videos() {
    let home = TestHome::new();
    let (url, sim) = http_server(&home.path().join("ledger.sqlite3")).await;
    let alice = http_client(&url, "alice-key-0123456789").await;
    let bob = http_client(&url, "bob-key-0123456789").await;

    let a1 = task_id_of(&http_call(&alice, "create_video", json!({"prompt": "Alice one"})).await);
    let a2 = task_id_of(
        &http_call(
            &alice,
            "create_video",
            json!({"prompt": "Shared words", "idempotency_key": "same-key"}),
        )
        .await,
    );
    // Bob's identical request and key are his own: a new video, not Alice's.
    let b1 = http_call(
        &bob,
        "create_video",
        json!({"prompt": "Shared words", "idempotency_key": "same-key"}),
    )
    .await;
    assert_ne!(expect_ok(&b1).get("reused"), Some(&json!(true)), "{b1}");
    let b1 = task_id_of(&b1);
    assert_ne!(b1, a2);
    assert_eq!(sim.state.count("create"), 3);

    let alice_list = http_call(&alice, "list_videos", json!({})).await;
    assert_eq!(ids(expect_ok(&alice_list)), vec![a2.clone(), a1.clone()]);
    let bob_list = http_call(&bob, "list_videos", json!({})).await;
    assert_eq!(ids(expect_ok(&bob_list)), vec![b1.clone()]);
    let text = result_text(&bob_list);
    assert!(!text.contains(&a1) && !text.contains(&a2), "{text}");

    // The ledger holds fingerprints, never a key.
    let conn = rusqlite::Connection::open(home.path().join("ledger.sqlite3")).unwrap();
    let tenants: Vec<String> = conn
        .prepare("SELECT DISTINCT tenant FROM videos")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tenants.len(), 2);
    for t in &tenants {
        assert!(!t.contains("alice") && !t.contains("bob"), "{t}");
    }
    let dump: String = std::fs::read(home.path().join("ledger.sqlite3"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(!dump.contains("alice-key") && !dump.contains("bob-key"));
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

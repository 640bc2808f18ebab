//! The HeyGen backend (`--backend heygen`) over Streamable HTTP, end to end:
//! the built binary with `--http 127.0.0.1:0` against the embedded v3
//! simulator on loopback, driven by rmcp's client on both protocol revisions
//! (2025-11-25 with a session, 2026-07-28 stateless). The catalogue tools are
//! listed and answer, a video goes from prompt to a file saved in the
//! `--download-dir`, `file_paths` is refused (a remote server cannot read the
//! caller's disk) before anything reaches HeyGen, and a caller's own key in
//! `X-HeyGen-Api-Key` is the `X-Api-Key` HeyGen receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use axum::{extract::Request, middleware::map_request};
use harness::{
    HttpClient, HttpServer, Spawn, http_call, is_error, legacy_client_with_key, modern_client,
    modern_client_with_key, text_of,
};
use heygen_video_mcp::simulator::{SimConfig, Simulator, heygen_router};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
/// The server's own HeyGen key.
const SERVER_KEY: &str = "hg-server-key-4f7a1c9e2b";
/// Callers' own keys, one per protocol revision.
const CALLER_KEYS: [&str; 2] = ["hg-caller-legacy-8d3e6a", "hg-caller-modern-2c5b9f"];
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CATALOGUE: [&str; 3] = ["list_avatars", "list_voices", "list_styles"];
const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];

async fn v3_sim(render: Duration, key: Option<&str>) -> Simulator {
    Simulator::start_heygen(SimConfig {
        render_time: render,
        api_key: key.map(String::from),
        ..SimConfig::heygen()
    })
    .await
    .expect("the v3 simulator binds 127.0.0.1:0")
}

fn heygen_spawn(base: &str, key: &str) -> Spawn {
    Spawn::new(BIN)
        .upstream(base, key)
        .args(["--backend", "heygen", "--poll-interval", "0.2"])
        .log("debug")
}

/// A client of the given revision, optionally sending a caller key.
async fn client(url: &str, revision: &str, key: Option<&str>) -> HttpClient {
    match revision {
        "2025-11-25" => legacy_client_with_key(url, key).await,
        _ => modern_client_with_key(url, key).await,
    }
    .unwrap_or_else(|e| panic!("{revision}: {e}"))
}

async fn call(c: &HttpClient, tool: &str, args: Value) -> Value {
    http_call(c, tool, args, CALL_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The structured content of a successful result.
fn ok(r: &Value) -> &Value {
    assert!(!is_error(r), "expected success: {}", text_of(r));
    &r["structuredContent"]
}

fn assert_iso_bmff(bytes: &[u8]) {
    assert!(bytes.len() > 8, "file too short: {} bytes", bytes.len());
    assert_eq!(&bytes[4..8], b"ftyp", "no ftyp box at the start");
}

fn assert_no_key(what: &str, text: &str, key: &str) {
    assert!(!text.contains(key), "{what} leaks the key {key:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_from_prompt_to_saved_file_on_both_revisions() {
    let sim = v3_sim(Duration::from_secs(2), Some(SERVER_KEY)).await;
    let downloads = tempfile::tempdir().unwrap();
    let dir = downloads.path().canonicalize().unwrap();
    let spec =
        heygen_spawn(&sim.base_url(), SERVER_KEY).args(["--download-dir", dir.to_str().unwrap()]);
    let server = HttpServer::spawn(&spec).await;

    // The stateless revision first: it opens no session on the server.
    for revision in ["2026-07-28", "2025-11-25"] {
        let c = client(&server.url, revision, None).await;
        assert_eq!(
            c.peer_info().unwrap().protocol_version.to_string(),
            revision
        );
        let sessions = server.health().await["sessions"].as_u64().unwrap();
        assert_eq!(sessions, u64::from(revision == "2025-11-25"), "{revision}");

        let tools = c.list_all_tools().await.unwrap();
        let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        for t in [
            "create_video",
            "get_video_status",
            "download_video",
            "get_credits",
            "list_videos",
        ]
        .into_iter()
        .chain(CATALOGUE)
        {
            assert!(names.iter().any(|n| n == t), "{revision}: {t} in {names:?}");
        }
        // The catalogue answers over HTTP too.
        let voices = call(&c, "list_voices", json!({"limit": 3})).await;
        assert!(
            !ok(&voices)["voices"].as_array().unwrap().is_empty(),
            "{voices}"
        );

        let before = sim.state.count("create");
        let created = call(
            &c,
            "create_video",
            json!({"prompt": format!("A product teaser, over HTTP {revision}")}),
        )
        .await;
        let task_id = ok(&created)["task_id"].as_str().unwrap().to_string();
        assert_eq!(sim.state.count("create"), before + 1, "one create upstream");

        let deadline = Instant::now() + Duration::from_secs(30);
        let done = loop {
            let r = call(&c, "get_video_status", json!({"task_id": task_id})).await;
            let sc = ok(&r).clone();
            if sc["status"] == "completed" {
                break sc;
            }
            assert!(
                ["pending", "processing"].contains(&sc["status"].as_str().unwrap()),
                "{sc}"
            );
            assert!(Instant::now() < deadline, "never completed: {sc}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let url = done["video_urls"][0].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/v3-files/", sim.base_url())),
            "{url}"
        );
        // The presigned link's own expiry: about 7 days, not the gateway's 24 h.
        let expires = humantime::parse_rfc3339(done["links_expire_at"].as_str().unwrap()).unwrap();
        let left = expires.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(6 * 86_400), "{left:?}");

        let files_before = sim.state.count("file");
        let saved = call(&c, "download_video", json!({"task_id": task_id})).await;
        let sc = ok(&saved).clone();
        assert_eq!(sc["status"], "completed", "{sc}");
        let path = Path::new(sc["saved_path"].as_str().unwrap()).to_path_buf();
        assert!(
            path.starts_with(&dir),
            "{} is outside {}",
            path.display(),
            dir.display()
        );
        assert_iso_bmff(&std::fs::read(&path).unwrap());
        assert_eq!(sim.state.count("file"), files_before + 1);
        c.cancel().await.unwrap();
    }
    assert!(server.alive());
    assert_no_key("stderr", &server.stderr.joined(), SERVER_KEY);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_paths_are_refused_before_anything_reaches_heygen() {
    let sim = v3_sim(Duration::from_secs(30), Some(SERVER_KEY)).await;
    let server = HttpServer::spawn(&heygen_spawn(&sim.base_url(), SERVER_KEY)).await;
    // A real file on the server's own disk: still refused, it is not the caller's.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("logo.png");
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&png, &bytes).unwrap();

    for revision in REVISIONS {
        let c = client(&server.url, revision, None).await;
        let r = call(
            &c,
            "create_video",
            json!({"prompt": "Our logo, animated", "file_paths": [png.display().to_string()]}),
        )
        .await;
        assert!(is_error(&r), "{revision}: {r}");
        let text = text_of(&r);
        for says in [
            "file_paths is not available on this server",
            "cannot read your disk",
            "file_urls",
            "Nothing was created",
        ] {
            assert!(text.contains(says), "{revision}: lacks {says:?}: {text}");
        }
        // The same video with a URL instead is accepted.
        let r = call(
            &c,
            "create_video",
            json!({"prompt": format!("Our logo, animated {revision}"), "file_urls": ["https://example.com/logo.png"]}),
        )
        .await;
        ok(&r);
        c.cancel().await.unwrap();
    }
    assert_eq!(sim.state.count("asset"), 0, "nothing was uploaded");
    assert_eq!(
        sim.state.count("create"),
        2,
        "only the URL creates were sent"
    );
    server.stop().await;
}

/// One request as HeyGen received it: its path and auth headers.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    x_api_key: Option<String>,
    authorization: bool,
}

/// The v3 simulator's routes behind a tap that records every request's auth
/// headers; returns the tap's base URL.
async fn tapped(sim: &Simulator, log: Arc<Mutex<Vec<Seen>>>) -> String {
    let app = heygen_router(sim.state.clone()).layer(map_request(move |req: Request| {
        let log = log.clone();
        async move {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            log.lock().unwrap().push(Seen {
                path: req.uri().path().to_string(),
                x_api_key: header("x-api-key"),
                authorization: req.headers().contains_key("authorization"),
            });
            req
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_own_key_is_the_x_api_key_heygen_receives() {
    // Any non-empty key is accepted, so whose key arrives is what is tested.
    let sim = v3_sim(Duration::from_secs(1), None).await;
    let log = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let base = tapped(&sim, log.clone()).await;
    let server = HttpServer::spawn(&heygen_spawn(&base, SERVER_KEY).args(["--caller-keys"])).await;

    for (revision, key) in REVISIONS.into_iter().zip(CALLER_KEYS) {
        let c = client(&server.url, revision, Some(key)).await;
        let from = log.lock().unwrap().len();
        let created = call(
            &c,
            "create_video",
            json!({"prompt": format!("A caller's own video {revision}")}),
        )
        .await;
        let task_id = ok(&created)["task_id"].as_str().unwrap().to_string();
        ok(&call(&c, "get_video_status", json!({"task_id": task_id})).await);
        ok(&call(&c, "get_credits", json!({})).await);
        // The same page for both callers: answers are cached per key, so
        // each caller's request reaches HeyGen under its own key.
        ok(&call(&c, "list_styles", json!({"tag": "cinematic"})).await);
        let seen: Vec<Seen> = log.lock().unwrap()[from..].to_vec();
        for path in [
            "/v3/video-agents",
            &format!("/v3/video-agents/{task_id}"),
            "/v3/users/me",
            "/v3/video-agents/styles",
        ] {
            assert!(
                seen.iter().any(|s| s.path == path),
                "{revision}: {path} not requested: {seen:?}"
            );
        }
        for s in &seen {
            assert_eq!(s.x_api_key.as_deref(), Some(key), "{revision}: {s:?}");
            assert!(!s.authorization, "{revision}: a second auth header: {s:?}");
        }
        c.cancel().await.unwrap();
    }

    // A caller without the header spends the server's key.
    let c = modern_client(&server.url).await.unwrap();
    let from = log.lock().unwrap().len();
    ok(&call(
        &c,
        "create_video",
        json!({"prompt": "The operator's video"}),
    )
    .await);
    let seen: Vec<Seen> = log.lock().unwrap()[from..].to_vec();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(s.x_api_key.as_deref(), Some(SERVER_KEY), "{s:?}");
    }
    c.cancel().await.unwrap();

    let stderr = server.stderr.joined();
    for key in CALLER_KEYS.into_iter().chain([SERVER_KEY]) {
        assert_no_key("stderr", &stderr, key);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_caller_keys_ask_for_a_heygen_key_and_send_nothing() {
    let sim = v3_sim(Duration::from_secs(30), None).await;
    let server = HttpServer::spawn(
        &heygen_spawn(&sim.base_url(), SERVER_KEY).args(["--require-caller-keys"]),
    )
    .await;
    for revision in REVISIONS {
        let c = client(&server.url, revision, None).await;
        for (tool, args) in [
            ("create_video", json!({"prompt": "Nobody pays for this"})),
            ("get_credits", json!({})),
        ] {
            let r = call(&c, tool, args).await;
            assert!(is_error(&r), "{revision} {tool}: {r}");
            let text = text_of(&r);
            assert!(
                text.contains("X-HeyGen-Api-Key") && text.contains("HeyGen API key"),
                "{revision} {tool}: {text}"
            );
            assert!(!text.contains("task-API"), "{revision} {tool}: {text}");
        }
        c.cancel().await.unwrap();
    }
    assert!(sim.state.requests().is_empty(), "nothing reached HeyGen");
    // With the header, the same server works.
    let c = legacy_client_with_key(&server.url, Some(CALLER_KEYS[0]))
        .await
        .unwrap();
    ok(&call(&c, "create_video", json!({"prompt": "A paid-for video"})).await);
    assert!(
        sim.state
            .requests()
            .iter()
            .all(|r| r.key.as_deref() == Some(CALLER_KEYS[0]))
    );
    c.cancel().await.unwrap();
    server.stop().await;
}

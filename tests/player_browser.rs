//! The inline video player (MCP Apps): the `ui://` resource, the tools'
//! `_meta.ui.resourceUri`, the `resource_link` of a finished video, and the
//! view itself in headless Chromium.
//!
//! The first tests talk to the built binary (`--http 127.0.0.1:0 --simulate`)
//! with rmcp's client on both protocol revisions. The browser test runs
//! scripts/player/player-test.mjs (Node + playwright-core + /usr/bin/chromium)
//! against the same binary: a host page on 127.0.0.1 loads the view in a
//! sandboxed iframe under the CSP the resource declares and proxies its
//! tools/call to the server over HTTP. It checks that the view shows progress
//! while the simulated video renders, then plays the simulator's MP4
//! (readyState >= 2, videoWidth > 0), that an expired result says so, that a
//! failed one shows the error and advice, and that the screenshot is not
//! blank. Without Chromium, Node or playwright-core it prints why and skips,
//! unless PLAYER_TEST_REQUIRED=1 (scripts/player-test.sh sets it), where a
//! missing tool fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use harness::{HttpServer, Spawn, http_call, legacy_client, modern_client};
use rmcp::model::ReadResourceRequestParams;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_heygen-video-mcp");
const PLAYER_URI: &str = "ui://heygen-video-mcp/player.html";
const STEP: Duration = Duration::from_secs(30);

fn sim_spec(extra: &[&str]) -> Spawn {
    Spawn::new(BIN)
        .args(["--simulate", "--simulate-render-seconds", "4"])
        .args(extra.iter().copied())
}

#[tokio::test]
async fn the_player_is_listed_read_and_named_by_the_tools() {
    let s = HttpServer::spawn(&sim_spec(&[
        "--media-origin",
        "https://cdn.example.com/",
        "--media-origin",
        "https://*.media.example",
    ]))
    .await;
    for client in [
        modern_client(&s.url).await.unwrap(),
        legacy_client(&s.url).await.unwrap(),
    ] {
        let listed = client.list_resources(None).await.unwrap();
        let listed = serde_json::to_value(&listed).unwrap();
        let resources = listed["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 1, "{listed}");
        assert_eq!(resources[0]["uri"], PLAYER_URI);
        assert_eq!(resources[0]["mimeType"], "text/html;profile=mcp-app");

        let read = client
            .read_resource(ReadResourceRequestParams::new(PLAYER_URI))
            .await
            .unwrap();
        let read = serde_json::to_value(&read).unwrap();
        let c = &read["contents"][0];
        assert_eq!(c["uri"], PLAYER_URI);
        assert_eq!(c["mimeType"], "text/html;profile=mcp-app");
        let html = c["text"].as_str().unwrap();
        assert!(html.starts_with("<!doctype html>") && html.len() < 16 * 1024);
        let domains: Vec<&str> = c["_meta"]["ui"]["csp"]["resourceDomains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert_eq!(
            domains[..2],
            ["https://cdn.example.com", "https://*.media.example"]
        );
        // --simulate adds the simulator's own origin, where its videos live.
        assert!(
            domains.len() == 3 && domains[2].starts_with("http://127.0.0.1:"),
            "{domains:?}"
        );

        let unknown = client
            .read_resource(ReadResourceRequestParams::new(
                "ui://heygen-video-mcp/other.html",
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("resource not found"), "{unknown}");

        let tools = client.list_all_tools().await.unwrap();
        for tool in tools {
            let meta = tool.meta.as_ref().map(|m| Value::Object(m.0.clone()));
            let named = matches!(tool.name.as_ref(), "create_video" | "get_video_status");
            if named {
                assert_eq!(
                    meta,
                    Some(json!({"ui": {"resourceUri": PLAYER_URI}})),
                    "{}",
                    tool.name
                );
            } else {
                assert_eq!(meta, None, "{}", tool.name);
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn a_bad_media_origin_is_refused_at_start() {
    let out = std::process::Command::new(BIN)
        .args(["--simulate", "--media-origin", "cdn.example.com/videos"])
        .env_clear()
        .env("HOME", std::env::temp_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HEYGEN_MEDIA_ORIGINS") && err.contains("https://"),
        "{err}"
    );
}

#[tokio::test]
async fn a_finished_video_comes_with_a_resource_link_after_the_text() {
    let s = HttpServer::spawn(&sim_spec(&[])).await;
    let client = modern_client(&s.url).await.unwrap();
    let created = http_call(
        &client,
        "create_video",
        json!({"prompt": "A presenter says hello"}),
        STEP,
    )
    .await
    .unwrap();
    // While rendering: text only, as before.
    assert_eq!(created["content"].as_array().unwrap().len(), 1, "{created}");
    let id = created["structuredContent"]["task_id"].as_str().unwrap();
    let deadline = Instant::now() + STEP;
    let done = loop {
        let r = http_call(&client, "get_video_status", json!({"task_id": id}), STEP)
            .await
            .unwrap();
        if r["structuredContent"]["status"] == "completed" {
            break r;
        }
        assert!(Instant::now() < deadline, "never completed: {r}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let content = done["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "text", "{done}");
    assert_eq!(content.len(), 2, "{done}");
    let link = &content[1];
    let sc = &done["structuredContent"];
    assert_eq!(link["type"], "resource_link");
    assert_eq!(link["uri"], sc["video_urls"][0]);
    assert_eq!(link["mimeType"], "video/mp4");
    let expires = sc["links_expire_at"].as_str().unwrap();
    assert!(
        link["description"].as_str().unwrap().contains(expires),
        "{link}"
    );
    s.stop().await;
}

/// What the browser test needs, or why it cannot run.
fn browser_tools(root: &Path) -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "{} is absent (apt-get install chromium)",
            chromium.display()
        ));
    }
    let node = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .ok_or("node is not on PATH")?;
    let pw = root.join("scripts/player/node_modules/playwright-core/package.json");
    if !pw.exists() {
        return Err(
            "playwright-core is not installed (npm ci --prefix scripts/player, or run \
             scripts/player-test.sh)"
                .into(),
        );
    }
    Ok((chromium, node))
}

#[tokio::test]
async fn the_player_renders_progress_then_plays_the_video_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let required = std::env::var("PLAYER_TEST_REQUIRED").is_ok_and(|v| v == "1");
    let (chromium, node) = match browser_tools(&root) {
        Ok(t) => t,
        Err(why) if required => panic!("the browser test cannot run: {why}"),
        Err(why) => {
            eprintln!(
                "SKIPPED the_player_renders_progress_then_plays_the_video_in_chromium: {why}"
            );
            return;
        }
    };
    let s = HttpServer::spawn(&sim_spec(&[])).await;
    let shot_dir = tempfile::tempdir().unwrap();
    let shot = std::env::var_os("PLAYER_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| shot_dir.path().join("player.png"));
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(root.join("scripts/player/player-test.mjs"))
        .env("MCP_URL", &s.url)
        .env("CHROMIUM", &chromium)
        .env("PLAYER_SCREENSHOT", &shot)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the browser test finished within 180 s")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "player-test.mjs ({:.1} s):\n{stdout}{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        s.stderr.tail(40)
    );
    for step in [
        "\"rendering\"",
        "\"playing\"",
        "\"expired\"",
        "\"failed\"",
        "\"done\"",
    ] {
        assert!(stdout.contains(step), "step {step} missing:\n{stdout}");
    }
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    s.stop().await;
}

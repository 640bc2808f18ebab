//! `download_video` and `--auto-download`, end to end: the built binary over
//! stdio against an in-process simulator that serves the sample MP4 (and
//! misbehaves on request: stale links, cut-off bodies, slow transfers), plus
//! one in-process server that runs in HTTP mode without a download folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    McpChild, ServerOpts, TEST_KEY, expect_ok, expect_tool_error, is_error, result_text, start_sim,
    start_sim_with, task_id_of,
};
use heygen_video_mcp::{
    gateway::{ApiKey, GatewayClient, GatewayConfig},
    simulator::{SAMPLE_MP4, SimConfig, Simulator},
    tools::{AppState, ToolOptions, VideoServer},
};
use rmcp::{ServiceExt, model::CallToolRequestParams};
use serde_json::{Value, json};

async fn child(sim: &Simulator, args: &[&str]) -> McpChild {
    let mut opts = ServerOpts::for_sim(sim).arg("--poll-interval").arg("0.2");
    for a in args {
        opts = opts.arg(*a);
    }
    McpChild::legacy(opts).await
}

/// Creates a video and waits (server-side) until it is completed.
async fn completed_task(c: &McpChild, prompt: &str) -> String {
    let task_id = task_id_of(&c.call("create_video", json!({ "prompt": prompt })).await);
    let r = c
        .call(
            "get_video_status",
            json!({ "task_id": task_id, "wait_seconds": 25 }),
        )
        .await;
    assert_eq!(expect_ok(&r)["status"], "completed", "{r}");
    task_id
}

fn downloads_dir(c: &McpChild) -> PathBuf {
    c.home.downloads().canonicalize().unwrap()
}

/// Every entry of the download folder, hidden temporary files included.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn saved_path(r: &Value) -> PathBuf {
    PathBuf::from(
        expect_ok(r)["saved_path"]
            .as_str()
            .unwrap_or_else(|| panic!("no saved_path in {r}")),
    )
}

#[tokio::test]
async fn a_completed_video_is_saved_and_verified() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let task_id = completed_task(&c, "Save me [after:1]").await;

    let r = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    let sc = expect_ok(&r);
    let path = saved_path(&r);
    assert!(path.is_absolute(), "{path:?}");
    assert_eq!(path, downloads_dir(&c).join(format!("{task_id}.mp4")));
    assert_eq!(sc["size_bytes"], SAMPLE_MP4.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), SAMPLE_MP4);
    common::assert_iso_bmff(&std::fs::read(&path).unwrap());
    let text = result_text(&r);
    assert!(text.contains(path.to_str().unwrap()), "{text}");
    assert!(text.contains("verified"), "{text}");
    assert_eq!(sc["task_id"], task_id.as_str());
    common::assert_video_task_shape(sc);
    // No temporary file left behind.
    assert_eq!(entries(&downloads_dir(&c)), vec![format!("{task_id}.mp4")]);
    assert_eq!(sim.state.count("file"), 1);

    // Asking again reports the same file instead of downloading it twice.
    let again = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    assert_eq!(saved_path(&again), path);
    assert_eq!(sim.state.count("file"), 1);
}

#[tokio::test]
async fn names_are_sanitised_and_existing_files_are_kept_unless_overwrite() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let task_id = completed_task(&c, "Names [after:1]").await;
    let dir = downloads_dir(&c);

    let r = c
        .call(
            "download_video",
            json!({ "task_id": task_id, "file_name": "Quarterly: report" }),
        )
        .await;
    assert_eq!(saved_path(&r), dir.join("Quarterly_ report.mp4"));

    // A file of that name exists and overwrite is not set: the video gets a new name.
    std::fs::write(dir.join("taken.mp4"), b"precious").unwrap();
    let r = c
        .call(
            "download_video",
            json!({ "task_id": task_id, "file_name": "taken.mp4" }),
        )
        .await;
    assert_eq!(saved_path(&r), dir.join("taken (2).mp4"));
    assert!(result_text(&r).contains("already existed"), "{r}");
    assert_eq!(std::fs::read(dir.join("taken.mp4")).unwrap(), b"precious");
    assert_eq!(
        std::fs::read(dir.join("taken (2).mp4")).unwrap(),
        SAMPLE_MP4
    );

    // With overwrite the existing file is replaced.
    let r = c
        .call(
            "download_video",
            json!({ "task_id": task_id, "file_name": "taken", "overwrite": true }),
        )
        .await;
    assert_eq!(saved_path(&r), dir.join("taken.mp4"));
    assert_eq!(std::fs::read(dir.join("taken.mp4")).unwrap(), SAMPLE_MP4);
    assert!(
        !entries(&dir).iter().any(|e| e.ends_with(".part")),
        "{:?}",
        entries(&dir)
    );
}

#[tokio::test]
async fn traversal_in_the_file_name_is_rejected_before_anything_happens() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let task_id = completed_task(&c, "Traversal [after:1]").await;
    let lookups = sim.state.count("get");
    let outside = c.home.path().join("evil.mp4");

    for bad in [
        "../evil",
        "../../evil.mp4",
        "..",
        "sub/evil.mp4",
        "..\\evil.mp4",
        "/tmp/evil.mp4",
        ".hidden",
        "",
    ] {
        let r = c
            .call(
                "download_video",
                json!({ "task_id": task_id, "file_name": bad }),
            )
            .await;
        if bad.is_empty() {
            // An empty name means "use the default".
            expect_ok(&r);
            continue;
        }
        let text = expect_tool_error(&r);
        assert!(text.contains("file_name"), "{bad}: {text}");
        assert!(r.get("structuredContent").is_none(), "{r}");
    }
    assert!(!outside.exists());
    // Only the empty-name call reached the upstream (one lookup, one file).
    assert_eq!(sim.state.count("get"), lookups + 1);
    assert_eq!(sim.state.count("file"), 1);
}

#[tokio::test]
async fn a_403_on_the_first_link_is_followed_by_one_fresh_lookup() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let task_id = completed_task(&c, "Signed link [link:403] [after:1]").await;
    let lookups = sim.state.count("get");

    let r = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    let path = saved_path(&r);
    assert_eq!(std::fs::read(&path).unwrap(), SAMPLE_MP4);
    assert_eq!(
        sim.state.count("file"),
        2,
        "the stale link, then the fresh one"
    );
    // The tool's own lookup plus exactly one refresh.
    assert_eq!(sim.state.count("get"), lookups + 2);
}

#[tokio::test]
async fn an_incomplete_body_is_a_failure_and_leaves_no_file() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let task_id = completed_task(&c, "Cut off [file:truncate] [after:1]").await;

    let r = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    let text = expect_tool_error(&r);
    // Half of the file arrived before the connection was cut.
    let (half, full) = (SAMPLE_MP4.len() / 2, SAMPLE_MP4.len());
    assert!(
        text.contains(&format!("broke off after {half} of {full} bytes")),
        "{text}"
    );
    assert!(text.contains("nothing was saved"), "{text}");
    assert!(r.get("structuredContent").is_none(), "{r}");
    assert!(
        entries(&downloads_dir(&c)).is_empty(),
        "left behind: {:?}",
        entries(&downloads_dir(&c))
    );
}

#[tokio::test]
async fn empty_and_html_bodies_are_refused() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    for (marker, needle) in [("[file:empty]", "empty"), ("[file:html]", "web page")] {
        let task_id = completed_task(&c, &format!("Odd body {marker} [after:1]")).await;
        let r = c
            .call("download_video", json!({ "task_id": task_id }))
            .await;
        let text = expect_tool_error(&r);
        assert!(text.contains(needle), "{marker}: {text}");
    }
    assert!(entries(&downloads_dir(&c)).is_empty());
}

#[tokio::test]
async fn an_expired_link_gets_a_clear_error_without_a_stack_of_retries() {
    let sim = start_sim_with(SimConfig {
        render_time: Duration::from_secs(1),
        api_key: Some(TEST_KEY.into()),
        link_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let c = child(&sim, &[]).await;
    let task_id = completed_task(&c, "Old video [after:1]").await;

    let r = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    let text = expect_tool_error(&r);
    assert!(text.contains("HTTP 410"), "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(text.contains("create_video"), "{text}");
    assert_eq!(
        sim.state.count("file"),
        2,
        "one try plus one after a refresh"
    );
    assert!(entries(&downloads_dir(&c)).is_empty());
}

#[tokio::test]
async fn the_size_cap_is_enforced_with_and_without_content_length() {
    let sim = start_sim().await;
    let c = child(&sim, &["--max-download-bytes", "1000"]).await;
    for prompt in ["Big [after:1]", "Big, chunked [file:nolength] [after:1]"] {
        let task_id = completed_task(&c, prompt).await;
        let r = c
            .call("download_video", json!({ "task_id": task_id }))
            .await;
        let text = expect_tool_error(&r);
        assert!(text.contains("larger than"), "{prompt}: {text}");
    }
    assert!(entries(&downloads_dir(&c)).is_empty());
}

#[tokio::test]
async fn a_body_without_content_length_is_saved_and_checked() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let task_id = completed_task(&c, "Chunked [file:nolength] [after:1]").await;
    let r = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    assert_eq!(std::fs::read(saved_path(&r)).unwrap(), SAMPLE_MP4);
    assert_eq!(expect_ok(&r)["size_bytes"], SAMPLE_MP4.len() as u64);
}

#[tokio::test]
async fn a_download_past_the_deadline_continues_in_the_background() {
    let sim = start_sim().await;
    let c = child(&sim, &["--download-deadline", "0.5"]).await;
    let task_id = completed_task(&c, "Slow CDN [file:slow=3] [after:1]").await;

    let started = Instant::now();
    let r = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at the deadline"
    );
    assert!(!is_error(&r), "{r}");
    let sc = expect_ok(&r);
    let path = saved_path(&r);
    assert!(sc.get("size_bytes").is_none(), "not saved yet: {sc}");
    let text = result_text(&r);
    assert!(text.contains("background"), "{text}");
    assert!(text.contains(path.to_str().unwrap()), "{text}");
    assert!(!path.exists(), "the file appears only when complete");

    let deadline = Instant::now() + Duration::from_secs(15);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "the background download never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read(&path).unwrap(), SAMPLE_MP4);
    // Asking again confirms it, without a second download.
    let again = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    assert_eq!(saved_path(&again), path);
    assert_eq!(expect_ok(&again)["size_bytes"], SAMPLE_MP4.len() as u64);
    assert_eq!(sim.state.count("file"), 1);
}

#[tokio::test]
async fn a_video_that_is_not_ready_is_not_downloaded() {
    let sim = start_sim().await;
    let c = child(&sim, &[]).await;
    let running = task_id_of(
        &c.call(
            "create_video",
            json!({ "prompt": "Still going [after:600]" }),
        )
        .await,
    );
    let text = expect_tool_error(
        &c.call("download_video", json!({ "task_id": running }))
            .await,
    );
    assert!(text.contains("not ready"), "{text}");
    assert!(text.contains("wait_seconds"), "{text}");

    let failed = completed_or_failed(&c, "Broken [fail] [after:1]").await;
    let text = expect_tool_error(&c.call("download_video", json!({ "task_id": failed })).await);
    assert!(text.contains("failed"), "{text}");
    assert_eq!(sim.state.count("file"), 0);
}

async fn completed_or_failed(c: &McpChild, prompt: &str) -> String {
    let task_id = task_id_of(&c.call("create_video", json!({ "prompt": prompt })).await);
    c.wait_finished(&task_id).await;
    task_id
}

#[tokio::test]
async fn auto_download_saves_each_completed_video_once_in_the_background() {
    let sim = start_sim().await;
    let c = child(&sim, &["--auto-download"]).await;
    let task_id = task_id_of(
        &c.call("create_video", json!({ "prompt": "Auto [after:1]" }))
            .await,
    );
    let r = c
        .call(
            "get_video_status",
            json!({ "task_id": task_id, "wait_seconds": 25 }),
        )
        .await;
    assert_eq!(expect_ok(&r)["status"], "completed");
    let path = saved_path(&r);
    assert_eq!(path, downloads_dir(&c).join(format!("{task_id}.mp4")));
    assert!(result_text(&r).contains(path.to_str().unwrap()), "{r}");

    // Later status checks report the saved file with its size.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = c
            .call("get_video_status", json!({ "task_id": task_id }))
            .await;
        let sc = expect_ok(&r);
        if sc.get("size_bytes").is_some() {
            assert_eq!(sc["size_bytes"], SAMPLE_MP4.len() as u64);
            assert_eq!(saved_path(&r), path);
            break;
        }
        assert!(Instant::now() < deadline, "never reported saved: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read(&path).unwrap(), SAMPLE_MP4);
    assert_eq!(sim.state.count("file"), 1, "saved once");
    // download_video now finds the saved file.
    let r = c
        .call("download_video", json!({ "task_id": task_id }))
        .await;
    assert_eq!(saved_path(&r), path);
    assert_eq!(sim.state.count("file"), 1);
}

#[tokio::test]
async fn http_mode_without_a_download_folder_refuses() {
    let sim = start_sim().await;
    let state = Arc::new(AppState {
        backend: Arc::new(GatewayClient::new(GatewayConfig::new(sim.base_url()))),
        catalog: None,
        server_key: ApiKey::new(TEST_KEY),
        options: ToolOptions {
            http_mode: true,
            download_dir: None,
            ..ToolOptions::default()
        },
    });
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = VideoServer::new(state).serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ().serve(client_io).await.expect("client connects");
    let tools = client.list_all_tools().await.unwrap();
    let tool = tools
        .iter()
        .find(|t| t.name == "download_video")
        .expect("download_video is listed");
    let desc = tool.description.as_deref().unwrap_or_default();
    assert!(desc.contains("HEYGEN_DOWNLOAD_DIR"), "{desc}");

    let r = client
        .call_tool(
            CallToolRequestParams::new("download_video")
                .with_arguments(json!({"task_id": "task-1"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let r = serde_json::to_value(r).unwrap();
    let text = expect_tool_error(&r);
    assert!(text.contains("HEYGEN_DOWNLOAD_DIR"), "{text}");
    assert!(text.contains("server"), "{text}");
    assert!(
        sim.state.requests().is_empty(),
        "nothing reached the upstream"
    );
    let _ = client.cancel().await;
}

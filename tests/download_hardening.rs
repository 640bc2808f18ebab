//! `download_video` fetches only the video, end to end: the built binary over
//! stdio against fake upstreams on loopback (wiremock for hand-made result
//! links, the simulator for real videos). Links with credentials, redirects
//! to other local servers, and bodies that are not a video are refused before
//! anything is saved; long multi-byte names are cut to fit the file system;
//! partial files of processes that died mid-download are removed at the next
//! start, while a live writer's are kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{McpChild, ServerOpts, TEST_KEY, expect_ok, expect_tool_error, start_sim, task_id_of};
use heygen_video_mcp::simulator::{SAMPLE_MP4, Simulator};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path, path_regex},
};

/// Every entry of a folder, hidden temporary files included.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn temps(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(".heygen-") && n.ends_with(".part")
        })
        .collect()
}

/// Task `task-1` of a fake upstream, completed with `video_url`.
async fn mount_task(upstream: &MockServer, video_url: &str) {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Mock::given(method("GET"))
        .and(path_regex("^/v1/tasks/task-1$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "task-1",
            "object": "video.generation.task",
            "status": "completed",
            "progress": 100,
            "created": created,
            "results": [{"url": video_url}],
            "error": null
        })))
        .mount(upstream)
        .await;
}

async fn child_on(upstream: &MockServer) -> McpChild {
    McpChild::legacy(ServerOpts {
        api_base: Some(upstream.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    })
    .await
}

async fn file_requests(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !r.url.path().starts_with("/v1/"))
        .collect()
}

async fn download(c: &McpChild, args: Value) -> Value {
    c.call("download_video", args).await
}

#[tokio::test]
async fn a_video_on_the_upstreams_own_origin_is_saved() {
    let upstream = MockServer::start().await;
    mount_task(&upstream, &format!("{}/files/ok.mp4", upstream.uri())).await;
    Mock::given(method("GET"))
        .and(path("/files/ok.mp4"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "video/mp4")
                .set_body_bytes(SAMPLE_MP4),
        )
        .mount(&upstream)
        .await;
    let c = child_on(&upstream).await;
    let r = download(&c, json!({ "task_id": "task-1" })).await;
    let saved = PathBuf::from(expect_ok(&r)["saved_path"].as_str().unwrap());
    assert_eq!(std::fs::read(saved).unwrap(), SAMPLE_MP4);
}

#[tokio::test]
async fn a_link_with_credentials_is_refused_without_a_request() {
    let upstream = MockServer::start().await;
    let port = upstream.address().port();
    mount_task(
        &upstream,
        &format!("http://user:s3cret-pw@127.0.0.1:{port}/files/ok.mp4"),
    )
    .await;
    let c = child_on(&upstream).await;
    let r = download(&c, json!({ "task_id": "task-1" })).await;
    let text = expect_tool_error(&r);
    assert!(text.contains("user name or password"), "{text}");
    assert!(text.contains("nothing was fetched"), "{text}");
    assert!(
        !text.contains("s3cret-pw"),
        "the password is not echoed: {text}"
    );
    assert!(
        file_requests(&upstream).await.is_empty(),
        "the link was fetched"
    );
    assert!(entries(&c.home.downloads()).is_empty());
}

#[tokio::test]
async fn redirects_to_other_local_servers_are_refused_before_connecting() {
    let other = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "video/mp4")
                .set_body_bytes(SAMPLE_MP4),
        )
        .mount(&other)
        .await;
    let other_port = other.address().port();
    let upstream = MockServer::start().await;
    mount_task(&upstream, &format!("{}/files/r.mp4", upstream.uri())).await;
    let c = child_on(&upstream).await;
    for (target, needle) in [
        // The same loopback address as the upstream, another port.
        (format!("http://127.0.0.1:{other_port}/v.mp4"), "loopback"),
        (
            format!("http://localhost:{other_port}/v.mp4"),
            "names this machine",
        ),
        (format!("http://0.0.0.0:{other_port}/v.mp4"), "unspecified"),
        (
            format!("http://[::ffff:127.0.0.1]:{other_port}/v.mp4"),
            "loopback",
        ),
        (
            format!(
                "http://u:p@127.0.0.1:{}/files/ok.mp4",
                upstream.address().port()
            ),
            "user name or password",
        ),
    ] {
        upstream.reset().await;
        mount_task(&upstream, &format!("{}/files/r.mp4", upstream.uri())).await;
        Mock::given(method("GET"))
            .and(path("/files/r.mp4"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", target.as_str()))
            .mount(&upstream)
            .await;
        let r = download(&c, json!({ "task_id": "task-1", "overwrite": true })).await;
        let text = expect_tool_error(&r);
        assert!(text.contains("redirected"), "{target}: {text}");
        assert!(text.contains(needle), "{target}: {text}");
        assert_eq!(
            file_requests(&upstream).await.len(),
            1,
            "{target}: only the first hop was fetched"
        );
    }
    assert!(
        other.received_requests().await.unwrap().is_empty(),
        "the second server was reached"
    );
    assert!(entries(&c.home.downloads()).is_empty());
}

#[tokio::test]
async fn bodies_that_are_not_a_video_are_refused_and_leave_no_file() {
    let upstream = MockServer::start().await;
    let c = child_on(&upstream).await;
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "application/json",
            br#"{"error": {"code": "expired", "message": "link expired"}}"#,
            "JSON",
        ),
        // A page without the HTML content type is still a page.
        (
            "application/octet-stream",
            b"<!DOCTYPE html><html><body>Sign in</body></html>",
            "HTML page",
        ),
        (
            "video/mp4",
            b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>",
            "XML",
        ),
        (
            "video/mp4",
            b"\x00\x01\x02\x03\xff\xfe\x00 garbage",
            "neither an MP4",
        ),
    ];
    for (content_type, body, needle) in cases {
        upstream.reset().await;
        mount_task(&upstream, &format!("{}/files/x.mp4", upstream.uri())).await;
        Mock::given(method("GET"))
            .and(path("/files/x.mp4"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", content_type)
                    .set_body_bytes(body),
            )
            .mount(&upstream)
            .await;
        let r = download(&c, json!({ "task_id": "task-1" })).await;
        let text = expect_tool_error(&r);
        assert!(text.contains(needle), "{needle}: {text}");
        assert!(text.contains("not a video"), "{text}");
        assert!(text.contains("nothing was saved"), "{text}");
        assert!(r.get("structuredContent").is_none(), "{r}");
        assert!(
            entries(&c.home.downloads()).is_empty(),
            "left behind: {:?}",
            entries(&c.home.downloads())
        );
    }
}

async fn sim_child(sim: &Simulator, shared: Option<&Path>, args: &[&str]) -> McpChild {
    let mut opts = ServerOpts::for_sim(sim).arg("--poll-interval").arg("0.2");
    for a in args {
        opts = opts.arg(*a);
    }
    if let Some(dir) = shared {
        opts = opts.env("HEYGEN_DOWNLOAD_DIR", dir.display().to_string());
    }
    McpChild::legacy(opts).await
}

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

#[tokio::test]
async fn long_multibyte_names_are_cut_by_bytes_and_bidi_controls_dropped() {
    let sim = start_sim().await;
    let c = sim_child(&sim, None, &[]).await;
    let tasks = [
        completed_task(&c, "Long names [after:1]").await,
        completed_task(&c, "Long names again [after:1]").await,
    ];
    let names = [
        "é".repeat(180),
        format!("{}\u{202E}{}", "日".repeat(90), "日".repeat(90)),
        format!("\u{2066}report\u{2069}\u{200F}{}", "日".repeat(170)),
    ];
    for raw in &names {
        // Two videos under one name: the second lands under a numbered name,
        // which must fit too.
        for (round, task_id) in tasks.iter().enumerate() {
            let r = download(&c, json!({ "task_id": task_id, "file_name": raw })).await;
            let saved = PathBuf::from(
                expect_ok(&r)["saved_path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{raw}: {r}")),
            );
            let name = saved.file_name().unwrap().to_str().expect("valid UTF-8");
            assert!(name.len() <= 255, "{} bytes: {name}", name.len());
            assert!(name.ends_with(".mp4"), "{name}");
            assert!(
                !name.chars().any(|ch| matches!(ch,
                    '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')),
                "bidi control kept: {name:?}"
            );
            if round == 1 {
                assert!(name.contains(" (2)"), "{name}");
            }
            assert_eq!(std::fs::read(&saved).unwrap(), SAMPLE_MP4);
        }
    }
    let saved = entries(&c.home.downloads());
    assert_eq!(saved.len(), names.len() * 2, "{saved:?}");
    assert!(saved.iter().any(|n| n.starts_with("report日")), "{saved:?}");
}

#[cfg(unix)]
fn can_lock(path: &Path) -> bool {
    std::fs::File::open(path)
        .map(|f| f.try_lock().is_ok())
        .unwrap_or(false)
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_dead_writers_partial_file_is_removed_at_the_next_start() {
    let sim = start_sim().await;
    let shared = tempfile::tempdir().unwrap();
    // Left by a process that no longer runs (nobody holds its lock).
    let leftover = shared
        .path()
        .join(".heygen-task-abc-4194000-00000000deadbeef.part");
    std::fs::write(&leftover, vec![7u8; 4096]).unwrap();
    std::fs::write(shared.path().join("kept.mp4"), b"a saved video").unwrap();
    let _c = sim_child(&sim, Some(shared.path()), &[]).await;
    wait_until("the leftover is removed", Duration::from_secs(10), || {
        !leftover.exists()
    })
    .await;
    assert_eq!(entries(shared.path()), vec!["kept.mp4".to_string()]);
}

#[cfg(unix)]
#[tokio::test]
async fn a_live_writers_partial_file_is_kept_and_removed_once_it_is_killed() {
    let sim = start_sim().await;
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path();

    // A: mid-download against a slow link (ten parts over 40 s).
    let a = sim_child(&sim, Some(dir), &["--download-deadline", "0.5"]).await;
    let slow = completed_task(&a, "Slow link [file:slow=40] [after:1]").await;
    let r = download(&a, json!({ "task_id": slow })).await;
    assert!(
        common::result_text(&r).contains("background"),
        "still downloading: {r}"
    );
    wait_until("A writes its partial file", Duration::from_secs(15), || {
        temps(dir)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    })
    .await;
    let partial = temps(dir).pop().unwrap();
    assert!(!can_lock(&partial), "A holds the lock on its file");

    // B starts on the same folder and saves a video of its own: A's file
    // survives B's start-up sweep and B's first use of the folder.
    let b = sim_child(&sim, Some(dir), &[]).await;
    let quick = completed_task(&b, "Quick [after:1]").await;
    let r = download(&b, json!({ "task_id": quick })).await;
    expect_ok(&r);
    assert!(partial.exists(), "a live writer's file was removed");
    drop(b);

    // A is killed mid-download: its partial file stays behind...
    let pid = a.pid.expect("A's pid");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("A is gone", Duration::from_secs(10), || can_lock(&partial)).await;
    assert!(partial.exists());

    // ...and the next process to start removes it.
    let _c = sim_child(&sim, Some(dir), &[]).await;
    wait_until(
        "the killed writer's file is removed",
        Duration::from_secs(10),
        || !partial.exists(),
    )
    .await;
    assert!(temps(dir).is_empty(), "{:?}", entries(dir));
    drop(a);
}

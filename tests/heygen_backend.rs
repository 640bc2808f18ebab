//! The HeyGen backend (`--backend heygen`, HEYGEN_V3.md) end to end: the
//! built binary over a real stdio pipe (rmcp's client, both protocol
//! revisions) against the embedded v3 simulator on loopback. Every tool, the
//! catalogue (pagination, filters, bad input), link expiry read from the
//! presigned URL, uploads of local files as assets, cancel as a stop, the
//! money rule on v3 errors, and the catalogue beside the gateway backend with
//! `HEYGEN_CATALOG_KEY`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use common::{
    McpChild, RawChild, ServerOpts, TEST_KEY, assert_conforms, assert_iso_bmff, assert_no_key,
    expect_ok, expect_tool_error, is_error, result_text, structured, task_id_of,
    tasks_capabilities,
};
use heygen_video_mcp::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

async fn v3_sim(render: Duration) -> Simulator {
    Simulator::start_heygen(SimConfig {
        render_time: render,
        api_key: Some(TEST_KEY.into()),
        ..SimConfig::heygen()
    })
    .await
    .expect("the v3 simulator binds 127.0.0.1:0")
}

fn heygen_opts(sim: &Simulator) -> ServerOpts {
    ServerOpts::for_sim(sim)
        .arg("--backend")
        .arg("heygen")
        .arg("--poll-interval")
        .arg("0.2")
}

fn tool_names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn schema_of<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    &tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} is listed"))["outputSchema"]
}

fn rfc(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap()
}

#[tokio::test]
async fn a_video_from_prompt_to_saved_file_on_both_revisions() {
    let sim = v3_sim(Duration::from_secs(2)).await;
    for modern in [false, true] {
        let opts = heygen_opts(&sim);
        let child = if modern {
            McpChild::modern(opts).await
        } else {
            McpChild::legacy(opts).await
        };
        let tools = child.list_tools().await;
        let names = tool_names(&tools);
        for t in [
            "create_video",
            "get_video_status",
            "download_video",
            "get_credits",
            "list_videos",
            "list_avatars",
            "list_voices",
            "list_styles",
        ] {
            assert!(names.iter().any(|n| n == t), "{t} listed: {names:?}");
        }
        let create_desc =
            tools.iter().find(|t| t["name"] == "create_video").unwrap()["description"]
                .as_str()
                .unwrap()
                .to_string();
        assert!(!create_desc.contains("24 h"), "{create_desc}");
        assert!(create_desc.contains("7 days"), "{create_desc}");

        let before = sim.state.count("create");
        let created = child
            .call(
                "create_video",
                json!({"prompt": format!("A 20 second welcome video, take {modern}")}),
            )
            .await;
        let sc = expect_ok(&created).clone();
        assert_conforms(schema_of(&tools, "create_video"), &sc);
        assert_eq!(sim.state.count("create"), before + 1, "one create upstream");
        let task_id = task_id_of(&created);
        assert!(
            result_text(&created).contains("20–45 minutes"),
            "{}",
            result_text(&created)
        );

        let done = child.wait_finished(&task_id).await;
        let sc = structured(&done).clone();
        assert_eq!(sc["status"], "completed", "{done}");
        assert_conforms(schema_of(&tools, "get_video_status"), &sc);
        assert_eq!(sc["task_id"], task_id.as_str());
        let url = sc["video_urls"][0].as_str().unwrap().to_string();
        // The expiry is read from the presigned link: about 7 days, not 24 h.
        let expires = rfc(sc["links_expire_at"].as_str().unwrap());
        let left = expires.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(6 * 86_400), "{left:?}");
        assert!(sc["thumbnail_url"].is_string(), "{sc}");
        assert!(sc["duration_seconds"].as_f64().unwrap() > 0.0, "{sc}");
        assert!(result_text(&done).contains(&url));
        assert!(
            result_text(&done).contains("with captions: http"),
            "{}",
            result_text(&done)
        );
        assert!(sc.get("captioned_video_url").is_none(), "text only: {sc}");

        let saved = child
            .call("download_video", json!({"task_id": task_id}))
            .await;
        let sc = expect_ok(&saved).clone();
        let path = sc["saved_path"].as_str().unwrap().to_string();
        assert_iso_bmff(&std::fs::read(&path).unwrap());

        let listed = child.call("list_videos", json!({})).await;
        let listed = structured(&listed);
        assert!(
            listed["videos"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["task_id"] == task_id.as_str()),
            "{listed}"
        );
        let stderr = child.shutdown().await;
        assert_no_key("stderr", &stderr.joined(), TEST_KEY);
    }
}

#[tokio::test]
async fn credits_come_from_users_me_with_the_unit() {
    let sim = v3_sim(Duration::from_secs(30)).await;
    let child = McpChild::legacy(heygen_opts(&sim)).await;
    let r = child.call("get_credits", json!({})).await;
    let sc = expect_ok(&r).clone();
    assert_eq!(sc["credits"]["unit"], "USD", "{sc}");
    let before = sc["credits"]["remaining"].as_f64().unwrap();
    assert!(before > 0.0);
    assert!(sim.state.count("me") >= 1);
    let text = result_text(&r);
    assert!(!text.contains("email") && !text.contains("@"), "{text}");
    let c = child
        .call("create_video", json!({"prompt": "A short product teaser"}))
        .await;
    expect_ok(&c);
    let after = child.call("get_credits", json!({})).await;
    let after = structured(&after)["credits"]["remaining"].as_f64().unwrap();
    assert!(after < before, "{before} -> {after}");
    child.shutdown().await;
}

#[tokio::test]
async fn the_catalogue_pages_filters_and_feeds_create_video() {
    let sim = v3_sim(Duration::from_secs(30)).await;
    let child = McpChild::legacy(heygen_opts(&sim)).await;
    let tools = child.list_tools().await;

    // People, page by page, with no repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = json!({"limit": 5});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let r = child.call("list_avatars", args).await;
        let sc = expect_ok(&r).clone();
        assert_conforms(schema_of(&tools, "list_avatars"), &sc);
        let people = sc["people"].as_array().unwrap();
        assert!(people.len() <= 5);
        for p in people {
            let id = p["group_id"].as_str().unwrap().to_string();
            assert!(!seen.contains(&id), "{id} repeated");
            seen.push(id);
        }
        pages += 1;
        match sc["next_cursor"].as_str() {
            Some(c) => {
                assert!(result_text(&r).contains("cursor"), "{}", result_text(&r));
                cursor = Some(c.to_string());
            }
            None => break,
        }
        assert!(pages < 50, "pagination ends");
    }
    assert!(
        pages >= 2 && seen.len() > 5,
        "{pages} pages, {} people",
        seen.len()
    );

    // One person's looks; a look's avatar_id is accepted by create_video.
    let r = child
        .call("list_avatars", json!({"group_id": seen[0]}))
        .await;
    let sc = expect_ok(&r).clone();
    let looks = sc["looks"].as_array().unwrap();
    assert!(!looks.is_empty(), "{sc}");
    let avatar_id = looks[0]["avatar_id"].as_str().unwrap().to_string();
    assert!(result_text(&r).contains(&avatar_id));

    // Voices filtered by language, case-insensitively.
    let r = child
        .call("list_voices", json!({"language": "english", "limit": 100}))
        .await;
    let sc = expect_ok(&r).clone();
    assert_conforms(schema_of(&tools, "list_voices"), &sc);
    let voices = sc["voices"].as_array().unwrap();
    assert!(!voices.is_empty());
    for v in voices {
        assert!(
            v["language"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("english"),
            "{v}"
        );
    }
    let voice_id = voices[0]["voice_id"].as_str().unwrap().to_string();

    // Styles by tag.
    let r = child.call("list_styles", json!({"tag": "cinematic"})).await;
    let sc = expect_ok(&r).clone();
    assert_conforms(schema_of(&tools, "list_styles"), &sc);
    let styles = sc["styles"].as_array().unwrap();
    assert!(!styles.is_empty());
    for s in styles {
        assert!(
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "cinematic"),
            "{s}"
        );
    }
    let style_id = styles[0]["style_id"].as_str().unwrap().to_string();

    let before = sim.state.count("create");
    let r = child
        .call(
            "create_video",
            json!({"prompt": "A quarterly update", "avatar_id": avatar_id, "voice_id": voice_id, "style_id": style_id}),
        )
        .await;
    expect_ok(&r);
    assert_eq!(sim.state.count("create"), before + 1);
    let body = sim
        .state
        .requests()
        .into_iter()
        .rev()
        .find(|q| q.method == "POST" && q.path.starts_with("/v3/video-agents"))
        .and_then(|q| q.body)
        .unwrap();
    assert_eq!(body["avatar_id"], avatar_id.as_str());
    assert_eq!(body["voice_id"], voice_id.as_str());
    assert_eq!(body["style_id"], style_id.as_str());
    assert_eq!(body["mode"], "generate");
    assert!(body.get("model").is_none(), "{body}");

    // Repeating a page is served from the short-lived cache.
    let looks_before = sim.state.count("voices");
    let _ = child
        .call("list_voices", json!({"language": "english", "limit": 100}))
        .await;
    assert_eq!(sim.state.count("voices"), looks_before, "cached");
    child.shutdown().await;
}

#[tokio::test]
async fn bad_catalogue_input_is_refused_before_any_request() {
    let sim = v3_sim(Duration::from_secs(30)).await;
    let child = McpChild::legacy(heygen_opts(&sim)).await;
    let before = sim.state.requests().len();
    for (tool, args, says) in [
        ("list_avatars", json!({"limit": 0}), "limit is 0"),
        ("list_avatars", json!({"limit": 51}), "use 1 to 50"),
        ("list_voices", json!({"limit": 101}), "use 1 to 100"),
        (
            "list_styles",
            json!({"cursor": "a\u{0}b"}),
            "cursor is not one this server handed out",
        ),
        (
            "list_avatars",
            json!({"avatar_type": "studio_avatar"}),
            "together with a group_id",
        ),
        (
            "list_voices",
            json!({"language": "x".repeat(101)}),
            "longer than 100",
        ),
    ] {
        let r = child.call(tool, args.clone()).await;
        let text = expect_tool_error(&r);
        assert!(text.contains(says), "{tool} {args}: {text}");
    }
    for (tool, args) in [
        ("list_voices", json!({"ownership": "shared"})),
        ("list_styles", json!({"colour": "red"})),
    ] {
        let r = child.call(tool, args.clone()).await;
        assert!(
            is_error(&r) || r.get("error").is_some(),
            "{tool} {args}: {r}"
        );
    }
    assert_eq!(
        sim.state.requests().len(),
        before,
        "nothing reached the upstream"
    );

    // A cursor the upstream does not know is the upstream's clear error.
    let r = child
        .call("list_styles", json!({"cursor": "not-a-real-cursor"}))
        .await;
    let text = expect_tool_error(&r);
    assert!(
        text.contains("HTTP 400") && text.contains("token"),
        "{text}"
    );
    child.shutdown().await;
}

#[tokio::test]
async fn v3_errors_carry_their_advice_and_the_money_rule() {
    let sim = v3_sim(Duration::from_secs(30)).await;
    let child = McpChild::legacy(
        heygen_opts(&sim)
            .arg("--request-timeout")
            .arg("2")
            .arg("--retry-max-delay")
            .arg("1"),
    )
    .await;
    let cases: &[(&str, &str, u64, bool)] = &[
        ("[402]", "top up", 1, false),
        ("[401]", "HEYGEN_API_KEY", 1, false),
        ("[500]", "HeyGen is temporarily unavailable", 1, true),
        ("[drop]", "may already have been created", 1, true),
        ("[429x:1]", "", 2, false),
    ];
    for (marker, says, creates, money) in cases {
        let prompt = format!("An explainer {marker}");
        let before = sim.state.count("create");
        let r = child.call("create_video", json!({"prompt": prompt})).await;
        let sent = sim.state.count("create") - before;
        assert_eq!(sent, *creates, "{marker}: creates sent");
        if says.is_empty() {
            expect_ok(&r);
            continue;
        }
        let text = expect_tool_error(&r);
        assert!(text.contains(says), "{marker}: {text}");
        assert_eq!(
            text.contains("may already have been created"),
            *money,
            "{marker}: {text}"
        );
        assert!(
            text.contains("request_id") || text.contains("req"),
            "{marker}: {text}"
        );
    }
    // A wrong avatar: the v3 code's advice names the catalogue tool.
    let r = child
        .call(
            "create_video",
            json!({"prompt": "Hello", "avatar_id": "no-such-look"}),
        )
        .await;
    let text = expect_tool_error(&r);
    assert!(
        text.contains("avatar_not_found") && text.contains("list_avatars"),
        "{text}"
    );
    child.shutdown().await;
}

#[tokio::test]
async fn local_files_are_uploaded_as_assets_before_the_create() {
    let sim = v3_sim(Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("logo.png");
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&png, &bytes).unwrap();
    let child = McpChild::legacy(heygen_opts(&sim)).await;
    let r = child
        .call(
            "create_video",
            json!({"prompt": "Our logo, animated", "file_paths": [png.display().to_string()], "file_urls": ["https://example.com/brief.pdf"]}),
        )
        .await;
    expect_ok(&r);
    assert_eq!(sim.state.count("asset"), 1);
    let body = sim
        .state
        .requests()
        .into_iter()
        .rev()
        .find(|q| q.method == "POST" && q.path.starts_with("/v3/video-agents"))
        .and_then(|q| q.body)
        .unwrap();
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{body}");
    assert_eq!(
        files[0],
        json!({"type": "url", "url": "https://example.com/brief.pdf"})
    );
    assert_eq!(files[1]["type"], "asset_id");
    child.shutdown().await;
}

#[tokio::test]
async fn the_catalogue_beside_the_gateway_needs_its_own_key() {
    let gateway = common::start_sim().await;
    let v3 = v3_sim(Duration::from_secs(30)).await;
    // Without HEYGEN_CATALOG_KEY: no catalogue tools.
    let child = McpChild::legacy(ServerOpts::for_sim(&gateway)).await;
    let names = tool_names(&child.list_tools().await);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("list_a") || n == "list_voices" || n == "list_styles"),
        "{names:?}"
    );
    child.shutdown().await;

    let child = McpChild::legacy(
        ServerOpts::for_sim(&gateway)
            .env("HEYGEN_CATALOG_KEY", TEST_KEY)
            .env("HEYGEN_CATALOG_BASE", v3.base_url()),
    )
    .await;
    let names = tool_names(&child.list_tools().await);
    for t in ["list_avatars", "list_voices", "list_styles"] {
        assert!(names.iter().any(|n| n == t), "{t}: {names:?}");
    }
    let r = child.call("list_voices", json!({})).await;
    assert!(
        !structured(&r)["voices"].as_array().unwrap().is_empty(),
        "{r}"
    );
    assert!(
        v3.state
            .requests()
            .iter()
            .all(|q| q.key.as_deref() == Some(TEST_KEY))
    );
    assert_eq!(gateway.state.count("create"), 0);
    child.shutdown().await;
}

#[tokio::test]
async fn a_running_video_can_be_stopped_with_tasks_cancel() {
    let sim = v3_sim(Duration::from_secs(60)).await;
    let (mut raw, _) =
        RawChild::modern_with_capabilities(heygen_opts(&sim), tasks_capabilities()).await;
    let created = raw
        .request_ok(
            "tools/call",
            json!({"name": "create_video", "arguments": {"prompt": "A long documentary"}}),
        )
        .await;
    let task_id = created["taskId"].as_str().unwrap().to_string();
    // The task's poll interval follows the backend's long renders.
    let poll = created["task"]["pollIntervalMs"]
        .as_u64()
        .or_else(|| created["pollIntervalMs"].as_u64());
    assert!(poll.unwrap_or(0) >= 10_000, "{created}");
    let ack = raw
        .request_ok("tasks/cancel", json!({ "taskId": task_id }))
        .await;
    assert_eq!(ack["resultType"], "complete", "{ack}");
    assert_eq!(sim.state.count("stop"), 1);
    let status = raw
        .request_ok("tasks/get", json!({ "taskId": task_id }))
        .await;
    assert_eq!(status["status"], "completed", "{status}");
    let text = status.to_string();
    assert!(text.contains("Stopped by user"), "{text}");
    raw.close().await;
}

async fn run_check(sim: &Simulator, key: &str) -> (bool, String) {
    let home = common::TestHome::new();
    let opts = ServerOpts {
        api_base: Some(sim.base_url()),
        api_key: Some(key.into()),
        args: vec!["--backend".into(), "heygen".into(), "check".into()],
        ..ServerOpts::default()
    };
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        common::server_command(&opts, &home).output(),
    )
    .await
    .expect("check finishes")
    .expect("check runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stdout.contains(key) && !stderr.contains(key));
    (out.status.success(), stdout)
}

#[tokio::test]
async fn check_reads_the_heygen_account() {
    let sim = v3_sim(Duration::from_secs(30)).await;
    let (ok, out) = run_check(&sim, TEST_KEY).await;
    assert!(ok, "{out}");
    for needle in [
        "heygen backend",
        "ok   key       accepted by HeyGen",
        "USD remaining",
        "All checks passed.",
    ] {
        assert!(out.contains(needle), "{needle:?} in:\n{out}");
    }
    assert!(!out.contains("model"), "no gateway model line:\n{out}");
    let (ok, out) = run_check(&sim, "not-the-key-0000000").await;
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL key       rejected (HTTP 401)"), "{out}");
}

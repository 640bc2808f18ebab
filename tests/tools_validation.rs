//! Input validation over the real binary: every bad argument is an `isError`
//! result with an actionable message, and the simulator's counters prove that
//! not a single upstream request was made for it. Valid edge cases (exactly
//! at the limits, multi-byte characters, empty optionals) go through, and the
//! upstream body carries no empty fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use heygen_video_mcp::simulator::Simulator;
use serde_json::{Value, json};

/// Upstream traffic so far: (creates, gets, all requests).
fn traffic(sim: &Simulator) -> (u64, u64, usize) {
    (
        sim.state.count("create"),
        sim.state.count("get"),
        upstream_total(sim),
    )
}

/// Calls `tool` with `args`, expects `isError` with text containing every one
/// of `needles` (case-insensitive), and zero upstream requests.
async fn rejects(
    child: &McpChild,
    sim: &Simulator,
    tool: &str,
    args: Value,
    needles: &[&str],
) -> String {
    let before = traffic(sim);
    let r = child.call(tool, args.clone()).await;
    let shown: String = args.to_string().chars().take(120).collect();
    assert!(is_error(&r), "{tool} {shown} should be rejected, got {r}");
    assert!(
        r.get("structuredContent").is_none(),
        "error results carry text only: {r}"
    );
    let text = result_text(&r);
    let lower = text.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "{tool} {shown}: message should mention {n:?}: {text}"
        );
    }
    assert_eq!(
        traffic(sim),
        before,
        "{tool} {shown} must not reach the upstream"
    );
    text
}

/// Calls `create_video` with `args`, expects success and exactly one create;
/// returns the body the upstream received.
async fn accepts_create(child: &McpChild, sim: &Simulator, args: Value) -> Value {
    let (creates, gets, _) = traffic(sim);
    let r = child.call("create_video", args.clone()).await;
    let shown: String = args.to_string().chars().take(120).collect();
    assert!(!is_error(&r), "create_video {shown} should pass, got {r}");
    assert_video_task_shape(structured(&r));
    assert_eq!(sim.state.count("create"), creates + 1, "{shown}");
    assert_eq!(sim.state.count("get"), gets, "{shown}");
    sim.state
        .requests()
        .into_iter()
        .rev()
        .find(|req| req.path == "/v1/videos/generations")
        .and_then(|req| req.body)
        .expect("the simulator recorded the create body")
}

fn urls(n: usize) -> Value {
    Value::from(
        (0..n)
            .map(|i| format!("https://files.example.com/ref-{i}.png"))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn create_video_rejects_bad_input_before_any_upstream_call() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;
    let create = "create_video";

    // Prompt length counts characters, not bytes.
    for ch in ["a", "é", "日"] {
        let text = rejects(
            &child,
            &sim,
            create,
            json!({"prompt": ch.repeat(10_001)}),
            &["prompt", "10001", "10000"],
        )
        .await;
        assert!(
            !text.contains("20002") && !text.contains("30003"),
            "counted bytes, not characters: {text}"
        );
    }
    rejects(&child, &sim, create, json!({"prompt": ""}), &["prompt"]).await;
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "  \n\t "}),
        &["prompt"],
    )
    .await;
    rejects(&child, &sim, create, json!({}), &["prompt"]).await;
    // Wrong JSON types: rmcp's serde message names the bad value and the
    // expected type (not the field; see the report for a possible upgrade).
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": 42}),
        &["42", "string"],
    )
    .await;
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": null}),
        &["null", "string"],
    )
    .await;

    // file_urls: at most 20, each an absolute http(s) URL.
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "x", "file_urls": urls(21)}),
        &["file_urls", "20"],
    )
    .await;
    for bad in [
        "ftp://files.example.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "/relative/a.png",
        "https://",
        "",
    ] {
        rejects(
            &child,
            &sim,
            create,
            json!({"prompt": "x", "file_urls": ["https://ok.example.com/a.png", bad]}),
            &["file_urls[1]", "http"],
        )
        .await;
    }
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "x", "file_urls": "https://one.example.com/a.png"}),
        &["one.example.com", "sequence"],
    )
    .await;

    // orientation: only landscape or portrait.
    for bad in ["square", "16:9", "vertical"] {
        rejects(
            &child,
            &sim,
            create,
            json!({"prompt": "x", "orientation": bad}),
            &["orientation", "landscape", "portrait"],
        )
        .await;
    }

    // Unknown argument names are refused, and named.
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "x", "duration": 30}),
        &["duration"],
    )
    .await;
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "x", "aspect_ratio": "16:9"}),
        &["aspect_ratio"],
    )
    .await;

    // Wrong types and absurd ids.
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "x", "incognito_mode": "yes"}),
        &["yes", "bool"],
    )
    .await;
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "x", "avatar_id": "A".repeat(300)}),
        &["avatar_id"],
    )
    .await;
    rejects(
        &child,
        &sim,
        create,
        json!({"prompt": "x", "voice_id": "en-US\nInjected: 1"}),
        &["voice_id"],
    )
    .await;

    assert_eq!(upstream_total(&sim), 0);

    // After all that, a good request still works.
    let body = accepts_create(&child, &sim, json!({"prompt": "still alive"})).await;
    assert_eq!(body["prompt"], "still alive");
    child.shutdown().await;
}

#[tokio::test]
async fn create_video_accepts_the_limits_exactly() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;

    // 10,000 characters, however many bytes they take.
    for ch in ["a", "é", "日"] {
        let prompt = ch.repeat(10_000);
        let body = accepts_create(&child, &sim, json!({ "prompt": prompt })).await;
        assert_eq!(
            body["prompt"].as_str().map(|p| p.chars().count()),
            Some(10_000)
        );
        assert_eq!(
            body["prompt"],
            prompt.as_str(),
            "the prompt is sent unchanged"
        );
    }

    // 20 file URLs, both schemes.
    let mut list = urls(19);
    list.as_array_mut()
        .unwrap()
        .push(json!("http://plain.example.com/a.pdf"));
    let body = accepts_create(
        &child,
        &sim,
        json!({"prompt": "with files", "file_urls": list.clone()}),
    )
    .await;
    assert_eq!(body["file_urls"], list);

    // Every field set.
    let body = accepts_create(
        &child,
        &sim,
        json!({
            "prompt": "all fields",
            "avatar_id": "Anna_public_3_20240108",
            "voice_id": "en-US-Studio-O",
            "style_id": "modern_vlog_01",
            "orientation": "landscape",
            "file_urls": ["https://files.example.com/logo.png"],
            "incognito_mode": true
        }),
    )
    .await;
    assert_eq!(
        body,
        json!({
            "model": "heygen-video-agent",
            "prompt": "all fields",
            "avatar_id": "Anna_public_3_20240108",
            "voice_id": "en-US-Studio-O",
            "style_id": "modern_vlog_01",
            "orientation": "landscape",
            "file_urls": ["https://files.example.com/logo.png"],
            "incognito_mode": true
        })
    );

    child.shutdown().await;
}

#[tokio::test]
async fn empty_optionals_are_not_sent_upstream() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;

    let body = accepts_create(&child, &sim, json!({"prompt": "hello", "avatar_id": ""})).await;
    assert!(body.get("avatar_id").is_none(), "{body}");
    assert_eq!(
        body,
        json!({"model": "heygen-video-agent", "prompt": "hello"})
    );

    let body = accepts_create(
        &child,
        &sim,
        json!({
            "prompt": "hello again",
            "avatar_id": "",
            "voice_id": "   ",
            "style_id": "",
            "orientation": "",
            "file_urls": [],
            "incognito_mode": null
        }),
    )
    .await;
    assert_eq!(
        body,
        json!({"model": "heygen-video-agent", "prompt": "hello again"}),
        "empty optionals must be omitted, not sent empty"
    );

    // null for every optional is "omitted" too.
    let body = accepts_create(
        &child,
        &sim,
        json!({"prompt": "nulls", "avatar_id": null, "voice_id": null, "style_id": null,
               "orientation": null, "file_urls": null}),
    )
    .await;
    assert_eq!(
        body,
        json!({"model": "heygen-video-agent", "prompt": "nulls"})
    );

    child.shutdown().await;
}

#[tokio::test]
async fn get_video_status_rejects_unsafe_task_ids_without_a_request() {
    let sim = start_sim().await;
    let child = McpChild::legacy(ServerOpts::for_sim(&sim)).await;
    let status = "get_video_status";

    let long = "a".repeat(129);
    for bad in [
        "../account/credits",
        "a/b",
        "a?b",
        "%2e%2e",
        "..",
        ".",
        "",
        "a b",
        "a#b",
        "a\\b",
        "task\u{0}id",
        "tâche",
        long.as_str(),
    ] {
        let text = rejects(
            &child,
            &sim,
            status,
            json!({ "task_id": bad }),
            &["task_id"],
        )
        .await;
        assert!(
            text.contains("create_video"),
            "should say where a valid id comes from: {text}"
        );
    }
    rejects(&child, &sim, status, json!({}), &["task_id"]).await;
    rejects(
        &child,
        &sim,
        status,
        json!({"task_id": 12}),
        &["12", "string"],
    )
    .await;
    rejects(
        &child,
        &sim,
        status,
        json!({"task_id": "t", "verbose": true}),
        &["verbose"],
    )
    .await;
    assert_eq!(upstream_total(&sim), 0);

    // A well-formed id is looked up (exactly one request, one path segment).
    let created = child
        .call("create_video", json!({"prompt": "for lookup"}))
        .await;
    let id = task_id_of(&created);
    let r = child.call(status, json!({ "task_id": id })).await;
    assert_video_task_shape(expect_ok(&r));
    assert_eq!(sim.state.count("get"), 1);
    let seen = sim.state.requests();
    let get = seen.iter().find(|r| r.method == "GET").expect("a GET");
    assert_eq!(get.path, format!("/v1/tasks/{id}"));

    child.shutdown().await;
}

/// A prompt with no visible character (only whitespace, zero-width, format or
/// control characters) is refused before anything is bought: the upstream
/// (a plain HTTP fake) sees no create. Real text with a zero-width joiner in it
/// still goes through, unchanged.
#[tokio::test]
async fn an_invisible_prompt_is_refused_before_anything_is_bought() {
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{method, path},
    };
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "task-zwj-1", "status": "pending", "progress": 0, "created": 1757165031
        })))
        .expect(1)
        .mount(&upstream)
        .await;
    let child = McpChild::legacy(ServerOpts {
        api_base: Some(upstream.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    })
    .await;
    for blank in [
        "\u{200b}",
        "\u{0000}",
        "\u{2060}",
        "\u{feff}",
        " \t\n",
        "\u{00a0}",
        "\u{3000}",
        "\u{180e}",
        "\u{200e}",
        "\u{200b}\u{200c}\u{200d}\u{2060}\u{feff} \u{200e}\u{200f}\u{202e}",
    ] {
        let r = child.call("create_video", json!({ "prompt": blank })).await;
        let text = expect_tool_error(&r);
        assert!(text.contains("prompt is empty"), "{blank:?}: {text}");
        let seen = upstream.received_requests().await.unwrap_or_default();
        assert!(seen.is_empty(), "{blank:?} reached the upstream: {seen:?}");
    }
    let real = "A family 👨\u{200d}👩\u{200d}👧 walking on the beach";
    let r = child.call("create_video", json!({ "prompt": real })).await;
    assert_eq!(expect_ok(&r)["task_id"], "task-zwj-1", "{r}");
    let seen = upstream.received_requests().await.unwrap_or_default();
    assert_eq!(seen.len(), 1);
    let body: Value = serde_json::from_slice(&seen[0].body).expect("a JSON create body");
    assert_eq!(body["prompt"], real);
    child.shutdown().await;
    upstream.verify().await;
}

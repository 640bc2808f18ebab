//! The gateway client against a local mock of the task API (`shared/UPSTREAM.md`):
//! exact request shapes, the error table, tolerant decoding, the retry policy
//! and, above all, the money rule (a create is never sent twice unless the
//! gateway refused it with 429 or nothing was sent).
//!
//! Everything binds 127.0.0.1 with OS-chosen ports; nothing reaches the internet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use heygen_video_mcp::gateway::{
    ApiKey, CreateVideoRequest, GatewayClient, GatewayConfig, Operation, Orientation, RetryPolicy,
    TaskStatus, UpstreamError,
};
use serde_json::{Value, json};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{
        body_json, header, header_regex, method, path, query_param, query_param_is_missing,
    },
};

const KEY: &str = "test-key-0123456789";
const TASK_ID: &str = "task-unified-1757165031-uyujaw3d";

fn key() -> ApiKey {
    ApiKey::new(KEY).unwrap()
}

/// Small delays so retries cost milliseconds.
fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        create_budget: Duration::from_secs(10),
        lookup_budget: Duration::from_secs(10),
    }
}

fn client_with(base: impl Into<String>, timeout: Duration, retry: RetryPolicy) -> GatewayClient {
    let mut config = GatewayConfig::new(base);
    config.timeout = timeout;
    config.connect_timeout = Duration::from_secs(2);
    config.retry = retry;
    GatewayClient::new(config)
}

fn client(server: &MockServer, max_attempts: u32) -> GatewayClient {
    client_with(
        server.uri(),
        Duration::from_secs(5),
        fast_retry(max_attempts),
    )
}

fn created_task() -> Value {
    json!({
        "id": TASK_ID,
        "object": "video.generation.task",
        "type": "video",
        "model": "heygen-video-agent",
        "status": "pending",
        "progress": 0,
        "created": 1757165031,
        "task_info": { "can_cancel": true, "estimated_time": 45 },
        "usage": { "credits_reserved": 5, "user_group": "default" }
    })
}

fn error_body(message: &str, kind: &str, code: &str) -> Value {
    json!({ "error": { "message": message, "type": kind, "code": code } })
}

async fn request_count(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .len()
}

/// The fields of a `UpstreamError::Api`, or a panic naming what came instead.
struct ApiFields {
    status: u16,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
    retry_after: Option<Duration>,
}

fn api_fields(err: &UpstreamError) -> ApiFields {
    match err {
        UpstreamError::Api {
            status,
            code,
            message,
            request_id,
            retry_after,
            ..
        } => ApiFields {
            status: *status,
            code: code.clone(),
            message: message.clone(),
            request_id: request_id.clone(),
            retry_after: *retry_after,
        },
        other => panic!("expected UpstreamError::Api, got {other:?}"),
    }
}

async fn mount_create(server: &MockServer, template: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(template)
        .mount(server)
        .await;
}

async fn mount_get(server: &MockServer, task_id: &str, template: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{task_id}")))
        .respond_with(template)
        .mount(server)
        .await;
}

/// A create answered by `template`, sent with a policy that would allow
/// retries: returns the error and how many requests reached the server.
async fn create_error(template: ResponseTemplate) -> (UpstreamError, usize) {
    let server = MockServer::start().await;
    mount_create(&server, template).await;
    let err = client(&server, 4)
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("the create must fail");
    (err, request_count(&server).await)
}

/// A status lookup answered by `template` with `max_attempts` attempts.
async fn get_task_error(template: ResponseTemplate, max_attempts: u32) -> (UpstreamError, usize) {
    let server = MockServer::start().await;
    mount_get(&server, TASK_ID, template).await;
    let err = client(&server, max_attempts)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("the lookup must fail");
    (err, request_count(&server).await)
}

// ---------------------------------------------------------------------------
// Request shapes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_sends_the_exact_documented_request_with_only_the_fields_that_were_set() {
    let server = MockServer::start().await;
    let expected_body = json!({
        "model": "heygen-video-agent",
        "prompt": "A friendly presenter explains our product in 30 seconds.",
        "avatar_id": "Anna_public_3_20240108",
        "orientation": "portrait",
        "file_urls": ["https://example.com/logo.png"],
        "incognito_mode": true
    });
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(header_regex("user-agent", r"^heygen-video-mcp/\S+"))
        .and(query_param_is_missing("sync_upstream"))
        .and(body_json(&expected_body))
        .respond_with(ResponseTemplate::new(200).set_body_json(created_task()))
        .expect(1)
        .mount(&server)
        .await;

    let mut req =
        CreateVideoRequest::new("A friendly presenter explains our product in 30 seconds.");
    req.avatar_id = Some("Anna_public_3_20240108".into());
    req.voice_id = None;
    req.style_id = None;
    req.orientation = Some(Orientation::Portrait);
    req.file_urls = Some(vec!["https://example.com/logo.png".into()]);
    req.incognito_mode = Some(true);

    let task = client(&server, 1)
        .create_video(&key(), &req)
        .await
        .expect("the exact request is answered 200");
    assert_eq!(task.id.as_deref(), Some(TASK_ID));
    assert_eq!(task.status(), TaskStatus::Pending);
    assert_eq!(task.created, Some(1757165031));
    assert_eq!(task.estimated_seconds(), Some(45));

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let sent: Value = requests[0].body_json().unwrap();
    let fields = sent.as_object().unwrap();
    assert!(!fields.contains_key("voice_id"), "None is omitted: {sent}");
    assert!(!fields.contains_key("style_id"), "None is omitted: {sent}");
    assert!(
        fields.values().all(|v| !v.is_null()),
        "no null is ever sent: {sent}"
    );
}

#[tokio::test]
async fn create_with_only_a_prompt_sends_just_model_and_prompt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .and(body_json(
            json!({"model": "heygen-video-agent", "prompt": "hello"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(created_task()))
        .expect(1)
        .mount(&server)
        .await;
    client(&server, 1)
        .create_video(&key(), &CreateVideoRequest::new("hello"))
        .await
        .expect("the minimal body matches exactly");
}

#[tokio::test]
async fn get_task_sends_a_get_with_the_key_and_sync_upstream_only_when_asked() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .and(query_param("sync_upstream", "true"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header_regex("user-agent", r"^heygen-video-mcp/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": TASK_ID, "status": "processing", "progress": 40})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .and(query_param_is_missing("sync_upstream"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": TASK_ID, "status": "pending", "progress": 0})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server, 1);
    let synced = c.get_task(&key(), TASK_ID, true).await.unwrap();
    assert_eq!(synced.status(), TaskStatus::Processing);
    assert_eq!(synced.progress_percent(), 40);
    let plain = c.get_task(&key(), TASK_ID, false).await.unwrap();
    assert_eq!(plain.status(), TaskStatus::Pending);

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].url.query(), Some("sync_upstream=true"));
    assert_eq!(requests[1].url.query(), None);
}

#[tokio::test]
async fn task_id_with_colon_dot_dash_and_underscore_reaches_the_right_path() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/tasks/a:b.c-d_e"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "a:b.c-d_e", "status": "pending"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let task = client(&server, 1)
        .get_task(&key(), "a:b.c-d_e", false)
        .await
        .expect("the id is valid and the path matches");
    assert_eq!(task.id.as_deref(), Some("a:b.c-d_e"));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.path(), "/v1/tasks/a:b.c-d_e");
}

#[tokio::test]
async fn invalid_task_ids_are_refused_without_sending_any_request() {
    let server = MockServer::start().await;
    // Anything that does reach the server would be answered; it must not.
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "x"})))
        .mount(&server)
        .await;
    let c = client(&server, 3);
    let too_long = "x".repeat(129);
    for bad in [
        "../account/credits",
        "%2e%2e",
        "a/b",
        "a?b",
        ".",
        "..",
        "",
        too_long.as_str(),
    ] {
        for sync in [false, true] {
            let err = c
                .get_task(&key(), bad, sync)
                .await
                .expect_err(&format!("{bad:?} must be refused"));
            assert!(
                matches!(err, UpstreamError::InvalidTaskId { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(err.nothing_sent());
            assert!(
                err.user_message(Operation::GetTask)
                    .contains("Invalid task_id"),
                "{bad:?}"
            );
        }
    }
    assert_eq!(
        request_count(&server).await,
        0,
        "no invalid id may reach the upstream"
    );
    // The longest valid id is still accepted and sent.
    let longest = "x".repeat(128);
    c.get_task(&key(), &longest, false).await.unwrap();
    assert_eq!(request_count(&server).await, 1);
}

// ---------------------------------------------------------------------------
// The error table of UPSTREAM.md
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_401_is_mapped_to_check_the_api_key_with_code_and_request_id() {
    let (err, sent) = create_error(ResponseTemplate::new(401).set_body_json(error_body(
        "Invalid token (request_id: abc-123)",
        "new_api_error",
        "invalid_api_key",
    )))
    .await;
    assert_eq!(sent, 1, "a 401 is not retried");
    let f = api_fields(&err);
    assert_eq!(f.status, 401);
    assert_eq!(f.code.as_deref(), Some("invalid_api_key"));
    assert_eq!(f.request_id.as_deref(), Some("abc-123"));
    assert!(f.message.contains("Invalid token"));
    let m = err.user_message(Operation::Create);
    assert!(m.contains("HTTP 401"), "{m}");
    assert!(m.contains("check the HEYGEN_API_KEY setting"), "{m}");
    assert!(m.contains("abc-123"), "{m}");
    assert!(!m.contains("may already have been created"), "{m}");
    assert!(!err.create_may_have_happened());
}

#[tokio::test]
async fn a_402_is_mapped_to_top_up_credits() {
    let (err, sent) = create_error(ResponseTemplate::new(402).set_body_json(error_body(
        "insufficient quota (request_id: 20250906-q1)",
        "insufficient_quota",
        "insufficient_user_quota",
    )))
    .await;
    assert_eq!(sent, 1);
    let f = api_fields(&err);
    assert_eq!(f.status, 402);
    assert_eq!(f.code.as_deref(), Some("insufficient_user_quota"));
    assert_eq!(f.request_id.as_deref(), Some("20250906-q1"));
    let m = err.user_message(Operation::Create);
    assert!(m.contains("top up credits"), "{m}");
    assert!(m.contains("20250906-q1"), "{m}");
    assert!(!m.contains("may already have been created"), "{m}");
}

#[tokio::test]
async fn a_404_on_get_task_says_the_id_is_wrong_or_belongs_to_another_key_and_is_not_retried() {
    let (err, sent) = get_task_error(
        ResponseTemplate::new(404).set_body_json(error_body(
            "task not found (request_id: nf-42)",
            "invalid_request_error",
            "task_not_found",
        )),
        4,
    )
    .await;
    assert_eq!(sent, 1, "a 404 is not retried");
    let f = api_fields(&err);
    assert_eq!(f.status, 404);
    assert_eq!(f.code.as_deref(), Some("task_not_found"));
    assert_eq!(f.request_id.as_deref(), Some("nf-42"));
    let m = err.user_message(Operation::GetTask);
    assert!(
        m.contains("the task_id is wrong, or the task belongs to another API key"),
        "{m}"
    );
    assert!(m.contains("nf-42"), "{m}");
}

#[tokio::test]
async fn each_documented_422_code_is_mapped_to_its_own_advice() {
    let cases = [
        (
            "model_not_found",
            "does not offer the heygen-video-agent model",
        ),
        (
            "no_compatible_channel",
            "no capacity for the video model right now (not a problem with the request)",
        ),
        (
            "invalid_file_type",
            "points at a file type the agent cannot use",
        ),
        ("invalid_image_url", "could not be fetched as an image"),
    ];
    for (code, advice) in cases {
        let (err, sent) = create_error(ResponseTemplate::new(422).set_body_json(error_body(
            &format!("validation failed: {code} (request_id: req-{code})"),
            "invalid_request_error",
            code,
        )))
        .await;
        assert_eq!(sent, 1, "{code}: a 422 is not retried");
        let f = api_fields(&err);
        assert_eq!(f.status, 422, "{code}");
        assert_eq!(f.code.as_deref(), Some(code));
        let req_id = format!("req-{code}");
        assert_eq!(f.request_id.as_deref(), Some(req_id.as_str()));
        let m = err.user_message(Operation::Create);
        assert!(m.contains(advice), "{code}: {m}");
        assert!(m.contains(code), "{code}: {m}");
        assert!(m.contains(&req_id), "{code}: {m}");
        assert!(!m.contains("may already have been created"), "{code}: {m}");
    }
}

#[tokio::test]
async fn a_429_without_retry_after_says_wait_a_little() {
    let (err, sent) = get_task_error(
        ResponseTemplate::new(429).set_body_json(error_body(
            "too many requests (request_id: rl-1)",
            "rate_limit",
            "rate_limited",
        )),
        1,
    )
    .await;
    assert_eq!(sent, 1);
    let f = api_fields(&err);
    assert_eq!(f.status, 429);
    assert_eq!(f.retry_after, None);
    assert_eq!(f.request_id.as_deref(), Some("rl-1"));
    let m = err.user_message(Operation::GetTask);
    assert!(m.contains("Rate limited: wait a little"), "{m}");
    assert!(m.contains("rl-1"), "{m}");
}

#[tokio::test]
async fn a_429_with_retry_after_reports_the_wait_in_seconds() {
    let (err, sent) = get_task_error(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "7")
            .set_body_json(error_body(
                "slow down (request_id: rl-7)",
                "rate_limit",
                "rate_limited",
            )),
        1,
    )
    .await;
    assert_eq!(sent, 1);
    let f = api_fields(&err);
    assert_eq!(f.status, 429);
    assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
    let m = err.user_message(Operation::GetTask);
    assert!(m.contains("wait 7 s (Retry-After)"), "{m}");
    assert!(m.contains("rl-7"), "{m}");
}

#[tokio::test]
async fn a_500_is_mapped_to_temporarily_unavailable() {
    let (err, sent) = get_task_error(
        ResponseTemplate::new(500).set_body_json(error_body(
            "internal error (request_id: ie-500)",
            "server_error",
            "internal_error",
        )),
        1,
    )
    .await;
    assert_eq!(sent, 1);
    let f = api_fields(&err);
    assert_eq!(f.status, 500);
    assert_eq!(f.code.as_deref(), Some("internal_error"));
    assert_eq!(f.request_id.as_deref(), Some("ie-500"));
    let m = err.user_message(Operation::GetTask);
    assert!(m.contains("temporarily unavailable"), "{m}");
    assert!(m.contains("ie-500"), "{m}");
    assert!(!m.contains("may already"), "no money rule on a lookup: {m}");
}

#[tokio::test]
async fn a_502_html_page_becomes_a_short_sanitised_excerpt() {
    let padding = "<p>An error occurred while talking to the upstream server.</p>\n".repeat(200);
    let html = format!(
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
         <center><h1>502 Bad Gateway</h1></center>\r\n{padding}<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n"
    );
    let (err, sent) = get_task_error(
        ResponseTemplate::new(502).set_body_raw(html, "text/html"),
        1,
    )
    .await;
    assert_eq!(sent, 1);
    let f = api_fields(&err);
    assert_eq!(f.status, 502);
    assert_eq!(f.code, None);
    assert!(f.message.contains("502 Bad Gateway"), "{}", f.message);
    assert!(
        f.message.chars().count() <= 300,
        "excerpt is short: {} chars",
        f.message.chars().count()
    );
    let m = err.user_message(Operation::GetTask);
    for tag in [
        "<html", "</html>", "<head", "<title", "<h1", "<center", "<p>", "<hr",
    ] {
        assert!(!m.contains(tag), "no {tag} in: {m}");
        assert!(!format!("{err:?}").contains(tag), "no {tag} in Debug");
    }
    assert!(!m.contains('\r') && !m.contains('\n'), "one line: {m:?}");
    assert!(m.contains("HTTP 502"), "{m}");
    assert!(m.contains("temporarily unavailable"), "{m}");
    assert!(m.chars().count() < 700, "user message stays short: {m}");
}

#[tokio::test]
async fn a_503_is_mapped_to_temporarily_unavailable_with_the_request_id_header() {
    let (err, sent) = get_task_error(
        ResponseTemplate::new(503)
            .insert_header("x-request-id", "hdr-503-id")
            .set_body_json(error_body(
                "no available channel",
                "server_error",
                "service_unavailable",
            )),
        1,
    )
    .await;
    assert_eq!(sent, 1);
    let f = api_fields(&err);
    assert_eq!(f.status, 503);
    assert_eq!(f.request_id.as_deref(), Some("hdr-503-id"));
    let m = err.user_message(Operation::GetTask);
    assert!(m.contains("temporarily unavailable"), "{m}");
    assert!(m.contains("hdr-503-id"), "{m}");
}

// ---------------------------------------------------------------------------
// Tolerant decoding of 200 answers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_non_json_200_body_is_a_decode_error_and_not_retried() {
    let server = MockServer::start().await;
    mount_get(
        &server,
        TASK_ID,
        ResponseTemplate::new(200).set_body_raw("<html><body>OK</body></html>", "text/html"),
    )
    .await;
    let err = client(&server, 4)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("HTML is not a task");
    assert!(
        matches!(err, UpstreamError::Decode { status: 200, .. }),
        "{err:?}"
    );
    assert_eq!(request_count(&server).await, 1);
    let m = err.user_message(Operation::GetTask);
    assert!(
        m.contains("HTTP 200") && m.contains("could not be read"),
        "{m}"
    );
    assert!(!m.contains("<html>"), "{m}");
}

#[tokio::test]
async fn a_truncated_json_200_body_is_a_decode_error() {
    let server = MockServer::start().await;
    mount_get(
        &server,
        TASK_ID,
        ResponseTemplate::new(200)
            .set_body_raw(r#"{"id": "task-1", "status": "proc"#, "application/json"),
    )
    .await;
    let err = client(&server, 4)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("a truncated body is not a task");
    assert!(
        matches!(err, UpstreamError::Decode { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_garbage_200_answer_to_a_create_is_a_decode_error_that_may_have_created_the_video() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("not json at all", "text/plain"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 4)
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("garbage is not a task");
    assert!(matches!(err, UpstreamError::Decode { .. }), "{err:?}");
    assert!(err.create_may_have_happened());
    assert!(
        err.user_message(Operation::Create)
            .contains("may already have been created")
    );
}

#[tokio::test]
async fn an_unknown_status_is_accepted_as_other_and_not_terminal() {
    let server = MockServer::start().await;
    mount_get(
        &server,
        TASK_ID,
        ResponseTemplate::new(200)
            .set_body_json(json!({"id": TASK_ID, "status": "rendering", "progress": 55})),
    )
    .await;
    let task = client(&server, 1)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect("an unknown status is not an error");
    assert_eq!(task.status(), TaskStatus::Other("rendering".into()));
    assert!(!task.status().is_terminal());
    assert_eq!(task.progress_percent(), 55);
}

#[tokio::test]
async fn both_result_shapes_give_the_video_urls() {
    let server = MockServer::start().await;
    mount_get(
        &server,
        "t-results",
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "t-results", "object": "video.generation.task", "type": "video",
            "model": "heygen-video-agent", "status": "completed", "progress": 100,
            "created": 1757165031,
            "results": [ { "url": "https://cdn.example/output/abc.mp4", "width": 1280,
                           "height": 720, "duration": 31.5 } ],
            "error": null,
            "usage": { "credits_reserved": 5, "user_group": "default" }
        })),
    )
    .await;
    mount_get(
        &server,
        "t-output",
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "t-output", "status": "completed", "progress": 100,
            "output": { "url": "https://cdn.example/output/one.mp4",
                        "urls": ["https://cdn.example/output/one.mp4",
                                 "https://cdn.example/output/two.mp4"] }
        })),
    )
    .await;
    let c = client(&server, 1);
    let a = c.get_task(&key(), "t-results", false).await.unwrap();
    assert_eq!(a.status(), TaskStatus::Completed);
    assert_eq!(a.video_urls(), vec!["https://cdn.example/output/abc.mp4"]);
    assert!(a.failure().is_none());
    let b = c.get_task(&key(), "t-output", false).await.unwrap();
    assert_eq!(b.status(), TaskStatus::Completed);
    assert_eq!(
        b.video_urls(),
        vec![
            "https://cdn.example/output/one.mp4",
            "https://cdn.example/output/two.mp4"
        ]
    );
}

#[tokio::test]
async fn missing_optional_fields_are_accepted() {
    let server = MockServer::start().await;
    mount_get(
        &server,
        TASK_ID,
        ResponseTemplate::new(200).set_body_json(json!({"id": TASK_ID, "status": "pending"})),
    )
    .await;
    let task = client(&server, 1)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect("only id and status are needed");
    assert_eq!(task.id.as_deref(), Some(TASK_ID));
    assert_eq!(task.status(), TaskStatus::Pending);
    assert_eq!(task.progress_percent(), 0);
    assert_eq!(task.created, None);
    assert!(task.video_urls().is_empty());
    assert!(task.failure().is_none());
    assert!(task.estimated_seconds().is_none());
    assert!(task.usage.is_none());
}

// ---------------------------------------------------------------------------
// Retries of idempotent requests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_task_retries_a_500_and_succeeds_on_the_second_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": TASK_ID, "status": "pending"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let task = client(&server, 3)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect("the retry succeeds");
    assert_eq!(task.id.as_deref(), Some(TASK_ID));
    assert_eq!(request_count(&server).await, 2);
}

#[tokio::test]
async fn get_task_honours_retry_after_before_retrying_a_429() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": TASK_ID, "status": "pending"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
        create_budget: Duration::from_secs(10),
        lookup_budget: Duration::from_secs(10),
    };
    let c = client_with(server.uri(), Duration::from_secs(5), retry);
    let started = Instant::now();
    c.get_task(&key(), TASK_ID, false)
        .await
        .expect("the retry after the wait succeeds");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 must be waited out, waited {waited:?}"
    );
    assert_eq!(request_count(&server).await, 2);
}

#[tokio::test]
async fn get_task_returns_at_once_when_retry_after_exceeds_the_cap() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "5"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 4) // max_delay 50 ms < 5 s
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("a long Retry-After is reported, not waited out");
    let f = api_fields(&err);
    assert_eq!(f.status, 429);
    assert_eq!(f.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(request_count(&server).await, 1);
    assert!(
        err.user_message(Operation::GetTask)
            .contains("wait 5 s (Retry-After)")
    );
}

#[tokio::test]
async fn get_task_gives_up_after_max_attempts_on_a_persistent_503() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;
    let err = client(&server, 3)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("503 every time");
    assert_eq!(api_fields(&err).status, 503);
    assert_eq!(request_count(&server).await, 3);
}

// ---------------------------------------------------------------------------
// THE MONEY RULE: a create is sent at most once unless refused with 429 or
// provably never sent.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_is_sent_exactly_once_when_the_gateway_answers_500() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(500).set_body_json(error_body(
            "upstream error (request_id: m-500)",
            "server_error",
            "internal_error",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 5)
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("500");
    assert_eq!(
        request_count(&server).await,
        1,
        "a 500 create is never resent"
    );
    assert_eq!(api_fields(&err).status, 500);
    assert!(err.create_may_have_happened());
    let m = err.user_message(Operation::Create);
    assert!(m.contains("may already have been created"), "{m}");
    assert!(m.contains("Do NOT call create_video again"), "{m}");
    assert!(m.contains("m-500"), "{m}");
}

#[tokio::test]
async fn create_is_sent_exactly_once_when_the_gateway_answers_502_or_503() {
    for status in [502u16, 503] {
        let (err, sent) = create_error(ResponseTemplate::new(status)).await;
        assert_eq!(sent, 1, "a {status} create is never resent");
        assert_eq!(api_fields(&err).status, status);
        assert!(
            err.user_message(Operation::Create)
                .contains("may already have been created")
        );
    }
}

#[tokio::test]
async fn create_is_sent_exactly_once_when_the_answer_is_slower_than_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(created_task())
                .set_delay(Duration::from_secs(4)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client_with(server.uri(), Duration::from_secs(1), fast_retry(5));
    let err = c
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("the answer comes too late");
    assert!(
        matches!(err, UpstreamError::Timeout { timeout } if timeout == Duration::from_secs(1)),
        "{err:?}"
    );
    assert_eq!(
        request_count(&server).await,
        1,
        "a timed-out create is never resent"
    );
    assert!(err.create_may_have_happened());
    assert!(!err.nothing_sent());
    let m = err.user_message(Operation::Create);
    assert!(m.contains("may already have been created"), "{m}");
}

/// A bare TCP server that reads one HTTP request per connection, counts it and
/// hangs up without answering (wiremock cannot drop connections).
async fn spawn_hang_up_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                if read_one_request(&mut sock).await {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                drop(sock); // close without a single byte of answer
            });
        }
    });
    (format!("http://{addr}"), count)
}

/// Reads a whole request (head and `Content-Length` body); false on early EOF.
async fn read_one_request(sock: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut wanted: Option<usize> = None;
    loop {
        if wanted.is_none()
            && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            wanted = Some(end + 4 + body_len);
        }
        if let Some(total) = wanted
            && buf.len() >= total
        {
            return true;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn create_is_sent_exactly_once_when_the_connection_drops_after_the_request() {
    let (base, count) = spawn_hang_up_server().await;
    let c = client_with(base, Duration::from_secs(5), fast_retry(5));
    let err = c
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("no answer");
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a create whose connection dropped is never resent ({err:?})"
    );
    assert!(
        !matches!(err, UpstreamError::Connect { .. }),
        "the request was sent, so this is not a connect failure: {err:?}"
    );
    assert!(!err.nothing_sent(), "{err:?}");
    assert!(err.create_may_have_happened(), "{err:?}");
    let m = err.user_message(Operation::Create);
    assert!(m.contains("may already have been created"), "{m}");
}

#[tokio::test]
async fn get_task_is_retried_when_the_connection_drops() {
    let (base, count) = spawn_hang_up_server().await;
    let c = client_with(base, Duration::from_secs(5), fast_retry(3));
    let err = c
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("no answer");
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "an idempotent lookup uses all attempts ({err:?})"
    );
}

#[tokio::test]
async fn create_is_retried_after_a_429_and_succeeds_with_two_requests() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(429).set_body_json(error_body(
            "rate limited",
            "rate_limit",
            "rate_limited",
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .and(body_json(
            json!({"model": "heygen-video-agent", "prompt": "a video"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(created_task()))
        .expect(1)
        .mount(&server)
        .await;
    let task = client(&server, 4)
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect("429 means not accepted, so the create is resent once");
    assert_eq!(task.id.as_deref(), Some(TASK_ID));
    assert_eq!(request_count(&server).await, 2);
}

#[tokio::test]
async fn create_does_not_retry_a_429_before_a_retry_after_beyond_the_cap() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "5"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created_task()))
        .mount(&server)
        .await;
    let err = client(&server, 4) // max_delay 50 ms < 5 s
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("the gateway asked for 5 s; the client must not resend sooner");
    let f = api_fields(&err);
    assert_eq!(f.status, 429);
    assert_eq!(f.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(request_count(&server).await, 1);
    let m = err.user_message(Operation::Create);
    assert!(m.contains("wait 5 s (Retry-After)"), "{m}");
    assert!(!m.contains("may already have been created"), "{m}");
}

#[tokio::test]
async fn create_stops_retrying_429s_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(429))
        .expect(3)
        .mount(&server)
        .await;
    let err = client(&server, 3)
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("429 every time");
    assert_eq!(api_fields(&err).status, 429);
    assert!(!err.create_may_have_happened());
    assert_eq!(request_count(&server).await, 3);
}

#[tokio::test]
async fn create_on_a_refused_connection_is_a_connect_error_where_nothing_was_sent() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // dropped: nothing listens there now
    let c = client_with(
        format!("http://127.0.0.1:{port}"),
        Duration::from_secs(2),
        fast_retry(3),
    );
    let err = c
        .create_video(&key(), &CreateVideoRequest::new("a video"))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, UpstreamError::Connect { .. }), "{err:?}");
    assert!(err.nothing_sent());
    assert!(!err.create_may_have_happened());
    let m = err.user_message(Operation::Create);
    assert!(m.contains("Nothing was sent"), "{m}");
    assert!(!m.contains("may already have been created"), "{m}");
}

// ---------------------------------------------------------------------------
// Credits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn credits_fall_back_to_the_older_endpoint_and_keep_its_answer() {
    let server = MockServer::start().await;
    let balance = json!({
        "object": "credits",
        "balance": 1234.5,
        "currency": "USD",
        "nested": { "groups": [ { "name": "default", "used": 12 }, null, true, "x" ] },
        "unicode": "crédit ✓",
        "big": 9007199254740993u64
    });
    Mock::given(method("GET"))
        .and(path("/v1/account/credits"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header_regex("user-agent", r"^heygen-video-mcp/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&balance))
        .expect(1)
        .mount(&server)
        .await;
    let got = client(&server, 1).balance(&key()).await.unwrap();
    assert_eq!(got.upstream["account_credits"], balance);
    assert_eq!(got.credits.remaining, Some(1234.5));
    assert_eq!(got.credits.unit.as_deref(), Some("USD"));
}

#[tokio::test]
async fn credits_401_is_mapped_to_check_the_api_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/dashboard/billing/subscription"))
        .respond_with(ResponseTemplate::new(401).set_body_json(error_body(
            "Invalid token (request_id: cr-401)",
            "new_api_error",
            "invalid_api_key",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 4).balance(&key()).await.expect_err("401");
    let f = api_fields(&err);
    assert_eq!(f.status, 401);
    assert_eq!(f.request_id.as_deref(), Some("cr-401"));
    let m = err.user_message(Operation::Credits);
    assert!(m.contains("check the HEYGEN_API_KEY setting"), "{m}");
    assert!(m.contains("cr-401"), "{m}");
}

#[tokio::test]
async fn credits_retry_a_503_and_then_report_the_balance() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/dashboard/billing/subscription"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dashboard/billing/subscription"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"hard_limit_usd": 10})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dashboard/billing/usage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total_usage": 250})))
        .expect(1)
        .mount(&server)
        .await;
    let got = client(&server, 3).balance(&key()).await.unwrap();
    assert_eq!(got.credits.remaining, Some(7.5));
}

// ---------------------------------------------------------------------------
// The key never leaks
// ---------------------------------------------------------------------------

fn assert_no_leak(err: &UpstreamError, needles: &[&str]) {
    let debug = format!("{err:?}");
    let display = err.to_string();
    let messages: Vec<String> = [
        Operation::Create,
        Operation::GetTask,
        Operation::Credits,
        Operation::Download,
    ]
    .into_iter()
    .map(|op| err.user_message(op))
    .collect();
    for needle in needles {
        assert!(
            !debug.contains(needle),
            "{needle:?} leaks in Debug: {debug}"
        );
        assert!(
            !display.contains(needle),
            "{needle:?} leaks in Display: {display}"
        );
        for m in &messages {
            assert!(!m.contains(needle), "{needle:?} leaks in user_message: {m}");
        }
    }
}

#[tokio::test]
async fn an_upstream_error_echoing_the_key_never_shows_it() {
    let (err, _) = create_error(ResponseTemplate::new(422).set_body_json(json!({
        "error": {
            "message": format!("Invalid key {KEY} for this model (request_id: leak-1)"),
            "type": format!("auth_error_{KEY}"),
            "code": format!("bad_key:{KEY}")
        }
    })))
    .await;
    let f = api_fields(&err);
    assert_eq!(f.status, 422);
    assert_eq!(f.request_id.as_deref(), Some("leak-1"), "the id survives");
    assert_no_leak(&err, &[KEY, "0123456789", "test-key"]);
}

#[tokio::test]
async fn an_upstream_error_echoing_a_ten_character_fragment_of_the_key_never_shows_it() {
    let fragment = &KEY[5..15]; // "key-012345"
    assert_eq!(fragment.len(), 10);
    let (err, _) = create_error(ResponseTemplate::new(422).set_body_json(error_body(
        &format!("key ending {fragment} is not valid here (request_id: leak-2)"),
        "invalid_request_error",
        "invalid_key",
    )))
    .await;
    let f = api_fields(&err);
    assert_eq!(f.request_id.as_deref(), Some("leak-2"));
    assert!(f.message.contains("is not valid here"), "{}", f.message);
    assert_no_leak(&err, &[fragment]);
}

#[tokio::test]
async fn a_non_json_error_page_echoing_the_key_never_shows_it() {
    let (err, _) = get_task_error(
        ResponseTemplate::new(502).set_body_raw(
            format!("<html><body>Authorization: Bearer {KEY}</body></html>"),
            "text/html",
        ),
        1,
    )
    .await;
    assert_eq!(api_fields(&err).status, 502);
    assert_no_leak(&err, &[KEY, &KEY[9..19]]);
}

#[tokio::test]
async fn a_status_lookup_stops_retrying_when_its_total_budget_is_spent() {
    // given a gateway that never answers in time, many allowed attempts, and a
    // total budget of 1.5 request timeouts
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let retry = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        create_budget: Duration::from_secs(10),
        lookup_budget: Duration::from_millis(1500),
    };
    let c = client_with(server.uri(), Duration::from_secs(1), retry);
    // when
    let err = c.get_task(&key(), TASK_ID, false).await.unwrap_err();
    // then it gives up as a timeout after at most two attempts, not ten
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    let sent = server.received_requests().await.unwrap().len();
    assert!((1..=2).contains(&sent), "{sent} requests");
}

// ---------------------------------------------------------------------------
// Redirects: a create is never re-sent; the key never goes to another origin
// ---------------------------------------------------------------------------

/// A create answered with `status` and a `Location` back to the same server:
/// the error and the POSTs that reached it.
async fn create_redirected(status: u16) -> (UpstreamError, String, MockServer) {
    let server = MockServer::start().await;
    let target = format!(
        "http://user:hunter2@{}/gw/v1/videos/generations?token=s3cret-query#frag",
        server.address()
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).insert_header("location", target.as_str()))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 4)
        .create_video(&key(), &CreateVideoRequest::new("a paid video"))
        .await
        .expect_err("a redirected create must fail");
    (err, target, server)
}

#[tokio::test]
async fn a_create_answered_with_307_or_308_is_sent_exactly_once_and_names_the_target() {
    for status in [307u16, 308, 301, 302, 303] {
        let (err, _, server) = create_redirected(status).await;
        let posts = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .count();
        assert_eq!(
            posts, 1,
            "HTTP {status}: the create reached the upstream {posts} times"
        );
        let msg = err.user_message(Operation::Create);
        assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
        let host = server.address().to_string();
        assert!(
            msg.contains(&format!("http://{host}/gw/v1/videos/generations")),
            "names the target: {msg}"
        );
        assert!(msg.contains("HEYGEN_API_BASE"), "{msg}");
        assert!(
            msg.contains(&format!("setting it to http://{host}/gw if")),
            "suggests the base: {msg}"
        );
        assert!(msg.contains("nothing was created"), "{msg}");
        assert!(!msg.contains("may already have been created"), "{msg}");
        for secret in ["hunter2", "user:", "s3cret", "token", "frag"] {
            assert!(!msg.contains(secret), "{secret} shown: {msg}");
        }
        assert!(!err.create_may_have_happened(), "{err:?}");
        assert!(!err.is_transient(), "{err:?}");
        server.verify().await;
    }
}

#[tokio::test]
async fn a_status_lookup_follows_a_same_origin_redirect_with_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/tasks/{TASK_ID}")))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("/v2/tasks/{TASK_ID}")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/tasks/{TASK_ID}")))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(created_task()))
        .expect(1)
        .mount(&server)
        .await;
    let task = client(&server, 1)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect("a same-origin redirect is followed");
    assert_eq!(task.id.as_deref(), Some(TASK_ID));
    server.verify().await;
}

#[tokio::test]
async fn a_cross_origin_redirect_never_receives_the_key() {
    let other = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(created_task()))
        .expect(0)
        .mount(&other)
        .await;
    let server = MockServer::start().await;
    let target = format!("{}/v1/tasks/{TASK_ID}?sig=abc123", other.uri());
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", target.as_str()))
        .mount(&server)
        .await;
    let c = client(&server, 4);
    let err = c
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("a redirect to another origin is refused");
    let msg = err.user_message(Operation::GetTask);
    assert!(msg.contains(&other.address().to_string()), "{msg}");
    assert!(msg.contains("HEYGEN_API_BASE"), "{msg}");
    assert!(!msg.contains("abc123"), "{msg}");
    let err = c.balance(&key()).await.expect_err("credits too");
    assert!(
        err.user_message(Operation::Credits).contains("another"),
        "{err:?}"
    );
    assert_eq!(other.received_requests().await.unwrap().len(), 0);
    // Not retried: the answer would be the same. One task lookup, then the
    // two billing lookups (the public pricing table aside).
    let keyed = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() != "/api/pricing")
        .count();
    assert_eq!(keyed, 3);
    other.verify().await;
}

#[tokio::test]
async fn a_redirect_loop_is_followed_at_most_three_times() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/v1/account/credits"))
        .mount(&server)
        .await;
    let err = client(&server, 4)
        .get_task(&key(), TASK_ID, false)
        .await
        .expect_err("a loop ends");
    let msg = err.user_message(Operation::GetTask);
    assert!(msg.contains("HEYGEN_API_BASE"), "{msg}");
    assert_eq!(server.received_requests().await.unwrap().len(), 4, "{msg}");
}

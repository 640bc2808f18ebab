//! The gateway's billing endpoints behind `get_credits`, the upload endpoint,
//! and `heygen-video-mcp check`, against a wiremock gateway on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{McpChild, ServerOpts, TEST_KEY, TestHome, expect_ok, result_text, server_command};
use heygen_video_mcp::gateway::{ApiKey, GatewayClient, GatewayConfig, Operation};
use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, header, method, path},
};

fn client(server: &MockServer) -> GatewayClient {
    let mut cfg = GatewayConfig::new(server.uri());
    cfg.retry.base_delay = Duration::from_millis(10);
    GatewayClient::new(cfg)
}

fn key() -> ApiKey {
    ApiKey::new(TEST_KEY).unwrap()
}

async fn mount_billing(server: &MockServer, hard_limit: f64, usage_hundredths: f64) {
    Mock::given(method("GET"))
        .and(path("/dashboard/billing/subscription"))
        .and(header(
            "authorization",
            format!("Bearer {TEST_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "billing_subscription", "hard_limit_usd": hard_limit,
            "soft_limit_usd": hard_limit, "access_until": 0
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dashboard/billing/usage"))
        .and(header(
            "authorization",
            format!("Bearer {TEST_KEY}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "list", "total_usage": usage_hundredths})),
        )
        .mount(server)
        .await;
}

async fn mount_pricing(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/pricing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                {"model_name": "gpt-x", "quota_type": 0, "model_price": 0},
                {"model_name": "heygen-video-agent", "quota_type": 1, "model_price": 2.0}
            ],
            "group_ratio": {"default": 1.25, "vip": 0.5}
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_balance_is_read_from_the_billing_endpoints_and_typed() {
    let server = MockServer::start().await;
    mount_billing(&server, 100.0, 1250.0).await;
    mount_pricing(&server).await;
    let b = client(&server).balance(&key()).await.unwrap();
    assert_eq!(b.credits.total, Some(100.0));
    assert_eq!(b.credits.used, Some(12.5));
    assert_eq!(b.credits.remaining, Some(87.5));
    assert!(!b.credits.unlimited);
    assert_eq!(b.price_per_video, Some(2.5));
    assert_eq!(b.upstream["subscription"]["hard_limit_usd"], 100.0);
    // The public pricing table is fetched without the key.
    let requests = server.received_requests().await.unwrap();
    let pricing: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/api/pricing")
        .collect();
    assert_eq!(pricing.len(), 1);
    assert!(pricing[0].headers.get("authorization").is_none());
    assert_eq!(requests.len(), 3, "one request per endpoint");
}

#[tokio::test]
async fn an_unlimited_key_and_a_gateway_without_pricing() {
    let server = MockServer::start().await;
    mount_billing(&server, 100_000_000.0, 500.0).await;
    let b = client(&server).balance(&key()).await.unwrap();
    assert!(b.credits.unlimited);
    assert_eq!((b.credits.total, b.credits.remaining), (None, None));
    assert_eq!(b.credits.used, Some(5.0));
    assert_eq!(b.price_per_video, None);
}

#[tokio::test]
async fn a_gateway_without_billing_endpoints_falls_back_to_account_credits() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account/credits"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"balance": 995, "used": 5, "currency": "credits"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let b = client(&server).balance(&key()).await.unwrap();
    assert_eq!(b.credits.remaining, Some(995.0));
    assert_eq!(b.credits.used, Some(5.0));
    assert_eq!(b.credits.unit.as_deref(), Some("credits"));
}

#[tokio::test]
async fn a_billing_404_everywhere_is_not_an_unknown_task() {
    let server = MockServer::start().await;
    let err = client(&server).balance(&key()).await.expect_err("404");
    let m = err.user_message(Operation::Credits);
    assert!(m.contains("HTTP 404"), "{m}");
    assert!(m.contains("balance endpoints"), "{m}");
    assert!(
        !m.contains("task_id") && !m.contains("No such task"),
        "a 404 here is not about a task: {m}"
    );
}

#[tokio::test]
async fn an_upload_is_sent_once_even_when_it_fails() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/files/upload/base64"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .upload_file(&key(), "a.png", b"\x89PNG")
        .await
        .expect_err("500");
    assert_eq!(err.status(), Some(500));
}

#[tokio::test]
async fn an_upload_sends_base64_and_returns_the_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/files/upload/base64"))
        .and(header(
            "authorization",
            format!("Bearer {TEST_KEY}").as_str(),
        ))
        .and(body_partial_json(
            json!({"file_data": "iVBORw==", "file_name": "a.png"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "f1", "filename": "a.png", "url": "https://files.example/f1.png", "size": 4
        })))
        .expect(1)
        .mount(&server)
        .await;
    let url = client(&server)
        .upload_file(&key(), "a.png", b"\x89PNG")
        .await
        .unwrap();
    assert_eq!(url, "https://files.example/f1.png");
}

#[tokio::test]
async fn get_credits_reports_the_typed_balance_and_the_price() {
    let server = MockServer::start().await;
    mount_billing(&server, 50.0, 1000.0).await;
    mount_pricing(&server).await;
    let c = McpChild::legacy(ServerOpts {
        api_base: Some(server.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    })
    .await;
    let r = c.call("get_credits", json!({})).await;
    let sc = expect_ok(&r);
    assert_eq!(
        sc["credits"],
        json!({"remaining": 40.0, "used": 10.0, "total": 50.0, "unlimited": false})
    );
    assert_eq!(sc["price_per_video"], 2.5);
    assert_eq!(sc["videos_affordable"], 16);
    let text = result_text(&r);
    assert!(text.contains("40 remaining"), "{text}");
    assert!(text.contains("One video costs 2.5"), "{text}");
}

async fn run_check(server: &MockServer, key: Option<&str>) -> (bool, String) {
    let home = TestHome::new();
    let opts = ServerOpts {
        api_base: Some(server.uri()),
        api_key: key.map(String::from),
        args: vec!["check".into()],
        ..ServerOpts::default()
    };
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        server_command(&opts, &home).output(),
    )
    .await
    .expect("check finishes")
    .expect("check runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stdout.contains(TEST_KEY) && !stderr.contains(TEST_KEY));
    (out.status.success(), stdout)
}

#[tokio::test]
async fn check_passes_when_everything_is_in_order() {
    let server = MockServer::start().await;
    mount_billing(&server, 100.0, 1250.0).await;
    mount_pricing(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header(
            "authorization",
            format!("Bearer {TEST_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "data": [{"id": "gpt-x"}, {"id": "heygen-video-agent"}]}),
        ))
        .mount(&server)
        .await;
    let (ok, out) = run_check(&server, Some(TEST_KEY)).await;
    assert!(ok, "{out}");
    for needle in [
        "ok   key       accepted",
        "ok   model     heygen-video-agent is available",
        "87.5 remaining",
        "ok   downloads",
        "ok   ledger",
        "dedupe window 300 s",
        "All checks passed.",
    ] {
        assert!(out.contains(needle), "{needle:?} in:\n{out}");
    }
    assert!(out.lines().count() <= 10, "a few lines:\n{out}");
}

#[tokio::test]
async fn check_fails_on_a_rejected_key_a_missing_model_or_no_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": format!("bad key {TEST_KEY}"), "type": "x", "code": "invalid_api_key"}}),
        ))
        .mount(&server)
        .await;
    let (ok, out) = run_check(&server, Some(TEST_KEY)).await;
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL key       rejected (HTTP 401)"), "{out}");

    let other = MockServer::start().await;
    mount_billing(&other, 100.0, 0.0).await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": "gpt-x"}]})))
        .mount(&other)
        .await;
    let (ok, out) = run_check(&other, Some(TEST_KEY)).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL model     heygen-video-agent is not among the 1 models"),
        "{out}"
    );

    let (ok, out) = run_check(&other, None).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL key       HEYGEN_API_KEY is not set"),
        "{out}"
    );
}

async fn mount_create(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "task-files-1", "status": "pending", "progress": 0, "created": 1757165031
        })))
        .mount(server)
        .await;
}

fn requests_to(reqs: &[wiremock::Request], p: &str) -> Vec<serde_json::Value> {
    reqs.iter()
        .filter(|r| r.url.path() == p)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn local_files_are_uploaded_once_and_passed_as_file_urls() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/files/upload/base64"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "f1", "filename": "slide.png", "url": "https://files.example/f1.png", "size": 4
        })))
        .mount(&server)
        .await;
    mount_create(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("slide.png");
    std::fs::write(&png, b"\x89PNG").unwrap();
    let c = McpChild::legacy(ServerOpts {
        api_base: Some(server.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    })
    .await;
    let args = json!({
        "prompt": "Explain this slide",
        "file_urls": ["https://cdn.example/logo.png"],
        "file_paths": [png.display().to_string()]
    });
    let r = c.call("create_video", args.clone()).await;
    assert_eq!(expect_ok(&r)["task_id"], "task-files-1");
    let reqs = server.received_requests().await.unwrap();
    let uploads = requests_to(&reqs, "/v1/files/upload/base64");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0]["file_name"], "slide.png");
    assert_eq!(uploads[0]["file_data"], "iVBORw==");
    let creates = requests_to(&reqs, "/v1/videos/generations");
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0]["file_urls"],
        json!([
            "https://cdn.example/logo.png",
            "https://files.example/f1.png"
        ])
    );
    // The identical call again is the same video: no second upload or create.
    let again = c.call("create_video", args).await;
    assert_eq!(expect_ok(&again)["task_id"], "task-files-1");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(requests_to(&reqs, "/v1/files/upload/base64").len(), 1);
    assert_eq!(requests_to(&reqs, "/v1/videos/generations").len(), 1);
}

#[tokio::test]
async fn a_bad_file_or_a_failed_upload_buys_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/files/upload/base64"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "error": {"message": "unsupported", "type": "x", "code": "invalid_file_type"}
        })))
        .mount(&server)
        .await;
    mount_create(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.mp4");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(21 * 1024 * 1024)
        .unwrap();
    let ok = dir.path().join("ok.pdf");
    std::fs::write(&ok, b"%PDF-1.4").unwrap();
    let c = McpChild::legacy(ServerOpts {
        api_base: Some(server.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    })
    .await;
    let cases = [
        (json!([big.display().to_string()]), "at most 20 MB"),
        (json!(["notes/ok.pdf"]), "not an absolute path"),
        (
            json!([dir.path().join("none.png").display().to_string()]),
            "does not exist",
        ),
        (
            json!([ok.display().to_string()]),
            "Uploading ok.pdf failed, so no video was created",
        ),
    ];
    for (paths, needle) in cases {
        let r = c
            .call(
                "create_video",
                json!({"prompt": "Use this", "file_paths": paths}),
            )
            .await;
        let text = common::expect_tool_error(&r);
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        requests_to(&reqs, "/v1/videos/generations").len(),
        0,
        "nothing bought"
    );
    assert_eq!(
        requests_to(&reqs, "/v1/files/upload/base64").len(),
        1,
        "only the good file"
    );
    // 21 entries in all are refused before anything is read or sent.
    let r = c
        .call(
            "create_video",
            json!({"prompt": "x", "file_urls": vec!["https://a.example/x.png"; 20], "file_paths": [ok.display().to_string()]}),
        )
        .await;
    assert!(common::expect_tool_error(&r).contains("at most 20"));
}

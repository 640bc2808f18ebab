//! Redirects through the built binary: a create answered with 307 reaches
//! the upstream exactly once and the tool result says where the redirect
//! pointed, that nothing was bought and that HEYGEN_API_BASE needs fixing;
//! a status lookup redirected to another origin never carries the key there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{any, method, path},
};

#[tokio::test]
async fn a_redirected_create_is_sent_once_and_explained() {
    let upstream = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let target = format!("{}/v1/videos/generations?sig=secret-sig", elsewhere.uri());
    Mock::given(method("POST"))
        .and(path("/v1/videos/generations"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", target.as_str()))
        .expect(2)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/tasks/task-1"))
        .respond_with(ResponseTemplate::new(308).insert_header("location", target.as_str()))
        .expect(1)
        .mount(&upstream)
        .await;
    let c = McpChild::legacy(ServerOpts {
        api_base: Some(upstream.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    })
    .await;
    let text = expect_tool_error(
        &c.call("create_video", json!({"prompt": "A redirected video"}))
            .await,
    );
    assert!(text.contains("HTTP 307"), "{text}");
    assert!(text.contains(&elsewhere.address().to_string()), "{text}");
    assert!(text.contains("HEYGEN_API_BASE"), "{text}");
    assert!(text.contains("nothing was created"), "{text}");
    assert!(!text.contains("may already have been created"), "{text}");
    assert!(!text.contains("secret-sig"), "{text}");
    // Nothing was bought, so the ledger does not block a retry: it is sent
    // again (once) when the user asks again.
    let again = expect_tool_error(
        &c.call("create_video", json!({"prompt": "A redirected video"}))
            .await,
    );
    assert!(again.contains("HTTP 307"), "{again}");
    let status = expect_tool_error(
        &c.call("get_video_status", json!({"task_id": "task-1"}))
            .await,
    );
    assert!(status.contains("another host"), "{status}");
    assert_no_key("tool result", &status, TEST_KEY);
    let stderr = c.shutdown().await;
    assert_no_key("stderr", &stderr.joined(), TEST_KEY);
    upstream.verify().await;
    elsewhere.verify().await;
}

//! `get_credits`, end to end over stdio: the upstream's answer passed through
//! unchanged (against the simulator), every failure mapped to advice (against
//! wiremock), and the annotations every tool must set explicitly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    McpChild, ServerOpts, TEST_KEY, expect_ok, expect_tool_error, result_text, start_sim,
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

/// One of the simulator's billing answers, fetched directly with the key.
async fn direct(base: &str, path: &str) -> Value {
    let resp = common::http_client()
        .get(format!("{base}{path}"))
        .bearer_auth(TEST_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn credits_come_from_the_billing_endpoints_with_the_price() {
    let sim = start_sim().await;
    let c = McpChild::legacy(ServerOpts::for_sim(&sim)).await;
    // Spend some credits first so the balance is not the starting one.
    let created = c
        .call("create_video", json!({ "prompt": "Spend five credits" }))
        .await;
    expect_ok(&created);

    let r = c.call("get_credits", json!({})).await;
    let sc = expect_ok(&r);
    let base = sim.base_url();
    let sub = direct(&base, "/dashboard/billing/subscription").await;
    let usage = direct(&base, "/dashboard/billing/usage").await;
    assert_eq!(sc["upstream"]["subscription"], sub);
    assert_eq!(sc["upstream"]["usage"], usage);
    let total = sub["hard_limit_usd"].as_f64().unwrap();
    let used = usage["total_usage"].as_f64().unwrap() / 100.0;
    assert_eq!(sc["credits"]["total"].as_f64(), Some(total));
    assert_eq!(sc["credits"]["used"].as_f64(), Some(used));
    assert_eq!(sc["credits"]["remaining"].as_f64(), Some(total - used));
    assert_eq!(sc["credits"]["remaining"].as_f64(), Some(995.0));
    assert_eq!(sc["price_per_video"].as_f64(), Some(5.0));
    assert_eq!(sc["videos_affordable"], 199);
    let text = result_text(&r);
    assert!(
        text.contains("995 remaining, 5 used, 1000 in total"),
        "{text}"
    );
    assert!(text.contains("One video costs 5"), "{text}");
}

#[tokio::test]
async fn an_older_gateway_s_undocumented_shape_is_read_and_kept() {
    let upstream = MockServer::start().await;
    let odd = json!({"data": {"remaining_credits": "12.50", "plan": {"name": "pro", "renews": null}}, "extra": [1, 2]});
    Mock::given(method("GET"))
        .and(path("/v1/account/credits"))
        .and(header(
            "authorization",
            format!("Bearer {TEST_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(odd.clone()))
        .expect(1)
        .mount(&upstream)
        .await;
    let c = McpChild::legacy(ServerOpts {
        api_base: Some(upstream.uri()),
        api_key: Some(TEST_KEY.into()),
        ..ServerOpts::default()
    })
    .await;
    let r = c.call("get_credits", json!({})).await;
    let sc = expect_ok(&r);
    assert_eq!(sc["upstream"]["account_credits"], odd);
    assert_eq!(sc["credits"]["remaining"], 12.5);
    assert!(result_text(&r).contains("12.5 remaining"), "{r}");
}

#[tokio::test]
async fn credit_errors_are_mapped_to_advice() {
    let upstream = MockServer::start().await;
    let c = McpChild::legacy(
        ServerOpts {
            api_base: Some(upstream.uri()),
            api_key: Some(TEST_KEY.into()),
            ..ServerOpts::default()
        }
        .arg("--max-retries")
        .arg("0"),
    )
    .await;
    let cases: &[(ResponseTemplate, &[&str])] = &[
        (
            ResponseTemplate::new(401).set_body_json(json!({"error": {
                "message": "Invalid token (request_id: req-401)", "type": "authentication_error",
                "code": "invalid_api_key"}})),
            &[
                "Reading the credit balance failed",
                "HTTP 401",
                "HEYGEN_API_KEY",
                "req-401",
            ],
        ),
        (
            ResponseTemplate::new(402).set_body_json(json!({"error": {
                "message": "Insufficient balance", "code": "insufficient_quota"}})),
            &["HTTP 402", "top up credits"],
        ),
        (
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"error": {"message": "slow down"}})),
            &["HTTP 429", "Rate limited", "7 s"],
        ),
        (
            ResponseTemplate::new(503)
                .set_body_string("<html><body><h1>503 Service Unavailable</h1></body></html>"),
            &[
                "HTTP 503",
                "503 Service Unavailable",
                "temporarily unavailable",
            ],
        ),
        (
            ResponseTemplate::new(200).set_body_string("not json at all"),
            &["could not be read", "HEYGEN_API_BASE"],
        ),
    ];
    for (response, needles) in cases {
        upstream.reset().await;
        Mock::given(method("GET"))
            .and(path("/dashboard/billing/subscription"))
            .respond_with(response.clone())
            .mount(&upstream)
            .await;
        let r = c.call("get_credits", json!({})).await;
        let text = expect_tool_error(&r);
        assert!(
            r.get("structuredContent").is_none(),
            "errors carry text only: {r}"
        );
        for n in *needles {
            assert!(text.contains(n), "missing {n:?} in {text}");
        }
        common::assert_no_key("get_credits error", &text, TEST_KEY);
    }
}

#[tokio::test]
async fn credits_without_a_key_explain_how_to_set_one_and_send_nothing() {
    let sim = start_sim().await;
    let c = McpChild::legacy(ServerOpts::for_sim(&sim).without_key()).await;
    let text = expect_tool_error(&c.call("get_credits", json!({})).await);
    assert!(text.contains("HEYGEN_API_KEY"), "{text}");
    assert!(sim.state.requests().is_empty());
}

#[tokio::test]
async fn every_tool_sets_all_four_annotations_and_credits_is_read_only() {
    let sim = start_sim().await;
    let c = McpChild::legacy(ServerOpts::for_sim(&sim)).await;
    let tools = c.list_tools().await;
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for want in [
        "create_video",
        "get_video_status",
        "download_video",
        "get_credits",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for t in &tools {
        let a = &t["annotations"];
        for hint in [
            "readOnlyHint",
            "destructiveHint",
            "idempotentHint",
            "openWorldHint",
        ] {
            assert!(a[hint].is_boolean(), "{} lacks {hint}: {a}", t["name"]);
        }
        assert!(
            t["outputSchema"].is_object(),
            "{} has an outputSchema",
            t["name"]
        );
    }
    let credits = tools.iter().find(|t| t["name"] == "get_credits").unwrap();
    assert_eq!(
        credits["annotations"],
        json!({
            "title": "Get the HeyGen credit balance",
            "readOnlyHint": true,
            "destructiveHint": false,
            "idempotentHint": true,
            "openWorldHint": true
        })
    );
    assert!(
        credits["outputSchema"]["properties"]["credits"].is_object()
            || credits["outputSchema"]["properties"]["credits"] == json!(true)
    );
    // The structuredContent conforms to the declared schema.
    let r = c.call("get_credits", json!({})).await;
    common::assert_conforms(&credits["outputSchema"], expect_ok(&r));
    // So do the download and status results (new optional fields included).
    let status = tools
        .iter()
        .find(|t| t["name"] == "get_video_status")
        .unwrap();
    let schema = &status["outputSchema"]["properties"];
    for field in ["saved_path", "size_bytes"] {
        assert!(
            schema.get(field).is_some(),
            "{field} in the VideoTask schema"
        );
    }
}

//! OAuth sign-in against a local authorization server: an axum server on
//! loopback publishing OpenID metadata and a JWKS, tokens signed in the test
//! with a freshly generated P-256 key, and the built binary serving HTTP
//! against the in-process simulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod pg;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, extract::State, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use common::{TEST_KEY, TestHome, server_command, start_sim, upstream_total};
use heygen_video_mcp::simulator::Simulator;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion},
    service::ClientServiceExt,
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const STATIC_TOKEN: &str = "static-cli-token-0123456789";

/// A signing key: the private PKCS#8 for signing and the public JWK.
struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
        });
        Self {
            kid: kid.to_string(),
            pkcs8,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

/// The local authorization server: metadata and a JWKS whose keys the
/// test can change; counts JWKS fetches.
struct Issuer {
    url: String,
    jwks: Arc<Mutex<Vec<Value>>>,
    jwks_fetches: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct IssuerState {
    url: String,
    jwks: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn start_issuer(keys: Vec<Value>) -> Issuer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = IssuerState {
        url: url.clone(),
        jwks: Arc::new(Mutex::new(keys)),
        fetches: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(s): State<IssuerState>| async move {
                Json(json!({
                    "issuer": s.url,
                    "jwks_uri": format!("{}/jwks", s.url),
                    "authorization_endpoint": format!("{}/authorize", s.url),
                    "token_endpoint": format!("{}/token", s.url),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }))
            }),
        )
        .route(
            "/jwks",
            get(|State(s): State<IssuerState>| async move {
                s.fetches.fetch_add(1, Ordering::SeqCst);
                Json(json!({"keys": s.jwks.lock().unwrap().clone()}))
            }),
        )
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Issuer {
        url,
        jwks: state.jwks,
        jwks_fetches: state.fetches,
    }
}

/// The binary serving HTTP with OAuth; killed on drop.
struct Server {
    _child: tokio::process::Child,
    _home: TestHome,
    /// `http://127.0.0.1:<port>/mcp`
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn base(&self) -> &str {
        self.url.trim_end_matches("/mcp")
    }
}

async fn start_server(sim: &Simulator, issuer: &str, env: &[(&str, &str)]) -> Server {
    let home = TestHome::new();
    let mut opts = common::ServerOpts::for_sim(sim)
        .arg("--http")
        .arg("127.0.0.1:0")
        .env("HEYGEN_OAUTH_ISSUER", issuer)
        .env("HEYGEN_MCP_AUTH_TOKEN", STATIC_TOKEN);
    for (k, v) in env {
        opts = opts.env(*k, *v);
    }
    let mut child = server_command(&opts, &home).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let keep = lines.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut r = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = r.next_line().await {
            if let Some(rest) = line.strip_prefix("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.trim().to_string());
            }
            keep.lock().unwrap().push(line);
        }
    });
    let url = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the server starts within 30 s")
        .unwrap_or_else(|_| panic!("the server exited: {:?}", lines.lock().unwrap()));
    Server {
        _child: child,
        _home: home,
        url,
        stderr: lines,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(issuer: &str, aud: &str, sub: &str) -> Value {
    json!({
        "iss": issuer, "aud": aud, "sub": sub, "scope": "openid videos",
        "iat": now(), "exp": now() + 600,
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn create_call_body() -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "create_video", "arguments": {"prompt": "should never be created"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
}

async fn post(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(20))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "create_video");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.body(create_call_body()).send().await.unwrap()
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn transport(url: &str, token: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token),
    )
}

async fn modern_client(url: &str, token: &str) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve_with_lifecycle(
            transport(url, token),
            rmcp::ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("2026-07-28 client starts")
}

async fn legacy_client(url: &str, token: &str) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve(transport(url, token))
        .await
        .expect("2025-11-25 client starts")
}

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &'static str,
    args: Value,
) -> CallToolResult {
    tokio::time::timeout(
        Duration::from_secs(30),
        client.call_tool(
            CallToolRequestParams::new(tool).with_arguments(args.as_object().unwrap().clone()),
        ),
    )
    .await
    .expect("tools/call answers in time")
    .expect("tools/call answers")
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn listed_ids(r: &CallToolResult) -> Vec<String> {
    assert_eq!(r.is_error, Some(false), "{}", text(r));
    r.structured_content.as_ref().unwrap()["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["task_id"].as_str().unwrap().to_string())
        .collect()
}

async fn create(client: &RunningService<RoleClient, ClientConfig>, prompt: &str) -> String {
    let r = call(client, "create_video", json!({"prompt": prompt})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    r.structured_content.as_ref().unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn metadata_and_challenges_follow_rfc_9728() {
    let sim = start_sim().await;
    let key = SigningKey::generate("k1");
    let issuer = start_issuer(vec![key.jwk.clone()]).await;
    let server = start_server(&sim, &issuer.url, &[]).await;
    let prm_url = format!("{}/.well-known/oauth-protected-resource/mcp", server.base());

    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let resp = reqwest::get(format!("{}{path}", server.base()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["resource"], server.url, "{doc}");
        assert_eq!(doc["authorization_servers"], json!([issuer.url]));
        assert_eq!(doc["scopes_supported"], json!(["videos"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }
    // Unknown well-known paths stay 404; the metadata obeys the Host check.
    let resp = reqwest::get(format!("{}/.well-known/other", server.base()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/.well-known/oauth-protected-resource",
            server.base()
        ))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // No token: 401 pointing at the metadata.
    let resp = post(&server.url, None).await;
    assert_eq!(resp.status(), 401);
    let c = challenge(&resp);
    assert!(c.starts_with("Bearer "), "{c}");
    assert!(
        c.contains(&format!(r#"resource_metadata="{prm_url}""#)),
        "{c}"
    );
    assert!(c.contains(r#"scope="videos""#), "{c}");
    assert!(!c.contains("error="), "{c}");
    assert_eq!(upstream_total(&sim), 0);
}

#[tokio::test]
async fn bad_tokens_are_refused_before_any_tool_runs() {
    let sim = start_sim().await;
    let key = SigningKey::generate("k1");
    let stranger = SigningKey::generate("k1");
    let issuer = start_issuer(vec![key.jwk.clone()]).await;
    let server = start_server(&sim, &issuer.url, &[]).await;
    let aud = server.url.clone();
    let good = claims(&issuer.url, &aud, "alice");
    let prm_url = format!("{}/.well-known/oauth-protected-resource/mcp", server.base());

    let b64 = |v: &Value| B64.encode(v.to_string());
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
        b64(&good)
    );
    // HS256 keyed with the issuer's public key (the classic confusion attack).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let hmac_token = jsonwebtoken::encode(
        &hs,
        &good,
        &EncodingKey::from_secret(key.jwk.to_string().as_bytes()),
    )
    .unwrap();
    let tampered = {
        let t = key.sign(&good);
        let parts: Vec<&str> = t.split('.').collect();
        let forged = b64(&with(good.clone(), "sub", json!("mallory")));
        format!("{}.{}.{}", parts[0], forged, parts[2])
    };
    let unknown_kid = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k-unknown".into());
        jsonwebtoken::encode(&h, &good, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".into()),
        (
            "wrong audience",
            key.sign(&with(
                good.clone(),
                "aud",
                json!("https://other.example/mcp"),
            )),
        ),
        (
            "token of another resource on this host",
            key.sign(&with(
                good.clone(),
                "aud",
                json!(format!("{}/other", server.base())),
            )),
        ),
        (
            "wrong issuer",
            key.sign(&with(good.clone(), "iss", json!("https://evil.example"))),
        ),
        (
            "expired",
            key.sign(&with(good.clone(), "exp", json!(now() - 3600))),
        ),
        (
            "not yet valid",
            key.sign(&with(good.clone(), "nbf", json!(now() + 3600))),
        ),
        (
            "no expiry",
            key.sign(&{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        ("alg none", none_token),
        ("HS256 with the public key", hmac_token),
        ("unknown kid", unknown_kid),
        ("signed by another key", stranger.sign(&good)),
        ("tampered payload", tampered),
    ];
    for (what, token) in &cases {
        let resp = post(&server.url, Some(token)).await;
        assert_eq!(resp.status(), 401, "{what}");
        let c = challenge(&resp);
        assert!(c.contains(r#"error="invalid_token""#), "{what}: {c}");
        assert!(
            c.contains(&format!(r#"resource_metadata="{prm_url}""#)),
            "{what}: {c}"
        );
    }

    // Missing scope: 403 insufficient_scope.
    let no_scope = key.sign(&with(good.clone(), "scope", json!("openid")));
    let resp = post(&server.url, Some(&no_scope)).await;
    assert_eq!(resp.status(), 403);
    let c = challenge(&resp);
    assert!(c.contains(r#"error="insufficient_scope""#), "{c}");
    assert!(c.contains(r#"scope="videos""#), "{c}");

    // A valid token in the query string is refused too.
    let valid = key.sign(&good);
    let resp = post(&format!("{}?access_token={valid}", server.url), None).await;
    assert_eq!(resp.status(), 401);
    assert!(challenge(&resp).contains(r#"error="invalid_request""#));
    let resp = post(
        &format!("{}?access_token={valid}", server.url),
        Some(&valid),
    )
    .await;
    assert_eq!(resp.status(), 401);

    // Nothing reached a tool, and no token was logged.
    assert_eq!(upstream_total(&sim), 0);
    // The unknown kids caused at most one refetch (the 30 s floor).
    assert!(issuer.jwks_fetches.load(Ordering::SeqCst) <= 2);
    let logs = server.stderr.lock().unwrap().join("\n");
    for (_, token) in &cases {
        if token.len() > 20 {
            assert!(!logs.contains(token.as_str()), "a token was logged");
        }
    }
    assert!(!logs.contains(&valid));
}

#[tokio::test]
async fn signed_in_users_work_on_both_revisions_and_see_only_their_videos() {
    let sim = start_sim().await;
    let key = SigningKey::generate("k1");
    let issuer = start_issuer(vec![key.jwk.clone()]).await;
    let server = start_server(&sim, &issuer.url, &[]).await;
    let alice = key.sign(&claims(&issuer.url, &server.url, "alice"));
    // Audience as a list, scopes as Okta's `scp`.
    let bob = key.sign(&json!({
        "iss": issuer.url, "aud": ["https://api.example", server.url], "sub": "bob",
        "scp": ["videos"], "exp": now() + 600,
    }));

    let a_modern = modern_client(&server.url, &alice).await;
    let a_task = create(&a_modern, "alice's video").await;
    let b_legacy = legacy_client(&server.url, &bob).await;
    let b_task = create(&b_legacy, "bob's video").await;
    assert_ne!(a_task, b_task);

    // Each sees only their own, on either revision.
    let a_legacy = legacy_client(&server.url, &alice).await;
    for client in [&a_modern, &a_legacy] {
        let ids = listed_ids(&call(client, "list_videos", json!({})).await);
        assert_eq!(ids, vec![a_task.clone()]);
    }
    let b_modern = modern_client(&server.url, &bob).await;
    for client in [&b_modern, &b_legacy] {
        let ids = listed_ids(&call(client, "list_videos", json!({})).await);
        assert_eq!(ids, vec![b_task.clone()]);
    }
    // A token refreshed for the same user is the same tenant.
    let alice_again = key.sign(&with(
        claims(&issuer.url, &server.url, "alice"),
        "exp",
        json!(now() + 1200),
    ));
    let a2 = modern_client(&server.url, &alice_again).await;
    assert_eq!(
        listed_ids(&call(&a2, "list_videos", json!({})).await),
        vec![a_task.clone()]
    );

    // The static token still works beside OAuth, as its own tenant.
    let cli = modern_client(&server.url, STATIC_TOKEN).await;
    let r = call(&cli, "get_video_status", json!({"task_id": a_task})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let ids = listed_ids(&call(&cli, "list_videos", json!({})).await);
    assert!(!ids.contains(&b_task), "{ids:?}");

    // The bearer token never went upstream.
    for req in sim.state.requests() {
        assert_eq!(
            req.key.as_deref(),
            Some(TEST_KEY),
            "the operator's key pays"
        );
    }
    let logs = server.stderr.lock().unwrap().join("\n");
    assert!(!logs.contains(&alice) && !logs.contains(&bob));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token() {
    let sim = start_sim().await;
    let old = SigningKey::generate("old");
    let issuer = start_issuer(vec![old.jwk.clone()]).await;
    let server = start_server(&sim, &issuer.url, &[]).await;
    let fetches_at_start = issuer.jwks_fetches.load(Ordering::SeqCst);
    // Start-up fetched the keys; the floor starts then. Wait it out once.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let new = SigningKey::generate("new");
    issuer.jwks.lock().unwrap().push(new.jwk.clone());
    let token = new.sign(&claims(&issuer.url, &server.url, "carol"));
    let client = modern_client(&server.url, &token).await;
    let r = call(&client, "list_videos", json!({})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert_eq!(
        issuer.jwks_fetches.load(Ordering::SeqCst),
        fetches_at_start + 1
    );
}

#[tokio::test]
async fn the_daily_budget_stops_a_user_before_anything_is_bought() {
    let sim = start_sim().await;
    let key = SigningKey::generate("k1");
    let issuer = start_issuer(vec![key.jwk.clone()]).await;
    let server = start_server(&sim, &issuer.url, &[("HEYGEN_USER_DAILY_VIDEOS", "1")]).await;
    let dave = key.sign(&claims(&issuer.url, &server.url, "dave"));
    let erin = key.sign(&claims(&issuer.url, &server.url, "erin"));
    let d = modern_client(&server.url, &dave).await;
    create(&d, "first").await;
    let creates = sim.state.count("create");
    let r = call(&d, "create_video", json!({"prompt": "second"})).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(
        t.contains("Daily video limit reached") && t.contains("00:00 UTC"),
        "{t}"
    );
    assert_eq!(sim.state.count("create"), creates, "nothing bought");
    // Another user has their own budget.
    let e = modern_client(&server.url, &erin).await;
    create(&e, "erin's").await;
}

/// Two replicas on one PostgreSQL ledger share each user's daily budget:
/// videos bought on one count on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_budget_holds_across_replicas_on_one_database() {
    let Some(schema) = pg::schema("the_daily_budget_holds_across_replicas_on_one_database").await
    else {
        return;
    };
    let sim = start_sim().await;
    let key = SigningKey::generate("k1");
    let issuer = start_issuer(vec![key.jwk.clone()]).await;
    let env = [
        ("HEYGEN_USER_DAILY_VIDEOS", "2"),
        ("HEYGEN_LEDGER", schema.url.as_str()),
    ];
    let (a, b) = tokio::join!(
        start_server(&sim, &issuer.url, &env),
        start_server(&sim, &issuer.url, &env)
    );
    // The same user on both replicas (each token names its replica as audience).
    let dave = |server: &Server| key.sign(&claims(&issuer.url, &server.url, "dave"));
    let on_a = modern_client(&a.url, &dave(&a)).await;
    let on_b = modern_client(&b.url, &dave(&b)).await;
    create(&on_a, "first of the day").await;
    create(&on_a, "second of the day").await;
    let bought = sim.state.count("create");
    let r = call(
        &on_b,
        "create_video",
        json!({"prompt": "third, on the other replica"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    let t = text(&r);
    assert!(
        t.contains("Daily video limit reached") && t.contains("resets at 00:00 UTC, in "),
        "{t}"
    );
    assert_eq!(sim.state.count("create"), bought, "nothing bought on B");
    // Replica A, which counted two itself, refuses too.
    let r = call(&on_a, "create_video", json!({"prompt": "third, back on A"})).await;
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    // Another user is not affected, on either replica.
    let erin = key.sign(&claims(&issuer.url, &b.url, "erin"));
    let e = modern_client(&b.url, &erin).await;
    create(&e, "erin's first").await;
    assert_eq!(sim.state.count("create"), bought + 1);
    // The shared database holds every create of the day.
    let client = pg::connect(&schema.url).await;
    let rows: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {}.heygen_videos", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);
}

const CLIENT_ID: &str = "heygen-rs";
/// With characters that the client authentication form-encodes.
const CLIENT_SECRET: &str = "s3cret:+/value-0123456789";

/// One introspection request: its Authorization header and form fields.
type Asked = (String, Vec<(String, String)>);

/// A local authorization server that also introspects opaque tokens
/// (RFC 7662): each token's answer is set by the test (unknown tokens are
/// inactive); every introspection request is recorded (its Authorization
/// header and form fields), and the endpoint can be made to fail.
struct Introspector {
    url: String,
    answers: Arc<Mutex<std::collections::HashMap<String, Value>>>,
    seen: Arc<Mutex<Vec<Asked>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone)]
struct IntrospectorState {
    url: String,
    keys: Vec<Value>,
    answers: Arc<Mutex<std::collections::HashMap<String, Value>>>,
    seen: Arc<Mutex<Vec<Asked>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Introspector {
    fn answer(&self, token: &str, answer: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_string(), answer);
    }

    fn asked(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn start_introspector(keys: Vec<Value>) -> Introspector {
    use axum::{http::HeaderMap, response::IntoResponse, routing::post};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = IntrospectorState {
        url: url.clone(),
        keys,
        answers: Arc::default(),
        seen: Arc::default(),
        down: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(s): State<IntrospectorState>| async move {
                Json(json!({
                    "issuer": s.url,
                    "jwks_uri": format!("{}/jwks", s.url),
                    "introspection_endpoint": format!("{}/introspect", s.url),
                    "authorization_endpoint": format!("{}/authorize", s.url),
                    "token_endpoint": format!("{}/token", s.url),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }))
            }),
        )
        .route(
            "/jwks",
            get(|State(s): State<IntrospectorState>| async move { Json(json!({"keys": s.keys})) }),
        )
        .route(
            "/introspect",
            post(
                |State(s): State<IntrospectorState>, headers: HeaderMap, body: String| async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                    s.seen.lock().unwrap().push((auth.clone(), form.clone()));
                    if s.down.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
                            .into_response();
                    }
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!(
                            "{CLIENT_ID}:{}",
                            url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes())
                                .collect::<String>()
                        ))
                    );
                    if auth != expected {
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            Json(json!({"error": "invalid_client"})),
                        )
                            .into_response();
                    }
                    let token = form
                        .iter()
                        .find(|(k, _)| k == "token")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    let answer = s
                        .answers
                        .lock()
                        .unwrap()
                        .get(&token)
                        .cloned()
                        .unwrap_or_else(|| json!({"active": false}));
                    Json(answer).into_response()
                },
            ),
        )
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Introspector {
        url,
        answers: state.answers,
        seen: state.seen,
        down: state.down,
    }
}

#[tokio::test]
async fn opaque_tokens_are_introspected_with_the_rules_of_a_jwt() {
    let sim = start_sim().await;
    let key = SigningKey::generate("k1");
    let issuer = start_introspector(vec![key.jwk.clone()]).await;
    let server = start_server(
        &sim,
        &issuer.url,
        &[
            ("HEYGEN_OAUTH_CLIENT_ID", CLIENT_ID),
            ("HEYGEN_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ],
    )
    .await;
    let active = |sub: &str| {
        json!({
            "active": true, "sub": sub, "aud": server.url, "iss": issuer.url,
            "scope": "openid videos", "exp": now() + 600, "iat": now(),
            "token_type": "Bearer", "client_id": "some-connector",
        })
    };
    let alice_opaque = "opaque-alice-Zm9vYmFyYmF6cXV4";
    issuer.answer(alice_opaque, active("alice"));

    // A signed-in user with an opaque token.
    let a = modern_client(&server.url, alice_opaque).await;
    let made = create(&a, "made with an opaque token").await;
    let asked = issuer.asked();
    assert!(asked >= 1);
    {
        let seen = issuer.seen.lock().unwrap();
        let (auth, form) = &seen[0];
        assert!(auth.starts_with("Basic "), "client_secret_basic: {auth}");
        assert!(
            form.contains(&("token".into(), alice_opaque.into())),
            "{form:?}"
        );
        assert!(
            form.contains(&("token_type_hint".into(), "access_token".into())),
            "{form:?}"
        );
    }
    // The answer is remembered: more calls do not ask again.
    assert_eq!(
        listed_ids(&call(&a, "list_videos", json!({})).await),
        std::slice::from_ref(&made)
    );
    assert_eq!(issuer.asked(), asked);
    // A JWT of the same user is verified locally and is the same tenant.
    let jwt = key.sign(&claims(&issuer.url, &server.url, "alice"));
    let j = modern_client(&server.url, &jwt).await;
    assert_eq!(
        listed_ids(&call(&j, "list_videos", json!({})).await),
        [made]
    );
    assert_eq!(issuer.asked(), asked);

    // Answers that do not meet the rules of a JWT are refused.
    let cases: Vec<(&str, Option<Value>, u16, &str)> = vec![
        ("unknown to the issuer", None, 401, "not active"),
        (
            "inactive",
            Some(json!({"active": false, "sub": "alice"})),
            401,
            "not active",
        ),
        (
            "for another resource",
            Some(with(
                active("alice"),
                "aud",
                json!("https://other.example/mcp"),
            )),
            401,
            "audience",
        ),
        (
            "without an audience",
            Some({
                let mut v = active("alice");
                v.as_object_mut().unwrap().remove("aud");
                v
            }),
            401,
            "audience",
        ),
        (
            "of another issuer",
            Some(with(active("alice"), "iss", json!("https://evil.example"))),
            401,
            "another issuer",
        ),
        (
            "expired",
            Some(with(active("alice"), "exp", json!(now() - 3600))),
            401,
            "expired",
        ),
        (
            "a refresh token",
            Some(with(active("alice"), "token_type", json!("refresh_token"))),
            401,
            "not a bearer access token",
        ),
        (
            "bound to a certificate",
            Some(with(
                active("alice"),
                "cnf",
                json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            )),
            401,
            "bound to a key or certificate",
        ),
        (
            "without a subject",
            Some({
                let mut v = active("alice");
                v.as_object_mut().unwrap().remove("sub");
                v
            }),
            401,
            "lacks a required claim",
        ),
        (
            "without the videos scope",
            Some(with(active("alice"), "scope", json!("openid"))),
            403,
            "insufficient_scope",
        ),
    ];
    for (i, (what, answer, status, text)) in cases.into_iter().enumerate() {
        let token = format!("opaque-case-{i}-0123456789");
        if let Some(answer) = answer {
            issuer.answer(&token, answer);
        }
        let resp = post(&server.url, Some(&token)).await;
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let c = challenge(&resp);
        assert!(c.contains(text), "{what}: {c}");
    }

    // The introspection endpoint failing: 503, try again; nothing bought.
    issuer.down.store(true, Ordering::SeqCst);
    issuer.answer("opaque-bob-0123456789", active("bob"));
    let resp = post(&server.url, Some("opaque-bob-0123456789")).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(sim.state.count("create"), 1);
    // Once it is back, the same token works.
    issuer.down.store(false, Ordering::SeqCst);
    let b = modern_client(&server.url, "opaque-bob-0123456789").await;
    assert!(listed_ids(&call(&b, "list_videos", json!({})).await).is_empty());

    // Neither the client secret nor a token ever shows in the log.
    let log = server.stderr.lock().unwrap().join("\n");
    for secret in [
        CLIENT_SECRET,
        alice_opaque,
        "opaque-bob-0123456789",
        jwt.as_str(),
    ] {
        assert!(!log.contains(secret), "the log shows {secret}");
    }
}

/// The client credentials for introspection come as a pair, for an issuer
/// that offers introspection.
#[tokio::test]
async fn introspection_misconfiguration_fails_at_start() {
    async fn fails(env: &[(&str, &str)]) -> String {
        let home = TestHome::new();
        let mut opts = common::ServerOpts::default()
            .arg("--http")
            .arg("127.0.0.1:0")
            .env("HEYGEN_SIMULATE", "true");
        for (k, v) in env {
            opts = opts.env(*k, *v);
        }
        let out = tokio::time::timeout(
            Duration::from_secs(40),
            server_command(&opts, &home).output(),
        )
        .await
        .expect("the server gives up in bounded time")
        .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains(CLIENT_SECRET), "{err}");
        err
    }
    let key = SigningKey::generate("k1");
    let plain = start_issuer(vec![key.jwk.clone()]).await;
    let err = fails(&[
        ("HEYGEN_OAUTH_ISSUER", &plain.url),
        ("HEYGEN_OAUTH_CLIENT_ID", CLIENT_ID),
    ])
    .await;
    assert!(err.contains("HEYGEN_OAUTH_CLIENT_SECRET is not"), "{err}");
    let err = fails(&[
        ("HEYGEN_OAUTH_ISSUER", &plain.url),
        ("HEYGEN_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
    ])
    .await;
    assert!(err.contains("HEYGEN_OAUTH_CLIENT_ID is not"), "{err}");
    let err = fails(&[
        ("HEYGEN_OAUTH_ISSUER", &plain.url),
        ("HEYGEN_OAUTH_CLIENT_ID", CLIENT_ID),
        ("HEYGEN_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
    ])
    .await;
    assert!(err.contains("no introspection_endpoint"), "{err}");
}

#[tokio::test]
async fn misconfiguration_fails_at_start() {
    async fn fails(env: &[(&str, &str)], args: &[&str]) -> String {
        let home = TestHome::new();
        let mut opts = common::ServerOpts::default();
        for a in args {
            opts = opts.arg(*a);
        }
        for (k, v) in env {
            opts = opts.env(*k, *v);
        }
        let out = tokio::time::timeout(
            Duration::from_secs(40),
            server_command(&opts, &home).output(),
        )
        .await
        .expect("the server gives up in bounded time")
        .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    }
    // An issuer nobody answers at.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    let err = fails(
        &[("HEYGEN_OAUTH_ISSUER", &dead), ("HEYGEN_SIMULATE", "true")],
        &["--http", "127.0.0.1:0"],
    )
    .await;
    assert!(err.contains("unreachable"), "{err}");
    let err = fails(
        &[
            ("HEYGEN_OAUTH_ISSUER", "https://login.example.com"),
            ("HEYGEN_SIMULATE", "true"),
        ],
        &["--http", "0.0.0.0:0"],
    )
    .await;
    assert!(err.contains("HEYGEN_PUBLIC_URL is required"), "{err}");
    let err = fails(
        &[
            ("HEYGEN_OAUTH_ISSUER", "https://login.example.com"),
            ("HEYGEN_PUBLIC_URL", "http://mcp.example.com/mcp"),
            ("HEYGEN_SIMULATE", "true"),
        ],
        &["--http", "0.0.0.0:0"],
    )
    .await;
    assert!(err.contains("must be an https URL"), "{err}");
}

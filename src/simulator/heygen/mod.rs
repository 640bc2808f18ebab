//! The HeyGen v3 wire (`shared/HEYGEN_V3.md` §1–§6, §8), served by the same
//! [`Simulator`] / [`SimState`] types as the gateway fake.
//!
//! - Auth: `X-Api-Key: <key>` (or `Authorization: Bearer <key>`); a missing
//!   key, or one other than [`SimConfig::api_key`] when set, is a 401
//!   `unauthorized`.
//! - Every answer carries `X-Request-Id: req_sim_<hex>`. Success is
//!   `{"data":…}`, lists `{"data":[…],"has_more","next_token"}`, errors
//!   `{"error":{"code","message","param"?,"doc_url"}}`.
//! - Sessions (`agents.rs`), videos and their files (`videos.rs`), the
//!   catalogue (`catalog.rs`), uploads (`assets.rs`), `GET /v3/users/me`
//!   (here). Ids are signed and self-describing (`sign.rs`); what interaction
//!   changes (stops, lookup counts, the link refused by `[link:403]`,
//!   balances, uploaded bytes) is kept per process.
//!
//! Request counters ([`SimState::count`]): `create`, `session`, `video`,
//! `stop`, `me`, `asset`, `avatars`, `looks` (list and single look),
//! `voices`, `styles`, `file` (a video MP4, plain or captioned), `artifact`
//! (subtitle, thumbnail, GIF), `uploaded` (an uploaded asset fetched),
//! `preview` (a catalogue preview), `page` (`video_page_url`), `unknown`
//! (no such route).

mod agents;
mod assets;
mod catalog;
mod sign;
mod videos;

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    middleware::map_response,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{
    KEEP_REQUESTS, KEEP_RUNS, SeenRequest, SimConfig, SimState, Simulator, bearer, dropped,
    faults::LookupFault, truncated,
};

const DOC_URL: &str = "https://developers.heygen.com/docs/error-codes";
const REQUEST_ID: &str = "x-request-id";
/// Most characters of a prompt kept for the session's messages.
const KEEP_PROMPT: usize = 1000;

impl Simulator {
    /// Binds 127.0.0.1 on a port the OS picks and serves HeyGen's v3 wire in
    /// the background; [`Simulator::base_url`] is the value for
    /// `HEYGEN_API_BASE` (paths start with `/v3`). See [`SimConfig::heygen`].
    pub async fn start_heygen(config: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_with(config, heygen_router).await
    }
}

/// The routes of the v3 wire, for embedding in another server.
pub fn heygen_router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v3/video-agents", post(agents::create))
        .route("/v3/video-agents/styles", get(catalog::styles))
        .route("/v3/video-agents/{session_id}", get(agents::session))
        .route("/v3/video-agents/{session_id}/stop", post(agents::stop))
        .route("/v3/videos/{video_id}", get(videos::video))
        .route("/v3/users/me", get(me))
        .route("/v3/assets", post(assets::upload))
        .route("/v3/avatars", get(catalog::avatars))
        .route("/v3/avatars/looks", get(catalog::looks))
        .route("/v3/avatars/looks/{look_id}", get(catalog::look))
        .route("/v3/voices", get(catalog::voices))
        .route("/v3-files/{file}", get(videos::file))
        .route("/v3-share/{video_id}", get(videos::page))
        .route("/v3-assets/{asset_id}", get(assets::asset_file))
        .route("/v3-previews/{kind}/{file}", get(catalog::preview_file))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(map_response(with_request_id))
        .with_state(state)
}

/// What this process has seen of the v3 wire beyond the signed ids.
#[derive(Debug, Default)]
pub(super) struct Runs {
    sessions: HashMap<String, Run>,
    assets: assets::Store,
}

/// What this process has seen of one session (keyed by session id).
#[derive(Debug, Default, Clone)]
struct Run {
    /// Session and video lookups together, for the `[get:…]` windows.
    lookups: u64,
    /// When `POST …/stop` reached a running session.
    stopped: Option<SystemTime>,
    /// `[link:403]`: the `Expires` of the link refused; links expiring no
    /// later are refused too.
    refused_link: Option<u64>,
    /// The prompt, when this process created the session (cut).
    prompt: Option<String>,
}

impl Runs {
    fn run(&mut self, session_id: &str) -> &mut Run {
        if self.sessions.len() >= KEEP_RUNS && !self.sessions.contains_key(session_id) {
            self.sessions.clear();
        }
        self.sessions.entry(session_id.to_string()).or_default()
    }
}

/// The caller's key: `X-Api-Key`, else a bearer token.
fn api_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .or_else(|| bearer(headers))
}

/// Counts a request and keeps it for [`SimState::requests`].
fn record(
    state: &SimState,
    endpoint: &str,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<Value>,
) {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    let mut inner = state.lock();
    *inner.counts.entry(endpoint.to_string()).or_default() += 1;
    if inner.seen.len() >= KEEP_REQUESTS {
        inner.seen.pop_front();
    }
    inner.seen.push_back(SeenRequest {
        method: method.into(),
        path,
        key: api_key(headers),
        body,
    });
}

/// The caller's key, when it is one this simulator accepts.
#[allow(clippy::result_large_err)]
fn authorize(state: &SimState, headers: &HeaderMap) -> Result<String, Response> {
    let Some(key) = api_key(headers) else {
        return Err(unauthorized(
            "Missing API key: send it in the X-Api-Key header",
        ));
    };
    match &state.config.api_key {
        Some(expected) if *expected != key => Err(unauthorized("Invalid API key")),
        _ => Ok(key),
    }
}

/// The v3 error envelope.
fn error(status: StatusCode, code: &str, message: &str, param: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message, "doc_url": DOC_URL});
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    (status, Json(json!({ "error": e }))).into_response()
}

/// A 400 `invalid_parameter` naming the parameter.
fn invalid(param: &str, message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        message,
        Some(param),
    )
}

fn unauthorized(message: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized", message, None)
}

fn not_found(code: &str, message: &str) -> Response {
    error(StatusCode::NOT_FOUND, code, message, None)
}

fn insufficient_credit(has: i64, needs: i64) -> Response {
    error(
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credit",
        &format!("Your account has {has} credits but this video requires {needs}"),
        None,
    )
}

/// A 429 without `Retry-After`.
fn rate_limited() -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "Too many requests; slow down",
        None,
    )
}

/// `{"data": …}`
fn data(v: Value) -> Response {
    Json(json!({ "data": v })).into_response()
}

/// The answer for an error status (unknown codes answer 500).
fn status_fault(status: u16) -> Response {
    match status {
        401 => unauthorized("Invalid API key"),
        404 => not_found("not_found", "Resource not found"),
        429 => {
            let mut r = rate_limited();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        502 => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
        )
            .into_response(),
        503 => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal_error",
            "The service is temporarily unavailable",
            None,
        ),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            None,
        ),
    }
}

/// A status lookup's answer, as broken as its `[get:…]` fault asks.
async fn lookup_answer(fault: Option<LookupFault>, answer: Value) -> Response {
    match fault {
        None => Json(answer).into_response(),
        Some(LookupFault::Garbage) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            "not json",
        )
            .into_response(),
        Some(LookupFault::Drop) => dropped(),
        Some(LookupFault::Truncated) => truncated(&answer),
        Some(LookupFault::Slow(pause)) => {
            tokio::time::sleep(pause).await;
            Json(answer).into_response()
        }
        Some(LookupFault::Status(code)) => status_fault(code),
    }
}

/// A request body of at most `limit` bytes; a larger one is a 413.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("The request body may be at most {limit} bytes"),
            None,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /v3/users/me`: a prepaid wallet whose balance drops per create.
async fn me(State(state): State<Arc<SimState>>, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, "me", "GET", &uri, &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let balance = state.balance(&key) as f64;
    data(json!({
        "username": "sim-user",
        "email": "sim-user@example.com",
        "first_name": "Sim",
        "last_name": "User",
        "billing_type": "wallet",
        "wallet": {
            "currency": "usd",
            "remaining_balance": balance,
            "auto_reload": {"enabled": false, "amount_usd": null, "threshold_usd": null}
        },
        "subscription": null,
        "usage_based": null
    }))
}

async fn unknown_route(
    State(state): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, "unknown", method.as_str(), &uri, &headers, None);
    not_found(
        "not_found",
        &format!("No such endpoint: {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{method} is not allowed on {}", uri.path()),
        None,
    )
}

async fn with_request_id(mut res: Response) -> Response {
    if !res.headers().contains_key(REQUEST_ID) {
        let id = format!("req_sim_{:016x}", rand::random::<u64>());
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID, v);
        }
    }
    res
}

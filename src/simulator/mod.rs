//! An embedded, faithful fake of the upstream gateway (`shared/UPSTREAM.md`):
//! a real HTTP server on 127.0.0.1 with bearer auth, validation errors, tasks
//! that move pending → processing → completed (or failed) over a configurable
//! time, and a small real MP4 at the result URL; plus the billing, pricing,
//! upload and model-list endpoints. Powers `--simulate`, the end-to-end tests
//! and the benchmarks.
//!
//! Tasks are not stored: a task id carries everything needed to answer for it
//! (creation and render time, owner, its fault markers) under a MAC (`ids.rs`),
//! so a simulator in another process follows a task this one created, and an
//! id no simulator made is unknown (404). What interaction changes (lookup
//! counts for `[get:…:N]`, the fresh link after `[link:403]`, balances, the
//! `[429x:N]` counts, uploads) is kept per process.
//!
//! Fault markers in the prompt make it misbehave on purpose (DESIGN.md §8;
//! parsed once, in `faults.rs`):
//! - on create: `[401]` `[402]` `[422:CODE]` `[429]` (Retry-After: 1) `[429-bare]`
//!   (no Retry-After) `[429x:N]` (the first N creates of this prompt get 429),
//!   `[500]` `[502]` (HTML body) `[503]`, `[slow:S]` (task created, answer after
//!   S s), `[drop]` (task created, connection dropped), `[garbage]` (task created,
//!   non-JSON 200), `[truncated]` (task created, cut-off JSON), `[echo-key]`
//!   (422 whose message echoes the caller's key);
//! - on the task: `[fail]` (ends failed), `[after:S]` (renders in S s),
//!   `[status:X]` (reports the unknown status X while running; X cut to 27
//!   bytes), `[output]` (result under `output`), `[minimal]` (status answers
//!   carry only id and status), `[link:403]` (the first link handed out answers
//!   403 and the next status lookup returns a new `?v=` URL);
//! - on the video file (`/files/{id}.mp4`): `[file:truncate]` (Content-Length
//!   of the whole file, half of it sent, then the connection is cut),
//!   `[file:slow=S]` (the file trickles out over S seconds), `[file:nolength]`
//!   (chunked, no Content-Length), `[file:empty]` (200 with an empty body),
//!   `[file:html]` (200 with a web page instead of the video);
//! - on status lookups: `[get:FAULT]` or `[get:FAULT:N]` (only the first N
//!   lookups) or `[get:FAULT:afterK]` (every lookup after the first K), FAULT
//!   one of 401, 404, 429, 500, 502, 503, garbage, truncated, drop, slow=S.
//!
//! The key is never logged; tests read request counters and the keys seen.
//!
//! [`Simulator::start_heygen`] serves HeyGen's own v3 wire instead
//! (`shared/HEYGEN_V3.md`, code in `heygen/`): `X-Api-Key` auth, the
//! `{"data":…}` / `{"error":{code,message,param}}` envelopes with an
//! `X-Request-Id` header on every answer, Video Agent sessions
//! (`/v3/video-agents`) that move thinking → generating → completed and hand
//! over a `video_id`, videos (`/v3/videos/{id}`) that move pending →
//! processing → completed with presigned-looking links (`Expires` +
//! `Signature`, refreshed on every status call, valid for
//! [`SimConfig::link_ttl`]), stop, `/v3/users/me` (a wallet balance), asset
//! uploads (`/v3/assets`, multipart) and a deterministic catalogue of avatar
//! groups, looks, voices and styles with cursor pagination. Session, video
//! and asset ids are signed and self-describing like task ids, so another
//! simulator process answers for them. The same fault markers apply, mapped
//! to the v3 envelope (402 `insufficient_credit`, 400 for `[422:CODE]`), plus
//! `[session-fail]` (the session fails before any video exists).

mod account;
mod faults;
mod files;
mod heygen;
mod ids;
mod tasks;

pub use heygen::heygen_router;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::DefaultBodyLimit,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The committed sample video: a small, well-formed ISO-BMFF (ftyp/moov/mdat).
pub const SAMPLE_MP4: &[u8] = include_bytes!("../../assets/sample.mp4");

const CREDIT_COST: i64 = 5;
const START_BALANCE: i64 = 1000;
/// Most requests kept for [`SimState::requests`].
const KEEP_REQUESTS: usize = 10_000;
/// Most tasks whose per-process interaction state is kept.
const KEEP_RUNS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Time from create to completed, unless a prompt says `[after:S]`.
    pub render_time: Duration,
    /// The only key accepted; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// How long result links stay valid: after creation on the gateway wire,
    /// after each status call on the v3 wire.
    pub link_ttl: Duration,
    /// Credits every key starts with (a create costs 5).
    pub start_balance: i64,
}

impl SimConfig {
    /// The defaults for the HeyGen v3 wire: result links live 7 days, as
    /// HeyGen documents for its presigned video URLs.
    pub fn heygen() -> Self {
        Self {
            link_ttl: Duration::from_secs(7 * 24 * 3600),
            ..Self::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            render_time: Duration::from_secs(12),
            api_key: None,
            link_ttl: Duration::from_secs(24 * 3600),
            start_balance: START_BALANCE,
        }
    }
}

/// One request as the simulator saw it (the key is kept for tests only).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub key: Option<String>,
    pub body: Option<Value>,
}

/// What this process has seen of one task (the task itself is in its id).
#[derive(Debug, Clone, Copy)]
struct TaskRun {
    lookups: u64,
    /// The `?v=` of the result link handed out.
    link_version: u64,
}

impl Default for TaskRun {
    fn default() -> Self {
        Self {
            lookups: 0,
            link_version: 1,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    tasks_created: usize,
    runs: HashMap<String, TaskRun>,
    balances: HashMap<String, i64>,
    prompt_429: HashMap<String, u64>,
    uploads: files::Uploads,
    heygen: heygen::Runs,
    counts: HashMap<String, u64>,
    seen: VecDeque<SeenRequest>,
}

impl Inner {
    fn run(&mut self, id: &str) -> &mut TaskRun {
        if self.runs.len() >= KEEP_RUNS && !self.runs.contains_key(id) {
            self.runs.clear();
        }
        self.runs.entry(id.to_string()).or_default()
    }
}

/// Shared state of a running simulator; also what tests inspect.
#[derive(Debug)]
pub struct SimState {
    config: SimConfig,
    base_url: String,
    inner: Mutex<Inner>,
}

impl SimState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many requests reached an endpoint: `"create"`, `"get"`, `"credits"`,
    /// `"file"`, `"subscription"`, `"usage"`, `"pricing"`, `"upload"`,
    /// `"uploaded"` (an uploaded file fetched), `"models"`; on the v3 wire
    /// `"create"`, `"session"`, `"video"`, `"stop"`, `"me"`, `"asset"`,
    /// `"avatars"`, `"looks"`, `"voices"`, `"styles"`, `"file"` (a video MP4),
    /// `"artifact"`, `"uploaded"`, `"preview"`, `"page"`, `"unknown"`.
    pub fn count(&self, endpoint: &str) -> u64 {
        self.lock().counts.get(endpoint).copied().unwrap_or(0)
    }

    /// Every request seen so far, oldest first (at most the last 10,000).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().seen.iter().cloned().collect()
    }

    /// Number of tasks this simulator created.
    pub fn task_count(&self) -> usize {
        self.lock().tasks_created
    }

    fn record(
        &self,
        endpoint: &str,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: Option<Value>,
    ) {
        let mut inner = self.lock();
        *inner.counts.entry(endpoint.to_string()).or_default() += 1;
        if inner.seen.len() >= KEEP_REQUESTS {
            inner.seen.pop_front();
        }
        inner.seen.push_back(SeenRequest {
            method: method.into(),
            path: path.into(),
            key: bearer(headers),
            body,
        });
    }

    /// The balance of a key, as it starts or as creates left it.
    fn balance(&self, key: &str) -> i64 {
        let start = self.config.start_balance;
        *self.lock().balances.get(key).unwrap_or(&start)
    }
}

/// A running simulator; stops when dropped or on [`Simulator::stop`].
#[derive(Debug)]
pub struct Simulator {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    stop: CancellationToken,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Simulator {
    /// Binds 127.0.0.1 on a port the OS picks and serves in the background.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_with(config, router).await
    }

    /// Binds 127.0.0.1 on a port the OS picks and serves `app` in the background.
    async fn start_with(
        config: SimConfig,
        app: fn(Arc<SimState>) -> Router,
    ) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState {
            config,
            base_url: format!("http://{addr}"),
            inner: Mutex::new(Inner::default()),
        });
        let app = app(state.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                token.cancelled().await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("simulator stopped: {e}");
            }
        });
        Ok(Simulator { addr, state, stop })
    }

    /// `http://127.0.0.1:PORT`, the value for `HEYGEN_API_BASE`.
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The simulator's routes, for embedding in another server.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/videos/generations", post(tasks::create))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/v1/account/credits", get(account::credits))
        .route(
            "/dashboard/billing/subscription",
            get(account::subscription),
        )
        .route("/dashboard/billing/usage", get(account::usage))
        .route("/api/pricing", get(account::pricing))
        .route("/v1/models", get(account::models))
        .route(
            "/v1/files/upload/base64",
            post(files::upload).layer(DefaultBodyLimit::max(files::MAX_UPLOAD_BODY)),
        )
        .route("/files/{file}", get(files::file))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "Invalid URL",
                "invalid_request_error",
            )
        })
        .with_state(state)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

fn request_id() -> String {
    format!("sim-{:016x}", rand::random::<u64>())
}

/// The gateway's error envelope, with a request id in the message.
fn error(status: StatusCode, code: &str, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": format!("{message} (request_id: {})", request_id()), "type": kind, "code": code}});
    (status, Json(body)).into_response()
}

/// A 422 `invalid_request_error`, the answer to most bad input.
fn invalid(code: &str, message: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        message,
        "invalid_request_error",
    )
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "Invalid token",
        "authentication_error",
    )
}

fn insufficient_quota() -> Response {
    error(
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_quota",
        "Insufficient balance",
        "insufficient_quota",
    )
}

/// The caller's key, when it is one this simulator accepts.
#[allow(clippy::result_large_err)]
fn authorize(state: &SimState, headers: &HeaderMap) -> Result<String, Response> {
    let key = bearer(headers).ok_or_else(unauthorized)?;
    match &state.config.api_key {
        Some(expected) if *expected != key => Err(unauthorized()),
        _ => Ok(key),
    }
}

/// A response whose body fails at once, so the connection is cut mid-answer.
fn dropped() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("simulated connection drop"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A 200 carrying the first half of `answer`'s JSON.
fn truncated(answer: &Value) -> Response {
    let full = answer.to_string();
    let cut: String = full.chars().take(full.len() / 2).collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        cut,
    )
        .into_response()
}

/// The upstream's answer for an error status (unknown codes answer 500).
fn status_fault(status: u16) -> Response {
    match status {
        429 => {
            let mut r = rate_limited();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        502 => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
        )
            .into_response(),
        503 => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The channel is temporarily unavailable",
            "server_error",
        ),
        404 => error(
            StatusCode::NOT_FOUND,
            "task_not_found",
            "Task not found",
            "invalid_request_error",
        ),
        401 => unauthorized(),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            "server_error",
        ),
    }
}

/// A 429 without `Retry-After`.
fn rate_limited() -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "Rate limit reached",
        "rate_limit_error",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_iso_bmff() {
        assert_eq!(&SAMPLE_MP4[4..8], b"ftyp");
        assert!(SAMPLE_MP4.windows(4).any(|w| w == b"moov"));
        assert!(SAMPLE_MP4.windows(4).any(|w| w == b"mdat"));
    }
}

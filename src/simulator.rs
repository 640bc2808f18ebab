//! An embedded, faithful fake of the upstream task API (`shared/UPSTREAM.md`):
//! a real HTTP server on 127.0.0.1 with bearer auth, validation errors, tasks
//! that move pending → processing → completed (or failed) over a configurable
//! time, and a small real MP4 at the result URL. Powers `--simulate`, the
//! end-to-end tests and the benchmarks.
//!
//! Fault markers in the prompt make it misbehave on purpose (DESIGN.md §8):
//! - on create: `[401]` `[402]` `[422:CODE]` `[429]` (Retry-After: 1) `[429-bare]`
//!   (no Retry-After) `[429x:N]` (the first N creates of this prompt get 429),
//!   `[500]` `[502]` (HTML body) `[503]`, `[slow:S]` (task created, answer after
//!   S s), `[drop]` (task created, connection dropped), `[garbage]` (task created,
//!   non-JSON 200), `[truncated]` (task created, cut-off JSON), `[echo-key]`
//!   (422 whose message echoes the caller's key);
//! - on the task: `[fail]` (ends failed), `[after:S]` (renders in S s),
//!   `[status:X]` (reports the unknown status X while running), `[output]`
//!   (result under `output`), `[minimal]` (status answers carry only id and
//!   status), `[link:403]` (the first download of the file answers 403 and the
//!   next status lookup returns a new `?v=` URL);
//! - on the video file (`/files/{id}.mp4`): `[file:truncate]` (Content-Length
//!   of the whole file, half of it sent, then the connection is cut),
//!   `[file:slow=S]` (the file trickles out over S seconds), `[file:nolength]`
//!   (chunked, no Content-Length), `[file:empty]` (200 with an empty body),
//!   `[file:html]` (200 with a web page instead of the video);
//! - on status lookups: `[get:FAULT]` or `[get:FAULT:N]` (only the first N
//!   lookups) or `[get:FAULT:afterK]` (every lookup after the first K), FAULT one of 401, 404, 429, 500, 502, 503, garbage, truncated,
//!   drop, slow=S.
//!
//! The key is never logged; tests read request counters and the keys seen.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The committed sample video: a small, well-formed ISO-BMFF (ftyp/moov/mdat).
pub const SAMPLE_MP4: &[u8] = include_bytes!("../assets/sample.mp4");

const CREDIT_COST: i64 = 5;
const START_BALANCE: i64 = 1000;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Time from create to completed, unless a prompt says `[after:S]`.
    pub render_time: Duration,
    /// The only key accepted; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// How long result links stay valid after creation.
    pub link_ttl: Duration,
    /// Credits every key starts with (a create costs 5).
    pub start_balance: i64,
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

#[derive(Debug, Clone)]
struct SimTask {
    id: String,
    owner: String,
    created: SystemTime,
    started: Instant,
    render: Duration,
    prompt: String,
    fail: bool,
    odd_status: Option<String>,
    output_shape: bool,
    minimal: bool,
    link_403_left: u32,
    lookups: u64,
    /// (fault, only the first N affected lookups, skip the first K lookups)
    get_fault: Option<(String, Option<u64>, u64)>,
    link_version: u64,
    file_fault: Option<String>,
}

/// One request as the simulator saw it (the key is kept for tests only).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub key: Option<String>,
    pub body: Option<Value>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<String, SimTask>,
    balances: HashMap<String, i64>,
    prompt_429: HashMap<String, u64>,
    counts: HashMap<String, u64>,
    seen: VecDeque<SeenRequest>,
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

    /// How many requests reached an endpoint: `"create"`, `"get"`, `"credits"`, `"file"`.
    pub fn count(&self, endpoint: &str) -> u64 {
        self.lock().counts.get(endpoint).copied().unwrap_or(0)
    }

    /// Every request seen so far, oldest first (at most the last 10,000).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().seen.iter().cloned().collect()
    }

    /// Number of tasks created.
    pub fn task_count(&self) -> usize {
        self.lock().tasks.len()
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
        if inner.seen.len() >= 10_000 {
            inner.seen.pop_front();
        }
        inner.seen.push_back(SeenRequest {
            method: method.into(),
            path: path.into(),
            key: bearer(headers),
            body,
        });
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
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState {
            config,
            base_url: format!("http://{addr}"),
            inner: Mutex::new(Inner::default()),
        });
        let app = router(state.clone());
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
        .route("/v1/videos/generations", post(create))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/account/credits", get(credits))
        .route("/files/{file}", get(file))
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

fn error(status: StatusCode, code: &str, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": format!("{message} (request_id: {})", request_id()), "type": kind, "code": code}});
    (status, Json(body)).into_response()
}

#[allow(clippy::result_large_err)]
fn authorize(state: &SimState, headers: &HeaderMap) -> Result<String, Response> {
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid token",
            "authentication_error",
        )
    };
    let key = bearer(headers).ok_or_else(unauthorized)?;
    match &state.config.api_key {
        Some(expected) if *expected != key => Err(unauthorized()),
        _ => Ok(key),
    }
}

/// Every `[marker]` in a prompt, lowercased, without brackets.
fn markers(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find('[') {
        let after = &rest[start + 1..];
        let Some(end) = after.find(']') else { break };
        let m = after[..end].trim().to_ascii_lowercase();
        if !m.is_empty() && m.len() <= 40 {
            out.push(m);
        }
        rest = &after[end + 1..];
    }
    out
}

fn marker_value<'a>(markers: &'a [String], name: &str) -> Option<&'a str> {
    markers
        .iter()
        .find_map(|m| m.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
}

fn secs(v: &str) -> Duration {
    Duration::from_secs_f64(v.parse::<f64>().unwrap_or(1.0).clamp(0.0, 3600.0))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

fn status_fault(status: u16) -> Response {
    match status {
        429 => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Rate limit reached",
                "rate_limit_error",
            );
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
        401 => error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid token",
            "authentication_error",
        ),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            "server_error",
        ),
    }
}

async fn create(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    state.record(
        "create",
        "POST",
        "/v1/videos/generations",
        &headers,
        parsed.clone(),
    );
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(Value::Object(req)) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "Request body must be a JSON object",
            "invalid_request_error",
        );
    };
    if req.get("model").and_then(Value::as_str) != Some(crate::gateway::types::MODEL) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_not_found",
            "Model not found",
            "invalid_request_error",
        );
    }
    let prompt = match req.get("prompt").and_then(Value::as_str) {
        Some(p) if !p.is_empty() && p.chars().count() <= 10_000 => p.to_string(),
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_prompt",
                "prompt must be 1 to 10000 characters",
                "invalid_request_error",
            );
        }
    };
    if let Some(o) = req.get("orientation")
        && !matches!(o.as_str(), Some("landscape" | "portrait"))
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_orientation",
            "orientation must be landscape or portrait",
            "invalid_request_error",
        );
    }
    for field in ["avatar_id", "voice_id", "style_id"] {
        if let Some(v) = req.get(field)
            && !(v.is_string() || v.is_null())
        {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parameter",
                &format!("{field} must be a string"),
                "invalid_request_error",
            );
        }
    }
    if let Some(urls) = req.get("file_urls") {
        let Some(list) = urls.as_array() else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parameter",
                "file_urls must be an array",
                "invalid_request_error",
            );
        };
        if list.len() > 20 {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parameter",
                "at most 20 file_urls",
                "invalid_request_error",
            );
        }
        if list.iter().any(|u| {
            !u.as_str()
                .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
        }) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_image_url",
                "file_urls must be http(s) URLs",
                "invalid_request_error",
            );
        }
    }
    if let Some(v) = req.get("incognito_mode")
        && !v.is_boolean()
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter",
            "incognito_mode must be a boolean",
            "invalid_request_error",
        );
    }

    let m = markers(&prompt);
    let has = |name: &str| m.iter().any(|x| x == name);
    // Faults that mean "not accepted": nothing is created.
    if has("401") {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid token",
            "authentication_error",
        );
    }
    if has("402") {
        return error(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "Insufficient balance",
            "insufficient_quota",
        );
    }
    if let Some(code) = marker_value(&m, "422") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            &format!("Validation failed: {code}"),
            "invalid_request_error",
        );
    }
    if has("echo-key") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter",
            &format!("bad request from Bearer {key}"),
            "invalid_request_error",
        );
    }
    if has("429") {
        return status_fault(429);
    }
    if has("429-bare") {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate limit reached",
            "rate_limit_error",
        );
    }
    if let Some(n) = marker_value(&m, "429x") {
        let limit: u64 = n.parse().unwrap_or(1);
        let mut inner = state.lock();
        let seen = inner.prompt_429.entry(prompt.clone()).or_default();
        if *seen < limit {
            *seen += 1;
            drop(inner);
            return status_fault(429);
        }
    }
    for code in [500u16, 502, 503] {
        if has(&code.to_string()) {
            return status_fault(code);
        }
    }
    {
        let mut inner = state.lock();
        let balance = inner
            .balances
            .entry(key.clone())
            .or_insert(state.config.start_balance);
        if *balance < CREDIT_COST {
            drop(inner);
            return error(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                "Insufficient balance",
                "insufficient_quota",
            );
        }
        *balance -= CREDIT_COST;
    }

    // Accepted: the task exists (and is billed) from here on, whatever the answer.
    let created = SystemTime::now();
    let id = format!("task-unified-{}-{}", unix(created), random_suffix());
    let render = marker_value(&m, "after")
        .map(secs)
        .unwrap_or(state.config.render_time);
    let get_fault = m.iter().find_map(|x| {
        let rest = x.strip_prefix("get:")?;
        // get:slow=2:3 / get:500:2 / get:garbage / get:slow=5:after1
        let mut parts = rest.splitn(2, ':');
        let fault = parts.next()?.to_string();
        let count = parts.next().unwrap_or_default();
        match count.strip_prefix("after") {
            Some(k) => Some((fault, None, k.parse().unwrap_or(1))),
            None => Some((fault, count.parse().ok(), 0)),
        }
    });
    let task = SimTask {
        id: id.clone(),
        owner: key,
        created,
        started: Instant::now(),
        render,
        prompt: prompt.clone(),
        fail: has("fail"),
        odd_status: marker_value(&m, "status").map(String::from),
        output_shape: has("output"),
        minimal: has("minimal"),
        link_403_left: if marker_value(&m, "link") == Some("403") {
            1
        } else {
            0
        },
        lookups: 0,
        get_fault,
        link_version: 1,
        file_fault: marker_value(&m, "file").map(String::from),
    };
    let answer = task_json(&state, &task);
    state.lock().tasks.insert(id.clone(), task);
    tracing::debug!(task_id = %id, "simulator: task created");

    if let Some(s) = marker_value(&m, "slow") {
        tokio::time::sleep(secs(s)).await;
    }
    if has("drop") {
        return dropped();
    }
    if has("garbage") {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>OK</body></html>",
        )
            .into_response();
    }
    if has("truncated") {
        let full = answer.to_string();
        let cut: String = full.chars().take(full.len() / 2).collect();
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            cut,
        )
            .into_response();
    }
    Json(answer).into_response()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn task_json(state: &SimState, t: &SimTask) -> Value {
    let elapsed = t.started.elapsed();
    let frac = if t.render.is_zero() {
        1.0
    } else {
        elapsed.as_secs_f64() / t.render.as_secs_f64()
    };
    let (status, progress) = if frac >= 1.0 {
        (if t.fail { "failed" } else { "completed" }, 100)
    } else if frac < 0.1 {
        ("pending", 0)
    } else {
        ("processing", ((frac * 100.0) as u64).clamp(1, 99))
    };
    let status = match (&t.odd_status, status) {
        (Some(odd), "pending" | "processing") => odd.as_str(),
        _ => status,
    };
    if t.minimal {
        return json!({"id": t.id, "status": status});
    }
    let url = format!("{}/files/{}.mp4?v={}", state.base_url, t.id, t.link_version);
    let mut v = json!({
        "id": t.id,
        "object": "video.generation.task",
        "type": "video",
        "model": crate::gateway::types::MODEL,
        "status": status,
        "progress": if status == "failed" { 0 } else { progress },
        "created": unix(t.created),
        "task_info": {"can_cancel": status != "completed" && status != "failed", "estimated_time": t.render.as_secs().max(1)},
        "results": null,
        "error": null,
        "usage": {"credits_reserved": CREDIT_COST, "user_group": "default"}
    });
    if status == "completed" {
        if t.output_shape {
            v["output"] = json!({"url": url, "urls": [url]});
        } else {
            v["results"] = json!([{"url": url, "width": 1280, "height": 720, "duration": 1.0}]);
        }
    }
    if status == "failed" {
        v["error"] = json!({"code": "render_failed", "message": format!("The video agent could not render this prompt (request_id: {})", request_id())});
    }
    let _ = &t.prompt;
    v
}

async fn get_task(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    Query(_q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    state.record("get", "GET", &format!("/v1/tasks/{id}"), &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (answer, fault) = {
        let mut inner = state.lock();
        let Some(task) = inner.tasks.get_mut(&id).filter(|t| t.owner == key) else {
            drop(inner);
            return status_fault(404);
        };
        task.lookups += 1;
        let fault = match &task.get_fault {
            Some((f, times, skip)) if task.lookups > *skip => match times {
                None => Some(f.clone()),
                Some(n) if task.lookups <= skip + n => Some(f.clone()),
                Some(_) => None,
            },
            _ => None,
        };
        let snapshot = task.clone();
        drop(inner);
        (task_json(&state, &snapshot), fault)
    };
    match fault.as_deref() {
        Some("garbage") => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                "not json",
            )
                .into_response();
        }
        Some("drop") => return dropped(),
        Some("truncated") => {
            let full = answer.to_string();
            let cut: String = full.chars().take(full.len() / 2).collect();
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                cut,
            )
                .into_response();
        }
        Some(f) if f.starts_with("slow=") => {
            tokio::time::sleep(secs(&f[5..])).await;
        }
        Some(f) => {
            if let Ok(code) = f.parse::<u16>() {
                return status_fault(code);
            }
        }
        None => {}
    }
    Json(answer).into_response()
}

async fn credits(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    state.record("credits", "GET", "/v1/account/credits", &headers, None);
    let key = match authorize(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let start = state.config.start_balance;
    let balance = *state.lock().balances.get(&key).unwrap_or(&start);
    Json(json!({
        "object": "account.credits",
        "balance": balance,
        "used": start - balance,
        "currency": "credits"
    }))
    .into_response()
}

async fn file(
    State(state): State<Arc<SimState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    state.record("file", "GET", &format!("/files/{file}"), &headers, None);
    let Some(id) = file.strip_suffix(".mp4") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fault = {
        let mut inner = state.lock();
        let Some(task) = inner.tasks.get_mut(id) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let done = task.render.is_zero() || task.started.elapsed() >= task.render;
        if !done || task.fail {
            return StatusCode::NOT_FOUND.into_response();
        }
        if task.created.elapsed().unwrap_or_default() > state.config.link_ttl {
            return (StatusCode::GONE, "link expired").into_response();
        }
        if task.link_403_left > 0 {
            task.link_403_left -= 1;
            task.link_version += 1;
            return (
                StatusCode::FORBIDDEN,
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            )
                .into_response();
        }
        task.file_fault.clone()
    };
    let len = SAMPLE_MP4.len().to_string();
    let video = |body: Body, with_length: bool| {
        let mut b = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "video/mp4");
        if with_length {
            b = b.header(header::CONTENT_LENGTH, len.as_str());
        }
        b.body(body)
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    match fault.as_deref() {
        Some("truncate") => {
            // Headers and half the body go out; a moment later the connection is cut.
            let stream = futures::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from_static(
                            &SAMPLE_MP4[..SAMPLE_MP4.len() / 2],
                        )),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Some((Err(std::io::Error::other("simulated connection drop")), 2))
                    }
                    _ => None,
                }
            });
            video(Body::from_stream(stream), true)
        }
        Some("nolength") => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = SAMPLE_MP4
                .chunks(512)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            video(Body::from_stream(futures::stream::iter(chunks)), false)
        }
        Some("empty") => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "video/mp4")], "").into_response()
        }
        Some("html") => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body>Please sign in</body></html>",
        )
            .into_response(),
        Some(f) if f.starts_with("slow=") => {
            const PARTS: usize = 10;
            let pause = secs(&f[5..]) / PARTS as u32;
            let chunk = SAMPLE_MP4.len().div_ceil(PARTS);
            let stream = futures::stream::unfold(0usize, move |at| async move {
                if at >= SAMPLE_MP4.len() {
                    return None;
                }
                tokio::time::sleep(pause).await;
                let end = (at + chunk).min(SAMPLE_MP4.len());
                Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from_static(&SAMPLE_MP4[at..end])),
                    end,
                ))
            });
            video(Body::from_stream(stream), true)
        }
        _ => video(Body::from(Bytes::from_static(SAMPLE_MP4)), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found() {
        assert_eq!(
            markers("make [FAIL] and [after:2] [get:500:1] ok"),
            vec!["fail", "after:2", "get:500:1"]
        );
        let m = markers("[422:no_compatible_channel]");
        assert_eq!(marker_value(&m, "422"), Some("no_compatible_channel"));
    }

    #[test]
    fn sample_is_iso_bmff() {
        assert_eq!(&SAMPLE_MP4[4..8], b"ftyp");
        assert!(SAMPLE_MP4.windows(4).any(|w| w == b"moov"));
        assert!(SAMPLE_MP4.windows(4).any(|w| w == b"mdat"));
    }
}

//! MCP over Streamable HTTP: `/mcp` (both protocol revisions on one endpoint)
//! and `/healthz`, built as an `axum::Router` that tests bind to port 0.
//!
//! Our own guard runs before rmcp's service, in this order: Host allowlist,
//! Origin allowlist (both 403, DNS-rebinding protection), caller bearer auth
//! (401: a static token, or with OAuth a valid access token; 403 when the
//! token lacks a scope, see [`super::oauth`]), body limit (413), drain and concurrency bound (503), then the legacy
//! session rules (see [`super::sessions`]): a session named by another caller
//! is 404, an `initialize` past the session caps is 429 (this caller) or 503
//! (the server), a request reusing the id of one still in flight in its
//! session is answered at once with a JSON-RPC error (HTTP 200), a batch (a
//! JSON array) is 400, and a session's DELETE answers 204. With a PostgreSQL
//! ledger these rules are decided in its database, shared by every replica,
//! and a session request that cannot reach it is 503. Drain and the bound live
//! here, not in tower layers, because a streamed (SSE) response outlives the
//! handler future that tower sees (DESIGN.md §8).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::StreamExt;
use rmcp::model::RequestId;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::connections::{self, ConnMark, Limits};
use super::oauth::{Rejection, ResourceServer};
use super::sessions::{
    Admission, BoundSessionManager, CallRefusal, CallSlot, CallerId, SessionRefusal,
    SessionRegistry, StoreDown, priming_bytes,
};
use crate::{
    net::is_loopback_host,
    tools::CallerKeys,
    tools::{AppState, CALLER_KEY_HEADER, Principal, VideoServer},
    transport::settings::HttpSettings,
};

/// Where the Protected Resource Metadata is served (RFC 9728), also with the
/// MCP endpoint's path appended.
pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

const SESSION_HEADER: &str = "mcp-session-id";

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How long a request waits for a free slot before it is refused with 503.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// The router plus the handle that drains it on shutdown.
pub struct HttpApp {
    pub router: Router,
    pub drain: Drain,
}

/// Tracks in-flight MCP requests; on shutdown refuses new work and waits for
/// the running calls before rmcp's cancellation token cuts the rest.
#[derive(Clone)]
pub struct Drain {
    inner: Arc<DrainInner>,
}

struct DrainInner {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Cancels rmcp's sessions and streams once draining is over.
    service_ct: CancellationToken,
}

impl Drain {
    fn new(service_ct: CancellationToken) -> Self {
        Self {
            inner: Arc::new(DrainInner {
                draining: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                service_ct,
            }),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Stops accepting new work, waits up to `timeout` for in-flight calls,
    /// then cancels whatever is left. Returns the number of calls cut off.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.inner.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.idle.notified();
            if self.in_flight() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let left = self.in_flight();
        self.inner.service_ct.cancel();
        left
    }

    fn enter(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.inner.clone())
    }
}

struct InFlight(Arc<DrainInner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

struct Guard {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    /// SHA-256 of each accepted caller token (compared in constant time).
    token_hashes: Vec<[u8; 32]>,
    max_body: usize,
    slots: Arc<Semaphore>,
    drain: Drain,
    request_timeout: Duration,
    /// Whether a caller's own upstream key is part of its identity.
    caller_keys: bool,
    /// Legacy sessions, when they are on.
    sessions: Option<Arc<BoundSessionManager>>,
    /// OAuth sign-in, when it is on.
    oauth: Option<OAuth>,
    /// Most requests in flight in one legacy session (the concurrency bound:
    /// only requests whose client went away while they run can add to it).
    max_calls_per_session: usize,
}

struct OAuth {
    server: Arc<ResourceServer>,
    /// The URL of our Protected Resource Metadata, for `WWW-Authenticate`.
    metadata_url: String,
}

/// Who a request authenticated as.
enum Authn {
    /// No authentication is configured.
    Open,
    /// A static token from HEYGEN_MCP_AUTH_TOKEN.
    Static,
    /// A signed-in OAuth user.
    User(Principal),
}

/// The URL of the Protected Resource Metadata of `resource` (the
/// path-suffixed form of RFC 9728 §3.1).
pub fn metadata_url(resource: &url::Url) -> String {
    let mut u = resource.clone();
    let path = resource.path().trim_end_matches('/');
    u.set_path(&format!("{PRM_PATH}{path}"));
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Builds the router: `/mcp` behind the guard, `/healthz` outside it.
pub fn build(state: Arc<AppState>, settings: &HttpSettings) -> HttpApp {
    build_with_oauth(state, settings, None)
}

/// [`build`] with OAuth sign-in by `oauth` (already discovered): the
/// metadata endpoints are served, and `/mcp` accepts its access tokens.
pub fn build_with_oauth(
    state: Arc<AppState>,
    settings: &HttpSettings,
    oauth: Option<Arc<ResourceServer>>,
) -> HttpApp {
    let service_ct = CancellationToken::new();
    let drain = Drain::new(service_ct.clone());

    let mut allowed_hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
    if !settings.addr.ip().is_unspecified() && !settings.addr.ip().is_loopback() {
        allowed_hosts.push(settings.addr.ip().to_string());
    }
    allowed_hosts.extend(
        settings
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase()),
    );

    // The public URL's host is how clients reach us.
    if let Some(host) = oauth
        .as_ref()
        .and_then(|o| url::Url::parse(o.resource()).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    {
        allowed_hosts.push(host);
    }
    let oauth = oauth.map(|server| OAuth {
        metadata_url: url::Url::parse(server.resource())
            .map(|u| metadata_url(&u))
            .unwrap_or_default(),
        server,
    });
    let prm_paths: Vec<String> = oauth
        .as_ref()
        .map(|o| {
            let mut paths = vec![PRM_PATH.to_string(), format!("{PRM_PATH}/mcp")];
            if let Ok(u) = url::Url::parse(o.server.resource()) {
                let suffixed = format!("{PRM_PATH}{}", u.path().trim_end_matches('/'));
                if !paths.contains(&suffixed) {
                    paths.push(suffixed);
                }
            }
            paths
        })
        .unwrap_or_default();
    let prm_doc = oauth.as_ref().map(|o| o.server.metadata().to_string());

    // With a shared ledger (PostgreSQL) legacy sessions live in its
    // database too, so any replica serves any session.
    let shared_sessions = state
        .options
        .ledger
        .as_ref()
        .and_then(|ledger| ledger.sessions());
    let sessions = settings.legacy_sessions.then(|| {
        let limits = settings.sessions.clone();
        let registry = match shared_sessions {
            Some(store) => SessionRegistry::shared(limits, store),
            None => SessionRegistry::new(limits),
        };
        Arc::new(BoundSessionManager::new(Arc::new(registry)))
    });
    if let Some(manager) = &sessions {
        manager.spawn_sweep(service_ct.clone());
    }
    let guard = Arc::new(Guard {
        allowed_hosts,
        allowed_origins: settings
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
        token_hashes: settings
            .auth_tokens
            .iter()
            .map(|t| sha(t.as_bytes()))
            .collect(),
        max_body: settings.max_body_bytes,
        slots: Arc::new(Semaphore::new(settings.max_concurrent)),
        drain: drain.clone(),
        request_timeout: settings.request_timeout,
        caller_keys: settings.caller_keys != CallerKeys::Off,
        sessions: sessions.clone(),
        oauth,
        max_calls_per_session: settings.max_concurrent.max(1),
    });

    // Our guard already checked Host and Origin before authentication; rmcp's
    // own checks (which run after any outer layer) are turned off so there is
    // one source of truth. rmcp's priming of the initialize response and of
    // the GET stream is off: the session layer adds it where the session's
    // revision defines it.
    let mut config = StreamableHttpServerConfig::default()
        .with_sse_retry(None)
        .with_legacy_session_mode(settings.legacy_sessions)
        .with_json_response(true)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_cancellation_token(service_ct.child_token());
    config.session_store = sessions.as_ref().and_then(|m| m.session_store());
    let factory_state = state.clone();
    let factory = move || Ok(VideoServer::new(factory_state.clone()));
    let mcp = if let Some(manager) = &sessions {
        Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(factory, manager.clone(), config),
        )
    } else {
        Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(factory, Arc::new(NeverSessionManager::default()), config),
        )
    };
    let mcp = mcp.layer(middleware::from_fn_with_state(guard.clone(), guard_layer));
    let mut well_known = Router::new();
    if let Some(doc) = prm_doc {
        for path in &prm_paths {
            let doc = doc.clone();
            well_known = well_known.route(
                path,
                get(move || async move {
                    (
                        StatusCode::OK,
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "max-age=300"),
                        ],
                        doc,
                    )
                }),
            );
        }
        well_known = well_known.layer(middleware::from_fn_with_state(guard, origin_layer));
    }

    let health_drain = drain.clone();
    let router = Router::new()
        .route(
            "/healthz",
            get(move || {
                let d = health_drain.clone();
                let s = sessions.clone();
                async move {
                    // Only counts: no ids, no keys.
                    let live = match &s {
                        Some(m) => Some(m.inner.sessions.read().await.len()),
                        None => None,
                    };
                    health(&d, live)
                }
            }),
        )
        .merge(mcp)
        .merge(well_known)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") });
    HttpApp { router, drain }
}

/// `/healthz`: status, identity, and two counters for operators and load
/// tests (calls in flight, live legacy sessions; `null` when sessions are off).
fn health(drain: &Drain, sessions: Option<usize>) -> Response {
    if drain.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"draining"}"#,
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                r#"{{"status":"ok","name":"heygen-video-mcp","version":"{}","in_flight":{},"sessions":{}}}"#,
                env!("CARGO_PKG_VERSION"),
                drain.in_flight(),
                sessions.map_or_else(|| "null".to_string(), |n| n.to_string())
            ),
        )
            .into_response()
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.to_string(),
    )
        .into_response()
}

/// The host part of a Host header value, lowercased, without port or brackets.
fn host_only(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match a.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => {
            h.to_string()
        }
        _ => a,
    }
}

impl Guard {
    fn host_allowed(&self, host_header: &str) -> bool {
        let full = host_header.trim().to_ascii_lowercase();
        let host = host_only(&full);
        self.allowed_hosts.iter().any(|allowed| {
            // An entry with a port must match exactly; a bare entry matches any port.
            if allowed.contains(':') && !allowed.contains("::") && allowed != "::1" {
                *allowed == full
            } else {
                host_only(allowed) == host
            }
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let Ok(url) = url::Url::parse(&origin) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        if matches!(url.scheme(), "http" | "https") && is_loopback_host(host) {
            return true;
        }
        // Compare with default ports made explicit ("https://a.example" == "https://a.example:443").
        let normalized = format!(
            "{}://{}:{}",
            url.scheme(),
            host,
            url.port_or_known_default().unwrap_or(0)
        );
        self.allowed_origins.iter().any(|o| {
            url::Url::parse(o).ok().is_some_and(|a| {
                format!(
                    "{}://{}:{}",
                    a.scheme(),
                    a.host_str().unwrap_or_default(),
                    a.port_or_known_default().unwrap_or(0)
                ) == normalized
            })
        })
    }

    /// Who the request authenticates as, or the refusal to send.
    /// (`Request` is not `Sync`: what is needed is taken from it first.)
    async fn authenticate(&self, in_query: bool, token: Option<String>) -> Result<Authn, Response> {
        if self.token_hashes.is_empty() && self.oauth.is_none() {
            return Ok(Authn::Open);
        }
        if in_query {
            return Err(self.unauthorized(Some((
                "invalid_request",
                "access tokens are not accepted in the query string; send them in the \
                 Authorization header",
            ))));
        }
        let token = token.as_deref();
        if let Some(t) = token
            && self.static_token(t)
        {
            return Ok(Authn::Static);
        }
        let Some(oauth) = &self.oauth else {
            return Err(self.unauthorized(None));
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(self.unauthorized(None));
        };
        match oauth.server.verify(token).await {
            Ok(p) => Ok(Authn::User(p)),
            Err(Rejection::Invalid(why)) => {
                tracing::info!("refused an access token: {why}");
                Err(self.unauthorized(Some(("invalid_token", why))))
            }
            Err(Rejection::InsufficientScope) => Err(self.insufficient_scope(oauth)),
            Err(Rejection::Unavailable) => {
                let mut r = plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable: the authorization server could not be asked whether \
                     this access token is valid; try again in a moment",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                Err(r)
            }
        }
    }

    /// The 401 answer, with the challenge that leads a client to sign in.
    fn unauthorized(&self, error: Option<(&str, &str)>) -> Response {
        let Some(oauth) = &self.oauth else {
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                "Unauthorized: send 'Authorization: Bearer <token>' with a token from HEYGEN_MCP_AUTH_TOKEN",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="heygen-video-mcp""#),
            );
            return r;
        };
        let mut challenge = String::from("Bearer ");
        let mut text = "Unauthorized: sign in with OAuth (see the resource metadata) and send \
                        'Authorization: Bearer <access token>'"
            .to_string();
        if let Some((code, description)) = error {
            challenge.push_str(&format!(
                r#"error="{code}", error_description="{description}", "#
            ));
            text = format!("Unauthorized: {description}");
        }
        challenge.push_str(&format!(r#"resource_metadata="{}""#, oauth.metadata_url));
        let scopes = oauth.server.scopes().join(" ");
        if !scopes.is_empty() {
            challenge.push_str(&format!(r#", scope="{scopes}""#));
        }
        challenged(StatusCode::UNAUTHORIZED, &text, &challenge)
    }

    fn insufficient_scope(&self, oauth: &OAuth) -> Response {
        let scopes = oauth.server.scopes().join(" ");
        let challenge = format!(
            r#"Bearer error="insufficient_scope", scope="{scopes}", resource_metadata="{}", error_description="the access token lacks a required scope""#,
            oauth.metadata_url
        );
        challenged(
            StatusCode::FORBIDDEN,
            &format!("Forbidden: the access token lacks a required scope (needed: {scopes})"),
            &challenge,
        )
    }

    fn static_token(&self, token: &str) -> bool {
        if self.token_hashes.is_empty() {
            return false;
        }
        let presented = sha(token.as_bytes());
        // Compare against every token without short-circuiting.
        let mut ok = 0u8;
        for expected in &self.token_hashes {
            let diff = expected
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            ok |= u8::from(diff == 0);
        }
        ok == 1
    }

    /// The identity that owns sessions: the signed-in user, else the
    /// authenticated token (none when authentication is off), and, with
    /// caller keys, the caller's upstream key.
    fn caller(&self, req: &Request) -> CallerId {
        let user = req.extensions().get::<Principal>().map(Principal::tenant);
        let token = if let Some(user) = &user {
            Some(user.as_str())
        } else if self.token_hashes.is_empty() && self.oauth.is_none() {
            None
        } else {
            bearer(req)
        };
        let key = if self.caller_keys {
            req.headers()
                .get(CALLER_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|k| !k.is_empty())
        } else {
            None
        };
        CallerId::new(token, key)
    }
}

/// Whether the query string carries an `access_token` (RFC 6750 §2.3),
/// which this server refuses: URLs end up in logs and histories.
fn token_in_query(req: &Request) -> bool {
    req.uri().query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
    })
}

fn challenged(status: StatusCode, text: &str, challenge: &str) -> Response {
    let mut r = plain(status, text);
    if let Ok(v) = HeaderValue::from_str(challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

/// rmcp's answer to an unknown session, also given for another caller's one.
fn session_not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Not Found: Session not found")
}

/// The answer when the shared session store (the PostgreSQL ledger's
/// database) cannot be reached: 503 with `Retry-After`, as a JSON-RPC error
/// when it answers a request with an id.
fn store_unavailable(id: Option<serde_json::Value>) -> Response {
    let message = "The session store (the shared PostgreSQL database) cannot be reached right \
                   now, so 2025-11-25 sessions cannot be opened or continued. Retry shortly, or \
                   use the stateless 2026-07-28 revision, which needs no session.";
    let mut r = match id {
        Some(id) => json_rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            -32000,
            message.to_string(),
            Some(serde_json::json!({"reason": "session_store_unavailable"})),
        ),
        None => plain(StatusCode::SERVICE_UNAVAILABLE, message),
    };
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

/// A JSON-RPC error answering a refused `initialize`.
fn session_refused(refusal: SessionRefusal, id: serde_json::Value, idle: Duration) -> Response {
    let (status, message, scope, limit) = match refusal {
        SessionRefusal::Unavailable => return store_unavailable(Some(id)),
        SessionRefusal::Caller(limit) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many open sessions for this caller (the limit is {limit}). Close sessions \
                 you no longer use (HTTP DELETE /mcp with their Mcp-Session-Id header), let idle \
                 ones expire (after {} s without a request), or use the stateless 2026-07-28 \
                 revision, which needs no session.",
                idle.as_secs()
            ),
            "caller",
            limit,
        ),
        SessionRefusal::Server(limit) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "This server holds its maximum of {limit} open sessions. Retry later, close \
                 sessions you no longer use (HTTP DELETE /mcp with their Mcp-Session-Id header), \
                 or use the stateless 2026-07-28 revision, which needs no session."
            ),
            "server",
            limit,
        ),
    };
    tracing::warn!(
        scope,
        limit,
        "refused a new session: the session limit is reached"
    );
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32000,
            "message": message,
            "data": {"reason": "session_limit", "scope": scope, "limit": limit},
        },
    });
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    r
}

/// A JSON-RPC error as an `application/json` answer.
fn json_rpc_error(
    status: StatusCode,
    id: serde_json::Value,
    code: i64,
    message: String,
    data: Option<serde_json::Value>,
) -> Response {
    let mut error = serde_json::json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The answer to a request refused before it reached its session. A request
/// is answered with one JSON object or an SSE stream (MCP Streamable HTTP,
/// "Sending Messages to the Server"), so a duplicate id gets HTTP 200 and a
/// JSON-RPC error the client routes to its request by id, like any answer.
fn call_refused(refusal: CallRefusal, id: &RequestId) -> Response {
    let shown = serde_json::to_string(id).unwrap_or_else(|_| id.to_string());
    let id = serde_json::to_value(id).unwrap_or_default();
    match refusal {
        CallRefusal::Duplicate => {
            tracing::warn!(%shown, "refused a request whose id is already in flight in its session");
            json_rpc_error(
                StatusCode::OK,
                id,
                -32600,
                format!(
                    "a request with id {shown} is already in flight in this session; wait for \
                     its answer or use an id of its own"
                ),
                None,
            )
        }
        CallRefusal::Full(limit) => {
            tracing::warn!(
                limit,
                "refused a request: its session has the most requests in flight"
            );
            json_rpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                id,
                -32000,
                format!(
                    "This session has {limit} requests in flight, the most it may have (requests \
                     whose client went away count until they are answered). Wait for their \
                     answers, then retry."
                ),
                Some(serde_json::json!({"reason": "in_flight_limit", "limit": limit})),
            )
        }
    }
}

/// A JSON array body: a JSON-RPC batch, which no revision served here takes.
fn is_batch(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// The answer to a batch body (HTTP 400; JSON-RPC Invalid Request, no id).
fn batch_refused() -> Response {
    json_rpc_error(
        StatusCode::BAD_REQUEST,
        serde_json::Value::Null,
        -32600,
        "JSON-RPC batches (a JSON array body) are not supported: MCP has no batches since \
         2025-06-18. Send each request or notification in a POST of its own."
            .to_string(),
        None,
    )
}

/// The id of a JSON-RPC request body (a message with a method and an id that
/// rmcp can read); `None` for notifications, answers and anything else.
fn request_id(body: &[u8]) -> Option<RequestId> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        id: Option<serde_json::Value>,
        #[serde(default)]
        method: Option<serde::de::IgnoredAny>,
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let peek: Peek = serde_json::from_slice(body).ok()?;
    peek.method?;
    serde_json::from_value(peek.id?).ok()
}

/// The id of a JSON-RPC `initialize` request body, if it is one.
fn initialize_id(body: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        id: serde_json::Value,
        #[serde(default)]
        method: Option<String>,
    }
    // Cheap test first: most bodies are not an initialize (nor escaped).
    if !body.windows(10).any(|w| w == b"initialize") && !body.windows(2).any(|w| w == b"\\u") {
        return None;
    }
    let peek: Peek = serde_json::from_slice(body).ok()?;
    (peek.method.as_deref() == Some("initialize")).then_some(peek.id)
}

/// Host and Origin checks alone, for the metadata endpoints.
async fn origin_layer(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match check_host_origin(&guard, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// Steps 1 and 2 of the guard: the refusal, if any.
fn check_host_origin(guard: &Guard, req: &Request) -> Option<Response> {
    // 1. Host (DNS rebinding). HTTP/2 carries it in the URI authority.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if guard.host_allowed(&h) => {}
        _ => {
            tracing::warn!("refused a request with a Host header that is not allowed");
            return Some(plain(
                StatusCode::FORBIDDEN,
                "Forbidden: Host header is not allowed (add it with --allowed-host)",
            ));
        }
    }
    // 2. Origin (browsers): present and not allowed → 403.
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .map(|o| guard.origin_allowed(o))
            .unwrap_or(false);
        if !ok {
            tracing::warn!("refused a request with an Origin that is not allowed");
            return Some(plain(
                StatusCode::FORBIDDEN,
                "Forbidden: Origin is not allowed (add it with --allowed-origin)",
            ));
        }
    }
    None
}

async fn guard_layer(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    if let Some(refused) = check_host_origin(&guard, &req) {
        return refused;
    }
    // 3. Caller authentication; a signed-in user rides along to the tools.
    let (in_query, token) = (token_in_query(&req), bearer(&req).map(str::to_string));
    match guard.authenticate(in_query, token).await {
        Ok(authn) => {
            if let Some(mark) = req.extensions().get::<ConnMark>() {
                mark.authenticated();
            }
            if let Authn::User(p) = authn {
                req.extensions_mut().insert(p);
            }
        }
        Err(refused) => return refused,
    }
    // 4. Body limit, early when the size is declared (rmcp also enforces it while reading).
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > guard.max_body
    {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Payload too large: the limit is {} bytes", guard.max_body),
        );
    }
    // 5. A named legacy session must be this caller's: another caller's is
    //    "not found", whichever method (POST, GET stream, DELETE). With a
    //    shared store it is checked (and marked used, or ended) there.
    let caller = guard.caller(&req);
    if let Some(manager) = &guard.sessions
        && let Some(id) = req.headers().get(SESSION_HEADER)
    {
        let Ok(id) = id.to_str() else {
            return session_not_found();
        };
        let ending = req.method() == Method::DELETE;
        match manager.admit(id, caller, ending).await {
            Ok(Admission::Pass) => {}
            Ok(Admission::NotFound) => return session_not_found(),
            Err(StoreDown) => return store_unavailable(None),
        }
    }
    // Only POSTs carry work; GET (a legacy session's notification stream) and
    // DELETE (session end) pass without a slot.
    if req.method() != Method::POST {
        let is_delete = req.method() == Method::DELETE;
        let mut response = next.run(req).await;
        // A session ended by DELETE answers 204 (rmcp says 202, which some
        // clients warn about).
        if is_delete && response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
        return response;
    }
    // 6. Drain and concurrency bound.
    if guard.drain.is_draining() {
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down; retry on another replica.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let in_flight = guard.drain.enter();
    let permit = match tokio::time::timeout(QUEUE_WAIT, guard.slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy; retry shortly.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            return r;
        }
    };
    // 7. With legacy sessions the body is read here: a batch is refused, an
    //    `initialize` (a new session) needs a free session slot, and a
    //    request in a session needs an id not in flight there.
    let mut reservation = None;
    let mut call = None;
    let mut req = req;
    if let Some(manager) = &guard.sessions {
        let registry = &manager.registry;
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, guard.max_body).await {
            Ok(b) => b,
            Err(_) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "Payload too large or unreadable: the limit is {} bytes",
                        guard.max_body
                    ),
                );
            }
        };
        if is_batch(&bytes) {
            return batch_refused();
        }
        let session = parts
            .headers
            .get(SESSION_HEADER)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        match session {
            None => {
                if let Some(id) = initialize_id(&bytes) {
                    match registry.reserve_slot(caller).await {
                        Ok(r) => reservation = Some((r, id)),
                        Err(refusal) => {
                            return session_refused(refusal, id, registry.limits().idle_timeout);
                        }
                    }
                }
            }
            Some(session) => {
                if let Some(id) = request_id(&bytes) {
                    match registry.begin_call(&session, id.clone(), guard.max_calls_per_session) {
                        Ok(lease) => call = lease.map(CallSlot::new),
                        Err(refusal) => return call_refused(refusal, &id),
                    }
                }
            }
        }
        req = Request::from_parts(parts, Body::from(bytes));
        req.extensions_mut().insert(caller);
        if let Some((r, _)) = &reservation {
            req.extensions_mut().insert(r.ticket());
        }
        if let Some(c) = &call {
            req.extensions_mut().insert(c.clone());
        }
    }
    let response = next.run(req).await;
    // A handshake the shared store could not record ended its session.
    if let (Some(manager), Some((r, id))) = (&guard.sessions, &reservation)
        && manager.registry.take_failed(r.ticket())
    {
        return store_unavailable(Some(id.clone()));
    }
    // The session took the reservation and the request's lease (its answer
    // stream frees the id), or they are released here.
    drop(reservation);
    if let Some(c) = call {
        drop(c.take());
    }
    // A new session of a revision that defines the SSE priming event gets it
    // first, as rmcp would send it.
    let prime = guard.sessions.as_ref().is_some_and(|manager| {
        response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|id| manager.registry.primes(id))
    });
    // Hold the slot and the in-flight mark until the (possibly streamed) body
    // is finished, and cut a response that outlives the request timeout.
    let (parts, body) = response.into_parts();
    let deadline = tokio::time::sleep(guard.request_timeout);
    let priming = prime.then(|| Ok::<_, axum::Error>(priming_bytes()));
    let stream = futures::stream::iter(priming)
        .chain(body.into_data_stream())
        .take_until(deadline)
        .map(move |chunk| {
            let _held = (&permit, &in_flight);
            chunk
        });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Binds `settings.addr` and serves until `stop` fires, then drains.
pub async fn serve(
    state: Arc<AppState>,
    settings: HttpSettings,
    stop: CancellationToken,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", settings.addr))?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| format!("could not read the bound address: {e}"))?;
    let (limits, warning) = Limits::resolve(&settings.connections);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let oauth = match &settings.oauth {
        None => None,
        Some(o) => {
            let resource = match &o.public_url {
                Some(u) => u.clone(),
                None => url::Url::parse(&format!("http://{addr}/mcp"))
                    .map_err(|e| format!("could not form the public URL: {e}"))?,
            };
            let found = tokio::time::timeout(
                Duration::from_secs(20),
                ResourceServer::discover(o, &resource),
            )
            .await
            .map_err(|_| {
                format!(
                    "the OAuth issuer {} did not answer within 20 s; check HEYGEN_OAUTH_ISSUER",
                    o.issuer
                )
            })??;
            tracing::info!(
                issuer = found.issuer(),
                resource = found.resource(),
                "OAuth sign-in is on"
            );
            Some(Arc::new(found))
        }
    };
    let app = build_with_oauth(state, &settings, oauth);
    eprintln!("listening on http://{addr}/mcp");
    if settings.auth_tokens.is_empty() && settings.oauth.is_none() {
        tracing::info!("caller authentication is off (loopback only)");
    }
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs_f64(),
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        "connection limits"
    );
    let drain = app.drain.clone();
    let drain_timeout = settings.drain_timeout;
    let shutdown = async move {
        stop.cancelled().await;
        tracing::info!(
            in_flight = drain.in_flight(),
            "draining: refusing new calls, letting running calls finish"
        );
        let cut = drain.drain(drain_timeout).await;
        if cut > 0 {
            tracing::warn!(cut, "drain timeout: cancelling the calls still running");
        }
    };
    connections::serve(listener, app.router, limits, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(hosts: &[&str], origins: &[&str], tokens: &[&str]) -> Guard {
        Guard {
            allowed_hosts: LOOPBACK_HOSTS
                .iter()
                .chain(hosts.iter())
                .map(|s| s.to_string())
                .collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            token_hashes: tokens.iter().map(|t| sha(t.as_bytes())).collect(),
            max_body: 1024,
            slots: Arc::new(Semaphore::new(1)),
            drain: Drain::new(CancellationToken::new()),
            request_timeout: Duration::from_secs(1),
            caller_keys: false,
            sessions: None,
            oauth: None,
            max_calls_per_session: 1,
        }
    }

    #[test]
    fn hosts() {
        let g = guard(&["mcp.example.com", "other.example:8443"], &[], &[]);
        for ok in [
            "localhost",
            "localhost:8000",
            "127.0.0.1:1",
            "[::1]:8000",
            "MCP.example.com",
            "mcp.example.com:443",
            "other.example:8443",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8000",
            "other.example:9999",
            "127.0.0.2",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let g = guard(&[], &["https://app.example.com"], &[]);
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1:6274",
            "https://app.example.com",
            "https://app.example.com:443",
        ] {
            assert!(g.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "null",
            "https://app.example.com:8443",
            "http://app.example.com",
            "file://",
        ] {
            assert!(!g.origin_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn request_ids_are_read_as_rmcp_reads_them() {
        let id = |b: &str| request_id(b.as_bytes());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            Some(RequestId::Number(7))
        );
        assert_eq!(
            id(r#" {"method":"ping","id":7.0}"#),
            Some(RequestId::Number(7))
        );
        assert_eq!(
            id(r#"{"id":"7","method":"ping"}"#),
            Some(RequestId::String("7".into()))
        );
        for none in [
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            r#"{"id":null,"method":"ping"}"#,
            r#"{"id":1.5,"method":"ping"}"#,
            r#"[7,"ping"]"#,
            "not json",
        ] {
            assert_eq!(id(none), None, "{none}");
        }
        assert!(is_batch(b" \n[{}]"));
        assert!(!is_batch(b"{}"));
    }

    #[test]
    fn host_only_strips_ports_and_brackets() {
        assert_eq!(host_only("Example.COM:80"), "example.com");
        assert_eq!(host_only("[::1]:8000"), "::1");
        assert_eq!(host_only("::1"), "::1");
    }
}

//! The HTTP exchange every backend shares: one lazily built `reqwest::Client`,
//! timeouts, the retry policy of DESIGN.md §4, redirects (a paid POST follows
//! none; lookups at most three within the origin), capped bodies, and the
//! key kept out of everything shown. A backend brings its auth header and the
//! mapping of its own error envelope.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

use super::{
    error::{RedirectRefusal, UpstreamError},
    secret::ApiKey,
};

/// Most of an answer we will ever read; anything bigger is not an API answer.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Longest excerpt of a non-JSON error body shown to the user.
const EXCERPT_CHARS: usize = 200;
/// Most redirects a lookup follows, all within the origin of
/// `HEYGEN_API_BASE`. A create follows none.
pub const MAX_REDIRECTS: usize = 3;

/// Everything but the RFC 3986 unreserved characters and `:` (a valid path
/// character) is encoded, so an id always stays one path segment.
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// How often and how patiently failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total for idempotent requests (status, credits).
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt, with jitter.
    pub base_delay: Duration,
    /// Cap of one backoff delay, and of an honoured `Retry-After`.
    pub max_delay: Duration,
    /// Total time a create may spend waiting out 429s / connect failures, so the
    /// call still fits a 60 s client timeout.
    pub create_budget: Duration,
    /// Total time a status or credits lookup may take, all attempts and
    /// waits included, so one tool call stays inside a 60 s client timeout.
    pub lookup_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            create_budget: Duration::from_secs(30),
            lookup_budget: Duration::from_secs(40),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Origin plus optional path prefix, without a trailing slash or `/v1`.
    pub base_url: String,
    /// Total time for one request (connect, send, answer).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl HttpConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// How the key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (the gateway).
    Bearer,
    /// `X-Api-Key: <key>` (HeyGen's own API).
    XApiKey,
}

/// Turns a non-2xx answer into the backend's [`UpstreamError`].
pub type ErrorMapper = fn(StatusCode, &HeaderMap, &[u8], &ApiKey) -> UpstreamError;

/// One backend's HTTP side. Cheap to share; the client and its TLS roots are
/// built on first use so start-up stays fast.
#[derive(Debug)]
pub struct Transport {
    config: HttpConfig,
    /// `config.base_url`, parsed once: request URLs are built from it
    /// without parsing the host again on every call.
    base: Option<url::Url>,
    auth: Auth,
    map_error: ErrorMapper,
    http: OnceLock<Result<reqwest::Client, String>>,
}

/// Checks a task id against DESIGN.md §8's allowlist: `[A-Za-z0-9._:-]{1,128}`,
/// never `.` or `..`.
pub fn validate_task_id(id: &str) -> Result<(), UpstreamError> {
    let reason = if id.is_empty() {
        Some("it is empty".to_string())
    } else if id.chars().count() > 128 {
        Some("it is longer than 128 characters".to_string())
    } else if id == "." || id == ".." {
        Some("it is a path component, not an id".to_string())
    } else {
        id.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
            .map(|c| format!("it contains the character {c:?}"))
    };
    match reason {
        Some(reason) => Err(UpstreamError::InvalidTaskId { reason }),
        None => Ok(()),
    }
}

impl Transport {
    pub fn new(config: HttpConfig, auth: Auth, map_error: ErrorMapper) -> Self {
        Self {
            base: url::Url::parse(&config.base_url).ok(),
            config,
            auth,
            map_error,
            http: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    pub fn http(&self) -> Result<&reqwest::Client, UpstreamError> {
        self.http
            .get_or_init(|| {
                // reqwest is built without a bundled crypto provider; pick ring once.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("heygen-video-mcp/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(self.config.connect_timeout)
                    .timeout(self.config.timeout)
                    .pool_idle_timeout(Duration::from_secs(60))
                    // Redirects are handled by `send`: a create is never
                    // re-sent, and the key never goes to another origin.
                    .redirect(reqwest::redirect::Policy::none());
                // A loopback upstream (the simulator, a local gateway) is never proxied.
                let loopback = url::Url::parse(&self.config.base_url)
                    .ok()
                    .and_then(|u| u.host_str().map(crate::net::is_loopback_host))
                    .unwrap_or(false);
                if loopback {
                    builder = builder.no_proxy();
                }
                builder.build().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| UpstreamError::Connect {
                detail: format!("the HTTP client could not be built: {e}"),
            })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_url, path)
    }

    /// A POST that must not reach the upstream twice: resent only when
    /// nothing was sent (connect failure) or the gateway refused it with 429,
    /// within the create budget.
    pub async fn send_unrepeated(
        &self,
        key: &ApiKey,
        url: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        self.post_unrepeated(key, url, body, "application/json")
            .await
    }

    /// [`Self::send_unrepeated`] with a body of any content type (e.g. a
    /// multipart upload).
    pub async fn post_unrepeated(
        &self,
        key: &ApiKey,
        url: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let err = match self
                .send(
                    key,
                    Method::POST,
                    url,
                    Some((body.clone(), content_type)),
                    Follow::Never,
                )
                .await
            {
                Ok(ok) => return Ok(ok),
                Err(e) => e,
            };
            let retryable = matches!(
                &err,
                UpstreamError::Connect { .. } | UpstreamError::Api { status: 429, .. }
            );
            if !retryable || attempt >= self.config.retry.max_attempts {
                return Err(err);
            }
            // A Retry-After longer than our cap: resending sooner would ignore
            // the upstream's request; tell the user instead.
            if let UpstreamError::Api {
                retry_after: Some(ra),
                ..
            } = &err
                && *ra > self.config.retry.max_delay
            {
                return Err(err);
            }
            let delay = self.backoff(attempt, &err);
            if started.elapsed() + delay > self.config.retry.create_budget {
                return Err(err);
            }
            tracing::info!(attempt, ?delay, "request not accepted, retrying: {err}");
            tokio::time::sleep(delay).await;
        }
    }

    /// A GET that may be repeated: 429, 5xx and transport failures are
    /// retried with capped backoff, all within the lookup budget.
    pub async fn send_idempotent(
        &self,
        key: &ApiKey,
        url: &str,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let budget = self.config.retry.lookup_budget;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let remaining = budget.saturating_sub(started.elapsed());
            let sent = tokio::time::timeout(
                remaining,
                self.send(key, Method::GET, url, None, Follow::SameOrigin),
            );
            let err = match sent.await {
                Ok(Ok(ok)) => return Ok(ok),
                Ok(Err(e)) => e,
                Err(_) => UpstreamError::Timeout {
                    timeout: started.elapsed(),
                },
            };
            if !err.is_transient() || attempt >= self.config.retry.max_attempts {
                return Err(err);
            }
            // A Retry-After longer than our cap: tell the user instead of blocking.
            if let UpstreamError::Api {
                retry_after: Some(ra),
                ..
            } = &err
                && *ra > self.config.retry.max_delay
            {
                return Err(err);
            }
            let delay = self.backoff(attempt, &err);
            if started.elapsed() + delay >= budget {
                return Err(err);
            }
            tracing::debug!(attempt, ?delay, "retrying idempotent request: {err}");
            tokio::time::sleep(delay).await;
        }
    }

    /// An idempotent GET whose JSON answer is passed on (key scrubbed).
    pub async fn get_json(&self, key: &ApiKey, path: &str) -> Result<Value, UpstreamError> {
        let url = self.url(path);
        let (status, bytes) = self.send_idempotent(key, &url).await?;
        parse_json(status, &bytes, key)
    }

    /// A GET without the key whose answer is a nicety: `None` whenever it
    /// does not answer 2xx within `timeout`.
    pub async fn get_public(&self, path: &str, timeout: Duration) -> Option<Bytes> {
        let http = self.http().ok()?;
        let resp = http
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout.min(self.config.timeout))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        read_capped(resp).await.ok()
    }

    fn backoff(&self, attempt: u32, err: &UpstreamError) -> Duration {
        let policy = &self.config.retry;
        if let UpstreamError::Api {
            retry_after: Some(ra),
            ..
        } = err
        {
            return (*ra).min(policy.max_delay);
        }
        let exp = policy
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(policy.max_delay);
        // Full jitter between half and all of the exponential delay.
        let half = exp / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// One HTTP exchange (plus, for `Follow::SameOrigin`, up to
    /// [`MAX_REDIRECTS`] redirects within the origin of the first URL);
    /// non-2xx answers become `UpstreamError::Api`, a redirect that is not
    /// followed becomes `UpstreamError::Redirect`.
    async fn send(
        &self,
        key: &ApiKey,
        method: Method,
        url: &str,
        body: Option<(Bytes, &str)>,
        follow: Follow,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let http = self.http()?;
        let first = self.endpoint(url)?;
        let mut current = first.clone();
        let mut hops = 0usize;
        loop {
            let mut req = http
                .request(method.clone(), current.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            req = match self.auth {
                Auth::Bearer => req.bearer_auth(key.expose()),
                Auth::XApiKey => req.header("x-api-key", key.expose()),
            };
            if let Some((body, content_type)) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(body.clone());
            }
            let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            if status.is_redirection() {
                let next = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| current.join(v.trim()).ok());
                let refusal = match (&next, follow) {
                    (_, Follow::Never) => Some(RedirectRefusal::NotFollowed),
                    (None, _) => Some(RedirectRefusal::NoTarget),
                    (Some(n), _) if n.origin() != first.origin() => {
                        Some(RedirectRefusal::OtherOrigin)
                    }
                    _ if hops >= MAX_REDIRECTS => Some(RedirectRefusal::TooMany),
                    _ => None,
                };
                match (refusal, next) {
                    (None, Some(next)) => {
                        tracing::debug!(
                            status = status.as_u16(),
                            "following a same-origin redirect"
                        );
                        hops += 1;
                        current = next;
                        continue;
                    }
                    (refusal, next) => {
                        let suggested_base = next
                            .as_ref()
                            .and_then(|n| suggest_base(n, &first, &self.config.base_url, key));
                        return Err(UpstreamError::Redirect {
                            status: status.as_u16(),
                            target: next.as_ref().map(|n| shown_url(n, key)),
                            suggested_base,
                            refusal: refusal.unwrap_or(RedirectRefusal::NoTarget),
                        });
                    }
                }
            }
            let headers = resp.headers().clone();
            let bytes = read_capped(resp)
                .await
                .map_err(|e| self.transport_error(&e))?;
            if status.is_success() {
                return Ok((status, bytes));
            }
            return Err((self.map_error)(status, &headers, &bytes, key));
        }
    }

    /// `url` as a parsed URL: under the base, the pre-parsed base with the
    /// rest as path and query; anything else parsed in full.
    fn endpoint(&self, url: &str) -> Result<url::Url, UpstreamError> {
        if let (Some(base), Some(rest)) = (&self.base, url.strip_prefix(&self.config.base_url))
            && (rest.is_empty() || rest.starts_with('/'))
        {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let mut u = base.clone();
            let prefix = base.path().trim_end_matches('/');
            u.set_path(&format!("{prefix}{path}"));
            u.set_query(query);
            return Ok(u);
        }
        url::Url::parse(url).map_err(|e| UpstreamError::Connect {
            detail: format!("HEYGEN_API_BASE does not make a valid URL ({e})"),
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> UpstreamError {
        if e.is_connect() {
            UpstreamError::Connect {
                detail: root_cause(e),
            }
        } else if e.is_timeout() {
            UpstreamError::Timeout {
                timeout: self.config.timeout,
            }
        } else {
            UpstreamError::Transport {
                detail: root_cause(e),
            }
        }
    }
}

/// Whether `send` follows redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Never (a create: re-sending it elsewhere could buy a second video).
    Never,
    /// Up to [`MAX_REDIRECTS`] within the first URL's origin.
    SameOrigin,
}

/// A redirect target as shown to the user: no userinfo, query or fragment
/// (they may carry secrets), the key scrubbed, one short line.
pub fn shown_url(u: &url::Url, key: &ApiKey) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    one_line(&key.scrub(u.as_str()), 300)
}

/// The `HEYGEN_API_BASE` a redirect points at, when its target is the
/// requested path under another prefix or origin (`https://new/v1/tasks/x` for
/// `http://old/v1/tasks/x` suggests `https://new`).
fn suggest_base(next: &url::Url, first: &url::Url, base: &str, key: &ApiKey) -> Option<String> {
    let base_path = url::Url::parse(base)
        .ok()?
        .path()
        .trim_end_matches('/')
        .to_string();
    let endpoint = first.path().strip_prefix(&base_path)?;
    if endpoint.is_empty() || endpoint == "/" {
        return None;
    }
    let prefix = next.path().strip_suffix(endpoint)?;
    let mut b = next.clone();
    let _ = b.set_username("");
    let _ = b.set_password(None);
    b.set_query(None);
    b.set_fragment(None);
    b.set_path(prefix);
    let shown = one_line(&key.scrub(b.as_str()), 300);
    Some(shown.trim_end_matches('/').to_string())
}

pub async fn read_capped(mut resp: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_BODY {
            break;
        }
    }
    Ok(Bytes::from(buf))
}

pub fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    // reqwest's own message may contain the URL; the root cause does not.
    let s = source.to_string();
    if s.is_empty() {
        "unknown error".into()
    } else {
        s
    }
}

/// A JSON answer with anything echoing the key scrubbed.
pub fn parse_json(status: StatusCode, bytes: &[u8], key: &ApiKey) -> Result<Value, UpstreamError> {
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| UpstreamError::Decode {
        status: status.as_u16(),
        detail: key.scrub(&format!("not JSON ({e}): {}", excerpt(bytes))),
    })?;
    if key.may_appear_in(bytes) {
        key.scrub_json(&mut value);
    }
    Ok(value)
}

/// `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 §10.2.3),
/// capped at a day; a date in the past means "now".
pub fn parse_retry_after(raw: &str, now: std::time::SystemTime) -> Option<Duration> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or_default()
            .min(Duration::from_secs(86_400)),
    )
}

/// Finds `request_id: XYZ` / `request id: XYZ` / `request_id=XYZ` in a message.
pub fn find_request_id(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    for marker in ["request_id", "request id", "requestid", "request-id"] {
        if let Some(pos) = lower.find(marker) {
            let rest = &message[pos + marker.len()..];
            let rest = rest.trim_start_matches([':', '=', ' ', '"', '\'']);
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            if !id.is_empty() {
                return Some(id);
            }
        }
    }
    None
}

/// A short, printable, single-line excerpt of a body (HTML tags removed).
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if in_tag => {}
            c => out.push(c),
        }
    }
    let s = one_line(&out, EXCERPT_CHARS);
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

pub fn one_line(s: &str, max_chars: usize) -> String {
    let collapsed: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if collapsed.chars().count() > max_chars {
        let mut t: String = collapsed.chars().take(max_chars).collect();
        t.push('…');
        t
    } else {
        collapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::utf8_percent_encode;

    #[test]
    fn task_id_allowlist() {
        for ok in [
            "task-unified-1757165031-uyujaw3d",
            "a",
            "A.b_c:d-e",
            &"x".repeat(128),
        ] {
            assert!(validate_task_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../account/credits",
            "a/b",
            "a?b",
            "a#b",
            "%2e%2e",
            "a b",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(validate_task_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_are_built_from_the_parsed_base() {
        let t = |base: &str| {
            Transport::new(HttpConfig::new(base), Auth::Bearer, |_, _, _, _| {
                UpstreamError::Connect {
                    detail: String::new(),
                }
            })
        };
        for (base, path) in [
            ("https://gw.example", "/v1/tasks/a%3Ab?sync_upstream=true"),
            ("https://gw.example/prefix", "/v1/tasks/x"),
            ("http://127.0.0.1:9000", "/v3/video-agents/s-1/stop"),
        ] {
            let tr = t(base);
            let url = tr.url(path);
            assert_eq!(
                tr.endpoint(&url).unwrap(),
                url::Url::parse(&url).unwrap(),
                "{url}"
            );
        }
        assert!(
            t("https://gw.example")
                .endpoint("https://other.example/x")
                .is_ok()
        );
    }

    #[test]
    fn segment_encoding_keeps_one_segment() {
        assert_eq!(
            utf8_percent_encode("a:b.c-d_e/../x?y", SEGMENT).to_string(),
            "a:b.c-d_e%2F..%2Fx%3Fy"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT").unwrap();
        let p = |v: &str| parse_retry_after(v, now);
        assert_eq!(p("7"), Some(Duration::from_secs(7)));
        assert_eq!(p(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(
            p("Tue, 01 Dec 2026 10:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(p("Tue, 01 Dec 2026 09:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(p("999999999"), Some(Duration::from_secs(86_400)));
        for bad in ["-1", "soon", "", "NaN"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_id_is_found() {
        assert_eq!(
            find_request_id("no channel (request_id: 2025abc-9)").as_deref(),
            Some("2025abc-9")
        );
        assert_eq!(find_request_id("nothing here"), None);
    }

    #[test]
    fn excerpt_strips_html_and_truncates() {
        let html =
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>";
        assert_eq!(excerpt(html), "502 Bad Gateway 502");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), EXCERPT_CHARS + 1);
    }
}

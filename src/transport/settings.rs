//! The settings of the HTTP transport, built (and checked) by `config`.

use std::{net::SocketAddr, time::Duration};

use crate::tools::CallerKeys;

/// Default cap of live legacy sessions, overall and per caller.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;
pub const DEFAULT_MAX_SESSIONS_PER_CALLER: usize = 100;

/// HTTP settings. `Debug` shows how many caller tokens there are, never them.
#[derive(Clone)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    pub auth_tokens: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub caller_keys: CallerKeys,
    pub legacy_sessions: bool,
    pub max_body_bytes: usize,
    pub max_concurrent: usize,
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    /// Caps and idle expiry of legacy sessions.
    pub sessions: SessionLimits,
    pub connections: ConnectionLimits,
    /// OAuth sign-in; `None` = static tokens only.
    pub oauth: Option<OAuthSettings>,
}

/// Scopes an access token must carry when none are configured.
pub const DEFAULT_OAUTH_SCOPES: &str = "videos";

/// OAuth 2.1 resource-server settings (checked; the issuer is contacted at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// The authorization server's issuer identifier, exactly as its tokens carry it.
    pub issuer: String,
    /// The MCP endpoint's canonical public URL; `None` on a loopback bind
    /// without one (then `http://<bound address>/mcp`).
    pub public_url: Option<url::Url>,
    /// Audiences accepted besides the public URL.
    pub audiences: Vec<String>,
    /// Scopes every token must carry.
    pub scopes: Vec<String>,
    /// Videos per signed-in user per UTC day on the server's key.
    pub user_daily_videos: Option<u32>,
    /// This server's client id at the issuer, for token introspection.
    pub client_id: Option<String>,
    /// Its client secret (`HEYGEN_OAUTH_CLIENT_SECRET`, environment only).
    pub client_secret: Option<ClientSecret>,
}

/// A client secret: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// `None` for an empty or blank value.
    pub fn new(raw: &str) -> Option<Self> {
        let s = raw.trim();
        (!s.is_empty()).then(|| Self(s.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// Caps and idle expiry of legacy (2025-11-25 and older) HTTP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    pub max_total: usize,
    pub max_per_caller: usize,
    /// A session without any request for this long ends.
    pub idle_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_total: DEFAULT_MAX_SESSIONS,
            max_per_caller: DEFAULT_MAX_SESSIONS_PER_CALLER,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Limits on client connections, enforced before any request is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to deliver a complete request head (from the connection's start,
    /// and from the first byte of each later request).
    pub header_timeout: Duration,
    /// Time a connection may sit with no request in progress.
    pub idle_timeout: Duration,
    /// Most open connections; `None` derives it from the open-file limit.
    pub max_connections: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
        }
    }
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("addr", &self.addr)
            .field(
                "auth_tokens",
                &format_args!("[{} redacted]", self.auth_tokens.len()),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("caller_keys", &self.caller_keys)
            .field("legacy_sessions", &self.legacy_sessions)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_concurrent", &self.max_concurrent)
            .field("drain_timeout", &self.drain_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("sessions", &self.sessions)
            .field("connections", &self.connections)
            .field("oauth", &self.oauth)
            .finish()
    }
}

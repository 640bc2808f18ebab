//! Configuration: one `clap` struct, every flag also a `HEYGEN_…` environment
//! variable, and its validation into [`Settings`]. Secrets come from the
//! environment only (flags show up in `ps` and shell history). No network here.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

use crate::{
    backend::BackendKind,
    downloads::{DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_TENANT_MAX_BYTES, DEFAULT_TENANT_MAX_FILES},
    gateway::{ApiKey, GatewayConfig, RetryPolicy},
    ledger::LedgerChoice,
};
pub use crate::{
    net::is_loopback_host,
    tools::CallerKeys,
    tools::ToolSettings,
    transport::settings::{
        ClientSecret, ConnectionLimits, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_CALLER,
        DEFAULT_OAUTH_SCOPES, HttpSettings, OAuthSettings, SessionLimits,
    },
};

pub const DEFAULT_API_BASE: &str = "https://api.aihubmax.com";
/// HeyGen's own API, the default base of `--backend heygen` and of the catalogue.
pub const HEYGEN_API_BASE: &str = "https://api.heygen.com";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8000";
/// The smallest allowed cap of a server-side wait (clients with longer
/// timeouts than 60 s may use it all).
pub const MIN_MAX_WAIT_SECS: f64 = 60.0;
/// The ledger's file name inside the data folder.
pub const LEDGER_FILE: &str = "ledger.sqlite3";

const ENV_HELP: &str = "\
Environment:
  HEYGEN_API_KEY          the upstream key (environment only, never a flag): the task API's
                          bearer key, or with --backend heygen a HeyGen API key
  HEYGEN_CATALOG_KEY      a HeyGen API key for list_avatars/list_voices/list_styles beside
                          the gateway backend (environment only)
  HEYGEN_MCP_AUTH_TOKEN   HTTP callers' bearer token(s), comma-separated (environment only)
  HEYGEN_OAUTH_CLIENT_SECRET
                          with --oauth-client-id: the secret for token introspection
                          (environment only)
  RUST_LOG                log filter for stderr, e.g. info or heygen_video_mcp=debug

Every flag above can also be set through the environment variable shown with it.
Quick start without a key:  heygen-video-mcp --simulate";

/// MCP server for the HeyGen Video Agent: create talking-avatar videos from a
/// prompt, follow them to a finished MP4, save them before the link expires.
#[derive(Debug, Clone, Parser)]
#[command(name = "heygen-video-mcp", version, about, after_help = ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Which upstream API: gateway (the task API) or heygen (HeyGen's own v3 API).
    #[arg(
        long,
        env = "HEYGEN_BACKEND",
        default_value = "gateway",
        value_name = "BACKEND"
    )]
    pub backend: String,

    /// Upstream API: origin plus optional path prefix [default: the gateway's
    /// https://api.aihubmax.com, or https://api.heygen.com with --backend heygen].
    #[arg(long, env = "HEYGEN_API_BASE", value_name = "URL")]
    pub api_base: Option<String>,

    /// Where the catalogue tools read HeyGen's avatars, voices and styles beside
    /// the gateway backend (with HEYGEN_CATALOG_KEY).
    #[arg(long, env = "HEYGEN_CATALOG_BASE", default_value = HEYGEN_API_BASE, value_name = "URL")]
    pub catalog_base: String,

    /// Seconds one upstream request may take.
    #[arg(
        long,
        env = "HEYGEN_REQUEST_TIMEOUT",
        default_value_t = 30.0,
        value_name = "SECONDS"
    )]
    pub request_timeout: f64,

    /// Retries of an upstream request that failed transiently (status and credit
    /// lookups; a create is only retried when it provably was not accepted).
    #[arg(
        long,
        env = "HEYGEN_MAX_RETRIES",
        default_value_t = 3,
        value_name = "N"
    )]
    pub max_retries: u32,

    /// Longest single backoff delay between retries, in seconds (also caps an
    /// honoured Retry-After).
    #[arg(
        long,
        env = "HEYGEN_RETRY_MAX_DELAY",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub retry_max_delay: f64,

    /// Run against an embedded simulation of the chosen backend: no key, no network, fake videos.
    #[arg(long, env = "HEYGEN_SIMULATE")]
    pub simulate: bool,

    /// How long a simulated video takes to render, in seconds.
    #[arg(
        long,
        env = "HEYGEN_SIMULATE_RENDER_SECONDS",
        default_value_t = 12.0,
        value_name = "SECONDS"
    )]
    pub simulate_render_seconds: f64,

    /// Serve Streamable HTTP on ADDR (e.g. 127.0.0.1:8000) instead of stdio.
    #[arg(long, env = "HEYGEN_HTTP", value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_HTTP_ADDR)]
    pub http: Option<String>,

    /// HTTP: extra Host header values to accept (public names); loopback names are always accepted.
    #[arg(
        long = "allowed-host",
        env = "HEYGEN_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<String>,

    /// HTTP: extra Origin values to accept (e.g. https://app.example.com); loopback origins are always accepted.
    #[arg(
        long = "allowed-origin",
        env = "HEYGEN_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,

    /// HTTP: let callers bring their own upstream key in the X-HeyGen-Api-Key header.
    #[arg(long, env = "HEYGEN_CALLER_KEYS")]
    pub caller_keys: bool,

    /// HTTP: require every caller to bring its own key (no fallback to HEYGEN_API_KEY). Implies --caller-keys.
    #[arg(long, env = "HEYGEN_REQUIRE_CALLER_KEYS")]
    pub require_caller_keys: bool,

    /// HTTP: serve 2025-11-25 clients with sessions (on by default); off serves every request statelessly.
    #[arg(long, env = "HEYGEN_LEGACY_SESSIONS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub legacy_sessions: bool,

    /// HTTP: most live legacy sessions on this server; an initialize past it gets 503.
    #[arg(
        long,
        env = "HEYGEN_MAX_SESSIONS",
        default_value_t = DEFAULT_MAX_SESSIONS,
        value_name = "N"
    )]
    pub max_sessions: usize,

    /// HTTP: most live legacy sessions one caller (bearer token, plus its
    /// X-HeyGen-Api-Key with --caller-keys) may hold; an initialize past it gets 429.
    #[arg(
        long,
        env = "HEYGEN_MAX_SESSIONS_PER_CALLER",
        default_value_t = DEFAULT_MAX_SESSIONS_PER_CALLER,
        value_name = "N"
    )]
    pub max_sessions_per_caller: usize,

    /// HTTP: seconds after which a legacy session without any request ends.
    #[arg(
        long,
        env = "HEYGEN_SESSION_IDLE_TIMEOUT",
        default_value_t = 300.0,
        value_name = "SECONDS"
    )]
    pub session_idle_timeout: f64,

    /// HTTP: allow binding a non-loopback address without HEYGEN_MCP_AUTH_TOKEN (anyone who can reach it spends your credits).
    #[arg(long, env = "HEYGEN_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// HTTP: sign callers in with OAuth: the authorization server's issuer URL (its metadata is discovered at start).
    #[arg(long, env = "HEYGEN_OAUTH_ISSUER", value_name = "URL")]
    pub oauth_issuer: Option<String>,

    /// HTTP: the canonical public URL of the MCP endpoint (e.g. https://mcp.example.com/mcp); the OAuth resource and audience.
    #[arg(long, env = "HEYGEN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// HTTP with OAuth: extra accepted token audiences besides the public URL (comma-separated).
    #[arg(
        long = "oauth-audience",
        env = "HEYGEN_OAUTH_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    pub oauth_audience: Vec<String>,

    /// HTTP with OAuth: scopes every access token must carry (comma- or space-separated; empty = none).
    #[arg(
        long = "oauth-scopes",
        env = "HEYGEN_OAUTH_SCOPES",
        default_value = DEFAULT_OAUTH_SCOPES,
        value_name = "SCOPES"
    )]
    pub oauth_scopes: String,

    /// HTTP with OAuth: this server's client id at the issuer, to check opaque access tokens by introspection (RFC 7662; the secret comes from HEYGEN_OAUTH_CLIENT_SECRET).
    #[arg(long, env = "HEYGEN_OAUTH_CLIENT_ID", value_name = "ID")]
    pub oauth_client_id: Option<String>,

    /// HTTP with OAuth: videos each signed-in user may create per UTC day on the server's key (unset = no limit).
    #[arg(long, env = "HEYGEN_USER_DAILY_VIDEOS", value_name = "N")]
    pub user_daily_videos: Option<u32>,

    /// HTTP: largest accepted request body, in bytes.
    #[arg(long, env = "HEYGEN_MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// HTTP: most requests handled at once; more wait briefly, then get 503.
    #[arg(
        long,
        env = "HEYGEN_MAX_CONCURRENT",
        default_value_t = 256,
        value_name = "N"
    )]
    pub max_concurrent: usize,

    /// HTTP: seconds in-flight calls may take to finish on shutdown.
    #[arg(
        long,
        env = "HEYGEN_DRAIN_TIMEOUT",
        default_value_t = 30.0,
        value_name = "SECONDS"
    )]
    pub drain_timeout: f64,

    /// HTTP: longest time one request (its whole response stream) may take, in
    /// seconds; longer than the longest tool call.
    #[arg(
        long,
        env = "HEYGEN_HTTP_REQUEST_TIMEOUT",
        default_value_t = 600.0,
        value_name = "SECONDS"
    )]
    pub http_request_timeout: f64,

    /// HTTP: seconds a connection has to deliver a complete request head,
    /// counted from the connection's start and from the first byte of each
    /// later request; a client that trickles headers is disconnected.
    #[arg(
        long,
        env = "HEYGEN_HTTP_HEADER_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub http_header_timeout: f64,

    /// HTTP: seconds a kept-alive connection may sit with no request in
    /// progress before it is closed (a streaming response is never idle).
    #[arg(
        long,
        env = "HEYGEN_HTTP_IDLE_TIMEOUT",
        default_value_t = 60.0,
        value_name = "SECONDS"
    )]
    pub http_idle_timeout: f64,

    /// HTTP: most open client connections. At the cap a new connection
    /// replaces the oldest idle one (never-authenticated first) or, when every
    /// connection is busy, is refused. Default: min(1024, open-file limit - 64).
    #[arg(long, env = "HEYGEN_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Folder where download_video (and --auto-download) save videos. On stdio
    /// the default is ~/Downloads/heygen-videos (or the data folder when there is
    /// no Downloads folder); over HTTP saving is off unless this is set.
    #[arg(long, env = "HEYGEN_DOWNLOAD_DIR", value_name = "DIR")]
    pub download_dir: Option<PathBuf>,

    /// Save every video in the background the first time a status check sees it
    /// completed (needs a download folder).
    #[arg(long, env = "HEYGEN_AUTO_DOWNLOAD")]
    pub auto_download: bool,

    /// Longest server-side wait get_video_status accepts (wait_seconds), in
    /// seconds; longer requests are shortened to it. At least 60.
    #[arg(
        long,
        env = "HEYGEN_MAX_WAIT",
        default_value_t = 120.0,
        value_name = "SECONDS"
    )]
    pub max_wait: f64,

    /// Pause between upstream status lookups during a wait, in seconds.
    #[arg(
        long,
        env = "HEYGEN_POLL_INTERVAL",
        default_value_t = 5.0,
        value_name = "SECONDS"
    )]
    pub poll_interval: f64,

    /// During a wait with a progress token, send a progress notification at
    /// least this often, in seconds.
    #[arg(
        long,
        env = "HEYGEN_PROGRESS_HEARTBEAT",
        default_value_t = 15.0,
        value_name = "SECONDS"
    )]
    pub progress_heartbeat: f64,

    /// How long download_video waits for a download before answering, in
    /// seconds; a longer download continues in the background.
    #[arg(
        long,
        env = "HEYGEN_DOWNLOAD_DEADLINE",
        default_value_t = 40.0,
        value_name = "SECONDS"
    )]
    pub download_deadline: f64,

    /// Largest video download_video saves, in bytes.
    #[arg(
        long,
        env = "HEYGEN_MAX_DOWNLOAD_BYTES",
        default_value_t = DEFAULT_MAX_DOWNLOAD_BYTES,
        value_name = "BYTES"
    )]
    pub max_download_bytes: u64,

    /// The video ledger: a SQLite file that remembers the videos made through
    /// this server (list_videos) and protects against paying twice. Default:
    /// <data folder>/ledger.sqlite3. Several server processes may share it. A
    /// postgres:// (or postgresql://) URL keeps it in PostgreSQL instead, shared
    /// by several replicas (sslmode=require for TLS).
    #[arg(long, env = "HEYGEN_LEDGER", value_name = "PATH|URL")]
    pub ledger: Option<PathBuf>,

    /// Keep no ledger: list_videos has no history, and repeated creates are only
    /// collapsed while they run at the same moment.
    #[arg(long, env = "HEYGEN_NO_LEDGER")]
    pub no_ledger: bool,

    /// Seconds during which a create_video with identical arguments (and no
    /// idempotency_key) returns the earlier video instead of creating another;
    /// 0 turns this off (idempotency keys, identical calls at the same moment
    /// and "maybe created" blocks still work).
    #[arg(
        long,
        env = "HEYGEN_DEDUPE_WINDOW",
        default_value_t = 300.0,
        value_name = "SECONDS"
    )]
    pub dedupe_window: f64,

    /// HTTP: most video files one caller (one upstream key) may keep in its own
    /// subfolder of the download folder.
    #[arg(
        long,
        env = "HEYGEN_TENANT_DOWNLOAD_MAX_FILES",
        default_value_t = DEFAULT_TENANT_MAX_FILES,
        value_name = "N"
    )]
    pub tenant_download_max_files: usize,

    /// HTTP: most bytes one caller may keep in its own subfolder of the download folder.
    #[arg(
        long,
        env = "HEYGEN_TENANT_DOWNLOAD_MAX_BYTES",
        default_value_t = DEFAULT_TENANT_MAX_BYTES,
        value_name = "BYTES"
    )]
    pub tenant_download_max_bytes: u64,

    /// Origins the inline video player may load videos from (its CSP
    /// resourceDomains), e.g. https://cdn.example.com or https://*.example.com;
    /// repeatable. Default: the API base's origin, https://*.heygen.ai and
    /// https://*.heygen.com (plus the simulator's origin with --simulate).
    #[arg(
        long = "media-origin",
        env = "HEYGEN_MEDIA_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub media_origins: Vec<String>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Check the key, the video model, the balance, the download folder and the
    /// ledger, print the settings in force, and exit (non-zero when something is wrong).
    Check,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub backend: BackendKind,
    pub api_key: Option<ApiKey>,
    /// The upstream's HTTP settings (base URL, timeouts, retries), whichever backend.
    pub gateway: GatewayConfig,
    /// Where the catalogue is read beside the gateway backend.
    pub catalog_base: String,
    /// `HEYGEN_CATALOG_KEY`: the catalogue tools beside the gateway backend.
    pub catalog_key: Option<ApiKey>,
    pub simulate: bool,
    pub simulate_render: Duration,
    pub http: Option<HttpSettings>,
    /// Waits, progress and downloads (issue 4).
    pub tools: ToolSettings,
    /// Where the task ledger lives (issue 5).
    pub ledger: LedgerChoice,
    /// Problems worth a warning at start (never fatal).
    pub warnings: Vec<String>,
}

impl Cli {
    /// Validates the flags together with the secrets read from the environment.
    pub fn into_settings(
        self,
        api_key: Option<String>,
        auth_tokens: Option<String>,
    ) -> Result<Settings, String> {
        let mut warnings = Vec::new();
        let chosen = if self.backend.trim().is_empty() {
            "gateway"
        } else {
            self.backend.as_str()
        };
        let backend = BackendKind::parse(chosen).ok_or_else(|| {
            format!(
                "--backend / HEYGEN_BACKEND is {:?}; use gateway (the task API) or heygen \
                 (HeyGen's own API with a HeyGen API key)",
                self.backend
            )
        })?;
        let default_base = match backend {
            BackendKind::Gateway => DEFAULT_API_BASE,
            BackendKind::Heygen => HEYGEN_API_BASE,
        };
        let base_url = normalize_api_base(
            self.api_base
                .as_deref()
                .filter(|b| !b.trim().is_empty())
                .unwrap_or(default_base),
            backend,
            &mut warnings,
        )?;
        let catalog_base =
            normalize_api_base(&self.catalog_base, BackendKind::Heygen, &mut warnings)
                .map_err(|e| e.replace("HEYGEN_API_BASE", "HEYGEN_CATALOG_BASE"))?;
        let timeout = seconds("--request-timeout", self.request_timeout, 0.05, 3600.0)?;
        let retry_max = seconds("--retry-max-delay", self.retry_max_delay, 0.0, 600.0)?;
        let mut gateway = GatewayConfig::new(base_url);
        gateway.timeout = timeout;
        gateway.connect_timeout = timeout.min(Duration::from_secs(10));
        gateway.retry = RetryPolicy {
            max_attempts: self.max_retries.saturating_add(1).min(20),
            base_delay: Duration::from_millis(500).min(retry_max),
            max_delay: retry_max,
            // One lookup (all attempts) fits a 60 s client timeout, unless the
            // operator raised the per-request timeout above it.
            lookup_budget: timeout.max(Duration::from_secs(40)),
            ..RetryPolicy::default()
        };
        let simulate_render = seconds(
            "--simulate-render-seconds",
            self.simulate_render_seconds,
            0.0,
            3600.0,
        )?;

        let http = match &self.http {
            None => None,
            Some(addr) => {
                let addr: SocketAddr = addr.trim().parse().map_err(|_| {
                    format!(
                        "--http / HEYGEN_HTTP: {addr:?} is not an address; use HOST:PORT with an IP, \
                         e.g. 127.0.0.1:8000 or 0.0.0.0:8000"
                    )
                })?;
                let auth_tokens: Vec<String> = auth_tokens
                    .unwrap_or_default()
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                let oauth = self.oauth_settings(addr)?;
                if !addr.ip().is_loopback()
                    && auth_tokens.is_empty()
                    && oauth.is_none()
                    && !self.insecure_no_auth
                {
                    return Err(format!(
                        "refusing to serve HTTP on the non-loopback address {addr} without caller \
                         authentication: anyone who can reach it could spend your credits. Set \
                         HEYGEN_MCP_AUTH_TOKEN to one or more secret tokens (comma-separated) that \
                         callers send as 'Authorization: Bearer <token>', or bind 127.0.0.1, or \
                         pass --insecure-no-auth if another layer authenticates callers."
                    ));
                }
                if self.max_body_bytes < 1024 {
                    return Err("--max-body-bytes must be at least 1024".into());
                }
                if self.max_concurrent == 0 {
                    return Err("--max-concurrent must be at least 1".into());
                }
                if self.max_sessions == 0 || self.max_sessions_per_caller == 0 {
                    return Err(
                        "--max-sessions and --max-sessions-per-caller must be at least 1 \
                         (use --legacy-sessions false to serve without sessions)"
                            .into(),
                    );
                }
                if self.max_connections == Some(0) {
                    return Err(
                        "--max-connections must be at least 1 (leave it unset for the \
                                default derived from the open-file limit)"
                            .into(),
                    );
                }
                let caller_keys = if self.require_caller_keys {
                    CallerKeys::Required
                } else if self.caller_keys {
                    CallerKeys::Optional
                } else {
                    CallerKeys::Off
                };
                Some(HttpSettings {
                    addr,
                    auth_tokens,
                    allowed_hosts: clean_list(&self.allowed_hosts),
                    allowed_origins: clean_list(&self.allowed_origins)
                        .into_iter()
                        .map(|o| o.trim_end_matches('/').to_string())
                        .collect(),
                    caller_keys,
                    legacy_sessions: self.legacy_sessions,
                    max_body_bytes: self.max_body_bytes,
                    max_concurrent: self.max_concurrent,
                    drain_timeout: seconds("--drain-timeout", self.drain_timeout, 0.0, 3600.0)?,
                    request_timeout: seconds(
                        "--http-request-timeout",
                        self.http_request_timeout,
                        1.0,
                        86_400.0,
                    )?,
                    sessions: SessionLimits {
                        max_total: self.max_sessions,
                        max_per_caller: self.max_sessions_per_caller,
                        idle_timeout: seconds(
                            "--session-idle-timeout",
                            self.session_idle_timeout,
                            1.0,
                            86_400.0,
                        )?,
                    },
                    connections: ConnectionLimits {
                        header_timeout: seconds(
                            "--http-header-timeout",
                            self.http_header_timeout,
                            0.1,
                            3600.0,
                        )?,
                        idle_timeout: seconds(
                            "--http-idle-timeout",
                            self.http_idle_timeout,
                            0.1,
                            86_400.0,
                        )?,
                        max_connections: self.max_connections,
                    },
                    oauth,
                })
            }
        };
        if http.as_ref().is_none_or(|h| h.oauth.is_none())
            && (self.public_url.is_some() || self.user_daily_videos.is_some())
        {
            warnings.push(
                "HEYGEN_PUBLIC_URL and HEYGEN_USER_DAILY_VIDEOS only apply to --http with \
                 HEYGEN_OAUTH_ISSUER; they are ignored"
                    .into(),
            );
        }
        if http.is_none() && (self.caller_keys || self.require_caller_keys) {
            warnings.push(
                "--caller-keys only applies to --http; on stdio the server's HEYGEN_API_KEY is used"
                    .into(),
            );
        }

        let tools = self.tool_settings(
            http.is_some(),
            default_download_dir(home_dir(), default_data_dir()),
            &mut warnings,
        )?;
        let configured = clean_list(&self.media_origins)
            .iter()
            .map(|o| crate::tools::player::normalize_media_origin(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--media-origin / HEYGEN_MEDIA_ORIGINS: {e}"))?;
        let mut tools = tools;
        tools.media_origins = crate::tools::player::media_origins(&configured, &gateway.base_url);
        let ledger = self.ledger_choice(default_data_dir(), &mut warnings)?;

        Ok(Settings {
            backend,
            api_key: api_key.and_then(ApiKey::new),
            gateway,
            catalog_base,
            catalog_key: None,
            simulate: self.simulate,
            simulate_render,
            http,
            tools,
            ledger,
            warnings,
        })
    }
}

impl Cli {
    /// The OAuth settings of an HTTP server bound to `addr`, checked.
    fn oauth_settings(&self, addr: SocketAddr) -> Result<Option<OAuthSettings>, String> {
        let Some(issuer) = self
            .oauth_issuer
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
        else {
            return Ok(None);
        };
        let parsed = url::Url::parse(issuer).map_err(|e| {
            format!("HEYGEN_OAUTH_ISSUER: {issuer:?} is not a URL ({e}); use the issuer URL of your authorization server, e.g. https://login.example.com/")
        })?;
        let loopback = |u: &url::Url| u.host_str().is_some_and(is_loopback_host);
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback(&parsed)) {
            return Err(format!(
                "HEYGEN_OAUTH_ISSUER: {issuer:?} must be an https URL (plain http only on loopback)"
            ));
        }
        let public_url = match self
            .public_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            None if !addr.ip().is_loopback() => {
                return Err(format!(
                    "HEYGEN_PUBLIC_URL is required with HEYGEN_OAUTH_ISSUER on the non-loopback \
                     address {addr}: set it to the public https URL of the MCP endpoint that \
                     clients use, e.g. https://mcp.example.com/mcp (tokens must name it as their \
                     audience)"
                ));
            }
            None => None,
            Some(raw) => {
                let u = url::Url::parse(raw).map_err(|e| {
                    format!("HEYGEN_PUBLIC_URL: {raw:?} is not a URL ({e}); use e.g. https://mcp.example.com/mcp")
                })?;
                if u.scheme() != "https" && !(u.scheme() == "http" && loopback(&u)) {
                    return Err(format!(
                        "HEYGEN_PUBLIC_URL: {raw:?} must be an https URL (plain http only on a \
                         loopback host): OAuth clients refuse to send tokens elsewhere"
                    ));
                }
                if u.fragment().is_some() || u.query().is_some() {
                    return Err(format!(
                        "HEYGEN_PUBLIC_URL: {raw:?} must have no query or fragment"
                    ));
                }
                Some(u)
            }
        };
        let scopes: Vec<String> = self
            .oauth_scopes
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if self.user_daily_videos == Some(0) {
            return Err(
                "HEYGEN_USER_DAILY_VIDEOS must be at least 1 (leave it unset for no limit)".into(),
            );
        }
        Ok(Some(OAuthSettings {
            issuer: issuer.to_string(),
            public_url,
            audiences: clean_list(&self.oauth_audience),
            scopes,
            user_daily_videos: self.user_daily_videos,
            client_id: self
                .oauth_client_id
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            client_secret: None,
        }))
    }

    /// Where the ledger lives: off with `--no-ledger`; a temporary one with
    /// `--simulate` (fake tasks never enter the real ledger); the configured
    /// file; else `<data dir>/ledger.sqlite3`.
    fn ledger_choice(
        &self,
        data_dir: Option<PathBuf>,
        warnings: &mut Vec<String>,
    ) -> Result<LedgerChoice, String> {
        if self.no_ledger {
            return Ok(LedgerChoice::Off);
        }
        if self.simulate {
            return Ok(LedgerChoice::Memory);
        }
        match &self.ledger {
            Some(p)
                if p.to_str()
                    .is_some_and(crate::ledger::postgres::is_postgres_url) =>
            {
                let url = p.to_str().unwrap_or_default();
                crate::ledger::PostgresUrl::parse(url)
                    .map(LedgerChoice::Postgres)
                    .map_err(|e| format!("--ledger / HEYGEN_LEDGER: {e}"))
            }
            Some(p) if !p.as_os_str().is_empty() => {
                let p = expand_home(p, home_dir());
                if p.is_relative() {
                    return Err(format!(
                        "--ledger / HEYGEN_LEDGER must be an absolute file path or a \
                         postgres:// URL, got {}",
                        p.display()
                    ));
                }
                Ok(LedgerChoice::File(p))
            }
            _ => match data_dir {
                Some(d) => Ok(LedgerChoice::File(d.join(LEDGER_FILE))),
                None => {
                    warnings.push(
                        "no data folder (HOME / XDG_DATA_HOME unset): running without a video ledger; \
                         set HEYGEN_LEDGER to a file path to keep one"
                            .into(),
                    );
                    Ok(LedgerChoice::Off)
                }
            },
        }
    }

    /// Validates the wait, progress and download flags. `stdio_default` is the
    /// per-user folder used on stdio when no folder is configured.
    fn tool_settings(
        &self,
        http_mode: bool,
        stdio_default: Option<PathBuf>,
        warnings: &mut Vec<String>,
    ) -> Result<ToolSettings, String> {
        let max_wait = seconds("--max-wait", self.max_wait, MIN_MAX_WAIT_SECS, 3600.0)?;
        let poll_interval = seconds("--poll-interval", self.poll_interval, 0.05, 300.0)?;
        let progress_heartbeat =
            seconds("--progress-heartbeat", self.progress_heartbeat, 0.05, 300.0)?;
        let download_deadline =
            seconds("--download-deadline", self.download_deadline, 0.05, 3600.0)?;
        if self.max_download_bytes == 0 {
            return Err("--max-download-bytes must be at least 1".into());
        }
        let dedupe_window = seconds("--dedupe-window", self.dedupe_window, 0.0, 86_400.0)?;
        if self.tenant_download_max_files == 0 || self.tenant_download_max_bytes == 0 {
            return Err(
                "--tenant-download-max-files and --tenant-download-max-bytes must be at least 1"
                    .into(),
            );
        }
        let configured = match &self.download_dir {
            None => None,
            Some(d) if d.as_os_str().is_empty() => None,
            Some(d) => {
                let d = expand_home(d, home_dir());
                if d.is_relative() {
                    return Err(format!(
                        "--download-dir / HEYGEN_DOWNLOAD_DIR must be an absolute path, got {}",
                        d.display()
                    ));
                }
                Some(d)
            }
        };
        let download_dir_configured = configured.is_some();
        let download_dir = match configured {
            Some(d) => Some(d),
            None if http_mode => None,
            None => stdio_default,
        };
        if self.auto_download && download_dir.is_none() {
            warnings.push(
                "--auto-download needs a download folder (--download-dir / HEYGEN_DOWNLOAD_DIR); \
                 videos will not be saved automatically"
                    .into(),
            );
        }
        Ok(ToolSettings {
            download_dir,
            download_dir_configured,
            auto_download: self.auto_download,
            max_wait,
            poll_interval,
            progress_heartbeat,
            download_deadline,
            max_download_bytes: self.max_download_bytes,
            dedupe_window,
            tenant_download_max_files: self.tenant_download_max_files,
            tenant_download_max_bytes: self.tenant_download_max_bytes,
            media_origins: Vec::new(),
        })
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// `~/x` → `<home>/x` (a shell does this, an MCP client's "env" block does not).
fn expand_home(p: &std::path::Path, home: Option<PathBuf>) -> PathBuf {
    match (p.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p.to_path_buf(),
    }
}

/// The per-user default download folder on stdio: `~/Downloads/heygen-videos`
/// when `~/Downloads` exists, otherwise `<data dir>/videos`.
pub fn default_download_dir(home: Option<PathBuf>, data_dir: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(home) = home {
        let downloads = home.join("Downloads");
        if downloads.is_dir() {
            return Some(downloads.join("heygen-videos"));
        }
    }
    data_dir.map(|d| d.join("videos"))
}

fn clean_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn seconds(name: &str, v: f64, min: f64, max: f64) -> Result<Duration, String> {
    if !v.is_finite() || v < min || v > max {
        return Err(format!(
            "{name} must be between {min} and {max} seconds, got {v}"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Checks `HEYGEN_API_BASE`: absolute http(s) URL, no query or fragment, plain
/// http only for loopback hosts; strips a trailing `/` and the version
/// segment the backend adds itself (`/v1`, or `/v3` for HeyGen; with a warning).
pub fn normalize_api_base(
    raw: &str,
    backend: BackendKind,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).map_err(|e| {
        format!("HEYGEN_API_BASE {raw:?} is not a URL ({e}); expected e.g. {DEFAULT_API_BASE}")
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    if host.is_empty() {
        return Err(format!("HEYGEN_API_BASE {raw:?} has no host"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            return Err(format!(
                "HEYGEN_API_BASE {raw:?} uses plain http to a non-loopback host: the API key would \
                 travel unencrypted. Use https://"
            ));
        }
        other => {
            return Err(format!(
                "HEYGEN_API_BASE {raw:?} has scheme {other:?}; use https://"
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "HEYGEN_API_BASE {raw:?} must not carry a query or fragment"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("HEYGEN_API_BASE must not contain credentials; set HEYGEN_API_KEY".into());
    }
    let mut base = url.as_str().trim_end_matches('/').to_string();
    let version = match backend {
        BackendKind::Gateway => "/v1",
        BackendKind::Heygen => "/v3",
    };
    if let Some(stripped) = base.strip_suffix(version) {
        warnings.push(format!(
            "HEYGEN_API_BASE ends in {version}; using {stripped} (the server adds {version} itself)"
        ));
        base = stripped.to_string();
    }
    Ok(base)
}

/// The per-user data folder of the server (`$XDG_DATA_HOME/heygen-video-mcp`,
/// else `~/.local/share/heygen-video-mcp`; when XDG_DATA_HOME is unset, on
/// Windows `%LOCALAPPDATA%\heygen-video-mcp` and on macOS
/// `~/Library/Application Support/heygen-video-mcp`).
pub fn default_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(platform_data_home)
        .map(|d| d.join("heygen-video-mcp"))
}

#[cfg(windows)]
fn platform_data_home() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home_dir().map(|h| h.join(".local/share")))
}

#[cfg(target_os = "macos")]
fn platform_data_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join("Library/Application Support"))
}

#[cfg(not(any(windows, target_os = "macos")))]
fn platform_data_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["heygen-video-mcp"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).into_settings(None, None).unwrap();
        assert_eq!(s.gateway.base_url, DEFAULT_API_BASE);
        assert_eq!(s.gateway.timeout, Duration::from_secs(30));
        assert!(s.api_key.is_none());
        assert!(s.http.is_none());
        assert!(!s.simulate);
    }

    #[test]
    fn api_base_rules() {
        let mut w = Vec::new();
        assert_eq!(
            normalize_api_base(
                "https://gw.example/prefix/v1/",
                BackendKind::Gateway,
                &mut w
            )
            .unwrap(),
            "https://gw.example/prefix"
        );
        assert_eq!(w.len(), 1);
        assert_eq!(
            normalize_api_base("http://127.0.0.1:9000", BackendKind::Gateway, &mut w).unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(normalize_api_base("http://localhost:1/", BackendKind::Gateway, &mut w).is_ok());
        assert!(normalize_api_base("http://gw.example", BackendKind::Gateway, &mut w).is_err());
        assert!(normalize_api_base("ftp://gw.example", BackendKind::Gateway, &mut w).is_err());
        assert!(normalize_api_base("gw.example", BackendKind::Gateway, &mut w).is_err());
        assert!(
            normalize_api_base("https://gw.example/?x=1", BackendKind::Gateway, &mut w).is_err()
        );
        assert!(
            normalize_api_base("https://u:p@gw.example/", BackendKind::Gateway, &mut w).is_err()
        );
    }

    #[test]
    fn the_introspection_client_is_read_and_its_secret_never_shown() {
        let s = parse(&[
            "--http",
            "127.0.0.1:0",
            "--oauth-issuer",
            "https://login.example.com/",
            "--oauth-client-id",
            " heygen-rs ",
        ])
        .into_settings(None, None)
        .unwrap();
        let oauth = s.http.unwrap().oauth.unwrap();
        assert_eq!(oauth.client_id.as_deref(), Some("heygen-rs"));
        assert!(oauth.client_secret.is_none());
        let secret = ClientSecret::new(" s3cret-value ").unwrap();
        assert_eq!(secret.expose(), "s3cret-value");
        assert!(!format!("{secret:?}").contains("s3cret"));
        assert!(ClientSecret::new("  ").is_none());
    }

    #[test]
    fn blank_key_is_no_key() {
        let s = parse(&[]).into_settings(Some("  ".into()), None).unwrap();
        assert!(s.api_key.is_none());
    }

    #[test]
    fn bad_timeout_is_refused() {
        assert!(
            parse(&["--request-timeout", "0"])
                .into_settings(None, None)
                .is_err()
        );
        assert!(
            parse(&["--request-timeout", "NaN"])
                .into_settings(None, None)
                .is_err()
        );
    }

    #[test]
    fn http_non_loopback_needs_a_token_or_explicit_opt_out() {
        let err = parse(&["--http", "0.0.0.0:8000"])
            .into_settings(None, None)
            .unwrap_err();
        assert!(err.contains("HEYGEN_MCP_AUTH_TOKEN"), "{err}");
        let ok = parse(&["--http", "0.0.0.0:8000"])
            .into_settings(None, Some("t1, t2".into()))
            .unwrap();
        assert_eq!(ok.http.unwrap().auth_tokens, vec!["t1", "t2"]);
        assert!(
            parse(&["--http", "0.0.0.0:8000", "--insecure-no-auth"])
                .into_settings(None, None)
                .is_ok()
        );
        let local = parse(&["--http", "127.0.0.1:0"])
            .into_settings(None, None)
            .unwrap();
        assert!(local.http.unwrap().auth_tokens.is_empty());
    }

    #[test]
    fn connection_limits_have_defaults_and_are_validated() {
        let h = parse(&["--http", "127.0.0.1:0"])
            .into_settings(None, None)
            .unwrap()
            .http
            .unwrap();
        assert_eq!(h.connections, ConnectionLimits::default());
        let h = parse(&[
            "--http",
            "127.0.0.1:0",
            "--http-header-timeout",
            "2.5",
            "--http-idle-timeout",
            "30",
            "--max-connections",
            "20",
        ])
        .into_settings(None, None)
        .unwrap()
        .http
        .unwrap();
        assert_eq!(h.connections.header_timeout, Duration::from_millis(2500));
        assert_eq!(h.connections.idle_timeout, Duration::from_secs(30));
        assert_eq!(h.connections.max_connections, Some(20));
        for bad in [
            &["--max-connections", "0"][..],
            &["--http-header-timeout", "0"][..],
            &["--http-idle-timeout", "0.01"][..],
        ] {
            let mut a = vec!["--http", "127.0.0.1:0"];
            a.extend_from_slice(bad);
            let err = parse(&a).into_settings(None, None).unwrap_err();
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn http_flag_alone_uses_default_address() {
        let s = parse(&["--http"]).into_settings(None, None).unwrap();
        assert_eq!(s.http.unwrap().addr.to_string(), DEFAULT_HTTP_ADDR);
        assert!(
            parse(&["--http", "nonsense"])
                .into_settings(None, None)
                .is_err()
        );
    }

    #[test]
    fn debug_never_shows_caller_tokens() {
        let s = parse(&["--http", "127.0.0.1:0"])
            .into_settings(
                Some("the-api-key-123".into()),
                Some("tok-secret-1,tok-secret-2".into()),
            )
            .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("tok-secret") && !shown.contains("the-api-key"),
            "{shown}"
        );
        assert!(shown.contains("[2 redacted]"), "{shown}");
    }

    #[test]
    fn caller_key_modes() {
        let h = |args: &[&str]| {
            let mut a = vec!["--http", "127.0.0.1:0"];
            a.extend_from_slice(args);
            parse(&a)
                .into_settings(None, None)
                .unwrap()
                .http
                .unwrap()
                .caller_keys
        };
        assert_eq!(h(&[]), CallerKeys::Off);
        assert_eq!(h(&["--caller-keys"]), CallerKeys::Optional);
        assert_eq!(h(&["--require-caller-keys"]), CallerKeys::Required);
    }

    #[test]
    fn lists_are_split_and_cleaned() {
        let s = parse(&[
            "--http",
            "127.0.0.1:0",
            "--allowed-host",
            "mcp.example.com, other.example",
            "--allowed-origin",
            "https://app.example.com/",
        ])
        .into_settings(None, None)
        .unwrap();
        let h = s.http.unwrap();
        assert_eq!(h.allowed_hosts, vec!["mcp.example.com", "other.example"]);
        assert_eq!(h.allowed_origins, vec!["https://app.example.com"]);
    }

    #[test]
    fn tool_defaults() {
        let s = parse(&[]).into_settings(None, None).unwrap();
        let t = s.tools;
        assert_eq!(t.max_wait, Duration::from_secs(120));
        assert_eq!(t.poll_interval, Duration::from_secs(5));
        assert_eq!(t.progress_heartbeat, Duration::from_secs(15));
        assert!(t.download_deadline < Duration::from_secs(45));
        assert_eq!(t.max_download_bytes, DEFAULT_MAX_DOWNLOAD_BYTES);
        assert!(!t.auto_download);
        assert!(!t.download_dir_configured);
    }

    #[test]
    fn wait_cap_is_at_least_sixty_seconds() {
        assert!(
            parse(&["--max-wait", "59"])
                .into_settings(None, None)
                .is_err()
        );
        let s = parse(&["--max-wait", "60"])
            .into_settings(None, None)
            .unwrap();
        assert_eq!(s.tools.max_wait, Duration::from_secs(60));
        assert!(
            parse(&["--max-wait", "inf"])
                .into_settings(None, None)
                .is_err()
        );
    }

    #[test]
    fn timings_are_validated() {
        for args in [
            ["--poll-interval", "0"],
            ["--poll-interval=-1", "--max-wait=120"],
            ["--progress-heartbeat", "0"],
            ["--download-deadline", "NaN"],
            ["--max-download-bytes", "0"],
        ] {
            assert!(parse(&args).into_settings(None, None).is_err(), "{args:?}");
        }
        let s = parse(&[
            "--poll-interval",
            "0.2",
            "--progress-heartbeat",
            "0.5",
            "--download-deadline",
            "1.5",
            "--max-download-bytes",
            "1000",
            "--auto-download",
        ])
        .into_settings(None, None)
        .unwrap();
        assert_eq!(s.tools.poll_interval, Duration::from_millis(200));
        assert_eq!(s.tools.progress_heartbeat, Duration::from_millis(500));
        assert_eq!(s.tools.download_deadline, Duration::from_millis(1500));
        assert_eq!(s.tools.max_download_bytes, 1000);
        assert!(s.tools.auto_download);
    }

    #[test]
    fn download_dir_on_stdio_and_http() {
        let dir = std::env::temp_dir().join("heygen-test-downloads");
        let d = dir.to_str().unwrap();
        let s = parse(&["--download-dir", d])
            .into_settings(None, None)
            .unwrap();
        assert_eq!(s.tools.download_dir.as_deref(), Some(dir.as_path()));
        assert!(s.tools.download_dir_configured);
        // Over HTTP saving is off unless a folder is configured.
        let h = parse(&["--http", "127.0.0.1:0"])
            .into_settings(None, None)
            .unwrap();
        assert_eq!(h.tools.download_dir, None);
        let h = parse(&["--http", "127.0.0.1:0", "--download-dir", d])
            .into_settings(None, None)
            .unwrap();
        assert_eq!(h.tools.download_dir.as_deref(), Some(dir.as_path()));
        // Relative folders are refused (the client's working directory is arbitrary).
        assert!(
            parse(&["--download-dir", "videos"])
                .into_settings(None, None)
                .is_err()
        );
        // --auto-download without a folder over HTTP only warns.
        let w = parse(&["--http", "127.0.0.1:0", "--auto-download"])
            .into_settings(None, None)
            .unwrap();
        assert!(w.warnings.iter().any(|w| w.contains("--auto-download")));
    }

    #[test]
    fn ledger_location() {
        let mut w = Vec::new();
        let data = Some(PathBuf::from("/data/heygen-video-mcp"));
        let choice =
            |args: &[&str], w: &mut Vec<String>| parse(args).ledger_choice(data.clone(), w);
        assert_eq!(
            choice(&[], &mut w).unwrap(),
            LedgerChoice::File(PathBuf::from("/data/heygen-video-mcp/ledger.sqlite3"))
        );
        assert_eq!(
            choice(&["--ledger", "/tmp/l.db"], &mut w).unwrap(),
            LedgerChoice::File(PathBuf::from("/tmp/l.db"))
        );
        assert_eq!(
            choice(&["--ledger", "/tmp/l.db", "--no-ledger"], &mut w).unwrap(),
            LedgerChoice::Off
        );
        // Simulated tasks never enter the real ledger.
        assert_eq!(
            choice(&["--ledger", "/tmp/l.db", "--simulate"], &mut w).unwrap(),
            LedgerChoice::Memory
        );
        assert!(choice(&["--ledger", "l.db"], &mut w).is_err());
        for url in [
            "postgres://app:pw@db.example.com/heygen",
            "postgresql://app@db.example.com:6432/heygen?sslmode=require",
        ] {
            match choice(&["--ledger", url], &mut w).unwrap() {
                LedgerChoice::Postgres(u) => assert!(!u.redacted().contains(":pw@")),
                other => panic!("{other:?}"),
            }
        }
        let bad = choice(
            &["--ledger", "postgres://app:pw@db/x?sslmode=sometimes"],
            &mut w,
        )
        .unwrap_err();
        assert!(
            bad.contains("HEYGEN_LEDGER") && !bad.contains(":pw@"),
            "{bad}"
        );
        assert!(w.is_empty());
        assert_eq!(
            parse(&[]).ledger_choice(None, &mut w).unwrap(),
            LedgerChoice::Off
        );
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn dedupe_window_is_validated() {
        let s = parse(&[]).into_settings(None, None).unwrap();
        assert_eq!(s.tools.dedupe_window, Duration::from_secs(300));
        let s = parse(&["--dedupe-window", "0"])
            .into_settings(None, None)
            .unwrap();
        assert_eq!(s.tools.dedupe_window, Duration::ZERO);
        assert!(
            parse(&["--dedupe-window=-1"])
                .into_settings(None, None)
                .is_err()
        );
    }

    #[test]
    fn stdio_default_download_dir() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("data");
        // No ~/Downloads: the data folder.
        assert_eq!(
            default_download_dir(Some(home.path().into()), Some(data.clone())),
            Some(data.join("videos"))
        );
        std::fs::create_dir(home.path().join("Downloads")).unwrap();
        assert_eq!(
            default_download_dir(Some(home.path().into()), Some(data)),
            Some(home.path().join("Downloads").join("heygen-videos"))
        );
        assert_eq!(default_download_dir(None, None), None);
        assert_eq!(
            expand_home(std::path::Path::new("~/v"), Some(PathBuf::from("/home/u"))),
            PathBuf::from("/home/u/v")
        );
    }
}

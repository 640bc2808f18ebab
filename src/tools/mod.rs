//! The MCP-facing tools and the shared state behind them. `VideoServer` is
//! cheap to clone (one `Arc`), because the HTTP transport builds one per
//! stateless request; the tool router is built once per process.

pub mod advice;
pub mod budget;
pub mod catalog;
pub mod create;
pub mod credits;
pub mod download;
pub mod files;
pub mod idempotency;
pub mod list;
pub mod player;
pub mod progress;
pub mod schema;
pub mod status;
pub mod tasks;
pub mod view;

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use rmcp::{
    handler::server::router::tool::ToolRouter,
    service::{RequestContext, RoleServer},
};

use crate::{
    backend::{ApiKey, BackendKind, Capabilities, Catalog, UpstreamError, VideoBackend},
    downloads::{DEFAULT_MAX_DOWNLOAD_BYTES, TenantQuota},
    ledger::Ledger,
};

pub use budget::UserBudget;
pub use download::Downloads;
pub use idempotency::Creates;
pub use view::{VideoStatus, VideoTask};

/// Header in which an HTTP caller may bring its own upstream key.
pub const CALLER_KEY_HEADER: &str = "x-heygen-api-key";

/// How callers over HTTP may supply their own upstream key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerKeys {
    /// Only the server's key is used.
    #[default]
    Off,
    /// A caller's `X-HeyGen-Api-Key` wins; otherwise the server's key.
    Optional,
    /// Every caller must send `X-HeyGen-Api-Key`.
    Required,
}

/// Validated settings of the bounded wait, progress and downloads.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSettings {
    /// Where videos are saved: the configured folder, or on stdio the per-user
    /// default; `None` means saving is off (HTTP without a configured folder).
    pub download_dir: Option<PathBuf>,
    /// Whether the folder was configured explicitly (not the stdio default).
    pub download_dir_configured: bool,
    pub auto_download: bool,
    pub max_wait: Duration,
    pub poll_interval: Duration,
    pub progress_heartbeat: Duration,
    pub download_deadline: Duration,
    pub max_download_bytes: u64,
    /// Identical creates without an idempotency key within this window are one.
    pub dedupe_window: Duration,
    /// HTTP: per-caller limits of the download folder.
    pub tenant_download_max_files: usize,
    pub tenant_download_max_bytes: u64,
    /// Origins the inline player may load videos from (validated; defaults
    /// applied). With `--simulate` the simulator's origin is added at start.
    pub media_origins: Vec<String>,
}

/// Options that shape the tools' behaviour.
#[derive(Debug, Clone)]
pub struct ToolOptions {
    /// Whether and how HTTP callers bring their own key.
    pub caller_keys: CallerKeys,
    /// The server speaks Streamable HTTP: saved files land on the server's
    /// disk, so download_video refuses unless a folder is configured.
    pub http_mode: bool,
    /// Where videos are saved; `None` turns saving off.
    pub download_dir: Option<PathBuf>,
    /// Save a video in the background the first time a status check sees it
    /// completed (once per task per process).
    pub auto_download: bool,
    /// Cap of `wait_seconds` (longer waits are shortened to it).
    pub max_wait: Duration,
    /// Pause between status lookups during a wait.
    pub poll_interval: Duration,
    /// Longest gap between progress notifications during a wait.
    pub progress_heartbeat: Duration,
    /// How long download_video waits before answering that the download
    /// continues in the background.
    pub download_deadline: Duration,
    /// Largest file download_video saves.
    pub max_download_bytes: u64,
    /// Process-wide download bookkeeping (running downloads, auto-download once
    /// per task, cleaned folders). A fresh default is empty.
    pub downloads: Downloads,
    /// The task ledger (history, idempotency keys, dedupe); `None` = no ledger.
    pub ledger: Option<Arc<dyn Ledger>>,
    /// Identical create_video arguments (without an idempotency_key) within
    /// this window answer with the earlier task; zero turns it off.
    pub dedupe_window: Duration,
    /// Creates in flight in this process, so identical concurrent calls
    /// collapse into one upstream create even without a ledger.
    pub creates: Creates,
    /// Videos a signed-in user may create per UTC day on the server's key.
    pub user_budget: UserBudget,
    /// Origins the inline player may load videos from (its CSP).
    pub media_origins: Vec<String>,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self {
            caller_keys: CallerKeys::Off,
            http_mode: false,
            download_dir: None,
            auto_download: false,
            max_wait: Duration::from_secs(120),
            poll_interval: Duration::from_secs(5),
            progress_heartbeat: Duration::from_secs(15),
            download_deadline: Duration::from_secs(40),
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            downloads: Downloads::default(),
            ledger: None,
            dedupe_window: Duration::from_secs(300),
            creates: Creates::default(),
            user_budget: UserBudget::default(),
            media_origins: Vec::new(),
        }
    }
}

impl ToolOptions {
    /// The options from validated settings; `http_mode` says whether the server
    /// serves Streamable HTTP.
    pub fn from_settings(tools: &ToolSettings, http_mode: bool) -> Self {
        Self {
            http_mode,
            download_dir: tools.download_dir.clone(),
            auto_download: tools.auto_download,
            max_wait: tools.max_wait,
            poll_interval: tools.poll_interval,
            progress_heartbeat: tools.progress_heartbeat,
            download_deadline: tools.download_deadline,
            max_download_bytes: tools.max_download_bytes,
            dedupe_window: tools.dedupe_window,
            media_origins: tools.media_origins.clone(),
            downloads: Downloads::with_tenant_quota(TenantQuota {
                max_files: tools.tenant_download_max_files,
                max_bytes: tools.tenant_download_max_bytes,
            }),
            ..Self::default()
        }
    }
}

/// A caller signed in with OAuth: the token's issuer and subject. The HTTP
/// guard puts it into the request's extensions after validating the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
}

impl Principal {
    /// The caller's tenant: `oauth-` and a SHA-256 prefix of issuer and
    /// subject (safe as a folder name, never reversible to the subject).
    pub fn tenant(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.issuer.as_bytes());
        h.update(b"\n");
        h.update(self.subject.as_bytes());
        let hex: String = h
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("oauth-{hex}")
    }
}

/// The catalogue tools' source: the backend's own, or HeyGen's read with a
/// separate key (`HEYGEN_CATALOG_KEY`) beside the gateway.
#[derive(Debug, Clone)]
pub struct CatalogAccess {
    pub catalog: Arc<dyn Catalog>,
    /// `None`: the caller's key (the backend's own catalogue).
    pub key: Option<ApiKey>,
}

/// State shared by every server instance of the process.
#[derive(Debug)]
pub struct AppState {
    pub backend: Arc<dyn VideoBackend>,
    pub server_key: Option<ApiKey>,
    pub options: ToolOptions,
    /// Where list_avatars, list_voices and list_styles look; `None`: they are
    /// not listed.
    pub catalog: Option<CatalogAccess>,
}

impl AppState {
    /// State over one backend; its catalogue (if any) serves the catalogue tools.
    pub fn new(
        backend: Arc<dyn VideoBackend>,
        server_key: Option<ApiKey>,
        options: ToolOptions,
    ) -> Self {
        Self {
            backend,
            server_key,
            options,
            catalog: None,
        }
    }

    pub fn caps(&self) -> &Capabilities {
        self.backend.capabilities()
    }
}

#[derive(Debug, Clone)]
pub struct VideoServer {
    pub(crate) state: Arc<AppState>,
}

impl VideoServer {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The key for this request: a caller's own header key over HTTP (when the
    /// operator allows it), otherwise the server's `HEYGEN_API_KEY`.
    /// A signed-in caller's records are scoped by the user (issuer and
    /// subject), whichever upstream key pays.
    pub(crate) fn resolve_key(
        &self,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ApiKey, UpstreamError> {
        let principal = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Principal>());
        let key = self.resolve_raw_key(ctx)?;
        Ok(match principal {
            Some(p) => key.for_tenant(p.tenant()),
            None => key,
        })
    }

    fn resolve_raw_key(&self, ctx: &RequestContext<RoleServer>) -> Result<ApiKey, UpstreamError> {
        let mode = self.state.options.caller_keys;
        let backend = self.state.caps().kind;
        if mode != CallerKeys::Off
            && let Some(parts) = ctx.extensions.get::<http::request::Parts>()
            && let Some(raw) = parts.headers.get(CALLER_KEY_HEADER)
        {
            // A header that is present but unusable is an error, never a silent
            // fallback to the server's key (that would spend the operator's credits).
            return raw.to_str().ok().and_then(ApiKey::new).ok_or(
                UpstreamError::CallerKeyRequired {
                    unusable: true,
                    backend,
                },
            );
        }
        match (mode, &self.state.server_key) {
            (CallerKeys::Required, _) => Err(UpstreamError::CallerKeyRequired {
                unusable: false,
                backend,
            }),
            (_, Some(key)) => Ok(key.clone()),
            (_, None) => Err(UpstreamError::MissingKey {
                header_hint: mode != CallerKeys::Off,
                backend,
            }),
        }
    }
}

/// At most 80 characters of a caller's value, for error messages: a bad
/// argument is named, never echoed back whole (it may be megabytes).
pub(crate) fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

/// The tools for a backend, built once per process and kind, with schemas
/// every client accepts (see [`schema`]) and descriptions worded from the
/// backend's capabilities. The catalogue tools are listed only when there is
/// a catalogue.
pub fn router_for(caps: &Capabilities, catalog: bool) -> &'static ToolRouter<VideoServer> {
    static ROUTERS: [OnceLock<ToolRouter<VideoServer>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let heygen = caps.kind == BackendKind::Heygen;
    let slot = usize::from(heygen) * 2 + usize::from(catalog);
    ROUTERS[slot].get_or_init(|| {
        let mut router = VideoServer::create_router()
            + VideoServer::status_router()
            + VideoServer::download_router()
            + VideoServer::credits_router()
            + VideoServer::list_router();
        if catalog {
            router += VideoServer::catalog_router();
        }
        for route in router.map.values_mut() {
            schema::make_portable(&mut route.attr);
            if player::PLAYER_TOOLS.contains(&route.attr.name.as_ref()) {
                route.attr.meta = Some(player::tool_meta());
            }
            if heygen && let Some(d) = route.attr.description.as_mut() {
                *d = advice::adapt(d, caps).into();
            }
        }
        router
    })
}

/// Every tool there is (the gateway's wording, the catalogue included).
pub fn router() -> &'static ToolRouter<VideoServer> {
    router_for(&crate::gateway::backend::capabilities(), true)
}

impl VideoServer {
    /// The tools of this server's backend.
    pub fn tool_router(&self) -> &'static ToolRouter<VideoServer> {
        router_for(self.state.caps(), self.state.catalog.is_some())
    }
}

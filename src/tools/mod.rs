//! The MCP-facing tools and the shared state behind them. `VideoServer` is
//! cheap to clone (one `Arc`), because the HTTP transport builds one per
//! stateless request; the tool router is built once per process.

pub mod create;
pub mod status;
pub mod view;

use std::sync::{Arc, OnceLock};

use rmcp::{
    handler::server::router::tool::ToolRouter,
    service::{RequestContext, RoleServer},
};

use crate::{
    config::CallerKeys,
    gateway::{ApiKey, GatewayClient, GatewayError},
};

pub use view::{VideoStatus, VideoTask};

/// Header in which an HTTP caller may bring its own upstream key.
pub const CALLER_KEY_HEADER: &str = "x-heygen-api-key";

/// Options that shape the tools' behaviour.
#[derive(Debug, Clone)]
pub struct ToolOptions {
    /// Ask the gateway to refresh a running task from HeyGen on each status check.
    pub sync_upstream: bool,
    /// Whether and how HTTP callers bring their own key.
    pub caller_keys: CallerKeys,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self {
            sync_upstream: true,
            caller_keys: CallerKeys::Off,
        }
    }
}

/// State shared by every server instance of the process.
#[derive(Debug)]
pub struct AppState {
    pub gateway: GatewayClient,
    pub server_key: Option<ApiKey>,
    pub options: ToolOptions,
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
    pub(crate) fn resolve_key(
        &self,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ApiKey, GatewayError> {
        let mode = self.state.options.caller_keys;
        let header_hint = mode != CallerKeys::Off;
        if mode != CallerKeys::Off
            && let Some(parts) = ctx.extensions.get::<http::request::Parts>()
            && let Some(key) = parts
                .headers
                .get(CALLER_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(ApiKey::new)
        {
            return Ok(key);
        }
        if mode == CallerKeys::Required {
            return Err(GatewayError::MissingKey { header_hint: true });
        }
        self.state
            .server_key
            .clone()
            .ok_or(GatewayError::MissingKey { header_hint })
    }
}

/// All tools, built once per process.
pub fn router() -> &'static ToolRouter<VideoServer> {
    static ROUTER: OnceLock<ToolRouter<VideoServer>> = OnceLock::new();
    ROUTER.get_or_init(|| VideoServer::create_router() + VideoServer::status_router())
}

//! The MCP surface of the server: identity, instructions and capabilities.

use rmcp::{
    ServerHandler,
    model::{Implementation, ServerCapabilities, ServerConfig},
    tool_handler,
};

use std::sync::Arc;

use crate::{
    backend::{BackendKind, VideoBackend},
    config::Settings,
    gateway::GatewayClient,
    heygen::HeygenClient,
    tools::{CatalogAccess, VideoServer, advice, player},
};

/// The configured backend, and the catalogue the catalogue tools read: the
/// backend's own (HeyGen), or HeyGen's read with `HEYGEN_CATALOG_KEY` beside
/// the gateway; `None` lists no catalogue tools.
pub fn backend_for(settings: &Settings) -> (Arc<dyn VideoBackend>, Option<CatalogAccess>) {
    match settings.backend {
        BackendKind::Heygen => {
            let client = Arc::new(HeygenClient::new(settings.gateway.clone()));
            let catalog = CatalogAccess {
                catalog: client.clone(),
                key: None,
            };
            (client, Some(catalog))
        }
        BackendKind::Gateway => {
            let gateway = Arc::new(GatewayClient::new(settings.gateway.clone()));
            let catalog = settings.catalog_key.clone().map(|key| {
                let mut http = settings.gateway.clone();
                http.base_url = settings.catalog_base.clone();
                CatalogAccess {
                    catalog: Arc::new(HeygenClient::new(http)),
                    key: Some(key),
                }
            });
            (gateway, catalog)
        }
    }
}

pub const SERVER_NAME: &str = "heygen-video-mcp";

pub const INSTRUCTIONS: &str = "Makes HeyGen talking-avatar videos. 1) create_video once per \
video (it spends credits) returns a task_id at once. 2) Follow it with get_video_status about every \
30 s until completed; rendering takes minutes. Pass wait_seconds only if your client allows tool \
calls that long. A still-running answer is normal: never call create_video again for it. 3) Save \
it at once with download_video, or give the user the URL: links expire 24 h after creation. The \
same idempotency_key, or identical arguments minutes later, return the earlier video at no cost. \
list_videos finds earlier videos (across restarts); check it after a create_video error saying the \
video may exist. get_credits shows the balance.";

/// The instructions for this server's backend (and its catalogue, if any).
fn instructions(server: &VideoServer) -> String {
    let state = server.state();
    let mut text = advice::adapt(INSTRUCTIONS, state.caps());
    if state.catalog.is_some() {
        text.push_str(CATALOG_INSTRUCTIONS);
    }
    text
}

/// Added when the catalogue tools are listed.
pub const CATALOG_INSTRUCTIONS: &str = " list_avatars, list_voices and list_styles look up ids \
only when the user asks for a particular kind of presenter, voice or look; otherwise leave them \
out and the agent chooses well.";

#[tool_handler(router = self.tool_router())]
impl ServerHandler for VideoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_tasks()
                .build(),
        )
        .with_server_info(
            Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION"))
                .with_title("HeyGen Video Agent"),
        )
        .with_instructions(instructions(self))
    }

    // There are no prompts, but the capability is declared so that clients
    // which list prompts regardless (Cline; the conformance suite's `caching`
    // scenario) get an empty list instead of "method not found": answering an
    // undeclared method breaks "servers that support prompts MUST declare the
    // prompts capability". A get then answers "not found".
    fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> impl Future<Output = Result<rmcp::model::GetPromptResponse, rmcp::ErrorData>> + Send + '_
    {
        std::future::ready(Err(rmcp::ErrorData::invalid_params(
            format!(
                "unknown prompt {:?}: this server has no prompts",
                request.name
            ),
            None,
        )))
    }

    // The one resource is the inline video player (MCP Apps view), which
    // create_video and get_video_status name in `_meta.ui.resourceUri`.
    fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> impl Future<Output = Result<rmcp::model::ListResourcesResult, rmcp::ErrorData>> + Send + '_
    {
        std::future::ready(Ok(rmcp::model::ListResourcesResult::with_all_items(vec![
            player::resource(&self.state.options.media_origins),
        ])))
    }

    fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> impl Future<Output = Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData>> + Send + '_
    {
        if request.uri == player::PLAYER_URI {
            return std::future::ready(Ok(player::read(&self.state.options.media_origins).into()));
        }
        // -32002 on 2025-11-25; rmcp turns it into -32602 on 2026-07-28.
        std::future::ready(Err(rmcp::ErrorData::resource_not_found(
            format!(
                "resource not found: the only resource is {}",
                player::PLAYER_URI
            ),
            Some(serde_json::json!({ "uri": request.uri })),
        )))
    }

    // MCP Tasks (io.modelcontextprotocol/tasks): create_video may answer with
    // a task whose id is the upstream task id; tasks/* look it up upstream,
    // statelessly (see tools/tasks.rs). list_tools/get_tool stay generated.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        self.call_tool_with_tasks(request, context).await
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, rmcp::ErrorData> {
        self.get_task_upstream(request, context).await
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        self.cancel_task_upstream(request, context).await
    }

    async fn update_task(
        &self,
        request: rmcp::model::UpdateTaskParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        Err(self.update_task_refused(request))
    }
}

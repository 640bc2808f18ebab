//! The MCP surface of the server: identity, instructions and capabilities.

use rmcp::{
    ServerHandler,
    model::{Implementation, ServerCapabilities, ServerConfig},
    tool_handler,
};

use crate::tools::{VideoServer, router};

pub const SERVER_NAME: &str = "heygen-video-mcp";

pub const INSTRUCTIONS: &str = "Makes talking-avatar videos with the HeyGen Video Agent. \
1) create_video starts one video from a prompt and returns a task_id at once (it spends credits: \
call it once per video). 2) Follow it with get_video_status: pass wait_seconds (at most 45 if your \
client cuts tool calls at 60 s) to let the server wait, or call it every ~30 s; rendering takes \
minutes. A wait that runs out is a normal \"still rendering\" answer: call get_video_status again, \
never create_video again. 3) When it is completed, save it at once with download_video (it reports \
the file's path) or give the user the URL: links expire 24 h after creation. get_credits shows the \
balance. list_videos lists the videos made through this server (they are remembered across restarts): use it to find a task_id again, and after any create_video error that says the video may have been created. Repeating create_video with the same idempotency_key, or with identical arguments a few minutes later, returns the earlier video instead of paying again; pass a new idempotency_key to deliberately make another take.";

#[tool_handler(router = router())]
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
        .with_instructions(INSTRUCTIONS)
    }

    // There are no prompts or resources, but both capabilities are declared so
    // that clients which list them regardless (Cline; the conformance suite's
    // `caching` scenario) get empty lists (rmcp's defaults once declared)
    // instead of "method not found": answering an undeclared method breaks
    // "servers that support prompts MUST declare the prompts capability".
    // Reads and gets then answer "not found" rather than "method not found".
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

    fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> impl Future<Output = Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData>> + Send + '_
    {
        // -32002 on 2025-11-25; rmcp turns it into -32602 on 2026-07-28.
        std::future::ready(Err(rmcp::ErrorData::resource_not_found(
            "resource not found: this server has no resources",
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

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
call it once per video). 2) Follow it with get_video_status every ~30 s until it is completed \
(rendering takes minutes); never create the video again because it is still rendering. \
3) When it is completed, save the MP4 or give the user the URL right away: links expire 24 h \
after creation.";

#[tool_handler(router = router())]
impl ServerHandler for VideoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION"))
                    .with_title("HeyGen Video Agent"),
            )
            .with_instructions(INSTRUCTIONS)
    }
}

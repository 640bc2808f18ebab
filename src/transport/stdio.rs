//! MCP over stdio: stdout carries only JSON-RPC, logs go to stderr.

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use crate::tools::VideoServer;

/// Serves one client on stdin/stdout until it closes stdin or `stop` fires.
pub async fn serve(server: VideoServer, stop: CancellationToken) -> Result<(), String> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session could not start: {e}"))?;
    let ct = running.cancellation_token();
    tokio::select! {
        r = running.waiting() => {
            r.map_err(|e| format!("the MCP session ended with an error: {e}"))?;
        }
        _ = stop.cancelled() => {
            ct.cancel();
        }
    }
    Ok(())
}

//! MCP over stdio: stdout carries only JSON-RPC, logs go to stderr.

use rmcp::{ServiceExt, transport::async_rw::AsyncRwTransport};
use tokio_util::sync::CancellationToken;

use crate::tools::VideoServer;

/// Longest incoming line (one JSON-RPC message) accepted on stdin. Real
/// messages are a few KiB (a prompt is at most 10,000 characters); a longer
/// line is dropped with a log line and the session goes on. rmcp's default
/// is 16 MiB, which lets one bad line hold that much memory for good.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Serves one client on stdin/stdout until it closes stdin or `stop` fires.
pub async fn serve(server: VideoServer, stop: CancellationToken) -> Result<(), String> {
    // When the client launched us with pipes (as MCP clients do), read and
    // write them through the runtime's reactor instead of handing every read
    // and write to a blocking thread; otherwise fall back to plain stdio.
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let transport =
        AsyncRwTransport::new_server(stdin, stdout).with_max_line_length(MAX_LINE_BYTES);
    let running = server
        .serve(transport)
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

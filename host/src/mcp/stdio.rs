//! MCP over stdin/stdout, for clients that start the server as a child.
//!
//! stdout carries protocol messages and nothing else: logs go to stderr (the
//! binary's tracing writer), and a tool's own stdout and stderr are captured
//! by the sandbox into capped buffers, never written to ours. A tool that
//! floods its logs therefore cannot corrupt the stream.

use rmcp::ServiceExt;

use super::{McpServer, ServeError};

/// Serves one client on stdin/stdout until it closes stdin.
pub async fn serve_stdio(server: McpServer) -> Result<(), ServeError> {
    let running = server
        .serve(rmcp::transport::stdio_pipes())
        .await
        .map_err(|e| ServeError::Handshake(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    Ok(())
}

//! `DELETE /mcp`: a client ending its session.
//!
//! rmcp closes the session and answers `202 Accepted` whether or not the
//! session existed. The specification answers an unknown (or already ended)
//! session with `404 Not Found`, and the SDKs (Python 1.8, 1.30 and 2.3)
//! treat anything but `200`/`204` for a known one as a failed termination.
//! So this layer answers `404` itself, before rmcp, for a session it does
//! not hold, and turns rmcp's `202` into `204 No Content`. rmcp still runs
//! its own checks first for a known session (the `MCP-Protocol-Version`
//! header) and does the closing, which frees the session's slot
//! (`sessions.rs`).
//!
//! A session that idles out between the check and rmcp's close also gets
//! `204`: it has ended, which is what the client asked for.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use serde_json::json;

use super::sessions::Sessions;

/// The header naming the session (rmcp's `HEADER_SESSION_ID`).
const SESSION_ID: &str = "mcp-session-id";

/// The middleware on `/mcp`; only `DELETE` with a session id is its concern.
pub async fn end_session(
    State(sessions): State<Arc<Sessions>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::DELETE {
        return next.run(request).await;
    }
    // Without the header rmcp answers 400 ("session id required").
    let Some(id) = request
        .headers()
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    if !sessions.is_open(&id).await {
        tracing::debug!(session = %id, "DELETE of an unknown session");
        return not_found();
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::ACCEPTED {
        tracing::debug!(session = %id, "session ended by the client");
        return StatusCode::NO_CONTENT.into_response();
    }
    response
}

/// 404 with a JSON-RPC error, as the `/mcp` guard answers a POST to an
/// unknown session (`jsonrpc.rs`).
fn not_found() -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32600, "message": "Not Found: Session not found"},
    });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

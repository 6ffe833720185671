//! A bounded body, and a JSON-RPC error for a malformed one.
//!
//! rmcp answers a body it cannot parse with `415` and a line of text, which a
//! JSON-RPC client cannot read as an answer. This layer reads the body itself
//! (refusing one over the limit with `413`), hands rmcp an intact copy, and
//! when rmcp refuses the request (any 4xx that is not already JSON) replaces
//! its text with a JSON-RPC error object, keeping the status (but 400 for a
//! malformed body rather than 415):
//!
//! | body | code |
//! |---|---|
//! | not JSON | `-32700` parse error |
//! | JSON, not a request/notification/response (a batch included) | `-32600` invalid request |
//! | a request of a method the server serves, with unusable params | `-32602` invalid params (with its id) |
//! | well-formed, refused by rmcp (403 `Origin`, 404 session, ...) | `-32600` with rmcp's reason |
//!
//! rmcp's own checks (`Origin`, `Host`, sessions, protocol version) still run
//! first and decide the status.
//!
//! Having the body, the guard also does three things rmcp cannot:
//!
//! - an `initialize` takes a session slot first (503 with `Retry-After` and a
//!   JSON-RPC error naming `serve.max_sessions` when none is free; see
//!   `sessions.rs`);
//! - a `tools/call` gets its arguments read by the strict I-JSON parse
//!   ([`StrictArguments`], carried to the handler as a request extension);
//! - an `initialize` carries the version it asks for, which decides whether
//!   its response stream is primed (`priming.rs`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::{Value, json};

use super::sessions::{RETRY_AFTER_S, Sessions};
use crate::mcp::strict::{self, StrictArguments};

/// JSON-RPC's reserved codes used here.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;
/// Implementation-defined server error: the server is full.
const SERVER_BUSY: i64 = -32000;

/// What the guard needs: the body limit and the sessions.
#[derive(Debug, Clone)]
pub struct GuardState {
    pub limit: usize,
    pub sessions: Arc<Sessions>,
}

/// What is wrong with a body, as a JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub code: i64,
    pub message: String,
    /// The request's id when it had a usable one.
    pub id: Value,
}

impl Fault {
    fn response(&self, status: StatusCode) -> Response {
        let body = json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message},
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// `None` when rmcp can read the body as a client message.
pub fn classify(body: &[u8]) -> Option<Fault> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Some(Fault {
                code: PARSE_ERROR,
                message: format!("parse error: {e}"),
                id: Value::Null,
            });
        }
    };
    let error = match serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        // rmcp reads a served method whose params do not fit as a custom
        // request; it is the params that are wrong.
        Ok(JsonRpcMessage::Request(request)) => {
            return match &request.request {
                ClientRequest::CustomRequest(custom) if crate::mcp::serves(&custom.method) => {
                    Some(Fault {
                        code: INVALID_PARAMS,
                        message: format!("invalid params for {}", custom.method),
                        id: value.get("id").cloned().unwrap_or(Value::Null),
                    })
                }
                _ => None,
            };
        }
        Ok(_) => return None,
        Err(e) => e,
    };
    if value.is_array() {
        return Some(Fault {
            code: INVALID_REQUEST,
            message: "invalid request: JSON-RPC batches are not supported".into(),
            id: Value::Null,
        });
    }
    let id = match value.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    let envelope_ok = value.get("jsonrpc") == Some(&json!("2.0"))
        && value.get("method").is_some_and(Value::is_string)
        && !id.is_null();
    Some(if envelope_ok {
        Fault {
            code: INVALID_PARAMS,
            message: format!("invalid params: {error}"),
            id,
        }
    } else {
        Fault {
            code: INVALID_REQUEST,
            message: format!("invalid request: {error}"),
            id,
        }
    })
}

/// The middleware on `/mcp`.
pub async fn guard(State(state): State<GuardState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let limit = state.limit;
    let (mut parts, body) = request.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let (status, message) = if e.downcast_ref::<LengthLimitError>().is_some() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("invalid request: the body exceeds {limit} bytes"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("invalid request: cannot read the body: {e}"),
                )
            };
            let fault = Fault {
                code: INVALID_REQUEST,
                message,
                id: Value::Null,
            };
            return fault.response(status);
        }
    };
    let (message, routed) = match strict::routable(&bytes) {
        Some((message, rewritten)) => (Some(message), rewritten),
        None => (None, None),
    };
    let method = message
        .as_ref()
        .and_then(|m| m.get("method"))
        .and_then(Value::as_str);
    let mut body = bytes.clone();
    if message.as_ref().is_some_and(strict::is_tool_call) {
        parts.extensions.insert(StrictArguments::read(&bytes));
        // rmcp routes the call by a copy it can parse; the strict reading
        // of the text as sent decides it (see `strict.rs`).
        if let Some(routed) = routed {
            body = routed.into();
        }
    }
    if method == Some("initialize")
        && let Some(version) = message
            .as_ref()
            .and_then(|m| m.pointer("/params/protocolVersion"))
            .and_then(Value::as_str)
    {
        // Whether its response stream is primed (`priming.rs`).
        parts
            .extensions
            .insert(super::priming::Requested(version.to_string()));
    }
    let opens_session =
        method == Some("initialize") && !parts.headers.contains_key("mcp-session-id");
    let request = Request::from_parts(parts, Body::from(body));
    let response = if opens_session {
        let Some(reservation) = state.sessions.reserve() else {
            let id = message
                .as_ref()
                .and_then(|m| m.get("id").cloned())
                .unwrap_or(Value::Null);
            return full(&state.sessions, id);
        };
        reservation.scope(next.run(request)).await
    } else {
        next.run(request).await
    };
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    // Only a refused body is classified: a served one is parsed by rmcp
    // anyway, and parsing it twice more here cost every call.
    let fault = match classify(&bytes) {
        Some(fault) => fault,
        None => {
            // rmcp's refusals are one line of text; anything longer is cut.
            let reason = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default();
            let id = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            Fault {
                code: INVALID_REQUEST,
                message: reason,
                id,
            }
        }
    };
    tracing::debug!(%status, code = fault.code, "refused: {}", fault.message);
    let status = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    fault.response(status)
}

/// 503 past `serve.max_sessions`, with `Retry-After` and a JSON-RPC error
/// whose `data` names the limit and its config key.
fn full(sessions: &Sessions, id: Value) -> Response {
    tracing::warn!(
        limit = sessions.limit(),
        "session refused: serve.max_sessions reached"
    );
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": SERVER_BUSY,
            "message": sessions.refusal(),
            "data": {
                "kind": "overloaded",
                "limit": sessions.limit(),
                "config_key": "serve.max_sessions",
                "retry_after_s": RETRY_AFTER_S,
            },
        },
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::RETRY_AFTER, RETRY_AFTER_S.to_string()),
        ],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_kind_of_malformed_body() {
        assert_eq!(classify(b"{not json").map(|f| f.code), Some(PARSE_ERROR));
        assert_eq!(classify(b"[]").map(|f| f.code), Some(INVALID_REQUEST));
        assert_eq!(
            classify(br#"{"id":1}"#).map(|f| f.code),
            Some(INVALID_REQUEST)
        );
        let bad_params =
            classify(br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":7}}"#)
                .expect("a fault");
        assert_eq!((bad_params.code, bad_params.id), (INVALID_PARAMS, json!(5)));
        let custom = br#"{"jsonrpc":"2.0","id":6,"method":"vendor/thing","params":{}}"#;
        assert_eq!(
            classify(custom),
            None,
            "unknown methods are the handler's to refuse"
        );
        let fine = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
        assert_eq!(classify(fine), None);
    }
}

//! The run API's errors: `{"error": {"kind", "message"}}` with a status
//! that says whose fault it is. Every refusal a client can cause has a kind
//! of its own (`invalid_input`, `not_found`, `key_conflict`,
//! `run_finished`, `run_busy`, `overloaded`); `store_unavailable` and
//! `internal` are the server's.

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::agent::{AgentError, DriveError};
use crate::store::StoreError;

/// Seconds a client is asked to wait before retrying a `503`.
const RETRY_AFTER_S: &str = "1";

/// One refusal of the run API.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400 `invalid_input`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404 `not_found` for run `id`.
    pub fn no_run(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no run `{id}` (GET /v1/runs lists them)"),
        )
    }
}

/// The JSON body of an error: the one shape every refusal has.
pub fn body(kind: &str, message: &str) -> String {
    serde_json::json!({"error": {"kind": kind, "message": message}}).to_string()
}

/// `value` as a JSON answer with `status`.
pub fn json_answer(status: StatusCode, value: &serde_json::Value) -> Response {
    json_text(status, value.to_string())
}

fn json_text(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_text(self.status, body(self.kind, &self.message));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from_static(RETRY_AFTER_S),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    }
}

impl From<DriveError> for ApiError {
    fn from(e: DriveError) -> Self {
        let status = match &e {
            DriveError::Conflict { .. } | DriveError::Finished { .. } | DriveError::Busy { .. } => {
                StatusCode::CONFLICT
            }
            DriveError::NotFound(_) => StatusCode::NOT_FOUND,
            DriveError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            DriveError::Agent(AgentError::NoModels | AgentError::Store(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DriveError::Agent(AgentError::NoSuchRun(_)) => StatusCode::NOT_FOUND,
            DriveError::Agent(_) => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.kind(), e.to_string())
    }
}

//! Model errors: one kind per way a call can fail, with the design's stable
//! snake_case names (they appear in `--json` output and metrics), plus what
//! the policies need to act on it (status, `Retry-After`, `x-should-retry`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong with a model call. Names are part of the contract.
/// Scripts name faults by the same names (hence `Deserialize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 429: the quota is spent for now; retried after `Retry-After`.
    RateLimited,
    /// 529 or 503: the provider is shedding load.
    Overloaded,
    /// 500, 502, 504 and other 5xx: the provider failed.
    ServerError,
    /// A connect, read or per-attempt deadline passed.
    Timeout,
    /// The connection was refused, reset or dropped.
    Connection,
    /// 400 and other 4xx: the request is wrong; retrying cannot help.
    InvalidRequest,
    /// 401/403, or the API key's environment variable is unset.
    Auth,
    /// 404: no such model or endpoint.
    NotFound,
    /// The prompt does not fit the model's context window (or 413).
    ContextLength,
    /// The provider refused the content.
    ContentPolicy,
    /// A body, or a tool call's arguments, could not be parsed.
    MalformedResponse,
    /// The model's circuit breaker is open: no call was made.
    CircuitOpen,
    /// Every model in the chain failed, or the request budget ran out.
    AllModelsUnavailable,
}

impl ErrorKind {
    /// Every kind, in declaration order (for metrics tables).
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::ServerError,
        ErrorKind::Timeout,
        ErrorKind::Connection,
        ErrorKind::InvalidRequest,
        ErrorKind::Auth,
        ErrorKind::NotFound,
        ErrorKind::ContextLength,
        ErrorKind::ContentPolicy,
        ErrorKind::MalformedResponse,
        ErrorKind::CircuitOpen,
        ErrorKind::AllModelsUnavailable,
    ];

    /// The stable name, as in the design.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ContextLength => "context_length",
            ErrorKind::ContentPolicy => "content_policy",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::AllModelsUnavailable => "all_models_unavailable",
        }
    }

    /// Failures that say the dependency is unhealthy: the only ones a
    /// circuit breaker counts.
    pub fn is_health_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Overloaded
                | ErrorKind::ServerError
                | ErrorKind::Timeout
                | ErrorKind::Connection
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed model call. The message never holds an API key: provider text is
/// scrubbed of the key before it gets here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ModelError {
    pub kind: ErrorKind,
    pub message: String,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// How long the provider asked us to wait (`retry-after-ms`/`Retry-After`),
    /// or, for `circuit_open`, how long until the breaker admits a probe.
    pub retry_after: Option<Duration>,
    /// The provider's `x-should-retry` header, which overrides the kind.
    pub should_retry: Option<bool>,
}

impl ModelError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ModelError {
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
            should_retry: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

//! The SSE priming event, only for clients that understand it.
//!
//! Protocol 2025-11-25 (SEP-1699) lets a server begin a response stream with
//! an event that has an id and an empty `data:` line, so that a client whose
//! connection drops can resume the stream from that id. rmcp sends one on
//! every stream (the `initialize` response, each request's stream and the
//! `GET` stream). A client of an older version reads the empty `data:` as a
//! message and fails to parse it: the MCP Python SDK 1.8 logs `Error parsing
//! SSE message` on every request. The reference (TypeScript) server sends
//! it only to clients at 2025-11-25 or later, and so does this one:
//!
//! - a session's request streams are filtered by the version the session
//!   negotiated (`sessions.rs` records it from the `initialize` result);
//! - the streams rmcp primes outside a session's streams (the `initialize`
//!   response, the `GET` stream, a stateless request) come from one of two
//!   rmcp services over the same sessions, one configured with priming and
//!   one without, chosen per request by [`Route`]: the version the
//!   `initialize` asks for ([`Requested`], set by the `/mcp` guard, which
//!   has read the body), else the session's, else the
//!   `MCP-Protocol-Version` header (2025-03-26 when absent, as the
//!   specification says).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_core::Stream;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::ServerSseMessage;

use super::sessions::Sessions;
use crate::mcp::McpServer;

/// The first protocol version whose clients expect the priming event.
pub const FIRST_PRIMED: &str = "2025-11-25";

/// The version a request speaks when it names none (the specification's
/// default for a missing `MCP-Protocol-Version`).
const UNNAMED: &str = "2025-03-26";

/// Whether a client speaking `version` gets priming events. Versions are
/// dates, so they compare as strings (as rmcp compares them).
pub fn primes(version: &str) -> bool {
    version >= FIRST_PRIMED
}

/// The protocol version an `initialize` asks for, as a request extension.
#[derive(Debug, Clone)]
pub struct Requested(pub String);

/// rmcp's service twice over the same sessions: with and without priming.
#[derive(Clone)]
pub struct Route {
    pub primed: StreamableHttpService<McpServer, Sessions>,
    pub plain: StreamableHttpService<McpServer, Sessions>,
    pub sessions: Arc<Sessions>,
}

/// The `/mcp` handler: the request goes to the service its version calls
/// for.
pub async fn route(State(route): State<Route>, request: Request) -> Response {
    let primed = match request.extensions().get::<Requested>() {
        Some(Requested(version)) => primes(version),
        None => match request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            // An unknown session is refused by rmcp either way.
            Some(id) => route.sessions.primes(id),
            None => primes(
                request
                    .headers()
                    .get("mcp-protocol-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(UNNAMED),
            ),
        },
    };
    let service = if primed { &route.primed } else { &route.plain };
    service.handle(request).await.map(Body::new)
}

/// A stream without its priming events (those without a message).
pub struct WithoutPriming<S> {
    inner: S,
}

impl<S> WithoutPriming<S> {
    pub fn new(inner: S) -> WithoutPriming<S> {
        WithoutPriming { inner }
    }
}

impl<S: Stream<Item = ServerSseMessage> + Unpin> Stream for WithoutPriming<S> {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(event)) if event.message.is_none() => continue,
                polled => return polled,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2025_11_25_and_later_are_primed() {
        for old in ["2024-11-05", "2025-03-26", "2025-06-18", UNNAMED] {
            assert!(!primes(old), "{old}");
        }
        for new in [FIRST_PRIMED, "2026-07-28", "2099-01-01"] {
            assert!(primes(new), "{new}");
        }
    }
}

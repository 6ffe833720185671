//! The MCP server: the sandboxed, cached tools for any MCP client.
//!
//! MCP is how agent clients (desktop assistants, IDEs, agent frameworks) pick
//! up tools. Serving the tools over it gives every such client the sandbox,
//! limits, policies and exactly-once cache without knowing about them: a call
//! over MCP runs through the same [`Executor`](crate::idempotency::Executor)
//! as `toolhost call`.
//!
//! Built on rmcp, the official Rust SDK, which owns the protocol: version
//! negotiation (the current version down to 2024-11-05), sessions, SSE
//! streams, cancellation tokens. This module decides what the tools look like
//! and what a call does.
//!
//! ## Layout
//!
//! - [`tools`]: `tools/list` entries; annotations from the effect.
//! - `handler`: [`McpServer`], rmcp's `ServerHandler`: listing and calling.
//! - `result`: outcomes as tool results (`isError`, `structuredContent`,
//!   `_meta`).
//! - `admission`: `max_concurrent_calls` back-pressure.
//! - `strict`: `tools/call` arguments through the strict I-JSON parse.
//! - [`stdio`]: the stdin/stdout transport.
//! - [`http`]: streamable HTTP at `/mcp`, with `/metrics` and `/healthz`:
//!   token, origin, body-size and JSON-RPC hygiene.

mod admission;
mod error;
mod handler;
pub mod http;
mod result;
pub mod stdio;
mod strict;
pub mod tools;

pub use error::ServeError;
pub use handler::{McpServer, serves};
pub use http::{BearerToken, HttpOptions, HttpServer};
pub use result::{META_ERROR, META_IDEMPOTENCY_KEY};
pub use stdio::serve_stdio;

//! Why the MCP server could not start or stopped.

use std::net::SocketAddr;

/// A failure to start or run `toolhost serve`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without a bearer token: anyone who can reach it
    /// could run the tools.
    #[error(
        "{addr} is not a loopback address: serving there needs a bearer token (--token-env NAME)"
    )]
    TokenRequired { addr: SocketAddr },
    /// The variable named by `--token-env` is unset, not UTF-8 or too short.
    #[error("the bearer token in ${var} {problem}")]
    BadToken { var: String, problem: &'static str },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The client's `initialize` handshake failed on stdio.
    #[error("the MCP handshake on stdio failed: {0}")]
    Handshake(String),
    /// The transport failed while serving.
    #[error("the MCP transport failed: {0}")]
    Transport(String),
}

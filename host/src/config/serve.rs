//! `[serve]`: what `toolhost serve --http` accepts beyond its flags.
//!
//! Kept apart from `schema.rs` because only the MCP server reads it; every key
//! is optional and the defaults suit a server on loopback.

use serde::Deserialize;

use super::error::Invalid;

/// The largest request body the server reads by default: 4 MiB, room for any
/// tool input a model writes, small enough that a flood cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 << 20;

/// MCP sessions held at once by default. One idle session costs about 50 KB
/// (its worker task, channels and handler), so the cap bounds that memory
/// near 50 MB whatever a client does.
pub const DEFAULT_MAX_SESSIONS: u32 = 1_000;

/// Seconds without a message after which a session is closed (rmcp's
/// default, and the design's).
pub const DEFAULT_SESSION_IDLE_S: u64 = 300;

/// Seconds a connection has to deliver a request's headers, counted from
/// its opening or from its previous response: slow (slowloris) and idle
/// keep-alive connections are closed past it.
pub const DEFAULT_HEADER_TIMEOUT_S: u64 = 10;

/// Runs one server drives at once by default (adopted ones, and later the
/// run API's).
pub const DEFAULT_MAX_CONCURRENT_RUNS: u32 = 4;

/// `[serve]`: the HTTP transport's hygiene settings, and the runs a server
/// drives.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Largest POST body on `/mcp`, in bytes; larger is refused with 413.
    /// Default 4 MiB.
    pub max_body_bytes: u64,
    /// Browser origins allowed besides loopback (`http://localhost:*`,
    /// `http://127.0.0.1:*`, `http://[::1]:*`), such as
    /// `"https://agent.example.com"` or `"http://localhost:*"`. A request with
    /// any other `Origin` is refused with 403 (DNS-rebinding defence).
    pub allowed_origins: Vec<String>,
    /// `Host` header values accepted when bound to a non-loopback address
    /// (say `"mcp.example.com"`). Empty: any host (the bearer token guards the
    /// server). On loopback only loopback names are ever accepted.
    pub allowed_hosts: Vec<String>,
    /// MCP sessions held at once; an `initialize` past it is refused with
    /// 503 and `Retry-After`. Default 1,000.
    pub max_sessions: u32,
    /// A session with no message for this many seconds is closed (the
    /// client gets 404 and starts a new one). Default 300.
    pub session_idle_s: u64,
    /// A connection must send each request's headers within this many
    /// seconds of opening or of its previous response, or it is closed.
    /// Default 10.
    pub header_timeout_s: u64,
    /// Runs the server drives at once (adopted ones included). Default 4.
    pub max_concurrent_runs: u32,
    /// Adopt and resume the runs whose owner died (`agent::Recovery`).
    /// Default true.
    pub recover: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            session_idle_s: DEFAULT_SESSION_IDLE_S,
            header_timeout_s: DEFAULT_HEADER_TIMEOUT_S,
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
            recover: true,
        }
    }
}

impl ServeConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.max_body_bytes < 1024 || self.max_body_bytes > 1 << 30 {
            return Err(Invalid::new(
                "serve.max_body_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
        if self.max_sessions == 0 || self.max_sessions > 1_000_000 {
            return Err(Invalid::new(
                "serve.max_sessions",
                "must be between 1 and 1000000",
            ));
        }
        if self.session_idle_s == 0 || self.session_idle_s > 86_400 {
            return Err(Invalid::new(
                "serve.session_idle_s",
                "must be between 1 and 86400 seconds",
            ));
        }
        if self.header_timeout_s == 0 || self.header_timeout_s > 3_600 {
            return Err(Invalid::new(
                "serve.header_timeout_s",
                "must be between 1 and 3600 seconds",
            ));
        }
        if self.max_concurrent_runs == 0 || self.max_concurrent_runs > 10_000 {
            return Err(Invalid::new(
                "serve.max_concurrent_runs",
                "must be between 1 and 10000",
            ));
        }
        for origin in &self.allowed_origins {
            let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
            if !scheme_ok || origin.trim_end_matches('/').matches('/').count() != 2 {
                return Err(Invalid::new(
                    "serve.allowed_origins",
                    format!("`{origin}` is not an origin such as https://app.example.com[:port]"),
                ));
            }
        }
        for host in &self.allowed_hosts {
            if host.is_empty() || host.contains('/') {
                return Err(Invalid::new(
                    "serve.allowed_hosts",
                    format!("`{host}` is not a host name or host:port"),
                ));
            }
        }
        Ok(())
    }
}

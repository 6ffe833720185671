//! `[serve]`: what `toolhost serve --http` accepts beyond its flags.
//!
//! Kept apart from `schema.rs` because only the MCP server reads it; every key
//! is optional and the defaults suit a server on loopback.

use serde::Deserialize;

use super::error::Invalid;

/// The largest request body the server reads by default: 4 MiB, room for any
/// tool input a model writes, small enough that a flood cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 << 20;

/// `[serve]`: the HTTP transport's hygiene settings.
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
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

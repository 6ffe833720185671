//! Streamable HTTP: `/mcp` (rmcp's service), `/metrics` and `/healthz`.
//!
//! The hygiene rules, in the order a request meets them:
//!
//! 1. **Bind**: loopback by default; any other address needs a
//!    [`BearerToken`] ([`ServeError::TokenRequired`] otherwise).
//! 2. **Token**: when one is configured, `/mcp` and `/metrics` need
//!    `Authorization: Bearer <token>` (401 otherwise); `/healthz` stays open
//!    for load balancers and says nothing secret.
//! 3. **Origin and Host** (DNS rebinding): on `/mcp`, rmcp refuses with 403
//!    an `Origin` outside the allow list (loopback origins plus
//!    `[serve] allowed_origins`) and, on loopback, a `Host` that is not a
//!    loopback name. `/metrics` and `/healthz` refuse any `Origin` at all:
//!    scrapers and probes never send one, only browsers do.
//! 4. **Body**: at most `[serve] max_body_bytes` (413), and a malformed one
//!    gets a JSON-RPC error (`jsonrpc.rs`).
//! 5. **Calls**: at most `max_concurrent_calls` at once (see
//!    `admission.rs`).

mod auth;
mod jsonrpc;

pub use auth::{BearerToken, MIN_TOKEN_LEN};
pub use jsonrpc::{Fault, classify};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{McpServer, ServeError};
use crate::config::ServeConfig;
use crate::metrics;

/// Browser origins a loopback server always accepts: pages served from this
/// machine (an MCP inspector on localhost), on any port.
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// How long a shutdown waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Required for a non-loopback `addr`.
    pub token: Option<BearerToken>,
    /// `[serve]`: body limit, extra origins and hosts.
    pub serve: ServeConfig,
}

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Binds `options.addr` and starts serving on the current runtime.
    pub async fn bind(server: McpServer, options: HttpOptions) -> Result<HttpServer, ServeError> {
        let addr = options.addr;
        let loopback = addr.ip().is_loopback();
        if !loopback && options.token.is_none() {
            return Err(ServeError::TokenRequired { addr });
        }
        let bind_error = |source| ServeError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let shutdown = CancellationToken::new();
        let app = router(server, &options, loopback, &shutdown);
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Ok(HttpServer {
            local_addr,
            shutdown,
            task,
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MCP endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.local_addr)
    }

    /// Stops accepting, ends every MCP session, and waits (a bounded time)
    /// for open connections to finish.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        let mut task = self.task;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => flatten(joined),
            Err(_) => {
                tracing::warn!("connections still open after the grace period; dropping them");
                task.abort();
                Ok(())
            }
        }
    }

    /// Serves until `signal` resolves, then shuts down; returns early if
    /// the server itself stops.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
        tokio::select! {
            () = signal => {}
            joined = &mut self.task => return flatten(joined),
        }
        self.shutdown().await
    }
}

fn flatten(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match joined {
        Ok(result) => result.map_err(|e| ServeError::Transport(e.to_string())),
        Err(join) => Err(ServeError::Transport(join.to_string())),
    }
}

/// rmcp's streamable HTTP service for `server`, with the hygiene settings.
fn mcp_service(
    server: McpServer,
    options: &HttpOptions,
    loopback: bool,
    shutdown: &CancellationToken,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let origins = LOOPBACK_ORIGINS
        .iter()
        .map(|o| o.to_string())
        .chain(options.serve.allowed_origins.iter().cloned());
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(options.serve.max_body_bytes as usize)
        .with_cancellation_token(shutdown.child_token());
    // On loopback rmcp's default host list (localhost, 127.0.0.1, ::1) is the
    // DNS-rebinding defence; elsewhere the token is, plus any hosts named.
    if !loopback {
        config = if options.serve.allowed_hosts.is_empty() {
            config.disable_allowed_hosts()
        } else {
            config.with_allowed_hosts(options.serve.allowed_hosts.clone())
        };
    }
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

fn router(
    server: McpServer,
    options: &HttpOptions,
    loopback: bool,
    shutdown: &CancellationToken,
) -> Router {
    let limit = options.serve.max_body_bytes as usize;
    let mcp = Router::new()
        .route_service(
            "/mcp",
            mcp_service(server.clone(), options, loopback, shutdown),
        )
        .layer(middleware::from_fn_with_state(limit, jsonrpc::guard));
    let scrape = Router::new()
        .route("/metrics", get(render_metrics))
        .layer(middleware::from_fn(no_browser_origin))
        .with_state(server.clone());
    let token = options.token.clone().map(Arc::new);
    let guarded = mcp
        .merge(scrape)
        .layer(middleware::from_fn_with_state(token, require_token));
    let health = Router::new()
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn(no_browser_origin))
        .with_state(server);
    guarded.merge(health)
}

async fn require_token(
    State(token): State<Option<Arc<BearerToken>>>,
    request: Request,
    next: Next,
) -> Response {
    match token {
        Some(token) if !token.admits(request.headers()) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

async fn no_browser_origin(request: Request, next: Next) -> Response {
    if request.headers().contains_key(header::ORIGIN) {
        return (
            StatusCode::FORBIDDEN,
            "cross-origin requests are not served here\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn render_metrics(State(server): State<McpServer>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        server.metrics().render(),
    )
        .into_response()
}

async fn healthz(State(server): State<McpServer>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "tools": server.tool_count(),
        "calls_in_flight": server.metrics().calls_in_flight(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

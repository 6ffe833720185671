//! Streamable HTTP: `/mcp` (rmcp's service), `/metrics` and `/healthz`.
//!
//! The hygiene rules, in the order a request meets them:
//!
//! 1. **Bind**: loopback by default; any other address needs a
//!    [`BearerToken`] ([`ServeError::TokenRequired`] otherwise).
//! 2. **Token**: when one is configured, `/mcp` and `/metrics` need
//!    `Authorization: Bearer <token>` (401 otherwise); `/healthz` stays open
//!    for load balancers and says nothing secret.
//! 3. **Origin and Host** (DNS rebinding): every path refuses with 403, on
//!    loopback, a `Host` that is not a loopback name (elsewhere, one outside
//!    `[serve] allowed_hosts` when that is set): a rebinding page reaches the
//!    server under its own name, and sends no `Origin` on a same-origin
//!    `GET`. On `/mcp` rmcp also refuses an `Origin` outside the allow list
//!    (loopback origins plus `[serve] allowed_origins`); `/metrics` and
//!    `/healthz` refuse any `Origin` at all: scrapers and probes never send
//!    one, only browsers do.
//! 4. **Connections**: each request's headers must arrive within `[serve]
//!    header_timeout_s` of the connection opening or of its previous
//!    response, or hyper closes it (slowloris, idle keep-alive).
//! 5. **Body**: at most `[serve] max_body_bytes` (413), and a malformed one
//!    gets a JSON-RPC error (`jsonrpc.rs`).
//! 6. **Sessions**: at most `[serve] max_sessions`, idle ones closed after
//!    `session_idle_s`; past the cap an `initialize` gets 503 with
//!    `Retry-After` (`sessions.rs`). A client that drops its connection
//!    mid-call cancels the call. `DELETE` ends a session: `204`, or `404`
//!    for one not open (`delete.rs`). Streams carry SSE priming events
//!    only for clients at protocol 2025-11-25 or later (`priming.rs`).
//! 7. **Calls**: at most `max_concurrent_calls` at once (see
//!    `admission.rs`).

mod auth;
mod delete;
mod jsonrpc;
mod priming;
mod sessions;

pub use auth::{BearerToken, MIN_TOKEN_LEN};
pub use jsonrpc::{Fault, classify};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use sessions::Sessions;

use super::{McpServer, ServeError};
use crate::config::ServeConfig;
use crate::metrics;

/// Browser origins a loopback server always accepts: pages served from this
/// machine (an MCP inspector on localhost), on any port.
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// How long a shutdown waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Host names a loopback server answers to (rmcp's own default list).
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// How long the accept loop backs off after an accept error (out of file
/// descriptors, say) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Required for a non-loopback `addr`.
    pub token: Option<BearerToken>,
    /// `[serve]`: body limit, extra origins and hosts.
    pub serve: ServeConfig,
    /// More routes behind the token and the `Host` check, as `/mcp` is
    /// (the run API, `crate::web`); their 401 and 403 answers are JSON.
    pub api: Router,
    /// More routes behind the `Host` check only (the runs page's assets,
    /// which a browser fetches without a header).
    pub page: Router,
}

impl HttpOptions {
    /// Serves `/mcp`, `/metrics` and `/healthz` only.
    pub fn new(addr: SocketAddr, token: Option<BearerToken>, serve: ServeConfig) -> Self {
        HttpOptions {
            addr,
            token,
            serve,
            api: Router::new(),
            page: Router::new(),
        }
    }
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
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let shutdown = CancellationToken::new();
        let app = router(server, &options, loopback, &shutdown);
        let header_timeout = Duration::from_secs(options.serve.header_timeout_s);
        let task = tokio::spawn(accept_loop(listener, app, header_timeout, shutdown.clone()));
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

/// Serves every connection with HTTP/1 (what axum's `serve` does) plus the
/// header read timeout, which needs a timer axum's `serve` does not set.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // Each connection holds a receiver; all gone means all connections ended.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    loop {
        let (stream, _peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // A response goes out as several small writes (the head, then each
        // SSE event); with Nagle's algorithm on, the second waits for the
        // client's delayed ACK, about 40 ms on Linux, on every call of a
        // kept-alive connection. axum's own `serve` turns it off too.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended");
                    }
                }
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended at shutdown");
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

fn flatten(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match joined {
        Ok(result) => result.map_err(|e| ServeError::Transport(e.to_string())),
        Err(join) => Err(ServeError::Transport(join.to_string())),
    }
}

/// rmcp's streamable HTTP service for `server`, with the hygiene settings,
/// twice: with and without SSE priming events (`priming.rs`).
fn mcp_service(
    server: McpServer,
    options: &HttpOptions,
    sessions: Arc<Sessions>,
    hosts: &Option<Vec<String>>,
    shutdown: &CancellationToken,
) -> priming::Route {
    let origins = LOOPBACK_ORIGINS
        .iter()
        .map(|o| o.to_string())
        .chain(options.serve.allowed_origins.iter().cloned());
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(options.serve.max_body_bytes as usize)
        .with_cancellation_token(shutdown.child_token());
    config = match hosts {
        Some(hosts) => config.with_allowed_hosts(hosts.clone()),
        None => config.disable_allowed_hosts(),
    };
    let plain = config.clone().with_sse_retry(None);
    let service = |config| {
        let server = server.clone();
        StreamableHttpService::new(move || Ok(server.clone()), sessions.clone(), config)
    };
    priming::Route {
        primed: service(config),
        plain: service(plain),
        sessions: sessions.clone(),
    }
}

/// The `Host` values served, `None` for any: on loopback the loopback names
/// (the DNS-rebinding defence); elsewhere the token is, plus any hosts named.
fn allowed_hosts(options: &HttpOptions, loopback: bool) -> Option<Vec<String>> {
    if loopback {
        Some(LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect())
    } else if options.serve.allowed_hosts.is_empty() {
        None
    } else {
        Some(options.serve.allowed_hosts.clone())
    }
}

fn router(
    server: McpServer,
    options: &HttpOptions,
    loopback: bool,
    shutdown: &CancellationToken,
) -> Router {
    let serve = &options.serve;
    let sessions = Arc::new(Sessions::new(
        serve.max_sessions,
        Duration::from_secs(serve.session_idle_s),
    ));
    let hosts = allowed_hosts(options, loopback);
    let guard = jsonrpc::GuardState {
        limit: serve.max_body_bytes as usize,
        sessions: sessions.clone(),
    };
    let mcp = Router::new()
        .route("/mcp", any(priming::route))
        .with_state(mcp_service(
            server.clone(),
            options,
            sessions.clone(),
            &hosts,
            shutdown,
        ))
        .layer(middleware::from_fn_with_state(guard, jsonrpc::guard))
        .layer(middleware::from_fn_with_state(
            sessions.clone(),
            delete::end_session,
        ));
    let scrape = Router::new()
        .route("/metrics", get(render_metrics))
        .layer(middleware::from_fn(no_browser_origin))
        .with_state(server.clone());
    let token = options.token.clone().map(Arc::new);
    let guarded = mcp
        .merge(scrape)
        .merge(options.api.clone())
        .layer(middleware::from_fn_with_state(token, require_token));
    let health = Router::new()
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn(no_browser_origin))
        .with_state(Health { server, sessions });
    guarded
        .merge(health)
        .merge(options.page.clone())
        .layer(middleware::from_fn_with_state(
            hosts.map(Arc::new),
            known_host,
        ))
}

/// 403 for a `Host` outside `hosts` (DNS rebinding), on every path.
async fn known_host(
    State(hosts): State<Option<Arc<Vec<String>>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(hosts) = hosts
        && !host_allowed(request.headers(), &hosts)
    {
        tracing::warn!(host = ?request.headers().get(header::HOST), "refused a foreign Host (DNS rebinding?)");
        return refusal(
            &request,
            StatusCode::FORBIDDEN,
            "this server does not answer to that Host",
        );
    }
    next.run(request).await
}

/// Whether the `Host` header names one of `hosts`, compared as rmcp does: an
/// entry without a port matches any port, names are case-insensitive and an
/// IPv6 address may be bracketed. A missing or malformed `Host` is refused.
fn host_allowed(headers: &http::HeaderMap, hosts: &[String]) -> bool {
    let authority = |text: &str| {
        let authority = http::uri::Authority::try_from(text.trim()).ok()?;
        let host = authority
            .host()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        Some((host, authority.port_u16()))
    };
    let Some((host, port)) = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(authority)
    else {
        return false;
    };
    hosts.iter().any(|allowed| {
        // A bare IPv6 address (`::1`) is not an authority; it is the host.
        let (name, want) =
            authority(allowed).unwrap_or_else(|| (allowed.to_ascii_lowercase(), None));
        name == host && want.is_none_or(|p| Some(p) == port)
    })
}

async fn require_token(
    State(token): State<Option<Arc<BearerToken>>>,
    request: Request,
    next: Next,
) -> Response {
    match token {
        Some(token) if !token.admits(request.headers()) => {
            let mut response = refusal(
                &request,
                StatusCode::UNAUTHORIZED,
                "a bearer token is required",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

/// Where JSON refusals are given: the run API's paths. Elsewhere (`/mcp`,
/// `/metrics`) a refusal stays the line of text it always was.
const JSON_PATHS: &str = "/v1/";

/// A 401 or 403: `{"error": {"kind": "auth", ...}}` on the run API, a line
/// of text elsewhere.
fn refusal(request: &Request, status: StatusCode, message: &str) -> Response {
    if request.uri().path().starts_with(JSON_PATHS) {
        let body = serde_json::json!({"error": {"kind": "auth", "message": message}});
        return (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    (status, format!("{message}\n")).into_response()
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

/// What `/healthz` reports.
#[derive(Clone)]
struct Health {
    server: McpServer,
    sessions: Arc<Sessions>,
}

async fn healthz(State(Health { server, sessions }): State<Health>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "tools": server.tool_count(),
        "calls_in_flight": server.metrics().calls_in_flight(),
        "sessions": sessions.open(),
        "max_sessions": sessions.limit(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

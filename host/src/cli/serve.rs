//! `toolhost serve --stdio | --http ADDR [--token-env NAME]`: the MCP server,
//! and over HTTP the run API and the runs page (`toolhost::web`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args};
use tokio::sync::watch;
use toolhost::agent::{Agent, AgentOptions, Hub, Recovery};
use toolhost::idempotency::Executor;
use toolhost::mcp::{BearerToken, HttpOptions, HttpServer, McpServer, ServeError, serve_stdio};
use toolhost::metrics::{self, ServerMetrics};

use super::{Env, Failure};

/// How often the cache counters are added to the store (`toolhost stats`).
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How stale `/metrics`' breaker states may be: they are read from the store,
/// where every process (agent runs, `model call`) publishes its breakers.
const BREAKER_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("transport").required(true).args(["stdio", "http"])))]
pub struct ServeArgs {
    /// Serve one client on stdin/stdout; stdout carries only protocol messages, logs go to stderr.
    #[arg(long)]
    stdio: bool,
    /// Serve streamable HTTP on IP:PORT (MCP at /mcp, the run API at /v1/runs, the runs page at /, /metrics, /healthz); loopback unless --token-env is given.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    http: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on /mcp, /v1/runs and /metrics, the token read from this environment variable (the page takes it as /#token=...).
    #[arg(long, value_name = "NAME", requires = "http")]
    token_env: Option<String>,
}

impl ServeArgs {
    /// Whether stdout belongs to the protocol (so nothing else may print there).
    pub fn owns_stdout(&self) -> bool {
        self.stdio
    }
}

/// `IP:PORT`, or `localhost:PORT` for the IPv4 loopback.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let spelled = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_string(),
    };
    spelled
        .parse()
        .map_err(|_| format!("`{text}` is not IP:PORT (such as 127.0.0.1:8765)"))
}

pub async fn run(env: &Env, args: ServeArgs) -> Result<(), Failure> {
    // Read the token before any work, so a missing one fails at once.
    let token = match &args.token_env {
        Some(var) => Some(BearerToken::from_env(var).map_err(|e| Failure::usage(e.to_string()))?),
        None => None,
    };
    let executor = Arc::new(env.executor().await?);
    for skipped in executor.sandbox().load_errors() {
        tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "tool not loaded");
    }
    let max_calls = env.config.sandbox.max_concurrent_calls;
    // Every configured model and loaded tool has a breaker gauge, `closed`
    // until some process publishes one, as `model list` shows it.
    let known = env
        .config
        .models
        .iter()
        .map(|m| format!("model:{}", m.name))
        .chain(
            executor
                .sandbox()
                .tools()
                .map(|t| format!("tool:{}", t.name)),
        )
        .collect();
    let breakers =
        metrics::persisted_breakers_with(executor.store().clone(), BREAKER_REFRESH, known);
    let journal = metrics::persisted_journal(executor.store().clone(), metrics::JOURNAL_REFRESH);
    let metrics = Arc::new(ServerMetrics::new(max_calls, breakers).with_journal(journal));
    // An `in_doubt` hint names `toolhost cache resolve` with this server's
    // flags, as the CLI's hints do.
    let server = McpServer::new(executor.clone(), metrics, max_calls as usize)
        .with_hint_flags(env.flags.clone());
    let flusher = tokio::spawn(flush_periodically(executor.clone()));
    let (stop, stopping) = watch::channel(false);
    let hub = hub(env, executor.clone(), stopping.clone()).await?;
    let recovery = match (&hub, env.config.serve.recover) {
        (Some(hub), true) => {
            let agent = Arc::new(hub.agent().clone());
            let max = env.config.serve.max_concurrent_runs as usize;
            let recovery = Recovery::new(agent, max, stopping).with_hub(hub.clone());
            Some(tokio::spawn(recovery.run()))
        }
        _ => None,
    };

    let served = match args.http {
        None => tokio::select! {
            served = serve_stdio(server) => served,
            () = terminated() => Ok(()),
        },
        Some(addr) => serve_http(env, server, addr, token, hub.clone()).await,
    };
    // Adopted and submitted runs hand themselves back after their calls in
    // flight, so the next server takes them at once.
    let _ = stop.send(true);
    if let Some(recovery) = recovery {
        let _ = recovery.await;
    }
    if let Some(hub) = hub {
        hub.drained().await;
    }
    flusher.abort();
    if let Err(e) = executor.flush_stats().await {
        tracing::warn!(error = %e, "cannot record cache counters");
    }
    served.map_err(|e| match e {
        ServeError::TokenRequired { .. }
        | ServeError::BadToken { .. }
        | ServeError::Bind { .. } => Failure::usage(e.to_string()),
        _ => Failure::internal(e.to_string()),
    })
}

async fn serve_http(
    env: &Env,
    server: McpServer,
    addr: SocketAddr,
    token: Option<BearerToken>,
    hub: Option<Arc<Hub>>,
) -> Result<(), ServeError> {
    let serve = env.config.serve.clone();
    let routes = toolhost::web::routes(
        server.executor().store().clone(),
        hub,
        &serve,
        addr.ip().is_loopback(),
    );
    let mut options = HttpOptions::new(addr, token, serve);
    options.api = routes.api;
    options.page = routes.page;
    let http = HttpServer::bind(server, options).await?;
    // The one line a supervisor (or a test) reads to find the port.
    eprintln!(
        "toolhost: serving MCP at {} (runs at /v1/runs, the runs page at /, metrics at /metrics, health at /healthz)",
        http.url()
    );
    http.run_until(terminated()).await
}

/// The runs this server drives (submitted over the API, and adopted when
/// their owner died), at most `[serve] max_concurrent_runs` at once; they
/// hand themselves back when `stopping` turns true. `None` without a model
/// to drive them with.
async fn hub(
    env: &Env,
    executor: Arc<Executor>,
    stopping: watch::Receiver<bool>,
) -> Result<Option<Arc<Hub>>, Failure> {
    let chain = env.quiet_chain(executor.store()).await?;
    if chain.is_empty() {
        tracing::info!(target: "toolhost::run", "no model is configured: runs are neither taken nor adopted");
        return Ok(None);
    }
    let agent = Agent::new(executor, chain, &env.config).hand_back_on(stopping);
    Ok(Some(Hub::new(
        agent,
        AgentOptions::from_config(&env.config.agent),
        env.config.serve.max_concurrent_runs as usize,
    )))
}

async fn flush_periodically(executor: Arc<Executor>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = executor.flush_stats().await {
            tracing::warn!(error = %e, "cannot record cache counters");
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

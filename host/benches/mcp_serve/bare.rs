//! The bare rmcp baseline: an rmcp server whose `echo` answers in process
//! (no sandbox, no store, no metrics, no logging), over stdio and
//! streamable HTTP, with the rmcp version and transports toolhost serves
//! with. It isolates what toolhost's own layers cost, as `raw wasmtime`
//! stands beside the sandbox in the sandbox bench.
//!
//! It runs as its own process, the bench binary re-executed with
//! [`ROLE_VAR`] set (`bare-stdio` or `bare-http`), so the baseline needs no
//! crate or binary of its own. The HTTP side is served the way toolhost's
//! is (hyper's HTTP/1 connection per socket, `TCP_NODELAY`, rmcp's
//! `StreamableHttpService`), without toolhost's session cap, guards and
//! routes.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

/// Set on the re-executed bench binary: which baseline server it is.
pub const ROLE_VAR: &str = "TOOLHOST_BENCH_ROLE";

/// What an HTTP server of this bench prints on stderr once it listens
/// (the FastMCP script prints the same).
pub const LISTENING: &str = "listening on ";

/// `echo`: returns its arguments as the result.
#[derive(Clone, Copy)]
struct Echo;

fn echo_tool() -> Tool {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
    });
    let serde_json::Value::Object(schema) = schema else {
        unreachable!("a json! object literal is an object")
    };
    Tool::new("echo", "Returns its input.", schema)
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("bare-rmcp-echo", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![echo_tool()]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = serde_json::Value::Object(request.arguments.unwrap_or_default());
        Ok(CallToolResult::structured(arguments).into())
    }
}

/// Serves as `role` says until the client leaves (stdio) or the bench
/// kills it (HTTP). Runs on a runtime built as `toolhost serve` builds its
/// own: multi-threaded, a worker per core.
pub fn run(role: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match role {
        "bare-stdio" => runtime.block_on(stdio()),
        "bare-http" => runtime.block_on(http()),
        other => panic!("{ROLE_VAR}={other}: expected bare-stdio or bare-http"),
    }
}

async fn stdio() {
    let running = Echo
        .serve(rmcp::transport::stdio_pipes())
        .await
        .expect("the client initializes");
    // The client closing stdin ends the session: either way, we are done.
    let _ = running.waiting().await;
}

async fn http() {
    // rmcp's defaults: the loopback `Host` names only, as toolhost on loopback.
    let service = StreamableHttpService::new(
        || Ok(Echo),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("a bound address").port();
    eprintln!("{LISTENING}{port}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // As toolhost: without it, every response waits ~40 ms for the
        // client's delayed ACK (decision 0080).
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

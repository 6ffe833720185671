//! An MCP server on 127.0.0.1 over the example, hostile and testkit tools,
//! and the client-side helpers the MCP tests share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, JsonObject,
};
use rmcp::service::{PeerRequestOptions, RequestHandle, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tempfile::TempDir;
use toolhost::config::{DirGrant, DirMode, ServeConfig, ToolPolicy};
use toolhost::idempotency::Executor;
use toolhost::mcp::{BearerToken, HttpOptions, HttpServer, McpServer};
use toolhost::metrics::{ServerMetrics, no_breakers};
use toolhost::sandbox::EgressOptions;
use toolhost::store::{Store, StoreOptions};

use crate::support_http::{Reply, TestServer, allow, sandbox_with};

/// Every tool the MCP tests call.
pub const TOOLS: &[&str] = &[
    "calc",
    "jq",
    "markdown",
    "slow",
    "echo",
    "notes",
    "http_fetch",
    "pay",
    "append",
    "spin",
    "membomb",
    "panic",
    "flood",
];

/// Every bounded wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

pub type Client = RunningService<RoleClient, ()>;

/// What a test may change about the server.
pub struct Options {
    pub max_calls: usize,
    pub token: Option<&'static str>,
    pub serve: ServeConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_calls: 64,
            token: None,
            serve: ServeConfig::default(),
        }
    }
}

/// A running server, its data directory (granted to `notes` and `append` at
/// `/data`) and the loopback site `http_fetch` may reach.
pub struct Harness {
    pub http: HttpServer,
    pub server: McpServer,
    pub data: TempDir,
    pub site: TestServer,
    _db: TempDir,
}

fn data_grant(data: &TempDir) -> ToolPolicy {
    ToolPolicy {
        dirs: vec![DirGrant {
            host: data.path().to_path_buf(),
            guest: "/data".into(),
            mode: DirMode::Rw,
        }],
        ..ToolPolicy::default()
    }
}

impl Harness {
    pub async fn start(options: Options) -> Harness {
        let site = TestServer::http(&[("/hello", Reply::Ok("hello from loopback".into()))]).await;
        let data = tempfile::tempdir().unwrap();
        let spin = ToolPolicy {
            fuel: Some(20_000_000),
            ..ToolPolicy::default()
        };
        let policies = [
            ("notes", data_grant(&data)),
            ("append", data_grant(&data)),
            ("http_fetch", allow(&[&site.host_port()])),
            ("spin", spin),
        ];
        let sandbox = sandbox_with(TOOLS, &policies, EgressOptions::default()).await;
        let db = tempfile::tempdir().unwrap();
        let path = db.path().join("mcp.db");
        let store =
            tokio::task::spawn_blocking(move || Store::open(&path, StoreOptions::default()))
                .await
                .unwrap()
                .unwrap();
        let executor = Arc::new(Executor::new(sandbox, store));
        let metrics = Arc::new(ServerMetrics::new(options.max_calls as u32, no_breakers()));
        let server = McpServer::new(executor, metrics, options.max_calls);
        let http_options = HttpOptions::new(
            "127.0.0.1:0".parse().unwrap(),
            options.token.map(|t| BearerToken::new(t).unwrap()),
            options.serve,
        );
        let http = HttpServer::bind(server.clone(), http_options)
            .await
            .unwrap();
        Harness {
            http,
            server,
            data,
            site,
            _db: db,
        }
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.local_addr())
    }

    /// An rmcp client connected over streamable HTTP.
    pub async fn client(&self) -> Client {
        connect(&self.url(), None).await
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(self.at("/metrics")).await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Waits (bounded) until the in-flight gauge reads `n`.
    pub async fn wait_in_flight(&self, n: i64) {
        let deadline = Instant::now() + WAIT;
        while self.server.metrics().calls_in_flight() != n {
            assert!(
                Instant::now() < deadline,
                "in-flight calls never reached {n}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// An rmcp client over streamable HTTP, with an optional bearer token.
pub async fn connect(url: &str, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(token) = token {
        config = config.auth_header(token.to_string());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    tokio::time::timeout(WAIT, ().serve(transport))
        .await
        .expect("the handshake finishes")
        .expect("the client connects")
}

/// `tools/call` parameters for `tool` with `input` (a JSON object).
pub fn params(tool: &str, input: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = input else {
        panic!("tool input must be an object");
    };
    CallToolRequestParams::new(tool.to_string()).with_arguments(arguments)
}

/// Calls a tool; the call itself must not be a protocol error.
pub async fn call(client: &Client, tool: &str, input: Value) -> CallToolResult {
    tokio::time::timeout(WAIT, client.call_tool(params(tool, input)))
        .await
        .unwrap_or_else(|_| panic!("{tool} answers in time"))
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// The result's first text block.
pub fn text(result: &CallToolResult) -> String {
    let block = serde_json::to_value(&result.content[0]).unwrap();
    block["text"].as_str().unwrap_or_default().to_string()
}

/// The output of a successful call, parsed from its text.
pub fn output(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{}", text(result));
    serde_json::from_str(&text(result)).unwrap()
}

/// A `_meta` entry of the result.
pub fn meta(result: &CallToolResult, key: &str) -> Value {
    result
        .meta
        .as_ref()
        .and_then(|m| m.get(key).cloned())
        .unwrap_or(Value::Null)
}

/// The error kind of a failed call (`isError`), from `_meta`.
pub fn error_kind(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "not an error: {}",
        text(result)
    );
    let kind = meta(result, toolhost::mcp::META_ERROR)["kind"].clone();
    let kind = kind.as_str().unwrap().to_string();
    assert!(
        text(result).starts_with(&format!("{kind}: ")),
        "{}",
        text(result)
    );
    kind
}

/// The value of one sample of the metrics page, such as
/// `toolhost_cache_hits_total{tool="calc"}`; 0 when absent.
pub fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// Asserts each `(series, value)` of the metrics page.
pub fn assert_samples(page: &str, expected: &[(&str, f64)]) {
    for (series, value) in expected {
        assert_eq!(sample(page, series), *value, "{series} in\n{page}");
    }
}

/// Sends a `tools/call` without waiting for its result; the handle can
/// cancel it (`notifications/cancelled`).
pub async fn start_call(client: &Client, tool: &str, input: Value) -> RequestHandle<RoleClient> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params(tool, input)));
    client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("the request is sent")
}

/// A `_meta` object for a request.
pub fn idempotency_meta(key: &str) -> rmcp::model::RequestMetaObject {
    let mut object = JsonObject::new();
    object.insert(toolhost::mcp::META_IDEMPOTENCY_KEY.into(), key.into());
    serde_json::from_value(Value::Object(object)).unwrap()
}

/// A hand-driven MCP session over plain HTTP, for what a well-behaved
/// client never sends.
pub struct Raw {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub version: String,
}

impl Raw {
    /// A session opened with `initialize` at `version`; returns the
    /// `initialize` result too.
    pub async fn initialize(url: &str, version: &str) -> (Raw, Value) {
        let mut raw = Raw {
            http: reqwest::Client::new(),
            url: url.to_string(),
            session: None,
            version: version.to_string(),
        };
        let init = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        });
        let response = raw.post(&init.to_string()).await;
        assert_eq!(response.status(), 200);
        raw.session = response
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string());
        let reply = messages(&response.text().await.unwrap()).remove(0);
        // Later requests carry the version the server chose.
        raw.version = reply["result"]["protocolVersion"]
            .as_str()
            .expect("a negotiated version")
            .to_string();
        let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let accepted = raw.post(&note.to_string()).await;
        assert!(accepted.status().is_success(), "{}", accepted.status());
        (raw, reply["result"].clone())
    }

    /// POSTs `body` as an MCP client would (headers and session).
    pub async fn post(&self, body: &str) -> reqwest::Response {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(session) = &self.session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", &self.version);
        }
        tokio::time::timeout(WAIT, request.send())
            .await
            .expect("the server answers in time")
            .expect("the request is sent")
    }
}

impl Raw {
    /// `DELETE /mcp` for `session`, as a client ending it sends.
    pub async fn delete(&self, session: &str) -> reqwest::Response {
        let request = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", &self.version);
        tokio::time::timeout(WAIT, request.send())
            .await
            .expect("the server answers in time")
            .expect("the request is sent")
    }
}

/// The JSON-RPC messages of a response body: one JSON document, or the
/// `data:` lines of an SSE stream.
pub fn messages(body: &str) -> Vec<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return vec![value];
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect()
}

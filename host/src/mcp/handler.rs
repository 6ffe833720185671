//! The MCP request handler: `initialize`, `tools/list` and `tools/call`.
//!
//! One [`McpServer`] serves every session of both transports; cloning it is
//! cheap (an `Arc`), as rmcp makes one handler per HTTP session.
//!
//! A call goes through the same [`Executor`] as `toolhost call`: the same
//! sandbox, limits, policies and idempotency keys. The order of a call:
//!
//! 1. An unknown tool is a JSON-RPC error (`-32602`), as the MCP
//!    specification asks: the request cannot be routed.
//! 2. A bad `_meta` idempotency key is an `invalid_input` tool result, and
//!    so are arguments the strict I-JSON parse refuses (`strict.rs`), in the
//!    CLI's words.
//! 3. A slot is taken, or the call is refused as `overloaded` (see
//!    `admission.rs`).
//! 4. The executor runs (or replays) the call, racing the request's
//!    cancellation token: `notifications/cancelled`, or an HTTP client that
//!    went away (which the session turns into one, see `http/sessions.rs`),
//!    drops the executor's future before it runs (so an effect not yet
//!    started never starts) or stops the wasm at its next epoch tick, and
//!    settles any claim as the idempotency contract says (a side effect
//!    becomes `in_doubt`, an idempotent call is released).
//! 5. The outcome is counted in the metrics, logged as one info line
//!    (target `toolhost::serve`), and becomes a tool result.
//!
//! Each call is a `tools/call {tool}` server span whose parent is the W3C
//! `traceparent` in the request's `_meta` (`telemetry::parent`), with the
//! executor's `execute_tool` span as its child.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CustomRequest, CustomResult,
    ErrorCode, Implementation, ListToolsResult, PaginatedRequestParams, RequestMetaObject,
    ServerCapabilities, ServerConfig, Tool as McpTool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;

use super::admission::Admission;
use super::result::{self, META_IDEMPOTENCY_KEY};
use super::strict::StrictArguments;
use super::tools;
use crate::idempotency::{ExecError, ExecOptions, ExecOutput, Executor, Scope};
use crate::metrics::{Cache, CallRecord, Outcome, ServerMetrics, UNKNOWN_TOOL};
use crate::telemetry::{self, TARGET, attrs};
use tracing::Instrument;
use tracing::field::Empty;

/// The target of the one info line per call `serve` logs.
pub const LOG_TARGET: &str = "toolhost::serve";

/// The requests this server answers (besides notifications).
const SERVED: [&str; 4] = ["initialize", "ping", "tools/list", "tools/call"];

/// Whether `method` is a request this server serves: rmcp reads one whose
/// params do not fit as a custom request, and that is an invalid-params
/// error, not an unknown method.
pub fn serves(method: &str) -> bool {
    SERVED.contains(&method)
}

/// The longest explicit idempotency key accepted (as `toolhost call`).
const MAX_KEY_LEN: usize = 256;

/// What the server tells clients about itself at `initialize`.
const INSTRUCTIONS: &str = "Each tool runs in a fresh WebAssembly sandbox with fuel, time, memory \
and output limits. Calls are idempotent: a repeated pure call replays its recorded result, and a \
side-effecting call runs at most once per key. Pass `_meta: {\"toolhost/idempotencyKey\": \"...\"}` \
to name an operation. A failed call returns isError with its kind in `_meta.toolhost/error`.";

/// The MCP server over one executor.
#[derive(Clone)]
pub struct McpServer {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Arc<Executor>,
    metrics: Arc<ServerMetrics>,
    admission: Admission,
    tools: Vec<McpTool>,
    /// Tools whose results also go out as `structuredContent`.
    structured: HashSet<String>,
    /// The server's own global flags, repeated in every hint's command
    /// (`crate::hint`).
    hint_flags: Vec<String>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("tools", &self.inner.tools.len())
            .field("max_concurrent_calls", &self.inner.admission.limit())
            .finish_non_exhaustive()
    }
}

/// How a call ended before it became a tool result.
enum Ended {
    Done(Result<ExecOutput, ExecError>),
    Cancelled,
}

impl McpServer {
    /// A server for the executor's loaded tools, admitting at most
    /// `max_concurrent_calls` calls at once.
    pub fn new(
        executor: Arc<Executor>,
        metrics: Arc<ServerMetrics>,
        max_concurrent_calls: usize,
    ) -> Self {
        let sandbox = executor.sandbox();
        let tools = tools::list(sandbox);
        let structured = sandbox
            .tools()
            .filter(|t| tools::output_schema(t).is_some())
            .map(|t| t.name.clone())
            .collect();
        McpServer {
            inner: Arc::new(Inner {
                executor,
                metrics,
                admission: Admission::new(max_concurrent_calls.max(1)),
                tools,
                structured,
                hint_flags: Vec::new(),
            }),
        }
    }

    /// Every `` `toolhost ...` `` command in an error message (the
    /// `cache resolve` of an `in_doubt` call) repeats `flags` (quoted), the
    /// server's own `--config`, `--tools-dir` and `--db`: pasted as given,
    /// it acts on the server's store. Call before the server is shared.
    pub fn with_hint_flags(mut self, flags: Vec<String>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("hint flags are set before the server is cloned")
            .hint_flags = flags;
        self
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.inner.executor
    }

    pub fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.inner.metrics
    }

    /// How many tools `tools/list` shows.
    pub fn tool_count(&self) -> usize {
        self.inner.tools.len()
    }

    /// One `tools/call`, cancelled when `cancelled` resolves. `strict` is
    /// the transport's strict reading of the arguments (see `strict.rs`);
    /// without one (an in-process transport keeps no text) rmcp's parsed
    /// arguments are used.
    async fn call(
        &self,
        params: CallToolRequestParams,
        meta: &RequestMetaObject,
        request_id: &rmcp::model::RequestId,
        strict: Option<&StrictArguments>,
        cancelled: impl Future<Output = ()>,
    ) -> Result<CallToolResult, McpError> {
        let inner = &self.inner;
        let started = Instant::now();
        let name = params.name.to_string();
        if inner.executor.sandbox().tool(&name).is_none() {
            self.count(UNKNOWN_TOOL, Outcome::Error, Some("unknown_tool"), started);
            // JSON-RPC -32602 as the MCP specification shows, with the
            // same kind name and words as every other command's.
            let error = inner.executor.sandbox().unknown(&name);
            return Err(McpError::invalid_params(
                error.to_string(),
                Some(serde_json::json!({"kind": error.kind().as_str()})),
            ));
        }
        let scope = match explicit_key(params.meta.as_ref(), meta) {
            Ok(scope) => scope,
            Err(message) => {
                self.count(&name, Outcome::Error, Some("invalid_input"), started);
                return Ok(result::failure("invalid_input", &message, None, false));
            }
        };
        let input = match strict {
            Some(StrictArguments(Ok(text))) => text.clone(),
            Some(StrictArguments(Err(e))) => {
                // The executor's own refusal of such an input, word for word.
                let error = crate::sandbox::CallError::InvalidInput(e.to_string());
                let kind = error.kind().as_str();
                self.count(&name, Outcome::Error, Some(kind), started);
                return Ok(result::failure(kind, &error.to_string(), None, false));
            }
            None => Value::Object(params.arguments.unwrap_or_default()).to_string(),
        };
        let Some(_slot) = inner.admission.try_admit() else {
            self.count(&name, Outcome::Error, Some("overloaded"), started);
            let message = inner.admission.refusal();
            return Ok(result::failure("overloaded", &message, None, false));
        };
        let _running = inner.metrics.in_flight();
        let options = ExecOptions {
            scope,
            ..ExecOptions::default()
        };
        let call_id = request_id.to_string();
        let ended = tokio::select! {
            biased;
            () = cancelled => Ended::Cancelled,
            result = inner.executor.call_with_id(&name, &input, options, Some(&call_id)) => Ended::Done(result),
        };
        Ok(self.finish(&name, ended, started))
    }

    /// Counts the outcome and turns it into a tool result.
    fn finish(&self, name: &str, ended: Ended, started: Instant) -> CallToolResult {
        let elapsed = started.elapsed();
        match ended {
            Ended::Cancelled => {
                self.count(name, Outcome::Cancelled, None, started);
                result::failure("cancelled", "the client cancelled this call", None, false)
            }
            Ended::Done(Ok(out)) => {
                self.observe(&CallRecord {
                    tool: name,
                    outcome: Outcome::Ok,
                    kind: None,
                    cache: if out.cached { Cache::Hit } else { Cache::Miss },
                    fuel_used: if out.cached { 0 } else { out.fuel_used },
                    duration: elapsed,
                });
                result::success(&out, self.inner.structured.contains(name))
            }
            Ended::Done(Err(e)) => {
                let cached = matches!(e, ExecError::Call { cached: true, .. });
                let cache = match e.key() {
                    Some(_) if cached => Cache::Hit,
                    Some(_) => Cache::Miss,
                    None => Cache::None,
                };
                self.observe(&CallRecord {
                    tool: name,
                    outcome: Outcome::Error,
                    kind: Some(e.kind()),
                    cache,
                    fuel_used: 0,
                    duration: elapsed,
                });
                let message = crate::hint::with_flags(&e.to_string(), &self.inner.hint_flags);
                result::failure(e.kind(), &message, e.key(), cached)
            }
        }
    }

    fn count(&self, tool: &str, outcome: Outcome, kind: Option<&str>, started: Instant) {
        self.observe(&CallRecord {
            tool,
            outcome,
            kind,
            cache: Cache::None,
            fuel_used: 0,
            duration: started.elapsed(),
        });
    }

    /// Counts one finished call, marks its `tools/call` span (the current
    /// one) with the error kind, and logs its one info line.
    fn observe(&self, call: &CallRecord<'_>) {
        self.inner.metrics.record(call);
        let span = tracing::Span::current();
        if let Some(kind) = call.kind {
            span.record(attrs::ERROR_TYPE, kind);
            span.record("otel.status_code", "error");
        } else if call.outcome == Outcome::Cancelled {
            span.record(attrs::ERROR_TYPE, "cancelled");
        }
        tracing::info!(
            target: LOG_TARGET,
            tool = call.tool,
            outcome = call.outcome.as_str(),
            kind = call.kind.unwrap_or("-"),
            cache = call.cache.as_str(),
            duration_ms = call.duration.as_secs_f64() * 1000.0,
            "tool call"
        );
    }
}

/// The scope named by `_meta["toolhost/idempotencyKey"]`, looked up in the
/// call's params and in the request's `_meta` (rmcp moves it there).
fn explicit_key(
    params: Option<&RequestMetaObject>,
    request: &RequestMetaObject,
) -> Result<Scope, String> {
    let value = params
        .and_then(|m| m.get(META_IDEMPOTENCY_KEY))
        .or_else(|| request.get(META_IDEMPOTENCY_KEY));
    match value {
        None => Ok(Scope::Empty),
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KEY_LEN => {
            Ok(Scope::Explicit(k.clone()))
        }
        Some(_) => Err(format!(
            "_meta.{META_IDEMPOTENCY_KEY} must be a string of 1-{MAX_KEY_LEN} bytes"
        )),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("toolhost", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    /// A served method whose params did not parse arrives here (rmcp falls
    /// back to a custom request): say so, rather than "method not found".
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        if serves(&request.method) {
            return Err(McpError::invalid_params(
                format!("invalid params for {}", request.method),
                None,
            ));
        }
        Err(McpError::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("method not found: {}", request.method),
            None,
        ))
    }

    fn get_tool(&self, name: &str) -> Option<McpTool> {
        self.inner.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let cancelled = context.ct.cancelled();
        // The stdio tap puts it on the request; over HTTP it rides on the
        // HTTP request's parts, which rmcp attaches.
        let strict = context.extensions.get::<StrictArguments>().or_else(|| {
            context
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<StrictArguments>())
        });
        let known = self.inner.executor.sandbox().tool(&request.name).is_some();
        // A made-up tool name is not a span name: `_unknown` (as in metrics).
        let tool = if known { &*request.name } else { UNKNOWN_TOOL };
        let span = tracing::info_span!(
            target: TARGET,
            "tools/call",
            otel.name = format!("tools/call {tool}"),
            otel.kind = "server",
            otel.status_code = Empty,
            { attrs::MCP_METHOD } = "tools/call",
            { attrs::TOOL_NAME } = tool,
            { attrs::TOOL_CALL_ID } = %context.id,
            { attrs::ERROR_TYPE } = Empty,
        );
        // The client's trace, when its `_meta` names one (W3C traceparent).
        let metas: Vec<&serde_json::Map<String, Value>> = request
            .meta
            .iter()
            .chain([&context.meta])
            .map(|m| &m.0.0)
            .collect();
        if let Some(parent) = telemetry::parent::from_meta(&metas) {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            // Fails only when the span is not exported: nothing to parent.
            let _ = span.set_parent(parent);
        }
        self.call(request, &context.meta, &context.id, strict, cancelled)
            .instrument(span)
            .await
            .map(CallToolResponse::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: Value) -> RequestMetaObject {
        serde_json::from_value(v).expect("an object")
    }

    #[test]
    fn the_meta_key_becomes_the_explicit_scope() {
        let none = RequestMetaObject::default();
        assert_eq!(explicit_key(None, &none), Ok(Scope::Empty));
        let m = meta(serde_json::json!({"toolhost/idempotencyKey": "order-7"}));
        assert_eq!(
            explicit_key(Some(&m), &none),
            Ok(Scope::Explicit("order-7".into()))
        );
        assert_eq!(
            explicit_key(None, &m),
            Ok(Scope::Explicit("order-7".into()))
        );
        for bad in [
            serde_json::json!(""),
            serde_json::json!(7),
            serde_json::json!("x".repeat(257)),
        ] {
            let m = meta(serde_json::json!({"toolhost/idempotencyKey": bad}));
            assert!(explicit_key(None, &m).is_err());
        }
    }
}

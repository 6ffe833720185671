//! A fault-injecting model server: HTTP/1.1 on 127.0.0.1 speaking both wire
//! formats (Anthropic `POST /v1/messages`, OpenAI `POST /v1/chat/completions`),
//! answering each request with the next scripted [`Step`]: a reply, an error
//! status with a realistic body and headers, a delay, a stall, a dropped
//! connection, malformed JSON or a tool call with broken arguments.
//!
//! A request that asks for a stream (`"stream": true`) gets its answer as
//! server-sent events in the provider's format, written one event per
//! chunk of a chunked body; [`Step::Streamed`] breaks such a stream the ways
//! a real one breaks ([`StreamFault`]). Every OpenAI chunk sent is checked
//! against the published chunk schema.
//!
//! Hand-rolled on tokio's `TcpListener` rather than hyper so that a fault can
//! be anything a real network does: a response that never comes, a socket
//! closed mid-request. Every request is checked (headers, and for OpenAI the
//! body against the published JSON Schema); every OpenAI success body is
//! checked against the response schema before it is sent. Anything off is a
//! recorded violation and a 400 the client cannot mistake for a real answer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// 200 with a text answer.
    Text(String),
    /// 200 with one tool call.
    ToolCall { name: String, arguments: Value },
    /// 200 with a tool call whose arguments are this exact text (JSON that
    /// serde_json reads but I-JSON refuses, say).
    RawToolArgs { name: String, raw: String },
    /// 200 with a tool call whose arguments are not JSON.
    BrokenToolArgs,
    /// An error status with the body and headers the provider sends for it.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    RateLimited { retry_after_s: u64 },
    /// 429 with `retry-after-ms`.
    RateLimitedMs(u64),
    /// 400 saying the prompt does not fit.
    ContextLength,
    /// 400 saying the content was refused.
    ContentPolicy,
    /// The inner step, after a real-time delay.
    Delay(Duration, Box<Step>),
    /// Reads the request and never answers (the socket stays open).
    Stall,
    /// Reads the request and closes the connection without a response.
    Drop,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// An error status with an HTML page, as a proxy or load balancer sends.
    HtmlPage(u16),
    /// The inner step with one more response header.
    Header(&'static str, String, Box<Step>),
    /// A redirect: this status with `Location` set to the URL.
    Redirect(u16, String),
    /// 200 whose text echoes the API key the request carried.
    EchoKey,
    /// An error status with a long HTML page that echoes the key past the
    /// point where error messages are cut.
    EchoKeyHtml(u16),
    /// The inner answer as a stream, with `fault` (to a request that did
    /// not ask for a stream: the inner step as it is).
    Streamed(StreamFault, Box<Step>),
    /// The inner answer as one JSON body even to a request that asked for
    /// a stream (a server that ignores `stream`).
    Plain(Box<Step>),
}

/// How a streamed answer goes wrong (or what it does on the way).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamFault {
    /// An `error` event (Anthropic; an `{"error": ...}` chunk for OpenAI)
    /// of type `overloaded_error` after `n` deltas, then the end.
    ErrorAfter(usize),
    /// The connection closes after `n` deltas (mid-text or mid-arguments).
    DropAfter(usize),
    /// Nothing more after `n` deltas; the socket stays open.
    StallAfter(usize),
    /// The first content event comes only after this long.
    LateFirstToken(Duration),
    /// A chunk that is not JSON after `n` deltas.
    MalformedAfter(usize),
    /// `ping` events (Anthropic) or comment lines (OpenAI) between deltas.
    Pings,
    /// Text and arguments cut into pieces of this many characters.
    Pieces(usize),
    /// A wait before every delta: a slow stream that is never idle long.
    EveryDelta(Duration),
}

impl Step {
    /// `self`, streamed with `fault`.
    pub fn streamed(self, fault: StreamFault) -> Step {
        Step::Streamed(fault, Box::new(self))
    }
}

impl Step {
    pub fn text(s: &str) -> Step {
        Step::Text(s.to_string())
    }

    pub fn with_header(self, name: &'static str, value: &str) -> Step {
        Step::Header(name, value.to_string(), Box::new(self))
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub step: Step,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Source = Box<dyn FnMut(usize) -> Step + Send>;

struct State {
    script: Mutex<VecDeque<Step>>,
    otherwise: Mutex<Source>,
    seen: Mutex<Vec<Seen>>,
    violations: Mutex<Vec<String>>,
    count: AtomicUsize,
    /// Connections accepted, complete requests or not.
    connections: AtomicUsize,
}

/// A running server; it stops with the test's runtime.
#[derive(Clone)]
pub struct ModelServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

static OPENAI_REQUEST: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| schema("openai-chat-request.schema.json"));
static OPENAI_RESPONSE: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| schema("openai-chat-response.schema.json"));
static OPENAI_CHUNK: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| schema("openai-chat-chunk.schema.json"));

fn schema(file: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(SPECS).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).expect("the spec is JSON");
    jsonschema::validator_for(&value).expect("the spec is a valid JSON Schema")
}

/// The wire-format schemas, copied from OpenAI's OpenAPI description (see
/// `tests/specs/README.md`).
const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/specs");

/// Errors of `instance` against the OpenAI request schema.
pub fn openai_request_errors(instance: &Value) -> Vec<String> {
    OPENAI_REQUEST
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Errors of `instance` against the OpenAI stream chunk schema.
pub fn openai_chunk_errors(instance: &Value) -> Vec<String> {
    OPENAI_CHUNK
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Errors of `instance` against the OpenAI response schema.
pub fn openai_response_errors(instance: &Value) -> Vec<String> {
    OPENAI_RESPONSE
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

impl ModelServer {
    /// Binds 127.0.0.1 on a free port and serves until the runtime ends.
    /// With nothing scripted it answers `Text("ok")`.
    pub async fn start() -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = Arc::new(State {
            script: Mutex::default(),
            otherwise: Mutex::new(Box::new(|_| Step::text("ok"))),
            seen: Mutex::default(),
            violations: Mutex::default(),
            count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, s.clone()));
            }
        });
        ModelServer { addr, state }
    }

    /// The Anthropic base URL.
    pub fn anthropic_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OpenAI base URL (with `/v1`, as OpenAI-compatible servers have it).
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues steps for the next requests, in order.
    /// A `[[models]]` entry named `name` on this server: Anthropic's wire
    /// format for `claude-sonnet-4-5`, OpenAI's for `gpt-4o`, its key read
    /// from `TOOLHOST_TEST_KEY`.
    pub fn model_entry(&self, name: &str, provider: &str) -> String {
        let (model, url) = match provider {
            "anthropic" => ("claude-sonnet-4-5", self.anthropic_url()),
            "openai" => ("gpt-4o", self.openai_url()),
            other => panic!("no wire format `{other}`"),
        };
        format!(
            "[[models]]\nname = {name:?}\nprovider = {provider:?}\nmodel = {model:?}\n\
             base_url = {url:?}\napi_key_env = \"TOOLHOST_TEST_KEY\"\n\n"
        )
    }

    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.state.script.lock().unwrap().extend(steps);
    }

    /// What to do once the queue is empty: `f(request number)`, from 0.
    pub fn otherwise(&self, f: impl FnMut(usize) -> Step + Send + 'static) {
        *self.state.otherwise.lock().unwrap() = Box::new(f);
    }

    /// Requests received (complete ones).
    pub fn requests(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (a "recorder" that must stay unreached
    /// checks this as well as [`ModelServer::seen`]).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests or responses that broke the wire format.
    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }
}

async fn serve(mut socket: TcpStream, state: Arc<State>) {
    let Some((path, headers, body)) = read_request(&mut socket).await else {
        return;
    };
    let n = state.count.fetch_add(1, Ordering::SeqCst);
    let step = {
        let queued = state.script.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| (state.otherwise.lock().unwrap())(n))
    };
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let seen = Seen {
        path: path.clone(),
        headers,
        body: body_json,
        step: step.clone(),
    };
    let wire = if path == "/v1/messages" {
        Wire::Anthropic
    } else if path == "/v1/chat/completions" {
        Wire::OpenAi
    } else {
        let response = http(
            404,
            &[],
            r#"{"error":{"message":"no such route","type":"invalid_request_error"}}"#,
        );
        let _ = socket.write_all(response.as_bytes()).await;
        state.seen.lock().unwrap().push(seen);
        return;
    };
    let problems = check_request(wire, &seen);
    let key = seen
        .header("x-api-key")
        .or(seen.header("authorization"))
        .unwrap_or("")
        .to_string();
    let model = seen
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    state.seen.lock().unwrap().push(seen);
    if !problems.is_empty() {
        let message = format!(
            "toolhost-test-server: request violates the wire format: {}",
            problems.join("; ")
        );
        state.violations.lock().unwrap().extend(problems);
        let response = http(
            400,
            &[],
            &json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string(),
        );
        let _ = socket.write_all(response.as_bytes()).await;
        return;
    }
    let mut extra = Vec::new();
    let mut step = step;
    let mut wants_stream = seen_stream(&state);
    let mut faults = Vec::new();
    loop {
        match step {
            Step::Streamed(fault, inner) => {
                faults.push(fault);
                step = *inner;
            }
            Step::Plain(inner) => {
                wants_stream = false;
                step = *inner;
            }
            ref answer @ (Step::Text(_)
            | Step::ToolCall { .. }
            | Step::RawToolArgs { .. }
            | Step::BrokenToolArgs
            | Step::MalformedJson
            | Step::EchoKey)
                if wants_stream =>
            {
                let events = stream_events(wire, answer, &model, &key);
                write_stream(&mut socket, wire, events, &faults, &extra, &state).await;
                return;
            }
            Step::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                step = *inner;
            }
            Step::Header(name, value, inner) => {
                extra.push((name.to_string(), value));
                step = *inner;
            }
            Step::Stall => {
                // Hold the socket open and never answer.
                std::future::pending::<()>().await;
            }
            Step::Drop => return,
            other => {
                let (status, mut headers, body) = respond(wire, &other, &model, &key);
                if wire == Wire::OpenAi
                    && status == 200
                    && other != Step::MalformedJson
                    && other != Step::BrokenToolArgs
                {
                    let v: Value = serde_json::from_str(&body).expect("success bodies are JSON");
                    let errors = openai_response_errors(&v);
                    state
                        .violations
                        .lock()
                        .unwrap()
                        .extend(errors.into_iter().map(|e| format!("response: {e}")));
                }
                headers.extend(extra);
                let _ = socket
                    .write_all(http(status, &headers, &body).as_bytes())
                    .await;
                let _ = socket.shutdown().await;
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    Anthropic,
    OpenAi,
}

/// Reads one request: (path, headers, body). `None` if the peer went away.
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}

fn check_request(wire: Wire, seen: &Seen) -> Vec<String> {
    let mut problems = Vec::new();
    if !seen
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        problems.push("content-type is not application/json".to_string());
    }
    match wire {
        Wire::OpenAi => problems.extend(openai_request_errors(&seen.body)),
        Wire::Anthropic => {
            if seen.header("anthropic-version").is_none() {
                problems.push("no anthropic-version header".to_string());
            }
            let b = &seen.body;
            if !b.get("model").is_some_and(Value::is_string) {
                problems.push("model is not a string".to_string());
            }
            if !b.get("max_tokens").is_some_and(Value::is_u64) {
                problems.push("max_tokens is not a positive integer".to_string());
            }
            let messages = b
                .get("messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if messages.is_empty() {
                problems.push("messages is empty".to_string());
            }
            for m in &messages {
                if !matches!(
                    m.get("role").and_then(Value::as_str),
                    Some("user" | "assistant")
                ) {
                    problems.push(format!("bad role in {m}"));
                }
                for block in m
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let ok = match block.get("type").and_then(Value::as_str) {
                        Some("text") => block.get("text").is_some_and(Value::is_string),
                        Some("tool_use") => {
                            block.get("id").is_some()
                                && block.get("input").is_some_and(Value::is_object)
                        }
                        Some("tool_result") => {
                            block.get("tool_use_id").is_some_and(Value::is_string)
                        }
                        _ => false,
                    };
                    if !ok {
                        problems.push(format!("bad content block {block}"));
                    }
                }
            }
            for t in b
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !(t.get("name").is_some_and(Value::is_string)
                    && t.get("input_schema").is_some_and(Value::is_object))
                {
                    problems.push(format!("bad tool {t}"));
                }
            }
        }
    }
    problems
}

/// (status, headers, body) for a step that answers.
fn respond(
    wire: Wire,
    step: &Step,
    model: &str,
    key: &str,
) -> (u16, Vec<(String, String)>, String) {
    let h = |k: &str, v: String| vec![(k.to_string(), v)];
    match step {
        Step::Text(text) => (200, vec![], success(wire, model, Some(text), None)),
        Step::ToolCall { name, arguments } => (
            200,
            vec![],
            success(wire, model, None, Some((name, &arguments.to_string()))),
        ),
        Step::RawToolArgs { name, raw } => match wire {
            Wire::OpenAi => (200, vec![], success(wire, model, None, Some((name, raw)))),
            // Anthropic nests the arguments in the body as JSON: splice the
            // text in as it stands, so the client reads it as sent.
            Wire::Anthropic => {
                let body = success(wire, model, None, Some((name, "\"__RAW_INPUT__\"")));
                (200, vec![], body.replace("\"__RAW_INPUT__\"", raw))
            }
        },
        Step::BrokenToolArgs => match wire {
            Wire::OpenAi => (
                200,
                vec![],
                success(wire, model, None, Some(("calc", r#"{"expr": "6*7"#))),
            ),
            Wire::Anthropic => (200, vec![], success(wire, model, None, Some(("calc", "")))),
        },
        Step::MalformedJson => (
            200,
            vec![],
            r#"{"id": "msg_01", "content": [{"type": "text", "te"#.to_string(),
        ),
        Step::RateLimited { retry_after_s } => (
            429,
            h("retry-after", retry_after_s.to_string()),
            error_body(wire, 429, key),
        ),
        Step::RateLimitedMs(ms) => (
            429,
            h("retry-after-ms", ms.to_string()),
            error_body(wire, 429, key),
        ),
        Step::ContextLength => (400, vec![], context_length(wire)),
        Step::ContentPolicy => (400, vec![], content_policy(wire)),
        Step::Status(code) => (*code, vec![], error_body(wire, *code, key)),
        Step::HtmlPage(code) => (
            *code,
            vec![],
            format!(
                "<!DOCTYPE html>\n<html>\n<head><title>{code} Bad Gateway</title><style>h1 {{ color: red }}</style></head>\n<body>\n<center><h1>{code} Bad Gateway</h1></center>\n<hr><center>nginx</center>\n{}</body>\n</html>\n",
                "<!-- a padding comment -->\n".repeat(200)
            ),
        ),
        Step::Redirect(code, location) => (*code, h("location", location.clone()), String::new()),
        Step::EchoKey => {
            let text = format!("Your key is {}.", bare(key));
            (200, vec![], success(wire, model, Some(&text), None))
        }
        Step::EchoKeyHtml(code) => (
            *code,
            vec![],
            format!(
                "<!DOCTYPE html>\n<html><head><title>{code}</title></head><body><p>{}request rejected for api_key={} (see logs)</p>\n{}</body></html>\n",
                "upstream proxy said no; ".repeat(10),
                bare(key),
                "<!-- a padding comment -->\n".repeat(50)
            ),
        ),
        Step::Delay(..)
        | Step::Stall
        | Step::Drop
        | Step::Header(..)
        | Step::Streamed(..)
        | Step::Plain(..) => {
            unreachable!("handled by serve")
        }
    }
}

/// The key in an auth header value (`Bearer KEY` or `KEY`).
fn bare(header: &str) -> &str {
    header.strip_prefix("Bearer ").unwrap_or(header)
}

fn success(wire: Wire, model: &str, text: Option<&String>, call: Option<(&str, &str)>) -> String {
    match wire {
        Wire::Anthropic => {
            let mut content = Vec::new();
            if let Some(t) = text {
                content.push(json!({"type": "text", "text": t}));
            }
            if let Some((name, args)) = call {
                // Broken arguments for Anthropic: `input` is not an object.
                let input: Value =
                    serde_json::from_str(args).unwrap_or(Value::String(r#"{"expr": "6*7"#.into()));
                content.push(json!({"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": name, "input": input}));
            }
            json!({
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": model,
                "content": content,
                "stop_reason": if call.is_some() { "tool_use" } else { "end_turn" },
                "stop_sequence": null,
                "usage": {"input_tokens": 25, "output_tokens": 12},
            })
            .to_string()
        }
        Wire::OpenAi => {
            let mut message =
                json!({"role": "assistant", "content": text, "refusal": null, "annotations": []});
            if let Some((name, args)) = call {
                message["tool_calls"] = json!([{
                    "id": "call_abc123", "type": "function", "function": {"name": name, "arguments": args},
                }]);
            }
            json!({
                "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": 1_741_569_952,
                "model": model, "system_fingerprint": "fp_test",
                "choices": [{"index": 0, "message": message, "logprobs": null,
                    "finish_reason": if call.is_some() { "tool_calls" } else { "stop" }}],
                "usage": {"prompt_tokens": 25, "completion_tokens": 12, "total_tokens": 37},
            })
            .to_string()
        }
    }
}

fn error_body(wire: Wire, status: u16, key: &str) -> String {
    // Proxies in front of providers answer gateway errors in HTML.
    if matches!(status, 502 | 504) {
        return format!(
            "<html><head><title>{status}</title></head><body><center><h1>{status} Gateway Error</h1></center></body></html>"
        );
    }
    let key = key.trim_start_matches("Bearer ");
    let (kind, message) = match status {
        400 => (
            "invalid_request_error",
            "messages.0.content: Field required".to_string(),
        ),
        401 => (
            "authentication_error",
            format!("Incorrect API key provided: {key}."),
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.".into(),
        ),
        404 => (
            "not_found_error",
            "The model `no-such-model` does not exist or you do not have access to it.".into(),
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.".into(),
        ),
        429 => (
            "rate_limit_error",
            "Rate limit reached for requests per minute.".into(),
        ),
        503 => (
            "overloaded_error",
            "The server is currently overloaded. Please try again later.".into(),
        ),
        529 => ("overloaded_error", "Overloaded".into()),
        _ => ("api_error", "Internal server error".into()),
    };
    match wire {
        Wire::Anthropic => {
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
        }
        Wire::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("requests", json!("rate_limit_exceeded")),
                s if s >= 500 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
                .to_string()
        }
    }
}

fn context_length(wire: Wire) -> String {
    match wire {
        Wire::Anthropic => json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "prompt is too long: 215234 tokens > 200000 maximum"}})
        .to_string(),
        Wire::OpenAi => json!({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130559 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        .to_string(),
    }
}

fn content_policy(wire: Wire) -> String {
    match wire {
        Wire::Anthropic => json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "Output blocked by content filtering policy"}})
        .to_string(),
        Wire::OpenAi => json!({"error": {"message": "Your request was rejected as a result of our safety system.",
            "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}})
        .to_string(),
    }
}

fn http(status: u16, headers: &[(String, String)], body: &str) -> String {
    let reason = match status {
        200 => "OK",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Unknown",
    };
    let content_type = if body.starts_with('<') {
        "text/html"
    } else {
        "application/json"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\nrequest-id: req_011CTestServer\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// Whether the request just recorded asked for a stream.
fn seen_stream(state: &State) -> bool {
    state
        .seen
        .lock()
        .unwrap()
        .last()
        .is_some_and(|s| s.body.get("stream") == Some(&Value::Bool(true)))
}

/// One server-sent event the stream will carry.
#[derive(Debug, Clone)]
struct Event {
    name: Option<&'static str>,
    data: String,
    /// A text or arguments delta (the unit faults count).
    delta: bool,
    /// The first content event of the answer (where a late first token
    /// waits).
    first_content: bool,
}

fn ev(name: Option<&'static str>, data: Value) -> Event {
    Event {
        name,
        data: data.to_string(),
        delta: false,
        first_content: false,
    }
}

/// The text and the tool call (name, arguments text) a step answers with.
fn answer_of(step: &Step, key: &str) -> (Option<String>, Option<(String, String)>) {
    match step {
        Step::Text(t) => (Some(t.clone()), None),
        Step::EchoKey => (Some(format!("Your key is {}.", bare(key))), None),
        Step::ToolCall { name, arguments } => (None, Some((name.clone(), arguments.to_string()))),
        Step::RawToolArgs { name, raw } => (None, Some((name.clone(), raw.clone()))),
        Step::BrokenToolArgs => (None, Some(("calc".into(), r#"{"expr": "6*7"#.into()))),
        _ => (None, None),
    }
}

fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// The events of a streamed answer in `wire`'s format, pieces of 4
/// characters (a [`StreamFault::Pieces`] re-cuts them in `write_stream`).
fn stream_events(wire: Wire, step: &Step, model: &str, key: &str) -> Vec<(Event, Option<String>)> {
    let (text, call) = answer_of(step, key);
    // (event, the piece of text or arguments it carries, for re-cutting)
    let mut out: Vec<(Event, Option<String>)> = Vec::new();
    if *step == Step::MalformedJson {
        let mut e = ev(None, json!(null));
        e.data = r#"{"id": "msg_01", "content": [{"type": "text", "te"#.into();
        e.delta = true;
        e.first_content = true;
        return vec![(e, None)];
    }
    match wire {
        Wire::Anthropic => {
            out.push((
                ev(
                    Some("message_start"),
                    json!({"type": "message_start", "message": {
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 25, "output_tokens": 1}}}),
                ),
                None,
            ));
            out.push((ev(Some("ping"), json!({"type": "ping"})), None));
            let mut index = 0;
            if let Some(t) = &text {
                let mut start = ev(
                    Some("content_block_start"),
                    json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "text", "text": ""}}),
                );
                start.first_content = true;
                out.push((start, None));
                out.push((
                    Event {
                        delta: true,
                        ..ev(Some("content_block_delta"), json!(null))
                    },
                    Some(t.clone()),
                ));
                out.push((
                    ev(
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": index}),
                    ),
                    None,
                ));
                index += 1;
            }
            if let Some((name, args)) = &call {
                let mut start = ev(
                    Some("content_block_start"),
                    json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": name, "input": {}}}),
                );
                start.first_content = text.is_none();
                out.push((start, None));
                out.push((
                    Event {
                        delta: true,
                        ..ev(Some("content_block_delta"), json!(index))
                    },
                    Some(args.clone()),
                ));
                out.push((
                    ev(
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": index}),
                    ),
                    None,
                ));
            }
            out.push((ev(Some("message_delta"), json!({"type": "message_delta",
                "delta": {"stop_reason": if call.is_some() { "tool_use" } else { "end_turn" }, "stop_sequence": null},
                "usage": {"output_tokens": 12}})), None));
            out.push((
                ev(Some("message_stop"), json!({"type": "message_stop"})),
                None,
            ));
        }
        Wire::OpenAi => {
            let chunk = |choices: Value, usage: Value| {
                json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
                    "created": 1_741_569_952, "model": model, "system_fingerprint": "fp_test",
                    "choices": choices, "usage": usage})
            };
            let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
            out.push((
                ev(
                    None,
                    chunk(
                        choice(
                            json!({"role": "assistant", "content": "", "refusal": null}),
                            Value::Null,
                        ),
                        Value::Null,
                    ),
                ),
                None,
            ));
            if let Some(t) = &text {
                let mut e = Event {
                    delta: true,
                    ..ev(None, json!("text"))
                };
                e.first_content = true;
                out.push((e, Some(t.clone())));
            }
            if let Some((name, args)) = &call {
                let mut start = ev(
                    None,
                    chunk(
                        choice(
                            json!({"tool_calls": [{"index": 0, "id": "call_abc123", "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                            Value::Null,
                        ),
                        Value::Null,
                    ),
                );
                start.first_content = text.is_none();
                out.push((start, None));
                out.push((
                    Event {
                        delta: true,
                        ..ev(None, json!("args"))
                    },
                    Some(args.clone()),
                ));
            }
            out.push((
                ev(
                    None,
                    chunk(
                        choice(
                            json!({}),
                            json!(if call.is_some() { "tool_calls" } else { "stop" }),
                        ),
                        Value::Null,
                    ),
                ),
                None,
            ));
            // Usage only in the final chunk, with empty choices.
            out.push((
                ev(
                    None,
                    chunk(
                        json!([]),
                        json!({"prompt_tokens": 25, "completion_tokens": 12, "total_tokens": 37}),
                    ),
                ),
                None,
            ));
            let mut done = ev(None, json!(null));
            done.data = "[DONE]".into();
            out.push((done, None));
        }
    }
    out
}

/// The data of one delta event carrying `piece`.
fn delta_data(wire: Wire, template: &Event, piece: &str, model: &str) -> String {
    match wire {
        Wire::Anthropic => {
            // The template's data is `null` for text, the block index for
            // arguments.
            match serde_json::from_str::<Value>(&template.data).unwrap_or(Value::Null) {
                Value::Number(i) => json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                _ => json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}}),
            }
            .to_string()
        }
        Wire::OpenAi => {
            let delta = if template.data == "\"args\"" {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            } else {
                json!({"content": piece})
            };
            json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
                "created": 1_741_569_952, "model": model, "system_fingerprint": "fp_test",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}], "usage": null})
            .to_string()
        }
    }
}

fn frame(e: &Event) -> String {
    let mut out = String::new();
    if let Some(name) = e.name {
        out.push_str(&format!("event: {name}\n"));
    }
    out.push_str(&format!("data: {}\n\n", e.data));
    out
}

/// Writes the stream, one event per chunk, applying `faults`.
async fn write_stream(
    socket: &mut TcpStream,
    wire: Wire,
    events: Vec<(Event, Option<String>)>,
    faults: &[StreamFault],
    extra: &[(String, String)],
    state: &State,
) {
    let size = faults
        .iter()
        .find_map(|f| match f {
            StreamFault::Pieces(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(4);
    let pings = faults.contains(&StreamFault::Pings);
    let after = |want: fn(&StreamFault) -> Option<usize>| faults.iter().find_map(want);
    let error_after = after(|f| match f {
        StreamFault::ErrorAfter(n) => Some(*n),
        _ => None,
    });
    let drop_after = after(|f| match f {
        StreamFault::DropAfter(n) => Some(*n),
        _ => None,
    });
    let stall_after = after(|f| match f {
        StreamFault::StallAfter(n) => Some(*n),
        _ => None,
    });
    let malformed_after = after(|f| match f {
        StreamFault::MalformedAfter(n) => Some(*n),
        _ => None,
    });
    let late = faults.iter().find_map(|f| match f {
        StreamFault::LateFirstToken(d) => Some(*d),
        _ => None,
    });
    let every = faults.iter().find_map(|f| match f {
        StreamFault::EveryDelta(d) => Some(*d),
        _ => None,
    });
    let mut head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\nrequest-id: req_011CTestServer\r\n".to_string();
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // Expand each delta template into one event per piece.
    let mut expanded: Vec<Event> = Vec::new();
    for (e, piece) in events {
        match piece {
            Some(text) => {
                for (i, p) in pieces(&text, size).into_iter().enumerate() {
                    expanded.push(Event {
                        name: e.name,
                        data: delta_data(wire, &e, &p, &model_of(state)),
                        delta: true,
                        first_content: e.first_content && i == 0,
                    });
                }
            }
            None => expanded.push(e),
        }
    }
    let mut deltas = 0;
    for e in expanded {
        if e.delta {
            if error_after == Some(deltas) {
                let data = match wire {
                    Wire::Anthropic => {
                        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    }
                    Wire::OpenAi => {
                        json!({"error": {"message": "The server is overloaded.", "type": "overloaded_error", "param": null, "code": null}})
                    }
                };
                let error = Event {
                    name: (wire == Wire::Anthropic).then_some("error"),
                    data: data.to_string(),
                    delta: false,
                    first_content: false,
                };
                let _ = send_chunk(socket, &frame(&error)).await;
                let _ = socket.write_all(b"0\r\n\r\n").await;
                return;
            }
            if drop_after == Some(deltas) {
                let _ = socket.flush().await;
                return;
            }
            if stall_after == Some(deltas) {
                let _ = socket.flush().await;
                std::future::pending::<()>().await;
            }
            if malformed_after == Some(deltas) {
                let bad = Event {
                    name: (wire == Wire::Anthropic).then_some("content_block_delta"),
                    data: "{\"type\": \"content_block_delta\", \"ind".into(),
                    delta: false,
                    first_content: false,
                };
                let _ = send_chunk(socket, &frame(&bad)).await;
                let _ = socket.write_all(b"0\r\n\r\n").await;
                return;
            }
            deltas += 1;
            if let Some(d) = every {
                tokio::time::sleep(d).await;
            }
        }
        if e.first_content
            && let Some(d) = late
        {
            tokio::time::sleep(d).await;
        }
        if wire == Wire::OpenAi
            && e.data != "[DONE]"
            && !e.data.starts_with("{\"id\": \"msg_01\"")
            && let Ok(v) = serde_json::from_str::<Value>(&e.data)
        {
            let errors = openai_chunk_errors(&v);
            state
                .violations
                .lock()
                .unwrap()
                .extend(errors.into_iter().map(|x| format!("chunk: {x}")));
        }
        if send_chunk(socket, &frame(&e)).await.is_err() {
            return;
        }
        if pings && e.delta {
            let ping = match wire {
                Wire::Anthropic => "event: ping\ndata: {\"type\": \"ping\"}\n\n".to_string(),
                Wire::OpenAi => ": ping\n\n".to_string(),
            };
            if send_chunk(socket, &ping).await.is_err() {
                return;
            }
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let _ = socket.shutdown().await;
}

/// The model the request just recorded named.
fn model_of(state: &State) -> String {
    state
        .seen
        .lock()
        .unwrap()
        .last()
        .and_then(|s| {
            s.body
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn send_chunk(socket: &mut TcpStream, payload: &str) -> std::io::Result<()> {
    socket
        .write_all(format!("{:x}\r\n{payload}\r\n", payload.len()).as_bytes())
        .await?;
    socket.flush().await
}

//! Anthropic's Messages API: `POST {base}/v1/messages`, `x-api-key`, content
//! blocks (`text`, `tool_use`, `tool_result`).

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::CallContext;
use super::classify::Wire;
use super::http::{self, malformed};
use super::secret::ApiKey;
use super::stream::{self, anthropic::Messages};
use super::{
    BoxFuture, ChatRequest, ChatResponse, Endpoint, Model, ModelError, Part, Role, StopReason,
    ToolCall, Usage,
};

/// The API version every request pins.
const VERSION: &str = "2023-06-01";
/// Default base URL.
pub const BASE_URL: &str = "https://api.anthropic.com";

/// A model served by Anthropic's Messages API.
#[derive(Debug)]
pub struct Anthropic {
    endpoint: Endpoint,
}

impl Anthropic {
    pub fn new(endpoint: Endpoint) -> Self {
        Anthropic { endpoint }
    }
}

impl Model for Anthropic {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn streams(&self) -> bool {
        self.endpoint.stream
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let e = &self.endpoint;
            let key = e.key()?;
            let mut headers = HeaderMap::new();
            headers.insert("anthropic-version", HeaderValue::from_static(VERSION));
            let auth = key.map(|k| (HeaderName::from_static("x-api-key"), String::new(), k));
            let url = http::join(e.base_url.as_deref().unwrap_or(BASE_URL), "v1/messages");
            let mut body = request_body(&e.model, e.max_tokens, req);
            if e.stream {
                body["stream"] = json!(true);
                headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
            }
            let response =
                http::send(&e.client, Wire::Anthropic, &url, headers, auth, &body).await?;
            if e.stream && http::is_event_stream(&response) {
                return stream::read(response, Messages::new(), cx, key).await;
            }
            // Not streamed (asked not to, or a server that ignores `stream`).
            let (v, not_ijson) = http::read_json(response, key).await?;
            let mut response = parse_response(&v)?;
            if let Some(refusal) = not_ijson {
                mark_invalid_arguments(&v, &mut response, refusal, key);
            }
            Ok(response)
        })
    }
}

/// Marks the tool call whose `input` holds what made the body not I-JSON
/// (a refusal elsewhere, in provider metadata, concerns no tool input).
/// The message names the path inside the arguments, as the executor's
/// refusal of a `--input` would.
fn mark_invalid_arguments(
    body: &Value,
    response: &mut ChatResponse,
    refusal: crate::json::IJsonError,
    key: Option<&ApiKey>,
) {
    let Some(rest) = refusal.path.strip_prefix("/content/") else {
        return;
    };
    let (index, inner) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(inner) = inner.strip_prefix("input") else {
        return;
    };
    if !(inner.is_empty() || inner.starts_with('/')) {
        return;
    }
    let Some(id) = index
        .parse::<usize>()
        .ok()
        .and_then(|n| body.pointer(&format!("/content/{n}/id")))
        .and_then(Value::as_str)
    else {
        return;
    };
    let within = crate::json::IJsonError {
        path: if inner.is_empty() {
            "/".into()
        } else {
            inner.into()
        },
        reason: refusal.reason,
    }
    .to_string();
    let within = key.map_or(within.clone(), |k| k.scrub(&within));
    if let Some(call) = response.tool_calls.iter_mut().find(|c| c.id == id) {
        call.invalid_arguments = Some(within);
    }
}

/// The Messages API body for `req`.
pub fn request_body(model: &str, default_max_tokens: u32, req: &ChatRequest) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let content: Vec<Value> = m
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text { text } => json!({"type": "text", "text": text}),
                    Part::ToolCall(c) => json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
                    Part::ToolResult { call_id, content, is_error } => {
                        json!({"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error})
                    }
                })
                .collect();
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_tokens.unwrap_or(default_max_tokens),
        "messages": messages,
    });
    if let Some(system) = &req.system {
        body["system"] = json!(system);
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
            .collect();
    }
    body
}

/// A Messages API response -> a [`ChatResponse`].
pub fn parse_response(v: &Value) -> Result<ChatResponse, ModelError> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `content` array"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(
                block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            Some("tool_use") => {
                let field = |k: &str| block.get(k).and_then(Value::as_str).map(str::to_string);
                let (Some(id), Some(name)) = (field("id"), field("name")) else {
                    return Err(malformed("a tool_use block without id or name"));
                };
                let arguments = match block.get("input") {
                    Some(input @ Value::Object(_)) => input.clone(),
                    _ => {
                        return Err(malformed(format!(
                            "tool call `{name}` has arguments that are not a JSON object"
                        )));
                    }
                };
                // Anthropic sends `input` as an object inside the body, so
                // there is no separate text to keep.
                tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                    raw_arguments: None,
                    invalid_arguments: None,
                });
            }
            _ => {} // thinking and other blocks carry nothing the agent uses
        }
    }
    let stop = match v.get("stop_reason").and_then(Value::as_str) {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("refusal") => StopReason::Refusal,
        _ => StopReason::Other,
    };
    let tokens = |k: &str| {
        v.pointer(&format!("/usage/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(ChatResponse {
        text,
        tool_calls,
        stop,
        usage: Usage {
            input_tokens: tokens("input_tokens"),
            output_tokens: tokens("output_tokens"),
        },
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

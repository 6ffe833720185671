//! OpenAI Chat Completions: `POST {base}/chat/completions`, bearer auth,
//! `tools` / `tool_calls`. The base URL includes the version (`.../v1`) as it
//! does for vLLM, Ollama, llama.cpp and LiteLLM, which need no key at all:
//! without `api_key_env` no `Authorization` header is sent.

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::CallContext;
use super::classify::Wire;
use super::http::{self, malformed};
use super::stream::{self, openai::Chunks};
use super::{
    BoxFuture, ChatRequest, ChatResponse, Endpoint, Model, ModelError, Part, Role, StopReason,
    ToolCall, Usage,
};

/// Default base URL.
pub const BASE_URL: &str = "https://api.openai.com/v1";

/// A model behind an OpenAI-compatible Chat Completions endpoint.
#[derive(Debug)]
pub struct OpenAi {
    endpoint: Endpoint,
}

impl OpenAi {
    pub fn new(endpoint: Endpoint) -> Self {
        OpenAi { endpoint }
    }
}

impl Model for OpenAi {
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
            let auth = key.map(|k| (AUTHORIZATION, "Bearer ".to_string(), k));
            let url = http::join(
                e.base_url.as_deref().unwrap_or(BASE_URL),
                "chat/completions",
            );
            let mut body = request_body(&e.model, e.configured_max_tokens, req);
            let mut headers = HeaderMap::new();
            if e.stream {
                // The usage arrives in a last chunk only when asked for.
                body["stream"] = json!(true);
                body["stream_options"] = json!({"include_usage": true});
                headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
            }
            let response = http::send(&e.client, Wire::OpenAi, &url, headers, auth, &body).await?;
            if e.stream && http::is_event_stream(&response) {
                return stream::read(response, Chunks::new(), cx, key).await;
            }
            // Not streamed (asked not to, or a server that ignores `stream`).
            let (v, _) = http::read_json(response, key).await?;
            parse_response(&v)
        })
    }
}

/// The Chat Completions body for `req`. Tool results become `tool` messages
/// (one per result, as the API requires), ahead of any text in the same turn.
pub fn request_body(model: &str, max_tokens: Option<u32>, req: &ChatRequest) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &req.messages {
        let mut text = String::new();
        let mut calls = Vec::new();
        for p in &m.parts {
            match p {
                Part::Text { text: t } => text.push_str(t),
                Part::ToolCall(c) => calls.push(json!({
                    "id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                })),
                Part::ToolResult {
                    call_id, content, ..
                } => {
                    messages
                        .push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
                }
            }
        }
        match m.role {
            Role::User if !text.is_empty() => {
                messages.push(json!({"role": "user", "content": text}))
            }
            Role::User => {}
            Role::Assistant => {
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = json!(calls);
                }
                messages.push(msg);
            }
        }
    }
    let mut body = json!({"model": model, "messages": messages});
    if let Some(n) = req.max_tokens.or(max_tokens) {
        body["max_tokens"] = json!(n);
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.input_schema,
                }})
            })
            .collect();
    }
    body
}

/// A Chat Completions response -> a [`ChatResponse`] (the first choice).
pub fn parse_response(v: &Value) -> Result<ChatResponse, ModelError> {
    let choice = v
        .pointer("/choices/0")
        .ok_or_else(|| malformed("no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| malformed("a choice without a message"))?;
    let mut text = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if text.is_empty()
        && let Some(refusal) = message.get("refusal").and_then(Value::as_str)
    {
        text = refusal.to_string();
    }
    let mut tool_calls = Vec::new();
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |p: &str| call.pointer(p).and_then(Value::as_str).map(str::to_string);
        let (Some(id), Some(name)) = (s("/id"), s("/function/name")) else {
            return Err(malformed("a tool call without id or function name"));
        };
        let raw = s("/function/arguments").unwrap_or_default();
        let raw_arguments = (!raw.trim().is_empty()).then(|| raw.clone());
        let arguments = if raw.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&raw).map_err(|e| {
                malformed(format!(
                    "tool call `{name}` has arguments that are not JSON: {e}"
                ))
            })?
        };
        tool_calls.push(ToolCall {
            id,
            name,
            arguments,
            raw_arguments,
            invalid_arguments: None,
        });
    }
    let stop = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("stop") => StopReason::EndTurn,
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::Refusal,
        _ if message.get("refusal").is_some_and(Value::is_string) => StopReason::Refusal,
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
            input_tokens: tokens("prompt_tokens"),
            output_tokens: tokens("completion_tokens"),
        },
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

//! The provider-neutral shape of one chat turn.
//!
//! Both wire formats (Anthropic's content blocks, OpenAI's messages with
//! `tool_calls`) map onto these types, so the agent loop and the policies never
//! see a provider's JSON. Tool-call arguments are parsed JSON here: a provider
//! that returns unparseable arguments fails with `malformed_response` instead
//! of handing the agent a string it cannot use.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool the model may call: its name, what it does, and its input schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the tool's input.
    pub input_schema: Value,
}

/// Who said a message. Tool results travel in `User` messages, as Anthropic
/// models them; the OpenAI client splits them into `tool` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call; tool results refer to it.
    pub id: String,
    pub name: String,
    /// The parsed arguments (always valid JSON).
    pub arguments: Value,
    /// The arguments exactly as the provider sent them, where its wire
    /// carries them as text (OpenAI's `function.arguments`). The agent hands
    /// this text, not a re-serialised `arguments`, to the executor, so a
    /// tool call from a model meets the same strict I-JSON parse as
    /// `toolhost call --input` and MCP's `tools/call`: a duplicate member
    /// name or a number that is not exactly a double is refused as
    /// `invalid_input`, never silently resolved by serde_json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_arguments: Option<String>,
    /// Why the arguments are not I-JSON, where the provider's wire carries
    /// them inside the response body (Anthropic's `tool_use.input`), so no
    /// text of their own reaches the executor: the body was read strictly
    /// and the refusal fell inside these arguments. The agent answers such a
    /// call `invalid_input`, as the executor would, and never runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_arguments: Option<String>,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    ToolCall(ToolCall),
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    /// A user message holding only `text`.
    pub fn user(text: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            parts: vec![Part::Text { text: text.into() }],
        }
    }

    /// The assistant's side of a turn, as a response returned it.
    pub fn assistant(response: &ChatResponse) -> Self {
        let mut parts = Vec::new();
        if !response.text.is_empty() {
            parts.push(Part::Text {
                text: response.text.clone(),
            });
        }
        parts.extend(response.tool_calls.iter().cloned().map(Part::ToolCall));
        Message {
            role: Role::Assistant,
            parts,
        }
    }
}

/// One request: the conversation so far and the tools on offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    /// Most tokens of output; `None` takes the model entry's `max_tokens`.
    pub max_tokens: Option<u32>,
}

impl ChatRequest {
    /// A one-message request without tools.
    pub fn user(text: impl Into<String>) -> Self {
        ChatRequest {
            messages: vec![Message::user(text)],
            ..ChatRequest::default()
        }
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A final answer.
    EndTurn,
    /// It wants the tool calls run.
    ToolUse,
    /// It hit the output limit.
    MaxTokens,
    /// It declined or its output was filtered.
    Refusal,
    /// Anything else the provider said (stop sequences and the like).
    Other,
}

/// Tokens used by one turn, when the provider says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The model's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The text parts, concatenated.
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub stop: StopReason,
    pub usage: Usage,
    /// The provider's model id as it reported it.
    pub model: String,
}

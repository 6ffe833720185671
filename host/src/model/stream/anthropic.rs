//! Anthropic Messages streaming: `message_start` (the model and the input
//! tokens), `content_block_start` / `content_block_delta` (`text_delta`,
//! `input_json_delta`) / `content_block_stop` per block by `index`,
//! `message_delta` (the stop reason and the output tokens so far),
//! `message_stop` (complete), `ping` (nothing), `error` (the stream broke,
//! classified as its type says). Unknown events and delta types (thinking,
//! signatures) are ignored, as the API's versioning policy asks.

use serde_json::Value;

use super::{Assembler, Piece};
use crate::model::classify::{self, Wire};
use crate::model::http::malformed;
use crate::model::{ChatResponse, ModelError, StopReason, ToolCall, Usage};

/// One content block as it grows.
#[derive(Debug, Default)]
enum Block {
    Text(String),
    Tool {
        id: String,
        name: String,
        /// `input` of the start event (`{}` when deltas follow).
        start: Value,
        json: String,
    },
    #[default]
    Other,
}

/// The turn a Messages stream is building.
#[derive(Debug, Default)]
pub struct Messages {
    model: String,
    blocks: Vec<Block>,
    stop: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
}

impl Messages {
    pub fn new() -> Self {
        Messages::default()
    }

    fn block(&mut self, v: &Value) -> Result<&mut Block, ModelError> {
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed("a content block event without an index"))?
            as usize;
        if index >= self.blocks.len() {
            // A block index is small (one per block of one answer); a
            // hostile one must not allocate without end.
            if index > 10_000 {
                return Err(malformed(format!("content block index {index}")));
            }
            self.blocks.resize_with(index + 1, Block::default);
        }
        Ok(&mut self.blocks[index])
    }

    /// `usage` of `message_start` (whose `output_tokens` is a placeholder,
    /// not a count of what came) or of a `message_delta` (`counted`: the
    /// output so far).
    fn usage(&mut self, usage: Option<&Value>, counted: bool, out: &mut dyn FnMut(Piece<'_>)) {
        let Some(u) = usage else { return };
        if let Some(n) = u.get("input_tokens").and_then(Value::as_u64) {
            self.input_tokens = n;
        }
        if let Some(n) = u.get("output_tokens").and_then(Value::as_u64) {
            self.output_tokens = n;
            if counted {
                out(Piece::OutputTokens(n));
            }
        }
    }
}

impl Assembler for Messages {
    fn event(
        &mut self,
        name: Option<&str>,
        data: &str,
        out: &mut dyn FnMut(Piece<'_>),
    ) -> Result<bool, ModelError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| malformed(format!("a stream event that is not JSON: {e}")))?;
        let kind = name
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or_default();
        match kind {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                if let Some(model) = m.get("model").and_then(Value::as_str) {
                    self.model = model.to_string();
                }
                self.usage(m.get("usage"), false, out);
            }
            "content_block_start" => {
                let start = v
                    .get("content_block")
                    .ok_or_else(|| malformed("content_block_start without a content_block"))?;
                let new = match start.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = start.get("text").and_then(Value::as_str).unwrap_or("");
                        out(Piece::Content);
                        out(Piece::Text(text));
                        Block::Text(text.to_string())
                    }
                    Some("tool_use") => {
                        let field =
                            |k: &str| start.get(k).and_then(Value::as_str).map(str::to_string);
                        let (Some(id), Some(name)) = (field("id"), field("name")) else {
                            return Err(malformed("a tool_use block without id or name"));
                        };
                        out(Piece::Content);
                        out(Piece::ToolCall {
                            id: &id,
                            name: &name,
                        });
                        Block::Tool {
                            id,
                            name,
                            start: start.get("input").cloned().unwrap_or(Value::Null),
                            json: String::new(),
                        }
                    }
                    _ => Block::Other,
                };
                *self.block(&v)? = new;
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let piece = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or_default();
                match (delta.get("type").and_then(Value::as_str), self.block(&v)?) {
                    (Some("text_delta"), Block::Text(text)) => {
                        let t = piece("text");
                        text.push_str(t);
                        out(Piece::Content);
                        out(Piece::Text(t));
                    }
                    (Some("input_json_delta"), Block::Tool { json, .. }) => {
                        let p = piece("partial_json");
                        json.push_str(p);
                        out(Piece::Content);
                        out(Piece::Arguments(p));
                    }
                    (Some("text_delta" | "input_json_delta"), _) => {
                        return Err(malformed(
                            "a delta for a content block that was not started as its type",
                        ));
                    }
                    _ => {} // thinking, signatures, citations: nothing the agent uses
                }
            }
            "message_delta" => {
                if let Some(stop) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(stop.to_string());
                }
                self.usage(v.get("usage"), true, out);
            }
            "message_stop" => return Ok(true),
            "error" => return Err(classify::from_stream_error(Wire::Anthropic, data)),
            _ => {} // ping, content_block_stop, and events added later
        }
        Ok(false)
    }

    fn finish(self) -> Result<ChatResponse, ModelError> {
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in self.blocks {
            match block {
                Block::Text(t) => text.push_str(&t),
                Block::Tool {
                    id,
                    name,
                    start,
                    json,
                } => tool_calls.push(tool_call(id, name, start, &json)?),
                Block::Other => {}
            }
        }
        Ok(ChatResponse {
            text,
            tool_calls,
            stop: match self.stop.as_deref() {
                Some("end_turn") => StopReason::EndTurn,
                Some("tool_use") => StopReason::ToolUse,
                Some("max_tokens") => StopReason::MaxTokens,
                Some("refusal") => StopReason::Refusal,
                _ => StopReason::Other,
            },
            usage: Usage {
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
            },
            model: self.model,
        })
    }
}

/// A tool call from its assembled `partial_json`, as the non-streamed body
/// would give it: parsed arguments, no text of their own (Anthropic's wire
/// carries them as JSON), and, where the text is not I-JSON, why, with the
/// path inside the arguments.
fn tool_call(id: String, name: String, start: Value, json: &str) -> Result<ToolCall, ModelError> {
    let (arguments, invalid) = if json.trim().is_empty() {
        (start, None)
    } else {
        let parsed: Value = serde_json::from_str(json).map_err(|e| {
            malformed(format!(
                "tool call `{name}` has arguments that are not JSON: {e}"
            ))
        })?;
        let invalid = crate::json::parse_ijson(json).err().map(|e| e.to_string());
        (parsed, invalid)
    };
    if !arguments.is_object() {
        return Err(malformed(format!(
            "tool call `{name}` has arguments that are not a JSON object"
        )));
    }
    Ok(ToolCall {
        id,
        name,
        arguments,
        raw_arguments: None,
        invalid_arguments: invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorKind;
    use crate::model::stream::assemble_bytes;
    use serde_json::json;

    fn event(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    #[test]
    fn thinking_blocks_and_unknown_events_are_ignored() {
        let body = [
            event("message_start", json!({"type": "message_start", "message": {"model": "c", "usage": {"input_tokens": 9, "output_tokens": 1}}})),
            event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})),
            event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}})),
            event("something_new", json!({"type": "something_new"})),
            event("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})),
            event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "42"}})),
            event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}})),
            event("message_stop", json!({"type": "message_stop"})),
        ]
        .concat();
        let r = assemble_bytes(Messages::new(), body.as_bytes(), |_| {}).unwrap();
        assert_eq!(r.text, "42");
        assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (9, 5));
        assert_eq!(r.stop, StopReason::EndTurn);
    }

    #[test]
    fn arguments_that_are_not_ijson_are_marked_as_the_plain_body_marks_them() {
        let body = [
            event("message_start", json!({"type": "message_start", "message": {"model": "c"}})),
            event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "echo", "input": {}}})),
            event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"m\":\"a\","}})),
            event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"m\":\"b\"}"}})),
            event("message_stop", json!({"type": "message_stop"})),
        ]
        .concat();
        let r = assemble_bytes(Messages::new(), body.as_bytes(), |_| {}).unwrap();
        let call = &r.tool_calls[0];
        assert_eq!(call.raw_arguments, None);
        let why = call.invalid_arguments.as_deref().unwrap();
        assert!(why.contains("not I-JSON at /m"), "{why}");
    }

    #[test]
    fn an_overloaded_error_event_is_overloaded_and_an_unknown_one_a_server_error() {
        for (kind, want) in [
            ("overloaded_error", ErrorKind::Overloaded),
            ("api_error", ErrorKind::ServerError),
            ("rate_limit_error", ErrorKind::RateLimited),
        ] {
            let body = event(
                "error",
                json!({"type": "error", "error": {"type": kind, "message": "x"}}),
            );
            let e = assemble_bytes(Messages::new(), body.as_bytes(), |_| {}).unwrap_err();
            assert_eq!(e.kind, want, "{kind}");
        }
    }
}

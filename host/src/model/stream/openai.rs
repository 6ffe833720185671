//! OpenAI Chat Completions streaming: `chat.completion.chunk`s whose first
//! choice carries `delta.content`, `delta.refusal` and `delta.tool_calls[]`
//! (by `index`: the id and name once, the arguments in fragments), then a
//! `finish_reason`; with `stream_options.include_usage` a last chunk with
//! empty (or, from some servers, null) `choices` and the `usage`; then
//! `data: [DONE]`. A chunk holding `error` (vLLM, LiteLLM and other
//! compatible servers send one mid-stream) breaks the stream, classified
//! as its type says.

use serde_json::{Value, json};

use super::{Assembler, Piece};
use crate::model::classify::{self, Wire};
use crate::model::http::malformed;
use crate::model::{ChatResponse, ModelError, Usage};

/// One tool call as its fragments arrive.
#[derive(Debug, Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
    shown: bool,
}

/// The turn a Chat Completions stream is building.
#[derive(Debug, Default)]
pub struct Chunks {
    model: String,
    text: String,
    refusal: Option<String>,
    calls: Vec<Call>,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl Chunks {
    pub fn new() -> Self {
        Chunks::default()
    }
}

impl Assembler for Chunks {
    fn event(
        &mut self,
        _name: Option<&str>,
        data: &str,
        out: &mut dyn FnMut(Piece<'_>),
    ) -> Result<bool, ModelError> {
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| malformed(format!("a stream chunk that is not JSON: {e}")))?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(classify::from_stream_error(Wire::OpenAi, data));
        }
        if self.model.is_empty()
            && let Some(model) = v.get("model").and_then(Value::as_str)
        {
            self.model = model.to_string();
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            let usage = Usage {
                input_tokens: n("prompt_tokens"),
                output_tokens: n("completion_tokens"),
            };
            out(Piece::OutputTokens(usage.output_tokens));
            self.usage = Some(usage);
        }
        let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
        }) else {
            return Ok(false);
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta.get("content").and_then(Value::as_str)
            && !t.is_empty()
        {
            self.text.push_str(t);
            out(Piece::Content);
            out(Piece::Text(t));
        }
        if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
            self.refusal.get_or_insert_default().push_str(r);
            out(Piece::Content);
        }
        for c in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c
                .get("index")
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed("a tool call delta without an index"))?
                as usize;
            if index >= self.calls.len() {
                if index > 10_000 {
                    return Err(malformed(format!("tool call index {index}")));
                }
                self.calls.resize_with(index + 1, Call::default);
            }
            let call = &mut self.calls[index];
            if let Some(id) = c.get("id").and_then(Value::as_str) {
                call.id = id.to_string();
            }
            if let Some(name) = c.pointer("/function/name").and_then(Value::as_str) {
                call.name.push_str(name);
            }
            out(Piece::Content);
            if !call.shown && !call.name.is_empty() {
                call.shown = true;
                out(Piece::ToolCall {
                    id: &call.id,
                    name: &call.name,
                });
            }
            if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                call.arguments.push_str(a);
                out(Piece::Arguments(a));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        Ok(false)
    }

    /// A server that ends the stream without `[DONE]` once the finish
    /// reason and the usage came has sent all a turn holds.
    fn whole_at_end(&self) -> bool {
        self.finish.is_some() && self.usage.is_some()
    }

    /// The turn, through the very parser a non-streamed body meets (so the
    /// two cannot disagree on a tool call, a refusal or a stop reason).
    fn finish(self) -> Result<ChatResponse, ModelError> {
        let calls: Vec<Value> = self
            .calls
            .iter()
            .filter(|c| !(c.id.is_empty() && c.name.is_empty() && c.arguments.is_empty()))
            .map(|c| {
                json!({"id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
        if calls.iter().any(|c| {
            c.pointer("/id").and_then(Value::as_str) == Some("")
                || c.pointer("/function/name").and_then(Value::as_str) == Some("")
        }) {
            return Err(malformed("a tool call without id or function name"));
        }
        let mut message = json!({
            "role": "assistant",
            "content": if self.text.is_empty() { Value::Null } else { json!(self.text) },
            "refusal": self.refusal,
        });
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        let usage = self.usage.unwrap_or_default();
        let whole = json!({
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish}],
            "usage": {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens},
        });
        crate::model::openai::parse_response(&whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorKind;
    use crate::model::stream::assemble_bytes;

    fn chunk(choices: Value, usage: Value) -> String {
        let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": choices, "usage": usage});
        format!("data: {c}\n\n")
    }

    fn delta(d: Value, finish: Value) -> String {
        chunk(
            json!([{"index": 0, "delta": d, "finish_reason": finish}]),
            Value::Null,
        )
    }

    #[test]
    fn a_stream_that_ends_after_the_finish_reason_and_the_usage_is_whole() {
        let body = [
            delta(json!({"content": "4"}), Value::Null),
            delta(json!({"content": "2"}), json!("stop")),
            // Some servers send `choices: null` in the usage chunk.
            chunk(
                Value::Null,
                json!({"prompt_tokens": 3, "completion_tokens": 2}),
            ),
        ]
        .concat();
        let r = assemble_bytes(Chunks::new(), body.as_bytes(), |_| {}).unwrap();
        assert_eq!((r.text.as_str(), r.usage.output_tokens), ("42", 2));
        // Without the usage chunk, the same end is a broken stream.
        let cut = [delta(json!({"content": "42"}), json!("stop"))].concat();
        let e = assemble_bytes(Chunks::new(), cut.as_bytes(), |_| {}).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connection);
    }

    #[test]
    fn tool_calls_by_index_interleaved_are_assembled_apart() {
        let call = |i: u64, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut f = json!({"arguments": args});
            if let Some(n) = name {
                f["name"] = json!(n);
            }
            let mut c = json!({"index": i, "function": f});
            if let Some(id) = id {
                c["id"] = json!(id);
            }
            delta(json!({"tool_calls": [c]}), Value::Null)
        };
        let body = [
            call(0, Some("a"), Some("calc"), "{\"ex"),
            call(1, Some("b"), Some("echo"), "{\"mess"),
            call(0, None, None, "pr\": \"1\"}"),
            call(1, None, None, "age\": \"hi\"}"),
            delta(json!({}), json!("tool_calls")),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let r = assemble_bytes(Chunks::new(), body.as_bytes(), |_| {}).unwrap();
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(r.tool_calls[0].arguments, json!({"expr": "1"}));
        assert_eq!(r.tool_calls[1].arguments, json!({"message": "hi"}));
        assert_eq!(
            r.tool_calls[1].raw_arguments.as_deref(),
            Some("{\"message\": \"hi\"}")
        );
        assert_eq!(r.stop, crate::model::StopReason::ToolUse);
    }

    #[test]
    fn an_error_chunk_mid_stream_is_classified_by_its_type() {
        let body = [
            delta(json!({"content": "par"}), Value::Null),
            "data: {\"error\": {\"message\": \"busy\", \"type\": \"server_error\"}}\n\n".into(),
        ]
        .concat();
        let e = assemble_bytes(Chunks::new(), body.as_bytes(), |_| {}).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ServerError);
        assert!(e.message.contains("busy"), "{e}");
    }
}

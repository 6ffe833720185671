//! Both wire formats end to end: a turn with tool definitions, a tool call
//! and its result, checked by the server (OpenAI's against the published
//! JSON Schemas) and parsed back into provider-neutral types.

use serde_json::json;
use toolhost::model::{
    ChatRequest, ChatResponse, Message, Model, Part, StopReason, ToolCall, ToolSpec,
};
use toolhost::resilience::CallContext;

use super::{BOTH, Wire, provider};
use crate::support::model_server::{
    ModelServer, Step, openai_request_errors, openai_response_errors,
};

fn conversation() -> ChatRequest {
    let call = ToolCall {
        id: "call_1".into(),
        name: "calc".into(),
        arguments: json!({"expr": "6*7"}),
        raw_arguments: None,
        invalid_arguments: None,
    };
    let earlier = ChatResponse {
        text: "Let me compute.".into(),
        tool_calls: vec![call],
        stop: StopReason::ToolUse,
        usage: Default::default(),
        model: "m".into(),
    };
    ChatRequest {
        system: Some("You are terse.".into()),
        messages: vec![
            Message::user("What is 6*7?"),
            Message::assistant(&earlier),
            Message {
                role: toolhost::model::Role::User,
                parts: vec![Part::ToolResult {
                    call_id: "call_1".into(),
                    content: "42".into(),
                    is_error: false,
                }],
            },
        ],
        tools: vec![ToolSpec {
            name: "calc".into(),
            description: "Evaluates arithmetic.".into(),
            input_schema: json!({"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}),
        }],
        max_tokens: Some(256),
    }
}

#[tokio::test]
async fn a_tool_turn_round_trips_on_both_wires() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([
            Step::ToolCall {
                name: "calc".into(),
                arguments: json!({"expr": "7*6"}),
            },
            Step::text("42"),
        ]);
        let model = provider(wire, &server, "m", Some("sk-test-key"));
        let cx = CallContext::unbounded();
        let r = model.chat(&conversation(), &cx).await.unwrap();
        assert_eq!(r.stop, StopReason::ToolUse, "{wire:?}");
        assert_eq!(
            (r.tool_calls[0].name.as_str(), &r.tool_calls[0].arguments),
            ("calc", &json!({"expr": "7*6"}))
        );
        let r = model.chat(&conversation(), &cx).await.unwrap();
        assert_eq!((r.text.as_str(), r.stop), ("42", StopReason::EndTurn));
        assert_eq!(r.usage.output_tokens, 12);
        assert_eq!(server.violations(), Vec::<String>::new(), "{wire:?}");

        let seen = &server.seen()[0];
        assert!(matches!(seen.step, Step::ToolCall { .. }));
        match wire {
            Wire::Anthropic => {
                assert_eq!(seen.path, "/v1/messages");
                assert_eq!(seen.header("x-api-key"), Some("sk-test-key"));
                assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(seen.body["system"], "You are terse.");
                assert_eq!(seen.body["messages"][1]["content"][1]["type"], "tool_use");
                assert_eq!(
                    seen.body["messages"][2]["content"][0]["tool_use_id"],
                    "call_1"
                );
                assert_eq!(seen.body["tools"][0]["input_schema"]["required"][0], "expr");
            }
            Wire::OpenAi => {
                assert_eq!(seen.path, "/v1/chat/completions");
                assert_eq!(seen.header("authorization"), Some("Bearer sk-test-key"));
                assert_eq!(seen.body["messages"][0]["role"], "system");
                assert_eq!(
                    seen.body["messages"][2]["tool_calls"][0]["function"]["arguments"],
                    r#"{"expr":"6*7"}"#
                );
                assert_eq!(
                    seen.body["messages"][3],
                    json!({"role": "tool", "tool_call_id": "call_1", "content": "42"})
                );
                assert_eq!(
                    seen.body["tools"][0]["function"]["parameters"]["type"],
                    "object"
                );
            }
        }
    }
}

#[tokio::test]
async fn openai_compatible_servers_need_no_key() {
    let server = ModelServer::start().await;
    let model = provider(Wire::OpenAi, &server, "local", None);
    model
        .chat(&ChatRequest::user("hi"), &CallContext::unbounded())
        .await
        .unwrap();
    assert_eq!(server.seen()[0].header("authorization"), None);
}

#[test]
fn the_schema_checks_have_teeth() {
    // What the client sends validates; a request without messages does not.
    let good = toolhost::model::wire::openai_request("gpt-4o", None, &conversation());
    assert_eq!(openai_request_errors(&good), Vec::<String>::new());
    assert!(!openai_request_errors(&json!({"model": "gpt-4o"})).is_empty());
    // A response missing `choices[].finish_reason` is caught.
    let bad = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null}, "logprobs": null}]});
    assert!(!openai_response_errors(&bad).is_empty());
}

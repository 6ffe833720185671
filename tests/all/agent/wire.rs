//! A full tool-using run over both wire formats, against the loopback fault
//! server: OpenAI requests are checked against the published schemas,
//! Anthropic requests structurally, and a rate limit on the way is retried.

use serde_json::json;
use toolhost::store::RunStatus;

use super::{World, options};
use crate::model::{BOTH, Wire, provider};
use crate::support::model_server::{ModelServer, Step};

#[tokio::test]
async fn a_tool_using_run_completes_over_both_wire_formats() {
    for wire in BOTH {
        let world = World::new();
        let config = world.config("");
        let server = ModelServer::start().await;
        server.push([
            Step::ToolCall {
                name: "calc".into(),
                arguments: json!({"expr": "6*7"}),
            },
            Step::RateLimitedMs(5),
            Step::ToolCall {
                name: "notes".into(),
                arguments: json!({"file": "wire.txt", "text": "the answer is 42"}),
            },
            Step::text("It is 42, and it is noted."),
        ]);
        let model = provider(wire, &server, "remote", Some("sk-test-key"));
        let agent = world.agent(&config, vec![model]).await;
        let out = agent
            .start(None, "What is 6*7? Note it.", &options())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Completed, "{wire:?}: {out:?}");
        assert_eq!(out.answer.as_deref(), Some("It is 42, and it is noted."));
        assert_eq!(server.requests(), 4, "{wire:?}");
        assert!(
            server.violations().is_empty(),
            "{wire:?}: {:?}",
            server.violations()
        );
        assert_eq!(world.lines("wire.txt").len(), 1);

        let seen = server.seen();
        let first = &seen[0].body;
        let last = &seen[3].body;
        match wire {
            Wire::OpenAi => {
                let names: Vec<_> = first["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                    .collect();
                assert!(
                    names.contains(&"calc".to_string()) && names.contains(&"notes".to_string()),
                    "{names:?}"
                );
                let tool_msgs: Vec<_> = last["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["role"] == "tool")
                    .collect();
                assert_eq!(tool_msgs.len(), 2, "{last}");
                assert_eq!(tool_msgs[0]["content"], "{\"value\":42}");
            }
            Wire::Anthropic => {
                assert!(
                    first["tools"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|t| t["name"] == "calc")
                );
                let results: Vec<_> = last["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
                    .filter(|c| c["type"] == "tool_result")
                    .collect();
                assert_eq!(results.len(), 2, "{last}");
            }
        }
        let steps = agent.store().steps(&out.run_id).await.unwrap();
        let retried = steps.iter().find(|s| s.step == 2 && s.part == 0).unwrap();
        assert_eq!((retried.attempts, retried.retries), (2, 1), "{wire:?}");
    }
}

/// Issue 17, item 6: a model's tool call meets the same strict I-JSON parse
/// as `toolhost call --input` and MCP, on both wire formats. serde_json
/// would run the first with `"b"` and the second with `0.1`; the agent
/// refuses both as `invalid_input` (OpenAI: the provider's argument text
/// goes to the executor; Anthropic: the body is read strictly and the
/// refusal falls inside the call's `input`), and the model sees the refusal
/// as the tool's result.
#[tokio::test]
async fn a_models_tool_call_is_parsed_as_strictly_as_the_cli() {
    for wire in BOTH {
        for raw in [
            r#"{"message":"a","message":"b"}"#,
            r#"{"message":"x","n":0.1000000000000000001}"#,
        ] {
            let world = World::new();
            let config = world.config("");
            let server = ModelServer::start().await;
            server.push([
                Step::RawToolArgs {
                    name: "echo".into(),
                    raw: raw.into(),
                },
                Step::text("The tool refused the input."),
            ]);
            let model = provider(wire, &server, "remote", Some("sk-test-key"));
            let agent = world.agent(&config, vec![model]).await;
            let out = agent.start(None, "echo it", &options()).await.unwrap();
            assert_eq!(out.status, RunStatus::Completed, "{wire:?} {raw}: {out:?}");

            let steps = agent.store().steps(&out.run_id).await.unwrap();
            assert!(
                steps
                    .iter()
                    .any(|s| s.error_kind.as_deref() == Some("invalid_input")),
                "{wire:?} {raw}: the tool call is refused as invalid_input: {steps:?}"
            );
            let seen = server.seen();
            let second = seen[1].body.to_string();
            assert!(
                second.contains("invalid_input") && second.contains("not I-JSON"),
                "{wire:?} {raw}: the model sees the refusal: {second}"
            );
        }
    }
}

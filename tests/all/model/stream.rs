//! Streamed model calls over both wire formats, against the loopback
//! server's SSE with injected faults. For each fault: the kind, the retry
//! or fallback taken, the final turn, and the tokens discarded; a completed
//! stream is exactly the turn a non-streamed call returns. Every streamed
//! request is checked against the OpenAI request schema and every chunk the
//! server sends against the chunk schema (`server.violations()`).
//!
//! The live view holds back the last few characters while they could be
//! the start of the API key (see `PieceScrubber`), so the partials here
//! are longer than the test key's longest form.
//!
//! Stream deadlines run on the real clock (they race live I/O), set short
//! here; backoff sleeps run on the manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use toolhost::model::{
    CallContext, ChatRequest, ChatResponse, ErrorKind, Live, LiveSink, StopReason,
};
use toolhost::resilience::{Chain, Served};

use super::{BOTH, Setup, Wire, provider, streamed};
use crate::support::model_server::{ModelServer, Step, StreamFault};

/// What a live viewer was shown, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl LiveSink for Seen {
    fn live(&self, event: &Live<'_>) {
        let line = match event {
            Live::Attempt { model, n } => format!("attempt {model}#{n}"),
            Live::Text(t) => format!("text {t}"),
            Live::ToolCall { name, .. } => format!("tool {name}"),
            Live::Retracted {
                model,
                kind,
                tokens,
            } => format!("retracted {model} {kind} {tokens}"),
            Live::Retry { model, reason, .. } => format!("retry {model} {reason}"),
            Live::Fallback { from, to, reason } => format!("fallback {from}->{to} {reason}"),
        };
        self.0.lock().unwrap().push(line);
    }
}

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The text shown since the last attempt began.
    fn last_text(&self) -> String {
        let lines = self.lines();
        let from = lines
            .iter()
            .rposition(|l| l.starts_with("attempt "))
            .unwrap_or(0);
        lines[from..]
            .iter()
            .filter_map(|l| l.strip_prefix("text "))
            .collect()
    }
}

const ANSWER: &str = "The answer, streamed in many small pieces, is 42.";

/// A chain of one streamed model with short stream deadlines.
fn chain(wire: Wire, server: &ModelServer) -> Chain {
    let mut setup = Setup::new().streamed_model(wire, server, "m");
    setup.retry.first_token_timeout_ms = 300;
    setup.retry.idle_timeout_ms = 300;
    setup.retry.max_attempts = 3;
    setup.build().0
}

async fn call(chain: &Chain) -> (Result<Served, toolhost::resilience::Unserved>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let result = chain
        .call_live(
            &ChatRequest::user("what is 6*7?"),
            Some(seen.clone() as Arc<dyn LiveSink>),
        )
        .await;
    (result, seen)
}

fn no_violations(server: &ModelServer, wire: Wire) {
    assert!(
        server.violations().is_empty(),
        "{wire:?}: {:?}",
        server.violations()
    );
}

/// The same step, asked once plainly and once streamed, from one server.
async fn plain_and_streamed(wire: Wire, step: Step) -> (ChatResponse, ChatResponse, ModelServer) {
    let server = ModelServer::start().await;
    let streamed_step = step.clone().streamed(StreamFault::Pings);
    server.push([step, streamed_step]);
    let req = ChatRequest::user("what is 6*7?");
    let cx = CallContext::unbounded();
    let plain = provider(wire, &server, "m", Some("sk-test-key"))
        .chat(&req, &cx)
        .await
        .unwrap();
    let stream = streamed(wire, &server, "m", Some("sk-test-key"))
        .chat(&req, &cx)
        .await
        .unwrap();
    (plain, stream, server)
}

#[tokio::test]
async fn a_completed_stream_is_exactly_the_turn_a_plain_call_returns() {
    for wire in BOTH {
        // Text, and a tool call whose arguments come in many fragments.
        for step in [
            Step::text(ANSWER),
            Step::ToolCall {
                name: "calc".into(),
                arguments: json!({"expr": "6*7", "precision": {"digits": 3, "round": "half-even"}}),
            },
        ] {
            let (plain, stream, server) = plain_and_streamed(wire, step).await;
            assert_eq!(stream, plain, "{wire:?}");
            // Usage arrives only in the last chunk (OpenAI) or the
            // message_delta (Anthropic), and is the same.
            assert_eq!(stream.usage.input_tokens, 25);
            assert_eq!(stream.usage.output_tokens, 12);
            no_violations(&server, wire);
            let seen = server.seen();
            assert_eq!(
                seen[0].body.get("stream"),
                None,
                "a plain request is as before"
            );
            assert_eq!(seen[1].body["stream"], true);
            if wire == Wire::OpenAi {
                assert_eq!(
                    seen[1].body["stream_options"],
                    json!({"include_usage": true})
                );
                assert_eq!(seen[0].body.get("stream_options"), None);
            }
        }
    }
}

#[tokio::test]
async fn tool_call_arguments_split_over_many_chunks_arrive_whole() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        let arguments = json!({"expr": "(1+2)*(3+4)*6", "note": "ünïcödé → split anywhere"});
        server.push([Step::ToolCall {
            name: "calc".into(),
            arguments: arguments.clone(),
        }
        .streamed(StreamFault::Pieces(1))]);
        let (result, seen) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        let calls = &served.response.tool_calls;
        assert_eq!(calls.len(), 1, "{wire:?}");
        assert_eq!(calls[0].name, "calc");
        assert_eq!(calls[0].arguments, arguments, "{wire:?}");
        assert_eq!(served.response.stop, StopReason::ToolUse);
        assert!(
            seen.lines().contains(&"tool calc".to_string()),
            "{:?}",
            seen.lines()
        );
        assert!(served.report.attempts[0].first_token_ms.is_some());
        no_violations(&server, wire);
    }
}

#[tokio::test]
async fn an_error_event_after_some_deltas_is_overloaded_retried_and_the_partial_discarded() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([
            Step::text(ANSWER).streamed(StreamFault::ErrorAfter(6)),
            Step::text(ANSWER).streamed(StreamFault::Pings),
        ]);
        let (result, seen) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        assert_eq!(served.response.text, ANSWER, "{wire:?}");
        let r = &served.report;
        assert_eq!(r.attempts[0].error, Some(ErrorKind::Overloaded), "{wire:?}");
        assert_eq!(r.retries[0].reason, ErrorKind::Overloaded);
        // Six deltas of four characters: 24 characters, 6 tokens.
        assert_eq!(r.attempts[0].tokens_discarded, 6, "{wire:?}");
        assert_eq!(r.attempts[1].tokens_discarded, 0);
        assert_eq!(r.tokens_discarded(), 6);
        let lines = seen.lines();
        assert!(
            lines.contains(&"retracted m overloaded 6".to_string()),
            "{wire:?}: {lines:?}"
        );
        assert_eq!(
            seen.last_text(),
            ANSWER,
            "the live view ends with the answer"
        );
        no_violations(&server, wire);
    }
}

#[tokio::test]
async fn a_connection_dropped_mid_text_is_connection_and_retried() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([
            Step::text(ANSWER).streamed(StreamFault::DropAfter(8)),
            Step::text(ANSWER),
        ]);
        let (result, seen) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        assert_eq!(served.response.text, ANSWER);
        let a = &served.report.attempts;
        assert_eq!(a[0].error, Some(ErrorKind::Connection), "{wire:?}: {a:?}");
        assert_eq!(a[0].tokens_discarded, 8, "32 characters");
        assert!(a[0].first_token_ms.is_some());
        assert_eq!(served.report.retries[0].reason, ErrorKind::Connection);
        assert!(
            seen.lines()
                .contains(&"retracted m connection 8".to_string())
        );
    }
}

#[tokio::test]
async fn a_connection_dropped_mid_tool_arguments_is_connection_and_retried() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        let step = || Step::ToolCall {
            name: "calc".into(),
            arguments: json!({"expr": "6*7"}),
        };
        server.push([
            step()
                .streamed(StreamFault::Pieces(2))
                .streamed(StreamFault::DropAfter(3)),
            step().streamed(StreamFault::Pieces(2)),
        ]);
        let (result, _) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        assert_eq!(
            served.response.tool_calls[0].arguments,
            json!({"expr": "6*7"})
        );
        let a = &served.report.attempts;
        assert_eq!(a[0].error, Some(ErrorKind::Connection), "{wire:?}: {a:?}");
        // The name (4 characters) and three fragments of two: 10, 3 tokens.
        assert_eq!(a[0].tokens_discarded, 3, "{wire:?}");
    }
}

#[tokio::test]
async fn a_stream_idle_past_its_deadline_is_cut_as_timeout() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([
            Step::text(ANSWER).streamed(StreamFault::StallAfter(5)),
            Step::text(ANSWER),
        ]);
        let started = std::time::Instant::now();
        let (result, seen) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "cut at the idle deadline, not the 5 s attempt timeout"
        );
        assert_eq!(served.response.text, ANSWER);
        let a = &served.report.attempts;
        assert_eq!(a[0].error, Some(ErrorKind::Timeout), "{wire:?}: {a:?}");
        assert_eq!(a[0].tokens_discarded, 5);
        assert!(seen.lines().contains(&"retracted m timeout 5".to_string()));
    }
}

#[tokio::test]
async fn a_first_token_later_than_its_deadline_is_timeout_with_nothing_discarded() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([
            Step::text(ANSWER).streamed(StreamFault::LateFirstToken(Duration::from_secs(3))),
            Step::text(ANSWER),
        ]);
        let (result, seen) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        let a = &served.report.attempts;
        assert_eq!(a[0].error, Some(ErrorKind::Timeout), "{wire:?}: {a:?}");
        assert!(a[0].elapsed_ms < 3_000, "{a:?}");
        assert_eq!((a[0].first_token_ms, a[0].tokens_discarded), (None, 0));
        assert!(
            !seen.lines().iter().any(|l| l.starts_with("retracted")),
            "nothing was shown, nothing to retract"
        );
        assert_eq!(served.response.text, ANSWER);
    }
}

#[tokio::test]
async fn a_malformed_chunk_is_malformed_response_and_not_retried() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([Step::text(ANSWER).streamed(StreamFault::MalformedAfter(5))]);
        let (result, seen) = call(&chain(wire, &server)).await;
        let unserved = result.unwrap_err();
        assert_eq!(
            unserved.error.kind,
            ErrorKind::MalformedResponse,
            "{wire:?}"
        );
        let r = &unserved.report;
        assert_eq!(r.attempts.len(), 1, "a caller-side kind is not retried");
        assert!(r.retries.is_empty() && r.fallbacks.is_empty());
        assert_eq!(r.attempts[0].tokens_discarded, 5);
        assert!(
            seen.lines()
                .contains(&"retracted m malformed_response 5".to_string())
        );
        assert_eq!(server.requests(), 1);
    }
}

#[tokio::test]
async fn an_error_before_the_first_event_is_classified_and_retried() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([Step::Status(529), Step::text(ANSWER)]);
        let (result, seen) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        let a = &served.report.attempts;
        assert_eq!(a[0].error, Some(ErrorKind::Overloaded));
        assert_eq!((a[0].first_token_ms, a[0].tokens_discarded), (None, 0));
        assert!(a[1].first_token_ms.is_some());
        assert!(!seen.lines().iter().any(|l| l.starts_with("retracted")));
        assert_eq!(served.response.text, ANSWER);
        no_violations(&server, wire);
    }
}

#[tokio::test]
async fn a_primary_whose_stream_dies_mid_answer_falls_back_to_the_backup() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::text(ANSWER).streamed(StreamFault::DropAfter(6)));
    backup.otherwise(|_| Step::text("from the backup").streamed(StreamFault::Pings));
    let mut setup = Setup::new()
        .streamed_model(Wire::Anthropic, &primary, "primary")
        .streamed_model(Wire::OpenAi, &backup, "backup");
    setup.retry.max_attempts = 2;
    let (chain, _) = setup.build();
    let (result, seen) = call(&chain).await;
    let served = result.unwrap();
    assert_eq!(served.response.text, "from the backup");
    let r = &served.report;
    assert_eq!(r.served_by.as_deref(), Some("backup"));
    assert_eq!(r.fallbacks[0].reason, ErrorKind::Connection);
    assert_eq!(r.tokens_discarded(), 12, "two attempts of 24 characters");
    let lines = seen.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("retracted primary"))
            .count(),
        2,
        "{lines:?}"
    );
    assert!(lines.contains(&"fallback primary->backup connection".to_string()));
    assert_eq!(seen.last_text(), "from the backup");
    no_violations(&backup, Wire::OpenAi);
}

#[tokio::test]
async fn stream_false_keeps_the_plain_request_and_no_first_token_is_reported() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        let (chain, _) = Setup::new().model(wire, &server, "m", None).build();
        let (result, seen) = call(&chain).await;
        let served = result.unwrap();
        assert_eq!(served.response.text, "ok");
        assert_eq!(served.report.attempts[0].first_token_ms, None);
        assert!(!seen.lines().iter().any(|l| l.starts_with("text")));
        let body = &server.seen()[0].body;
        assert_eq!(body.get("stream"), None, "{wire:?}: {body}");
        assert_eq!(body.get("stream_options"), None);
    }
}

#[tokio::test]
async fn a_key_echoed_in_a_stream_is_scrubbed_live_and_in_the_turn() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([Step::EchoKey.streamed(StreamFault::Pieces(3))]);
        let (result, seen) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        assert!(!served.response.text.contains("sk-test-key"), "{wire:?}");
        assert!(served.response.text.contains("[redacted]"));
        let shown: String = seen.last_text();
        assert!(!shown.contains("sk-test-key"), "{wire:?}: {shown}");
        assert!(!shown.contains("test-key"), "no piece of it: {shown}");
    }
}

#[tokio::test]
async fn a_stream_alive_but_slower_than_the_attempt_timeout_is_cut_as_timeout() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        // 13 deltas, 100 ms apart: never idle for 300 ms, 1.3 s in all.
        server.push([
            Step::text(ANSWER).streamed(StreamFault::EveryDelta(Duration::from_millis(100))),
            Step::text(ANSWER),
        ]);
        let mut setup = Setup::new().streamed_model(wire, &server, "m");
        setup.retry.first_token_timeout_ms = 300;
        setup.retry.idle_timeout_ms = 300;
        setup.retry.attempt_timeout_ms = 600;
        let (result, _) = call(&setup.build().0).await;
        let served = result.unwrap();
        let a = &served.report.attempts;
        assert_eq!(a[0].error, Some(ErrorKind::Timeout), "{wire:?}: {a:?}");
        assert!(a[0].tokens_discarded > 0 && a[0].tokens_discarded < 13);
        assert_eq!(served.response.text, ANSWER);
    }
}

#[tokio::test]
async fn broken_streams_count_against_the_breaker_like_any_failed_attempt() {
    let server = ModelServer::start().await;
    server.otherwise(|_| Step::text(ANSWER).streamed(StreamFault::DropAfter(2)));
    let (chain, _) = Setup::new()
        .streamed_model(Wire::OpenAi, &server, "m")
        .build();
    let (result, _) = call(&chain).await;
    let unserved = result.unwrap_err();
    assert_eq!(unserved.report.attempts.len(), 5);
    assert_eq!(
        chain.list()[0].breaker.state,
        toolhost::resilience::breaker::State::Open,
        "five connection failures in a row open it"
    );
    let (result, _) = call(&chain).await;
    assert_eq!(
        result.unwrap_err().report.attempts[0].error,
        Some(ErrorKind::CircuitOpen)
    );
    assert_eq!(server.requests(), 5, "an open breaker makes no request");
}

#[tokio::test]
async fn a_server_that_ignores_stream_is_read_as_one_json_body() {
    for wire in BOTH {
        let server = ModelServer::start().await;
        server.push([Step::Plain(Box::new(Step::text(ANSWER)))]);
        let (result, _) = call(&chain(wire, &server)).await;
        let served = result.unwrap();
        assert_eq!(served.response.text, ANSWER, "{wire:?}");
        assert_eq!(served.report.attempts[0].first_token_ms, None);
        assert_eq!(server.seen()[0].body["stream"], true);
        no_violations(&server, wire);
    }
}

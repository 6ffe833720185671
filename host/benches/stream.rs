//! What streaming costs, beside its baseline in the same run:
//!
//! - `stream/parse/{anthropic,openai}`: a whole streamed answer of
//!   [`DELTAS`] text deltas, held in memory, through the SSE parser
//!   (`sse-stream`) and the wire format's assembler into a `ChatResponse`.
//!   Throughput is in chunks (one SSE event each), so criterion's time per
//!   element is the per-chunk cost.
//! - `stream/first_token/{toolhost,bare_http}`: from sending the request to
//!   the first text delta, against a loopback server that answers every
//!   request with the same Anthropic stream. `toolhost` is the provider's
//!   `chat` (JSON body, SSE parse, assembler, the attempt's marks, a live
//!   sink receiving the text); `bare_http` is the same reqwest client
//!   reading the same response's bytes until the first `text_delta`
//!   appears. The difference is what toolhost adds to the first token.
//!   The server sends the events up to the first delta alone and the rest
//!   1 ms later, as a model generating its answer does (so neither side
//!   reads later events before its first token).
//!
//! No key is configured: with one, the live view holds back the last few
//! characters that could start the key by design (decision 0077), which is
//! a policy, not parse overhead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use toolhost::model::wire::{AnthropicStream, OpenAiStream, assemble_bytes};
use toolhost::model::{Anthropic, CallContext, ChatRequest, Endpoint, Live, LiveSink, Model};

#[path = "support/mod.rs"]
mod support;

use support::runtime;

/// Text deltas per streamed answer.
const DELTAS: usize = 200;

/// An Anthropic stream of `DELTAS` text deltas.
fn anthropic_stream() -> String {
    let mut s = String::new();
    let mut event = |name: &str, data: serde_json::Value| {
        s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    );
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for i in 0..DELTAS {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!(" word{i}")}}),
        );
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": DELTAS}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    s
}

/// An OpenAI stream of `DELTAS` content chunks, usage last.
fn openai_stream() -> String {
    let mut s = String::new();
    let mut chunk = |choices: serde_json::Value, usage: serde_json::Value| {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "system_fingerprint": "fp", "choices": choices, "usage": usage});
        s.push_str(&format!("data: {c}\n\n"));
    };
    chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        json!(null),
    );
    for i in 0..DELTAS {
        chunk(
            json!([{"index": 0, "delta": {"content": format!(" word{i}")}, "logprobs": null, "finish_reason": null}]),
            json!(null),
        );
    }
    chunk(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
        json!(null),
    );
    chunk(
        json!([]),
        json!({"prompt_tokens": 25, "completion_tokens": DELTAS, "total_tokens": 25 + DELTAS}),
    );
    s.push_str("data: [DONE]\n\n");
    s
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream/parse");
    g.throughput(Throughput::Elements(DELTAS as u64 + 5));
    let a = anthropic_stream();
    g.bench_function("anthropic", |b| {
        b.iter(|| {
            let r = assemble_bytes(AnthropicStream::new(), a.as_bytes(), |_| {}).unwrap();
            assert_eq!(r.usage.output_tokens, DELTAS as u64);
        })
    });
    let o = openai_stream();
    g.bench_function("openai", |b| {
        b.iter(|| {
            let r = assemble_bytes(OpenAiStream::new(), o.as_bytes(), |_| {}).unwrap();
            assert_eq!(r.usage.output_tokens, DELTAS as u64);
        })
    });
    g.finish();
}

/// A loopback HTTP/1.1 server answering every request on a connection
/// (kept alive) with `body` as one chunked `text/event-stream`.
async fn serve(body: String) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Just past the first text delta's event.
    let first_delta = body.find("text_delta").expect("a text delta");
    let split = first_delta + body[first_delta..].find("\n\n").expect("an event end") + 2;
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // Each write goes out at once, as a streaming server flushes.
            let _ = socket.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    // One request: the head, then content-length bytes.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + length);
                    // The events up to the first text delta go out alone,
                    // as a model's first token does; the rest follows
                    // while the model "generates" (1 ms later), so neither
                    // client parses later events before its first token.
                    let (first, rest) = body.split_at(split);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
                        first.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let tail = format!("{:x}\r\n{rest}\r\n0\r\n\r\n", rest.len());
                    if socket.write_all(tail.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Records when the first text arrived.
struct FirstText(Mutex<Option<Instant>>);

impl LiveSink for FirstText {
    fn live(&self, event: &Live<'_>) {
        if let Live::Text(t) = event
            && !t.is_empty()
        {
            let mut first = self.0.lock().unwrap();
            first.get_or_insert_with(Instant::now);
        }
    }
}

fn first_token(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(serve(anthropic_stream()));
    let url = format!("http://{addr}");
    let model = Anthropic::new(
        Endpoint::new("bench", "claude-sonnet-4-5", Some(url.clone()), None)
            .unwrap()
            .stream(true),
    );
    let request = ChatRequest::user("hi");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = toolhost::model::wire::anthropic_request("claude-sonnet-4-5", 4096, &request);
    let mut g = c.benchmark_group("stream/first_token");
    g.bench_function("toolhost", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let sink = Arc::new(FirstText(Mutex::new(None)));
                    let cx = CallContext::unbounded().with_live(sink.clone());
                    let start = Instant::now();
                    let r = model.chat(&request, &cx).await.unwrap();
                    assert!(!r.text.is_empty());
                    let first = sink.0.lock().unwrap().expect("a first token");
                    total += first - start;
                }
                total
            })
        })
    });
    g.bench_function("bare_http", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut body = body.clone();
                    body["stream"] = json!(true);
                    let start = Instant::now();
                    let mut response = client
                        .post(format!("{url}/v1/messages"))
                        .header("anthropic-version", "2023-06-01")
                        .header("accept", "text/event-stream")
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let mut seen = Vec::new();
                    let mut first = None;
                    while let Some(bytes) = response.chunk().await.unwrap() {
                        seen.extend_from_slice(&bytes);
                        if first.is_none() && seen.windows(10).any(|w| w == b"text_delta") {
                            first = Some(Instant::now());
                        }
                    }
                    total += first.expect("a first token") - start;
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, parse, first_token);
criterion_main!(benches);

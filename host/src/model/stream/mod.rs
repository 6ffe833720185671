//! Streamed answers: server-sent events read off a 2xx response, each
//! event handed to the wire format's [`Assembler`], which builds exactly the
//! [`ChatResponse`] a non-streamed call returns.
//!
//! The SSE framing is `sse-stream`'s (the parser rmcp already uses here);
//! what is toolhost's is what an event means, and the commit point: the
//! response exists only once the assembler says the stream is complete
//! (Anthropic's `message_stop`, OpenAI's `data: [DONE]`). Anything short of
//! that (an `error` event, a dropped connection, a malformed chunk, a stream
//! that just ends) is a classified [`ModelError`], and what arrived before
//! it goes nowhere but the live view, as a partial the retry loop retracts
//! (docs/decisions/0077-streamed-turns-commit-whole.md).
//!
//! Each event marks the [`CallContext`] (so the attempt timeout can cut a
//! stream that went quiet and the retry loop can report the time to first
//! token); text is shown live through a [`PieceScrubber`], so a key a
//! provider echoes cannot reach a terminal even split across two deltas.

pub(crate) mod anthropic;
pub(crate) mod openai;

use std::pin::Pin;

use futures_core::Stream;
use sse_stream::{Error as SseError, SseStream};

use super::http::{MAX_BODY, malformed};
use super::secret::{ApiKey, PieceScrubber};
use super::{CallContext, ChatResponse, ErrorKind, ModelError, classify};

/// What one event contributed, as the reading loop passes it on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Piece<'a> {
    /// The event carries content (text or a tool call): the first such is
    /// the attempt's first token.
    Content,
    /// More text of the answer.
    Text(&'a str),
    /// A tool call began.
    ToolCall { id: &'a str, name: &'a str },
    /// A fragment of a tool call's arguments.
    Arguments(&'a str),
    /// The provider's count of output tokens so far.
    OutputTokens(u64),
}

/// One wire format's reading of a stream.
pub trait Assembler {
    /// One event (`name` is its `event:` line, if any). `Ok(true)` when the
    /// stream is complete; an error breaks it.
    fn event(
        &mut self,
        name: Option<&str>,
        data: &str,
        out: &mut dyn FnMut(Piece<'_>),
    ) -> Result<bool, ModelError>;

    /// Whether a stream that ends here, with no end marker, is nonetheless
    /// whole (nothing the turn needs is missing).
    fn whole_at_end(&self) -> bool {
        false
    }

    /// The turn the stream assembled.
    fn finish(self) -> Result<ChatResponse, ModelError>;
}

/// Reads `response`'s events into `asm` until it is complete.
pub(crate) async fn read<A: Assembler>(
    response: reqwest::Response,
    mut asm: A,
    cx: &CallContext,
    key: Option<&ApiKey>,
) -> Result<ChatResponse, ModelError> {
    let mut events = Box::pin(SseStream::new(reqwest::Body::from(response)));
    let mut shown = key.map(ApiKey::piece_scrubber);
    let mut bytes = 0usize;
    loop {
        let next = std::future::poll_fn(|c| Pin::as_mut(&mut events).poll_next(c)).await;
        let sse = match next {
            Some(Ok(sse)) => sse,
            Some(Err(e)) => return Err(broken(e, key)),
            None if asm.whole_at_end() => break,
            None => {
                return Err(ModelError::new(
                    ErrorKind::Connection,
                    "the stream ended before it was complete",
                ));
            }
        };
        let data = sse.data.as_deref().unwrap_or_default();
        bytes += data.len();
        if bytes > MAX_BODY {
            return Err(malformed(format!(
                "the stream is larger than {MAX_BODY} bytes"
            )));
        }
        cx.stream_event(false);
        let done = asm
            .event(sse.event.as_deref(), data, &mut |piece| {
                show(cx, &mut shown, piece)
            })
            .map_err(|e| scrub_error(e, key))?;
        if done {
            // What follows the end marker is normally the body's end,
            // already read: one poll takes it, so the connection goes back
            // to the pool for the next turn instead of being dropped
            // mid-body (a new TCP and TLS handshake). Nothing waits for it.
            let poll = std::future::poll_fn(|c| Pin::as_mut(&mut events).poll_next(c));
            let _ = tokio::time::timeout(std::time::Duration::ZERO, poll).await;
            break;
        }
    }
    if let Some(rest) = shown.as_mut().map(PieceScrubber::finish) {
        cx.stream_text(&rest);
    }
    let mut response = asm.finish().map_err(|e| scrub_error(e, key))?;
    if let Some(key) = key {
        response.text = key.scrub(&response.text);
        for call in &mut response.tool_calls {
            key.scrub_json(&mut call.arguments);
            call.raw_arguments = call.raw_arguments.as_deref().map(|r| key.scrub(r));
            call.invalid_arguments = call.invalid_arguments.as_deref().map(|r| key.scrub(r));
        }
    }
    Ok(response)
}

fn show(cx: &CallContext, shown: &mut Option<PieceScrubber>, piece: Piece<'_>) {
    match piece {
        Piece::Content => cx.stream_event(true),
        Piece::Text(text) => {
            // Counted as it arrives; shown once it cannot be part of a key.
            cx.stream_received(text);
            match shown {
                Some(s) => cx.stream_text(&s.push(text)),
                None => cx.stream_text(text),
            }
        }
        Piece::ToolCall { id, name } => cx.stream_tool_call(id, name),
        Piece::Arguments(fragment) => cx.stream_arguments(fragment),
        Piece::OutputTokens(n) => cx.stream_usage(n),
    }
}

/// A stream the transport or the framing broke.
fn broken(e: SseError, key: Option<&ApiKey>) -> ModelError {
    let error = match &e {
        SseError::Body(inner) => match inner.downcast_ref::<reqwest::Error>() {
            Some(re) => classify::from_transport(re),
            None => ModelError::new(ErrorKind::Connection, format!("the stream broke: {inner}")),
        },
        other => malformed(format!("the stream is not server-sent events: {other}")),
    };
    scrub_error(error, key)
}

fn scrub_error(mut e: ModelError, key: Option<&ApiKey>) -> ModelError {
    if let Some(key) = key {
        e.message = key.scrub(&e.message);
    }
    e
}

/// Reads a complete stream held in memory: what the benchmarks and the
/// wire tests use to check an assembler without a server.
pub fn assemble_bytes<A: Assembler>(
    mut asm: A,
    body: &[u8],
    mut each: impl FnMut(Piece<'_>),
) -> Result<ChatResponse, ModelError> {
    let whole = http_body_util::Full::new(bytes::Bytes::copy_from_slice(body));
    let mut events = Box::pin(SseStream::new(whole));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        match Pin::as_mut(&mut events).poll_next(&mut cx) {
            std::task::Poll::Ready(Some(Ok(sse))) => {
                let data = sse.data.as_deref().unwrap_or_default();
                if asm.event(sse.event.as_deref(), data, &mut each)? {
                    break;
                }
            }
            std::task::Poll::Ready(Some(Err(e))) => return Err(broken(e, None)),
            std::task::Poll::Ready(None) if asm.whole_at_end() => break,
            std::task::Poll::Ready(None) | std::task::Poll::Pending => {
                return Err(ModelError::new(
                    ErrorKind::Connection,
                    "the stream ended before it was complete",
                ));
            }
        }
    }
    asm.finish()
}

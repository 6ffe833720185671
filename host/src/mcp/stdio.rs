//! MCP over stdin/stdout, for clients that start the server as a child.
//!
//! stdout carries protocol messages and nothing else: logs go to stderr (the
//! binary's tracing writer), and a tool's own stdout and stderr are captured
//! by the sandbox into capped buffers, never written to ours. A tool that
//! floods its logs therefore cannot corrupt the stream.
//!
//! rmcp's line transport reads and parses stdin; a tap between stdin and it
//! sees each line first and reads every `tools/call` with the strict I-JSON
//! parse (`strict.rs`), keyed by the request's id. When rmcp hands over the
//! parsed request, [`Strict`] attaches that reading to it, so the handler
//! refuses a duplicate name or an inexact number exactly as over HTTP.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rmcp::model::{ClientRequest, GetExtensions, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::{AsyncRwTransport, DEFAULT_MAX_LINE_LENGTH};
use rmcp::{RoleServer, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

use super::strict::{self, StrictArguments};
use super::{McpServer, ServeError};

/// Serves one client on stdin/stdout until it closes stdin.
pub async fn serve_stdio(server: McpServer) -> Result<(), ServeError> {
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let running = server
        .serve(Strict::new(stdin, stdout))
        .await
        .map_err(|e| ServeError::Handshake(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    Ok(())
}

/// Strict readings of `tools/call` lines not yet handed over, in order.
type Readings = Arc<Mutex<VecDeque<(RequestId, StrictArguments)>>>;

fn lock(readings: &Readings) -> std::sync::MutexGuard<'_, VecDeque<(RequestId, StrictArguments)>> {
    // Entries are pushed and popped whole: a poisoned queue is consistent.
    readings.lock().unwrap_or_else(|e| e.into_inner())
}

/// rmcp's line transport over a tapped reader.
pub struct Strict<R: AsyncRead + Unpin + Send, W: tokio::io::AsyncWrite + Unpin + Send + 'static> {
    inner: AsyncRwTransport<RoleServer, Tap<R>, W>,
    readings: Readings,
}

impl<R, W> Strict<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(read: R, write: W) -> Self {
        let readings = Readings::default();
        let tap = Tap {
            inner: read,
            line: Vec::new(),
            oversized: false,
            readings: readings.clone(),
        };
        Strict {
            inner: AsyncRwTransport::new_server(tap, write),
            readings,
        }
    }
}

impl<R, W> Transport<RoleServer> for Strict<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        let mut message = self.inner.receive().await?;
        if let JsonRpcMessage::Request(request) = &mut message
            && let ClientRequest::CallToolRequest(_) = &request.request
        {
            let mut readings = lock(&self.readings);
            // Lines rmcp dropped (unparsable) left readings before this one.
            while let Some((id, reading)) = readings.pop_front() {
                if id == request.id {
                    request.request.extensions_mut().insert(reading);
                    break;
                }
            }
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// A reader that passes bytes through and reads each complete `tools/call`
/// line strictly before rmcp parses it.
struct Tap<R> {
    inner: R,
    /// The line so far (dropped past rmcp's own line limit, as rmcp drops it).
    line: Vec<u8>,
    oversized: bool,
    readings: Readings,
}

impl<R> Tap<R> {
    fn scan(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            if self.line.len() + body.len() > DEFAULT_MAX_LINE_LENGTH {
                self.line.clear();
                self.oversized = true;
            } else if !self.oversized {
                self.line.extend_from_slice(body);
            }
            if ends {
                if !self.oversized {
                    self.read_line();
                }
                self.line.clear();
                self.oversized = false;
            }
        }
    }

    fn read_line(&self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        // Only a line that may be a tools/call is parsed here.
        if !line.windows(10).any(|w| w == b"tools/call") {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        if !strict::is_tool_call(&message) {
            return;
        }
        let Some(id) = message
            .get("id")
            .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok())
        else {
            return;
        };
        let reading = StrictArguments::read(line);
        lock(&self.readings).push_back((id, reading));
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.scan(&buf.filled()[before..]);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tap_reads_tool_calls_split_across_reads() {
        let mut tap = Tap {
            inner: tokio::io::empty(),
            line: Vec::new(),
            oversized: false,
            readings: Readings::default(),
        };
        let dup = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"a","message":"b"}}}"#;
        let ping = br#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#;
        let (head, tail) = dup.split_at(40);
        tap.scan(head);
        tap.scan(tail);
        tap.scan(b"\r\n");
        tap.scan(ping);
        tap.scan(b"\n");
        let readings = lock(&tap.readings).clone();
        assert_eq!(readings.len(), 1, "only the tools/call is read");
        let (id, reading) = &readings[0];
        assert_eq!(*id, RequestId::Number(7));
        let e = reading.0.clone().expect_err("a duplicate name");
        assert_eq!(e.path, "/message");
    }
}

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
        let tap = Tap::new(read, readings.clone());
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

/// A reader that hands rmcp whole lines, each `tools/call` read strictly
/// first (and, when only a surrogate escape kept serde_json from reading it,
/// rewritten to the same-length routable copy, see `strict.rs`).
struct Tap<R> {
    inner: R,
    /// The line so far, held until its newline (a line past rmcp's own limit
    /// is passed through unread, as rmcp drops it).
    line: Vec<u8>,
    oversized: bool,
    /// Bytes scanned and ready for rmcp, from `at`.
    ready: Vec<u8>,
    at: usize,
    readings: Readings,
}

impl<R> Tap<R> {
    fn new(inner: R, readings: Readings) -> Self {
        Tap {
            inner,
            line: Vec::new(),
            oversized: false,
            ready: Vec::new(),
            at: 0,
            readings,
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let ends = piece.ends_with(b"\n");
            if self.oversized {
                self.ready.extend_from_slice(piece);
            } else if self.line.len() + piece.len() > DEFAULT_MAX_LINE_LENGTH {
                self.oversized = true;
                self.ready.append(&mut self.line);
                self.ready.extend_from_slice(piece);
            } else {
                self.line.extend_from_slice(piece);
                if ends {
                    self.read_line();
                    self.ready.append(&mut self.line);
                }
            }
            if ends {
                self.oversized = false;
            }
        }
    }

    /// Reads the held line if it may be a `tools/call`.
    fn read_line(&mut self) {
        let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !text.windows(10).any(|w| w == b"tools/call") {
            return;
        }
        let Some((message, rewritten)) = strict::routable(text) else {
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
        let reading = StrictArguments::read(text);
        lock(&self.readings).push_back((id, reading));
        if let Some(rewritten) = rewritten {
            self.line[..rewritten.len()].copy_from_slice(&rewritten);
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let this = &mut *self;
            if this.at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.at);
                buf.put_slice(&this.ready[this.at..this.at + n]);
                this.at += n;
                if this.at == this.ready.len() {
                    this.ready.clear();
                    this.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of input: a last line without its newline goes on
                    // as it is (rmcp reads it at end of input too).
                    if this.line.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.read_line();
                    this.ready.append(&mut this.line);
                }
                Poll::Ready(Ok(())) => this.scan(read.filled()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tap_reads_tool_calls_split_across_reads() {
        let mut tap = Tap::new(tokio::io::empty(), Readings::default());
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

    #[tokio::test]
    async fn the_tap_hands_on_every_line_and_routes_a_lone_surrogate() {
        use tokio::io::AsyncReadExt;
        let surrogate = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"\ud800"}}}"#;
        let ping = r#"{"jsonrpc":"2.0","id":10,"method":"ping"}"#;
        let sent = format!("{surrogate}\n{ping}\n{ping}");
        let readings = Readings::default();
        let mut handed = Vec::new();
        Tap::new(sent.as_bytes(), readings.clone())
            .read_to_end(&mut handed)
            .await
            .unwrap();
        let expected = sent.replacen(r"\ud800", r"\ufffd", 1);
        assert_eq!(String::from_utf8(handed).unwrap(), expected);
        let readings = lock(&readings).clone();
        assert_eq!(readings.len(), 1);
        assert_eq!(readings[0].0, RequestId::Number(9));
        let e = readings[0].1.0.clone().expect_err("a lone surrogate");
        assert_eq!(e.path, "/message");
    }
}

//! MCP over stdin/stdout, for clients that start the server as a child.
//!
//! stdout carries protocol messages and nothing else: logs go to stderr (the
//! binary's tracing writer), and a tool's own stdout and stderr are captured
//! by the sandbox into capped buffers, never written to ours. A tool that
//! floods its logs therefore cannot corrupt the stream.
//!
//! rmcp's line transport reads and parses stdin; a tap between stdin and it
//! (`tap.rs`) sees each line first and reads every `tools/call` with the
//! strict I-JSON parse (`strict.rs`), keyed by the request's id. When rmcp
//! hands over the parsed request, [`Strict`] attaches that reading to it, so
//! the handler refuses a duplicate name or an inexact number exactly as over
//! HTTP.
//!
//! **Misuse is answered, not fatal.** rmcp ignores a line that is not JSON
//! without a word, and ends its handshake (so the process, as `internal`)
//! on a notification or response before `initialize`. Here a non-JSON line
//! gets a `-32700` parse error (the tap takes it out of rmcp's way), a
//! message before the lifecycle has begun is dropped or answered
//! (`lifecycle.rs`), each with a warning on stderr, and the server waits on
//! for a proper `initialize`.
//!
//! **A client that leaves is a clean exit.** One that closes stdin before
//! `initialize` (a 2026-07-28 client that only sent `server/discover`, or
//! `serve --stdio </dev/null`) ends the server with success, as one that
//! closes after a session does; a failure to write stdout is still an
//! error.

mod lifecycle;
mod tap;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rmcp::model::{ClientRequest, ErrorData, GetExtensions, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, ServerInitializeError, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use tokio::io::AsyncRead;
use tokio::sync::Notify;

use super::handler::LOG_TARGET;
use super::strict::StrictArguments;
use super::{McpServer, ServeError};
use lifecycle::Lifecycle;
use tap::Tap;

/// Serves one client on stdin/stdout until it closes stdin.
pub async fn serve_stdio(server: McpServer) -> Result<(), ServeError> {
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let versions = ServerHandler::supported_protocol_versions(&server).into_owned();
    let running = match server.serve(Strict::new(stdin, stdout, versions)).await {
        Ok(running) => running,
        // End of input before a lifecycle began: the client is done.
        Err(ServerInitializeError::ConnectionClosed(_)) => {
            tracing::debug!(target: LOG_TARGET, "the client closed stdin before initializing");
            return Ok(());
        }
        Err(e) => return Err(ServeError::Handshake(e.to_string())),
    };
    running
        .waiting()
        .await
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    Ok(())
}

/// Strict readings of `tools/call` lines not yet handed over, in order.
type Readings = Arc<Mutex<VecDeque<(RequestId, StrictArguments)>>>;

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are pushed and popped whole: a poisoned queue is consistent.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines the tap took out of the stream as not JSON, each as serde_json's
/// reason, waiting for their parse error; `notify` wakes the receiver.
#[derive(Default)]
struct NotJson {
    lines: Mutex<VecDeque<String>>,
    notify: Notify,
}

impl NotJson {
    fn push(&self, reason: String) {
        lock(&self.lines).push_back(reason);
        self.notify.notify_one();
    }

    fn take(&self) -> Vec<String> {
        lock(&self.lines).drain(..).collect()
    }
}

/// rmcp's line transport over a tapped reader.
pub struct Strict<R: AsyncRead + Unpin + Send, W: tokio::io::AsyncWrite + Unpin + Send + 'static> {
    inner: AsyncRwTransport<RoleServer, Tap<R>, W>,
    readings: Readings,
    not_json: Arc<NotJson>,
    lifecycle: Lifecycle,
}

impl<R, W> Strict<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    /// A transport over `read` and `write` for a server speaking
    /// `versions` (what decides whether a request starts a 2026-07-28
    /// lifecycle, see `lifecycle.rs`).
    pub fn new(read: R, write: W, versions: Vec<rmcp::model::ProtocolVersion>) -> Self {
        let readings = Readings::default();
        let not_json = Arc::new(NotJson::default());
        let tap = Tap::new(read, readings.clone(), not_json.clone());
        Strict {
            inner: AsyncRwTransport::new_server(tap, write),
            readings,
            not_json,
            lifecycle: Lifecycle::new(versions),
        }
    }

    /// The parse errors owed for lines that were not JSON. Spawned, so a
    /// `receive` cancelled by rmcp's select loop cannot lose one; awaited
    /// (`wait`) at the end of input, before rmcp closes stdout.
    async fn answer_not_json(&mut self, wait: bool) {
        for reason in self.not_json.take() {
            tracing::warn!(
                target: LOG_TARGET,
                "a line on stdin is not JSON ({reason}); answered with a parse error"
            );
            let error = ErrorData::parse_error(format!("parse error: {reason}"), None);
            let sent = self
                .inner
                .send(TxJsonRpcMessage::<RoleServer>::error(error, None));
            if wait {
                let _ = sent.await;
            } else {
                tokio::spawn(async move {
                    // Fails only when stdout is gone, and then so is the client.
                    let _ = sent.await;
                });
            }
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
        mut item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.lifecycle.word_refusal(&mut item);
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        let mut message = loop {
            self.answer_not_json(false).await;
            let not_json = self.not_json.clone();
            // rmcp's `receive` is cancel-safe (a partial line stays buffered).
            let received = tokio::select! {
                biased;
                () = not_json.notify.notified() => continue,
                received = self.inner.receive() => received,
            };
            let Some(message) = received else {
                self.answer_not_json(true).await;
                return None;
            };
            if self.lifecycle.admit(&message) {
                break message;
            }
        };
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

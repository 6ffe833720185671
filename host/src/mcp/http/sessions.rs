//! MCP sessions, bounded: at most `[serve] max_sessions` at once, each closed
//! after `session_idle_s` without a message, and a request whose client went
//! away cancelled as `notifications/cancelled` would cancel it.
//!
//! rmcp's [`LocalSessionManager`] keeps every session (a worker task, its
//! channels and a handler) until it idles out, with no bound on how many: a
//! client that opens sessions in a loop grows the server without limit. This
//! wrapper keeps rmcp's manager (its idle timeout is `session_idle_s`) and
//! adds a semaphore: a session holds one slot from its creation until rmcp
//! closes it (idle timeout, `DELETE`, or the end of its handler).
//!
//! **Why the slot is taken before rmcp runs.** rmcp turns any error of
//! [`SessionManager::create_session`] into a bare 500, while a client past
//! the cap should get 503 and `Retry-After`. So the `/mcp` guard takes the
//! slot for an `initialize` ([`Sessions::reserve`]), answers 503 itself when
//! none is free, and runs rmcp inside [`Reservation::scope`]; rmcp's
//! `create_session` runs in that same task and takes the reserved slot from
//! the task-local. A request that never reaches `create_session` (refused by
//! rmcp first) drops its slot when the scope ends. The count is therefore
//! exact: no race between checking and creating.
//!
//! **Disconnects.** The response to a request in a session is an SSE stream.
//! When the client's connection drops, hyper drops the stream; if the
//! request's response had not gone out yet, the stream's drop sends the
//! session a `notifications/cancelled` for that request, exactly what a
//! client that cancels sends. The handler's cancellation token fires, the
//! call is counted as cancelled, its admission slot is freed, and a call not
//! yet started never starts.
//!
//! **A session that ends cancels its calls.** When a session is closed (a
//! client's `DELETE`, an idle timeout) while a request is still pending,
//! rmcp's service stops reading, lets the handler finish, and then fails to
//! send the response into the closed session, logging `ERROR rmcp::service:
//! failed to send pending response during drain error=channel closed`. A
//! client that ends its session mid-call is not an error, and the call it no
//! longer waits for should stop, as on a disconnect. So closing a session
//! first sends it a `notifications/cancelled` for each request still
//! pending, in order ahead of the close: rmcp cancels those calls and drops
//! their responses quietly. (A tracing filter on rmcp's target would also
//! hide the line, but with it every genuine send failure of rmcp's, and the
//! call would run on for nobody.)
//!
//! **Priming.** Each session remembers whether its negotiated version gets
//! SSE priming events; a session of an older one has them taken out of its
//! streams (`priming.rs`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification,
    JsonRpcMessage, RequestId, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionHandle, LocalSessionManager, LocalSessionManagerError, SessionConfig,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::priming::{self, WithoutPriming};

tokio::task_local! {
    /// The slot the `/mcp` guard reserved for the session this request may
    /// create (see the module docs).
    static RESERVED: RefCell<Option<OwnedSemaphorePermit>>;
}

/// Seconds a refused client is told to wait: idle sessions free slots as
/// they expire, and a retry storm is what the cap is there to stop.
pub const RETRY_AFTER_S: u64 = 5;

/// What the wrapper adds to rmcp's errors.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
    #[error("the server already holds its limit of {limit} MCP sessions (serve.max_sessions)")]
    Full { limit: u32 },
}

/// rmcp's session manager with a cap and disconnect cancellation.
#[derive(Debug)]
pub struct Sessions {
    inner: LocalSessionManager,
    slots: Arc<Semaphore>,
    /// Each open session, its slot released when rmcp closes it.
    held: Mutex<HashMap<SessionId, Open>>,
    limit: u32,
}

/// What the wrapper keeps of an open session.
#[derive(Debug)]
struct Open {
    _slot: OwnedSemaphorePermit,
    /// Whether its negotiated version gets priming events.
    primes: bool,
    /// Its requests whose responses have not gone out yet.
    pending: Pending,
}

/// Requests of one session awaiting their responses.
type Pending = Arc<Mutex<HashSet<RequestId>>>;

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are added and removed whole: a poisoned set is consistent.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A slot taken for a session not yet created.
#[derive(Debug)]
pub struct Reservation(OwnedSemaphorePermit);

impl Reservation {
    /// Runs `future` (rmcp's handling of an `initialize`) with this slot
    /// available to the session it creates; unused, the slot is freed.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        RESERVED.scope(RefCell::new(Some(self.0)), future).await
    }
}

impl Sessions {
    /// At most `limit` sessions, each closed after `idle` without a message.
    pub fn new(limit: u32, idle: Duration) -> Sessions {
        let mut config = SessionConfig::default();
        config.keep_alive = Some(idle);
        let mut inner = LocalSessionManager::default();
        inner.session_config = config;
        Sessions {
            inner,
            slots: Arc::new(Semaphore::new(limit as usize)),
            held: Mutex::new(HashMap::new()),
            limit,
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.limit as usize - self.slots.available_permits()
    }

    /// A slot for a new session, or `None` when the cap is reached.
    pub fn reserve(&self) -> Option<Reservation> {
        // The semaphore is never closed: an error means no free slot.
        self.slots.clone().try_acquire_owned().ok().map(Reservation)
    }

    /// The refusal past the cap, for the 503's body.
    pub fn refusal(&self) -> String {
        format!(
            "{}; retry in {RETRY_AFTER_S} s, or raise serve.max_sessions",
            SessionsError::Full { limit: self.limit }
        )
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Open>> {
        lock(&self.held)
    }

    /// Whether session `id` gets priming events (`false` when it is not
    /// open).
    pub fn primes(&self, id: &str) -> bool {
        self.held().get(id).is_some_and(|open| open.primes)
    }

    /// Whether the session `id` is open (not ended, not idled out).
    pub async fn is_open(&self, id: &str) -> bool {
        self.inner.sessions.read().await.contains_key(id)
    }

    async fn handle(&self, id: &SessionId) -> Option<LocalSessionHandle> {
        self.inner.sessions.read().await.get(id).cloned()
    }
}

impl SessionManager for Sessions {
    type Error = SessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let reserved = RESERVED
            .try_with(|slot| slot.borrow_mut().take())
            .ok()
            .flatten();
        // Outside the guard's scope (nothing in this server does that) the
        // slot is taken here, and a full server refuses.
        let slot = match reserved {
            Some(slot) => slot,
            None => self
                .slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| SessionsError::Full { limit: self.limit })?,
        };
        let (id, transport) = self.inner.create_session().await?;
        let open = Open {
            _slot: slot,
            primes: false,
            pending: Pending::default(),
        };
        self.held().insert(id.clone(), open);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let response = self.inner.initialize_session(id, message).await?;
        if let JsonRpcMessage::Response(response) = &response
            && let ServerResult::InitializeResult(result) = &response.result
            && let Some(open) = self.held().get_mut(id)
        {
            open.primes = priming::primes(result.protocol_version.as_str());
        }
        Ok(response)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        // rmcp calls this for every session that ends (idle timeout, DELETE,
        // shutdown), so the slot always comes back.
        let open = self.held().remove(id);
        let pending: Vec<RequestId> = open
            .map(|open| lock(&open.pending).drain().collect())
            .unwrap_or_default();
        if !pending.is_empty()
            && let Some(handle) = self.handle(id).await
        {
            // Ahead of the close on the session's own queue (module docs).
            for request_id in pending {
                tracing::debug!(%request_id, "the session ended; cancelling its request");
                let _ = handle
                    .push_message(cancelled(request_id, "the session ended"), None)
                    .await;
            }
        }
        Ok(self.inner.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let (primes, pending) = match self.held().get(id) {
            Some(open) => (open.primes, Some(open.pending.clone())),
            None => (false, None),
        };
        let watch = match (&message, pending) {
            (JsonRpcMessage::Request(request), Some(pending)) => {
                self.handle(id).await.map(|handle| Watch {
                    handle,
                    id: request.id.clone(),
                    pending,
                })
            }
            _ => None,
        };
        let stream = self.inner.create_stream(id, message).await?;
        if let Some(watch) = &watch {
            lock(&watch.pending).insert(watch.id.clone());
        }
        let inner: SseStream = if primes {
            Box::pin(stream)
        } else {
            Box::pin(WithoutPriming::new(Box::pin(stream)))
        };
        Ok(CancelOnDisconnect {
            inner,
            pending: watch,
        })
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let primes = self.held().get(id.as_ref()).is_some_and(|open| open.primes);
        let stream = Box::pin(self.inner.resume(id, last_event_id).await?);
        let stream: SseStream = if primes {
            stream
        } else {
            Box::pin(WithoutPriming::new(stream))
        };
        Ok(stream)
    }

    async fn restore_session(
        &self,
        _id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        // No session store is configured: nothing to restore.
        Ok(RestoreOutcome::NotSupported)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

type SseStream = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>;

/// A request's response stream that, dropped before the response went out,
/// cancels the request in its session.
struct CancelOnDisconnect {
    inner: SseStream,
    /// The request still waiting for its response.
    pending: Option<Watch>,
}

/// A request awaiting its response: its session, its id, and the session's
/// set of such requests it is listed in until answered.
struct Watch {
    handle: LocalSessionHandle,
    id: RequestId,
    pending: Pending,
}

impl Watch {
    /// No longer pending: answered, or its cancellation is on its way.
    fn settle(self) -> (LocalSessionHandle, RequestId) {
        lock(&self.pending).remove(&self.id);
        (self.handle, self.id)
    }
}

/// `notifications/cancelled` for `request_id`.
fn cancelled(request_id: RequestId, reason: &str) -> ClientJsonRpcMessage {
    ClientJsonRpcMessage::notification(ClientNotification::CancelledNotification(
        CancelledNotification::new(CancelledNotificationParam::new(
            Some(request_id),
            Some(reason.into()),
        )),
    ))
}

impl Stream for CancelOnDisconnect {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(event)) => {
                let answered = event.message.as_deref().is_some_and(|m| match m {
                    JsonRpcMessage::Response(r) => Some(&r.id) == self.request_id(),
                    JsonRpcMessage::Error(e) => {
                        e.id.is_some() && e.id.as_ref() == self.request_id()
                    }
                    _ => false,
                });
                if answered && let Some(watch) = self.pending.take() {
                    watch.settle();
                }
            }
            // The session ended the stream itself: nothing left to cancel.
            Poll::Ready(None) => {
                if let Some(watch) = self.pending.take() {
                    watch.settle();
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl CancelOnDisconnect {
    fn request_id(&self) -> Option<&RequestId> {
        self.pending.as_ref().map(|watch| &watch.id)
    }
}

impl Drop for CancelOnDisconnect {
    fn drop(&mut self) {
        let Some(watch) = self.pending.take() else {
            return;
        };
        let (handle, request_id) = watch.settle();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!(%request_id, "the client disconnected; cancelling its request");
        let cancel = cancelled(request_id, "the client disconnected");
        runtime.spawn(async move {
            // The session may be gone already; then so is the request.
            let _ = handle.push_message(cancel, None).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_count_against_the_cap_until_dropped() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let first = sessions.reserve().expect("a free slot");
        let second = sessions.reserve().expect("a free slot");
        assert!(sessions.reserve().is_none());
        assert_eq!(sessions.open(), 2);
        assert!(sessions.refusal().contains("serve.max_sessions"));
        drop(first);
        // An unused reservation frees its slot at the end of its scope.
        second.scope(async {}).await;
        assert_eq!(sessions.open(), 0);
    }

    #[tokio::test]
    async fn a_session_holds_its_reserved_slot_until_closed() {
        let sessions = Sessions::new(1, Duration::from_secs(60));
        let reservation = sessions.reserve().expect("a free slot");
        let (id, _transport) = reservation
            .scope(sessions.create_session())
            .await
            .expect("a session");
        assert_eq!(sessions.open(), 1);
        assert!(sessions.reserve().is_none());
        assert!(matches!(
            sessions.create_session().await,
            Err(SessionsError::Full { limit: 1 })
        ));
        sessions.close_session(&id).await.expect("closed");
        assert_eq!(sessions.open(), 0);
    }
}

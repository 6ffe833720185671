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

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification,
    JsonRpcMessage, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionHandle, LocalSessionManager, LocalSessionManagerError, SessionConfig,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// Each open session's slot, released when rmcp closes it.
    held: Mutex<HashMap<SessionId, OwnedSemaphorePermit>>,
    limit: u32,
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

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, OwnedSemaphorePermit>> {
        // A panic while holding the map cannot leave it inconsistent.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
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
        self.held().insert(id.clone(), slot);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        // rmcp calls this for every session that ends (idle timeout, DELETE,
        // shutdown), so the slot always comes back.
        self.held().remove(id);
        Ok(closed?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let watch = match &message {
            JsonRpcMessage::Request(request) => self
                .handle(id)
                .await
                .map(|handle| (handle, request.id.clone())),
            _ => None,
        };
        let stream = self.inner.create_stream(id, message).await?;
        Ok(CancelOnDisconnect {
            inner: Box::pin(stream),
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
        Ok(self.inner.resume(id, last_event_id).await?)
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
    /// The session and the request still waiting for its response.
    pending: Option<(LocalSessionHandle, RequestId)>,
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
                if answered {
                    self.pending = None;
                }
            }
            // The session ended the stream itself: nothing left to cancel.
            Poll::Ready(None) => self.pending = None,
            Poll::Pending => {}
        }
        polled
    }
}

impl CancelOnDisconnect {
    fn request_id(&self) -> Option<&RequestId> {
        self.pending.as_ref().map(|(_, id)| id)
    }
}

impl Drop for CancelOnDisconnect {
    fn drop(&mut self) {
        let Some((handle, request_id)) = self.pending.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!(%request_id, "the client disconnected; cancelling its request");
        let cancel = ClientJsonRpcMessage::notification(ClientNotification::CancelledNotification(
            CancelledNotification::new(CancelledNotificationParam::new(
                Some(request_id),
                Some("the client disconnected".into()),
            )),
        ));
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

//! `GET /v1/runs/{id}/events`: a run's progress as Server-Sent Events.
//!
//! The stream: a `snapshot` (the run and its steps, as `GET /v1/runs/{id}`
//! gives them), then each [`Event`] of the run as it
//! happens, named by its `event` field (`model_calling`, `model_done`,
//! `tool_done`, ...), then `end` (`{"run_id", "status"}`) when this
//! server's session of the run stops. A run not driven here (finished, or
//! driven elsewhere) gets its snapshot and `end` at once.
//!
//! Why subscribe before the snapshot: an event between the two reads is
//! then sent twice (in the snapshot and as itself), never lost; a watcher
//! that falls more than the hub's buffer behind gets a fresh `snapshot` in
//! place of the events it missed.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, KeepAliveStream, Sse};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::Api;
use super::error::ApiError;
use super::runs::view;
use crate::agent::Event;
use crate::store::Store;

/// Events queued for one slow connection before its feeder waits.
const CONNECTION_BUFFER: usize = 64;

/// The stream axum sends: what the feeder task produces.
pub struct Feed(mpsc::Receiver<SseEvent>);

impl futures_core::Stream for Feed {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

/// `GET /v1/runs/{id}/events`.
pub async fn events(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Sse<KeepAliveStream<Feed>>, ApiError> {
    let live = api.hub.as_ref().and_then(|h| h.subscribe(&id));
    // A missing run is a 404, not an empty stream.
    let snapshot = view(&api.store, &id).await?;
    let (tx, rx) = mpsc::channel(CONNECTION_BUFFER);
    tokio::spawn(feed(api.store.clone(), id, snapshot, live, tx));
    Ok(Sse::new(Feed(rx)).keep_alive(KeepAlive::default()))
}

fn named(name: &str, data: &serde_json::Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

/// Sends the snapshot, the live events and the end; stops early when the
/// client goes away.
async fn feed(
    store: Store,
    id: String,
    snapshot: serde_json::Value,
    live: Option<broadcast::Receiver<Event>>,
    tx: mpsc::Sender<SseEvent>,
) {
    let mut status = snapshot["run"]["status"].clone();
    if tx.send(named("snapshot", &snapshot)).await.is_err() {
        return;
    }
    if let Some(mut live) = live {
        loop {
            let event = tokio::select! {
                event = live.recv() => event,
                () = tx.closed() => return,
            };
            let out = match event {
                Ok(event) => {
                    let data = json!(event);
                    let name = data["event"].as_str().unwrap_or("event").to_string();
                    named(&name, &data)
                }
                Err(broadcast::error::RecvError::Lagged(_)) => match view(&store, &id).await {
                    Ok(v) => named("snapshot", &v),
                    Err(_) => continue,
                },
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
        if let Ok(Some(run)) = store.get_run(&id).await {
            status = json!(run.status.as_str());
        }
    }
    let _ = tx
        .send(named("end", &json!({"run_id": id, "status": status})))
        .await;
}

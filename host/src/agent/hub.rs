//! The runs one server drives, live: each with its event broadcast and its
//! cancel signal, under one admission limit.
//!
//! Why a registry and not the store: a run's progress between two journal
//! rows (a model call in flight, a retry, a streamed answer) exists only in
//! the process driving it, so a client watching a run (the run API's event
//! stream, the web page) must find that process's channels. The store still
//! says who owns a run; the hub says which of this server's runs are
//! running here now, and what they are doing.
//!
//! Admission: at most `max_concurrent_runs` runs are driven at once, new
//! ones submitted over the API (`drive.rs`) and adopted ones (`recover.rs`,
//! [`Recovery::with_hub`](super::Recovery::with_hub)) alike; a submitted run
//! past it waits for a slot, up to [`MAX_WAITING`] of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Semaphore, broadcast, watch};

use super::event::{Event, Observer};
use super::run::{Agent, AgentOptions};

/// Events a slow watcher may fall behind by before it misses some (it is
/// then sent a fresh snapshot instead).
pub const EVENT_BUFFER: usize = 1024;
/// Submitted runs that may wait for a slot; past it a submission is refused
/// as `overloaded`, so a flood of submissions cannot queue without bound.
pub const MAX_WAITING: usize = 256;

/// One server's live runs.
pub struct Hub {
    /// The server's agent: stops by handing its runs back.
    agent: Agent,
    /// The limits of a submitted run that names none.
    pub(super) defaults: AgentOptions,
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    live: Mutex<HashMap<String, Live>>,
    /// How many runs are registered; watched by [`Hub::drained`].
    count: watch::Sender<usize>,
}

/// A run being driven here.
struct Live {
    events: broadcast::Sender<Event>,
    cancel: watch::Sender<bool>,
    /// Turns true when this session of the run ends.
    done: watch::Receiver<bool>,
}

/// A run registered in the hub, with the agent that drives it (its events
/// go to the hub's watchers, its cancel comes from the hub). Dropping it
/// removes the run: its watchers' streams end.
pub struct LiveRun {
    hub: Arc<Hub>,
    id: String,
    agent: Agent,
    done: watch::Sender<bool>,
}

impl LiveRun {
    /// The agent for this run.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Whether a client asked to cancel it.
    pub(super) fn cancel_asked(&self) -> watch::Receiver<bool> {
        match self.hub.lock().get(&self.id) {
            Some(live) => live.cancel.subscribe(),
            // Registered until dropped: unreachable, and never asked.
            None => watch::channel(false).1,
        }
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
        self.hub.count.send_modify(|n| *n = n.saturating_sub(1));
        let _ = self.done.send(true);
    }
}

/// Sends a run's events to whoever watches it; never waits.
struct Broadcast(broadcast::Sender<Event>);

impl Observer for Broadcast {
    fn event(&self, event: &Event) {
        // No watcher is no error.
        let _ = self.0.send(event.clone());
    }
}

impl Hub {
    /// A hub over `agent` (built with [`Agent::hand_back_on`] the server's
    /// stop), driving at most `max_concurrent` runs at once.
    pub fn new(agent: Agent, defaults: AgentOptions, max_concurrent: usize) -> Arc<Hub> {
        let max_concurrent = max_concurrent.max(1);
        Arc::new(Hub {
            agent,
            defaults,
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            live: Mutex::new(HashMap::new()),
            count: watch::channel(0).0,
        })
    }

    /// The server's agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The admission slots, shared with recovery.
    pub(super) fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    /// Whether another submitted run may wait for a slot.
    pub(super) fn has_room(&self) -> bool {
        self.lock().len() < self.max_concurrent + MAX_WAITING
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        // A panic while holding this lock leaves the map consistent (every
        // change is one insert or remove), so a poisoned lock is usable.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers run `id` as driven here; `None` if it already is.
    pub fn register(self: &Arc<Self>, id: &str) -> Option<LiveRun> {
        let mut live = self.lock();
        if live.contains_key(id) {
            return None;
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (cancel, cancelled) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        live.insert(
            id.to_string(),
            Live {
                events: events.clone(),
                cancel,
                done,
            },
        );
        drop(live);
        self.count.send_modify(|n| *n += 1);
        let agent = self
            .agent
            .clone()
            .observe(Arc::new(Broadcast(events)))
            .cancel_on(cancelled);
        Some(LiveRun {
            hub: self.clone(),
            id: id.to_string(),
            agent,
            done: done_tx,
        })
    }

    /// The events of run `id` from now on, if it is driven here.
    pub fn subscribe(&self, id: &str) -> Option<broadcast::Receiver<Event>> {
        self.lock().get(id).map(|l| l.events.subscribe())
    }

    /// Asks run `id` to stop `partial`, if it is driven here: the receiver
    /// turns true when its session has ended.
    pub fn cancel(&self, id: &str) -> Option<watch::Receiver<bool>> {
        let live = self.lock();
        let run = live.get(id)?;
        let _ = run.cancel.send(true);
        Some(run.done.clone())
    }

    /// How many runs are registered here (driven or waiting for a slot).
    pub fn live_runs(&self) -> usize {
        self.lock().len()
    }

    /// Resolves once no run is registered (after the server's stop, every
    /// run has handed itself back).
    pub async fn drained(&self) {
        let mut count = self.count.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

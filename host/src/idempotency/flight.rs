//! In-process flights: callers of one key in this process queue on one
//! lock, so only the first reaches the store; the rest wake when it lets go
//! (after the outcome is recorded) and replay it. No polling.
//!
//! An entry leaves the map when its last ticket is dropped, including the
//! ticket of a caller whose future was cancelled while it waited: a
//! cancelled waiter never leaks an entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Lock = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Lock>>,
}

/// A caller's place in a key's flight; the map forgets the key when the
/// last ticket goes.
pub(crate) struct Ticket<'a> {
    flights: &'a Flights,
    key: String,
    lock: Option<Lock>,
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Ticket<'_> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let lock = map.entry(key.to_string()).or_default().clone();
        Ticket {
            flights: self,
            key: key.to_string(),
            lock: Some(lock),
        }
    }

    /// Keys with a flight entry (for tests of leaks).
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Ticket<'_> {
    /// The key's lock (this caller's turn when acquired).
    pub(crate) fn lock(&self) -> Lock {
        self.lock.clone().expect("set until drop")
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.lock.take());
        // Only the map's own reference left: nobody holds or waits.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}

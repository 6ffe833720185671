//! Where breaker states come from, behind one small function type.
//!
//! Breakers live in two places: in memory, in a [`Chain`] that is making
//! calls (per provider and model), and in the store, where every process
//! publishes its changes (models and tools: `model:NAME`, `tool:NAME`). A
//! server that calls no models itself reports the store's view
//! ([`persisted_breakers`]): that is the state every process acts on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::resilience::Chain;
use crate::resilience::breaker::State;
use crate::resilience::{Shared, unix_ms};
use crate::store::Store;

/// One breaker's state at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerReading {
    /// What it guards, prefixed by its kind: `model:primary`, `tool:notes`.
    pub dependency: String,
    pub state: State,
}

/// Reads every breaker's current state; called at each `/metrics` scrape.
pub type BreakerSource = Arc<dyn Fn() -> Vec<BreakerReading> + Send + Sync>;

/// The model chain's breakers, in chain order, named `model:<name>`.
pub fn model_breakers(chain: Arc<Chain>) -> BreakerSource {
    Arc::new(move || {
        chain
            .list()
            .into_iter()
            .map(|entry| BreakerReading {
                dependency: format!("model:{}", entry.name),
                state: entry.breaker.state,
            })
            .collect()
    })
}

/// No breakers (a server without a model chain).
pub fn no_breakers() -> BreakerSource {
    Arc::new(Vec::new)
}

/// The breakers persisted in `store` (every process's models and tools),
/// refreshed every `every` by a background task, so a scrape never waits
/// on the database. The task ends when the returned source is dropped.
pub fn persisted_breakers(store: Store, every: Duration) -> BreakerSource {
    persisted_breakers_with(store, every, Vec::new())
}

/// [`persisted_breakers`], where each of `known` (such as `model:primary`
/// for a configured model) reads `closed` until a row for it exists, as
/// `model list` shows a breaker no process has published yet.
///
/// The state is computed at each scrape from the row's open deadline
/// (`Shared::status_at`, the rule `model list` uses too): a breaker whose
/// open time is up reads `half_open` at once, not when some process next
/// asks it (issue 22: `open` was reported minutes after the open period).
pub fn persisted_breakers_with(store: Store, every: Duration, known: Vec<String>) -> BreakerSource {
    let latest: Arc<Mutex<Vec<(String, Shared)>>> = Arc::default();
    let weak = Arc::downgrade(&latest);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(latest) = weak.upgrade() else { return };
            match store.breaker_states("").await {
                Ok(rows) => {
                    let rows = rows.into_iter().map(|row| (row.name, row.state)).collect();
                    // A poisoned lock only means a scrape panicked mid-read;
                    // the data is a plain Vec and still whole.
                    *latest.lock().unwrap_or_else(|p| p.into_inner()) = rows;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read breaker states for /metrics"),
            }
        }
    });
    Arc::new(move || {
        let now = unix_ms();
        let rows = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut readings: Vec<BreakerReading> = rows
            .iter()
            .map(|(name, shared)| BreakerReading {
                dependency: name.clone(),
                state: shared.status_at(now).0,
            })
            .collect();
        for name in &known {
            if !rows.iter().any(|(n, _)| n == name) {
                readings.push(BreakerReading {
                    dependency: name.clone(),
                    state: State::Closed,
                });
            }
        }
        readings
    })
}

//! Where breaker states come from, behind one small function type.
//!
//! Today the only breakers are the model chain's, per provider and model, held
//! in memory by a [`Chain`]. Tool breakers and breakers persisted in the store
//! are another source of [`BreakerReading`]s: wiring them in is a new
//! [`BreakerSource`] (or a closure that concatenates two), with no change to
//! the metrics themselves.

use std::sync::Arc;

use crate::resilience::Chain;
use crate::resilience::breaker::State;

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

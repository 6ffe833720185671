//! Circuit-breaker state shared by every process on the database.
//!
//! Each breaker publishes its changes (open, half-open, close, failures,
//! quota hits) to a row named `model:NAME` or `tool:NAME`; a process adopts
//! the newer state before it calls the dependency (`Breaker::adopt`), and
//! `model list` reads the rows, so every process sees one state. The newest
//! write wins (`updated_at`, a per-breaker increasing wall-clock ms).
//!
//! Writes are queued without waiting (`worker::Handle::submit`): a breaker
//! decides under a lock that must not await, and a breaker snapshot lost in
//! a crash only means a dependency gets probed again. Reads go to the
//! read-only connection: an agent reads before every model turn and tool
//! phase. On PostgreSQL the same contract holds across hosts
//! (`pg/breakers.rs`). The SQL is in `sqlite/breakers.rs`.
//!
//! API for readers (`/metrics`, dashboards): [`Store::breaker_states`].

use std::sync::Arc;

use serde::Serialize;

use crate::resilience::{BreakerSink, Shared};
use crate::store::{Backend, Store, StoreError, sqlite::breakers};

/// One persisted breaker.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerRow {
    /// `model:NAME` (a chain entry) or `tool:NAME`.
    pub name: String,
    #[serde(flatten)]
    pub state: Shared,
}

/// A [`BreakerSink`] writing to the store under `prefix` + the breaker's name.
#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Store,
    prefix: &'static str,
}

impl StoreSink {
    /// Model breakers: rows `model:NAME`.
    pub fn models(store: Store) -> Arc<StoreSink> {
        Arc::new(StoreSink {
            store,
            prefix: "model:",
        })
    }

    /// Tool breakers: rows `tool:NAME`.
    pub fn tools(store: Store) -> Arc<StoreSink> {
        Arc::new(StoreSink {
            store,
            prefix: "tool:",
        })
    }
}

impl BreakerSink for StoreSink {
    fn publish(&self, name: &str, state: &Shared) {
        let (name, state) = (format!("{}{name}", self.prefix), state.clone());
        match &self.store.backend {
            Backend::Sqlite(s) => s.inner.write_behind("a breaker snapshot", move |c| {
                breakers::save(c, &name, &state)
            }),
            Backend::Postgres(p) => p.publish_breaker(name, state),
        }
    }
}

impl Store {
    /// Every persisted breaker whose name starts with `prefix` (`""` for
    /// all, `"model:"`, `"tool:"`), by name.
    pub async fn breaker_states(&self, prefix: &str) -> Result<Vec<BreakerRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let prefix = prefix.to_string();
                s.reader.read(move |c| breakers::load(c, &prefix)).await
            }
            Backend::Postgres(p) => p.breaker_states(prefix).await,
        }
    }

    /// The persisted states under `prefix`, keyed by the name after it.
    pub async fn breaker_map(
        &self,
        prefix: &str,
    ) -> Result<std::collections::HashMap<String, Shared>, StoreError> {
        Ok(self
            .breaker_states(prefix)
            .await?
            .into_iter()
            .map(|r| (r.name[prefix.len()..].to_string(), r.state))
            .collect())
    }
}

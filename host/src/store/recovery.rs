//! Runs whose owner died, and the servers that adopt them.
//!
//! A run row says `running` until its owner finishes it; whether that owner
//! still lives is the store's liveness test (SQLite: its `flock`;
//! PostgreSQL: its lease), the same test that decides when a claim may be
//! taken over. Reads report such a run as [`RunStatus::Interrupted`], and
//! [`Store::interrupted_runs`] lists them oldest first for a recovering
//! `toolhost serve`.
//!
//! A server that recovers runs says so ([`Store::announce_recoverer`]), so
//! `runs list` can name who will pick an interrupted run up: a marker file
//! beside the owner's lock on SQLite, a flag on the owner's row on
//! PostgreSQL. Either lives exactly as long as the owner does.

use serde::Serialize;

use super::{Backend, RunRecord, RunStatus, Store, StoreError};

/// A live server that adopts interrupted runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recoverer {
    /// Its store owner id.
    pub owner: String,
    /// The machine it runs on (PostgreSQL; `None` on SQLite: this one).
    pub host: Option<String>,
    pub pid: u32,
}

impl std::fmt::Display for Recoverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(host) => write!(f, "toolhost serve (pid {} on {host})", self.pid),
            None => write!(f, "toolhost serve (pid {})", self.pid),
        }
    }
}

impl Store {
    /// The runs whose owner is dead, oldest first, at most `limit`.
    pub async fn interrupted_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let runs = match &self.backend {
            Backend::Sqlite(s) => s.interrupted_runs(limit).await?,
            Backend::Postgres(p) => p.interrupted_runs(limit).await?,
        };
        Ok(runs
            .into_iter()
            .filter(|r| r.status == RunStatus::Interrupted)
            .collect())
    }

    /// Records that this store's owner adopts interrupted runs, for as long
    /// as it lives.
    pub async fn announce_recoverer(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.announce_recoverer().await,
            Backend::Postgres(p) => p.announce_recoverer().await,
        }
    }

    /// The live servers that adopt interrupted runs.
    pub async fn recoverers(&self) -> Result<Vec<Recoverer>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.recoverers().await,
            Backend::Postgres(p) => p.recoverers().await,
        }
    }
}

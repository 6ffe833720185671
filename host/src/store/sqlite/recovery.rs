//! The SQLite side of `store/recovery.rs`: an owner is dead when its
//! `flock` is free, and a recovering server's marker file sits beside its
//! lock file.

use rusqlite::Connection;

use super::Sqlite;
use super::journal::{RUN_COLUMNS, run_row};
use super::liveness;
use crate::store::{Recoverer, RunRecord, RunStatus, StoreError};

fn running_oldest_first(c: &Connection, limit: usize) -> rusqlite::Result<Vec<RunRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running'
         ORDER BY created_at, id LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], run_row)?;
    rows.collect()
}

impl Sqlite {
    /// Marks each `running` run whose owner is dead (or unset) as
    /// interrupted. An owner whose liveness cannot be told counts as alive,
    /// as it does for claims.
    pub(crate) async fn mark_interrupted(&self, runs: impl Iterator<Item = &mut RunRecord>) {
        for run in runs.filter(|r| r.status == RunStatus::Running) {
            let alive = match &run.owner {
                Some(owner) => self.owner_alive(owner).await.counts_as_alive(),
                None => false,
            };
            if !alive {
                run.status = RunStatus::Interrupted;
            }
        }
    }

    pub(crate) async fn interrupted_runs(
        &self,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        // Every running run is read (a live owner's are skipped here), so
        // the limit counts the interrupted ones.
        let mut runs = self
            .inner
            .run(move |c| running_oldest_first(c, usize::MAX))
            .await?;
        self.mark_interrupted(runs.iter_mut()).await;
        runs.retain(|r| r.status == RunStatus::Interrupted);
        runs.truncate(limit);
        Ok(runs)
    }

    pub(crate) async fn announce_recoverer(&self) -> Result<(), StoreError> {
        let (path, id) = (self.inner.path.clone(), self.owner.id().to_string());
        let at = path.clone();
        let failed = move |message: String| StoreError::Sqlite {
            path: at,
            message: format!("cannot mark this server as one that adopts runs: {message}"),
        };
        match tokio::task::spawn_blocking(move || liveness::mark_recoverer(&path, &id)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    pub(crate) async fn recoverers(&self) -> Result<Vec<Recoverer>, StoreError> {
        let path = self.inner.path.clone();
        let ids = tokio::task::spawn_blocking(move || liveness::recoverer_ids(&path))
            .await
            .unwrap_or_default();
        // Owner ids are `<pid>-<random>` (`liveness.rs`).
        Ok(ids
            .into_iter()
            .map(|id| Recoverer {
                pid: id
                    .split('-')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0),
                owner: id,
                host: None,
            })
            .collect())
    }
}

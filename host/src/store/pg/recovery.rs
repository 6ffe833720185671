//! The PostgreSQL side of `store/recovery.rs`: an owner is dead when its
//! lease has passed on the database's clock, and a recovering server is an
//! owner row with `recovers` set (written by every heartbeat, so a row that
//! `cache gc` removed while the process was paused comes back with it).

use std::sync::atomic::Ordering;

use super::PgStore;
use super::journal_rows::{RUN_COLUMNS, run_row};
use crate::store::{Recoverer, RunRecord, StoreError};

impl PgStore {
    pub(crate) async fn interrupted_runs(
        &self,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE status = 'running' AND (owner IS NULL OR lease_until <= toolhost_now_ms())
             ORDER BY created_at, id LIMIT $1"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = retrying!(self, |client, _retry| async {
            client.query(sql.as_str(), &[&limit]).await
        })?;
        Ok(rows.iter().map(run_row).collect())
    }

    pub(crate) async fn announce_recoverer(&self) -> Result<(), StoreError> {
        self.recovers.store(true, Ordering::Relaxed);
        self.renew().await
    }

    pub(crate) async fn recoverers(&self) -> Result<Vec<Recoverer>, StoreError> {
        let rows = retrying!(self, |client, _retry| async {
            client
                .query(
                    "SELECT id, host, pid FROM owners
                     WHERE recovers AND lease_until > toolhost_now_ms()
                     ORDER BY started_at, id",
                    &[],
                )
                .await
        })?;
        Ok(rows
            .iter()
            .map(|r| Recoverer {
                owner: r.get(0),
                host: Some(r.get(1)),
                pid: r.get::<_, i32>(2) as u32,
            })
            .collect())
    }
}

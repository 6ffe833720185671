//! The idempotency table's upkeep on PostgreSQL (`calls.rs` has the claim
//! path): expired leases swept to `in_doubt`, dead owners' rows removed,
//! operators' abandons, the counters, listing and garbage collection.

use super::PgStore;
use super::calls::{COLUMNS, get_row, record, to_json};
use crate::store::StoreError;
use crate::store::calls::{CallRecord, CallState, GcReport, StoredOutcome};

impl PgStore {
    /// Claims whose lease expired (other owners') become `in_doubt`.
    pub(crate) async fn sweep_expired(&self) -> Result<u64, StoreError> {
        let me = self.owner_id();
        retrying!(self, |client, _retry| async {
            client
                .execute(
                    "UPDATE calls SET state = 'in_doubt', lease_until = NULL
                     WHERE state = 'running' AND owner <> $1 AND lease_until < toolhost_now_ms()",
                    &[&me],
                )
                .await
        })
    }

    /// `(claims swept to in_doubt, dead owners' heartbeat rows removed)`.
    /// An owner row goes once its lease is a lease-length past due and it
    /// holds no running claim.
    pub(crate) async fn sweep_dead_owners(&self) -> Result<(u64, u64), StoreError> {
        let swept = self.sweep_expired().await?;
        let lease = self.lease.as_millis() as i64;
        let me = self.owner_id();
        let owners = retrying!(self, |client, _retry| async {
            client
                .execute(
                    "DELETE FROM owners o
                     WHERE o.id <> $1 AND o.lease_until < toolhost_now_ms() - $2
                       AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.owner = o.id AND c.state = 'running')",
                    &[&me, &lease],
                )
                .await
        })?;
        Ok((swept, owners))
    }

    pub(crate) async fn abandon(
        &self,
        key: &str,
        outcome: &StoredOutcome,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let text = to_json(outcome);
        retrying!(self, |client, retry| async {
            let changed = client
                .execute(
                    "UPDATE calls SET state = 'done', outcome = $2, completed_at = $3, owner = NULL
                     WHERE key = $1 AND state = 'in_doubt'",
                    &[&key, &text, &now_ms],
                )
                .await?;
            if changed == 0 && retry {
                let row = get_row(&client, key).await?;
                return Ok(row.is_some_and(|r| {
                    r.state == CallState::Done && r.outcome.as_ref() == Some(outcome)
                }));
            }
            Ok(changed > 0)
        })
    }

    /// Adds to named counters, in one transaction.
    pub(crate) async fn bump(&self, counts: &[(&'static str, i64)]) -> Result<(), StoreError> {
        retrying!(self, |client, _retry| async {
            let mut client = client;
            let tx = client.transaction().await?;
            for (name, delta) in counts {
                tx.execute(
                    "INSERT INTO counters (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
                    &[name, delta],
                )
                .await?;
            }
            tx.commit().await
        })
    }

    pub(crate) async fn counters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        retrying!(self, |client, _retry| async {
            let rows = client
                .query("SELECT name, value FROM counters ORDER BY name", &[])
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    pub(crate) async fn list(&self, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        retrying!(self, |client, _retry| async {
            let rows = client
                .query(
                    &format!("SELECT {COLUMNS} FROM calls ORDER BY created_at DESC, key LIMIT $1"),
                    &[&limit],
                )
                .await?;
            Ok(rows.iter().map(record).collect())
        })
    }

    pub(crate) async fn gc(
        &self,
        now_ms: i64,
        finished_before: Option<i64>,
    ) -> Result<GcReport, StoreError> {
        retrying!(self, |client, _retry| async {
            let removed = client
                .execute(
                    "DELETE FROM calls WHERE state = 'done'
                       AND ((expires_at IS NOT NULL AND expires_at <= $1)
                            OR ($2::bigint IS NOT NULL AND completed_at < $2))",
                    &[&now_ms, &finished_before],
                )
                .await?;
            let kept: i64 = client
                .query_one("SELECT COUNT(*) FROM calls WHERE state <> 'done'", &[])
                .await?
                .get(0);
            Ok(GcReport {
                removed,
                kept_in_flight: kept as u64,
                ..GcReport::default()
            })
        })
    }
}

//! `toolhost stats` on PostgreSQL (the counters themselves are beside the
//! claims, in `calls.rs`).
//!
//! The numbers are aggregated exactly as on SQLite ([`Tally`]): the same
//! journal rows, read with this backend's SQL, so `stats` agrees whichever
//! store a host points at, and every host sees every host's runs.

use super::PgStore;
use crate::store::StoreError;
use crate::store::metrics::{Stats, StepFacts, Tally};

impl PgStore {
    /// `toolhost stats`: every run's numbers (`run = None`) or one run's.
    pub(crate) async fn stats(&self, run: Option<&str>) -> Result<Stats, StoreError> {
        let (runs, steps) = retrying!(self, |client, _retry| async {
            let runs = client
                .query(
                    "SELECT status, spent_ms, steps_resumed FROM runs
                     WHERE $1::text IS NULL OR id = $1::text",
                    &[&run],
                )
                .await?;
            let steps = client
                .query(
                    "SELECT kind, final, error_kind, cached, retries, fallbacks, breaker_opens,
                        report, coalesce(name, '')
                     FROM steps WHERE $1::text IS NULL OR run_id = $1::text",
                    &[&run],
                )
                .await?;
            Ok((runs, steps))
        })?;
        let mut t = Tally::default();
        for r in &runs {
            let status: String = r.get(0);
            t.run(
                &status,
                r.get::<_, i64>(1) as u64,
                r.get::<_, i64>(2) as u64,
            );
        }
        for r in &steps {
            t.step(StepFacts {
                is_model: r.get::<_, String>(0) == "model",
                is_final: r.get(1),
                error_kind: r.get(2),
                cached: r.get(3),
                retries: r.get::<_, i64>(4) as u64,
                fallbacks: r.get::<_, i64>(5) as u64,
                breaker_opens: r.get::<_, i64>(6) as u64,
                report: r.get(7),
                name: r.get(8),
            });
        }
        let journal_bytes = match run {
            Some(id) => self
                .journal_bytes_by_step(id)
                .await?
                .iter()
                .map(|(_, b)| b)
                .sum(),
            None => retrying!(self, |client, _retry| async {
                client
                    .query_one(
                        "SELECT ((SELECT coalesce(SUM(octet_length(body)), 0) FROM blobs)
                          + (SELECT coalesce(SUM(length(name) + length(body)
                                + length(coalesce(request_digest, '')) + length(coalesce(report, ''))
                                + length(coalesce(error_kind, '')) + length(coalesce(tool_digest, ''))
                                + length(coalesce(policy_digest, '')) + length(config_digest)
                                + length(chain_digest) + length(tools_digest) + 13 * 8), 0)
                             FROM steps))::bigint",
                        &[],
                    )
                    .await
            })?
            .get::<_, i64>(0) as u64,
        };
        Ok(t.finish(journal_bytes))
    }
}

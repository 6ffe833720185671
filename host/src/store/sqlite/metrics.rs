//! The SQLite side of `toolhost stats` (`store/metrics.rs` has the types
//! and the aggregation): the rows of `runs` and `steps`, fed to one
//! [`Tally`].

use super::cached::CachedStatements as _;
use rusqlite::{Connection, params};

use crate::store::metrics::{Stats, StepFacts, Tally};

pub(crate) fn compute(c: &Connection, run: Option<&str>) -> rusqlite::Result<Stats> {
    let mut t = Tally::default();
    {
        let mut stmt = c.prepare_cached(
            "SELECT status, spent_ms, steps_resumed FROM runs WHERE ?1 IS NULL OR id = ?1",
        )?;
        let mut rows = stmt.query(params![run])?;
        while let Some(r) = rows.next()? {
            let status: String = r.get(0)?;
            t.run(
                &status,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            );
        }
    }
    let mut stmt = c.prepare_cached(
        "SELECT kind, final, error_kind, cached, retries, fallbacks, breaker_opens, report, coalesce(name, '')
         FROM steps WHERE ?1 IS NULL OR run_id = ?1",
    )?;
    let mut rows = stmt.query(params![run])?;
    while let Some(r) = rows.next()? {
        t.step(StepFacts {
            is_model: r.get::<_, String>(0)? == "model",
            is_final: r.get(1)?,
            error_kind: r.get(2)?,
            cached: r.get(3)?,
            retries: r.get::<_, i64>(4)? as u64,
            fallbacks: r.get::<_, i64>(5)? as u64,
            breaker_opens: r.get::<_, i64>(6)? as u64,
            report: r.get(7)?,
            name: r.get(8)?,
        });
    }
    let journal_bytes = match run {
        Some(id) => super::journal::bytes_by_step(c, id)?
            .iter()
            .map(|(_, b)| b)
            .sum(),
        None => c.query_row_cached(
            "SELECT (SELECT coalesce(SUM(length(body)), 0) FROM blobs)
                  + (SELECT coalesce(SUM(length(name) + length(body)
                        + length(coalesce(request_digest, '')) + length(coalesce(report, ''))
                        + length(coalesce(error_kind, '')) + length(coalesce(tool_digest, ''))
                        + length(coalesce(policy_digest, '')) + length(config_digest)
                        + length(chain_digest) + length(tools_digest) + 13 * 8), 0) FROM steps)",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64,
    };
    Ok(t.finish(journal_bytes))
}

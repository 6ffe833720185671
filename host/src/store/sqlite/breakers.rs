//! The SQLite side of the persisted circuit breakers (`store/breakers.rs`
//! has the contract): the `breakers` table, newest write wins.

use super::cached::CachedStatements as _;
use rusqlite::{Connection, params};

use crate::resilience::Shared;
use crate::store::breakers::BreakerRow;

pub(crate) fn save(c: &Connection, name: &str, state: &Shared) -> rusqlite::Result<()> {
    let body = serde_json::to_string(state)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    let label = state.state.as_str();
    c.execute_cached(
        "INSERT INTO breakers (name, state, body, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET state = excluded.state, body = excluded.body,
            updated_at = excluded.updated_at
         WHERE excluded.updated_at > breakers.updated_at",
        params![name, label, body, state.updated_ms],
    )?;
    Ok(())
}

pub(crate) fn load(c: &Connection, prefix: &str) -> rusqlite::Result<Vec<BreakerRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT name, body FROM breakers WHERE name LIKE ?1 || '%' ORDER BY name",
    )?;
    let rows = stmt.query_map([prefix], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, body) = row?;
        // A row this build cannot read is skipped, not fatal: the breaker
        // then starts closed, which is the safe default.
        if let Ok(state) = serde_json::from_str(&body) {
            out.push(BreakerRow { name, state });
        }
    }
    Ok(out)
}

//! The `calls` table: one row per idempotency key.
//!
//! A row is `running` from its claim until its outcome is recorded (`done`),
//! or until its owner is found dead, its run hit a limit mid-effect, or its
//! outcome could not be written (`in_doubt`). Every function that writes
//! runs on the owner thread inside a transaction begun with `BEGIN
//! IMMEDIATE`, so a read-then-write is atomic across processes; `get`,
//! `lookup`, `list` and `running_owners` also serve the read-only connection.
//! Writes on a claim (`complete`, `release`, `mark_in_doubt`) change the row
//! only while it is that owner's `running` claim under the same fencing
//! token (`fence`, bumped by every take-over), and say whether it was.
//!
//! The types are the store contract both backends keep (`store/calls.rs`);
//! the PostgreSQL backend's SQL is in `pg/calls.rs`.

use super::cached::CachedStatements as _;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::calls::{
    CallRecord, CallState, ClaimOutcome, ClaimRequest, EXPLICIT_SCOPE_PREFIX, GcReport, Held,
    StoredOutcome, TakenOver, explicit_answer, not_held,
};

/// The version of the key derivation new rows are written with.
const KEY_VERSION: i64 = 2;

const COLUMNS: &str = "key, tool, effect, scope, input, state, owner, attempt, outcome, created_at, completed_at, expires_at, component_digest, policy_digest, limits, fence";

fn record(row: &Row<'_>) -> rusqlite::Result<CallRecord> {
    let outcome: Option<String> = row.get(8)?;
    let state: String = row.get(5)?;
    Ok(CallRecord {
        key: row.get(0)?,
        tool: row.get(1)?,
        effect: row.get(2)?,
        scope: row.get(3)?,
        input: row.get(4)?,
        state: CallState::parse(&state),
        owner: row.get(6)?,
        attempt: row.get(7)?,
        // A row this build cannot parse replays as nothing rather than
        // failing the caller: it is then treated as a miss.
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        created_at: row.get(9)?,
        completed_at: row.get(10)?,
        expires_at: row.get(11)?,
        component_digest: row.get(12)?,
        policy_digest: row.get(13)?,
        limits: row.get(14)?,
        fence: row.get(15)?,
    })
}

pub(crate) fn get(c: &Connection, key: &str) -> rusqlite::Result<Option<CallRecord>> {
    c.query_row_cached(
        &format!("SELECT {COLUMNS} FROM calls WHERE key = ?1"),
        [key],
        record,
    )
    .optional()
}

/// An explicit key names one operation: the row already recorded under the
/// request's explicit scope, if any. A different tool or input there is a
/// conflict; the same tool and input under another key (a pure tool rebuilt
/// since) is that same operation, and its row answers.
fn explicit_scope(c: &Connection, req: &ClaimRequest) -> rusqlite::Result<Option<ClaimOutcome>> {
    if !req.scope.starts_with(EXPLICIT_SCOPE_PREFIX) {
        return Ok(None);
    }
    let found = c
        .query_row_cached(
            // The GLOB term lets SQLite use the partial unique index.
            &format!("SELECT {COLUMNS} FROM calls WHERE scope = ?1 AND scope GLOB 'key:*'"),
            [&req.scope],
            record,
        )
        .optional()?;
    Ok(found.and_then(|row| explicit_answer(row, req)))
}

fn insert_running(c: &Connection, req: &ClaimRequest) -> rusqlite::Result<()> {
    c.execute_cached(
        "INSERT INTO calls (key, tool, effect, scope, input, state, owner, attempt, created_at,
                            component_digest, policy_digest, limits, key_version)
         VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, 1, ?7, ?8, ?9, ?10, ?11)",
        params![
            req.key,
            req.tool,
            req.effect,
            req.scope,
            req.input,
            req.owner,
            req.now_ms,
            req.component_digest,
            req.policy_digest,
            req.limits,
            KEY_VERSION
        ],
    )?;
    Ok(())
}

/// Claims `req.key` for `req.owner`, unless it is already claimed, recorded
/// and fresh, or its explicit scope belongs to another call. An expired
/// record is replaced by a new claim.
pub(crate) fn claim(c: &Connection, req: &ClaimRequest) -> rusqlite::Result<ClaimOutcome> {
    if let Some(found) = explicit_scope(c, req)? {
        return Ok(found);
    }
    match get(c, &req.key)? {
        Some(row) if !(row.state == CallState::Done && row.expired(req.now_ms)) => {
            Ok(ClaimOutcome::Existing(Box::new(row)))
        }
        Some(_expired) => {
            c.execute_cached("DELETE FROM calls WHERE key = ?1", [&req.key])?;
            insert_running(c, req)?;
            Ok(ClaimOutcome::Acquired {
                attempt: 1,
                fence: 1,
            })
        }
        None => {
            insert_running(c, req)?;
            Ok(ClaimOutcome::Acquired {
                attempt: 1,
                fence: 1,
            })
        }
    }
}

/// Looks `req.key` up without claiming: a fresh record, a scope conflict,
/// or nothing (a miss; expired records are misses). Read-only.
pub(crate) fn lookup(c: &Connection, req: &ClaimRequest) -> rusqlite::Result<ClaimOutcome> {
    if let Some(found) = explicit_scope(c, req)? {
        return Ok(found);
    }
    match get(c, &req.key)? {
        Some(row)
            if row.state == CallState::Done
                && !row.expired(req.now_ms)
                && row.outcome.is_some() =>
        {
            Ok(ClaimOutcome::Existing(Box::new(row)))
        }
        _ => Ok(ClaimOutcome::Acquired {
            attempt: 1,
            fence: 0,
        }),
    }
}

/// Records an unclaimed (pure or read-only) outcome. A running claim on the
/// key is never overwritten, nor another call's explicit key.
pub(crate) fn put(
    c: &Connection,
    req: &ClaimRequest,
    outcome: &StoredOutcome,
    expires_at: Option<i64>,
) -> rusqlite::Result<()> {
    if explicit_scope(c, req)?.is_some() {
        return Ok(());
    }
    let outcome = serde_json::to_string(outcome)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    c.execute_cached(
        "INSERT INTO calls (key, tool, effect, scope, input, state, attempt, outcome, created_at,
                            completed_at, expires_at, component_digest, policy_digest, limits, key_version)
         VALUES (?1, ?2, ?3, ?4, ?5, 'done', 1, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (key) DO UPDATE SET
             state = 'done', outcome = excluded.outcome, created_at = excluded.created_at,
             completed_at = excluded.completed_at, expires_at = excluded.expires_at,
             policy_digest = excluded.policy_digest, limits = excluded.limits
         WHERE calls.state = 'done'",
        params![
            req.key,
            req.tool,
            req.effect,
            req.scope,
            req.input,
            outcome,
            req.now_ms,
            expires_at,
            req.component_digest,
            req.policy_digest,
            req.limits,
            KEY_VERSION
        ],
    )?;
    Ok(())
}

fn held(c: &Connection, key: &str, fence: i64, changed: usize) -> rusqlite::Result<Held> {
    if changed > 0 {
        Ok(Held::Yes)
    } else {
        Ok(not_held(get(c, key)?.as_ref(), fence))
    }
}

/// Records the outcome of a claimed call; only its owner may, and only
/// while the row is still its `running` claim under `fence`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn complete(
    c: &Connection,
    key: &str,
    owner: &str,
    fence: i64,
    state: CallState,
    outcome: &StoredOutcome,
    now_ms: i64,
    expires_at: Option<i64>,
) -> rusqlite::Result<Held> {
    let outcome = serde_json::to_string(outcome)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    let changed = c.execute_cached(
        "UPDATE calls SET state = ?3, outcome = ?4, completed_at = ?5, expires_at = ?6, owner = NULL
         WHERE key = ?1 AND owner = ?2 AND state = 'running' AND fence = ?7",
        params![key, owner, state.as_str(), outcome, now_ms, expires_at, fence],
    )?;
    held(c, key, fence, changed)
}

/// Drops `owner`'s running claim under `fence`: the call may run again.
pub(crate) fn release(
    c: &Connection,
    key: &str,
    owner: &str,
    fence: i64,
) -> rusqlite::Result<Held> {
    let changed = c.execute_cached(
        "DELETE FROM calls WHERE key = ?1 AND owner = ?2 AND state = 'running' AND fence = ?3",
        params![key, owner, fence],
    )?;
    held(c, key, fence, changed)
}

/// Moves `owner`'s running claim under `fence` to `in_doubt`; false if it
/// was not that.
pub(crate) fn mark_in_doubt(
    c: &Connection,
    key: &str,
    owner: &str,
    fence: i64,
) -> rusqlite::Result<bool> {
    let changed = c.execute_cached(
        "UPDATE calls SET state = 'in_doubt'
         WHERE key = ?1 AND owner = ?2 AND state = 'running' AND fence = ?3",
        params![key, owner, fence],
    )?;
    Ok(changed > 0)
}

/// The distinct owners of `running` rows.
pub(crate) fn running_owners(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT owner FROM calls WHERE state = 'running' AND owner IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Moves every running claim of the `dead` owners to `in_doubt`.
pub(crate) fn sweep_dead(c: &Connection, dead: &[String]) -> rusqlite::Result<u64> {
    let mut n = 0;
    for owner in dead {
        n += c.execute_cached(
            "UPDATE calls SET state = 'in_doubt' WHERE owner = ?1 AND state = 'running'",
            [owner],
        )?;
    }
    Ok(n as u64)
}

/// Rows of `idempotent` and `side-effecting` calls recorded before keys
/// named the effect rather than the build get the key they would get now,
/// so an upgrade never re-runs an effect a user already paid for. (Pure and
/// read-only rows of that era are dropped by the migration: they re-compute.)
/// A row whose new key is taken (the same call recorded under two builds)
/// keeps its old key: it still shows in `cache list`, and the newer row
/// answers callers.
pub(crate) fn rekey_legacy_effects(
    c: &Connection,
    key_of: impl Fn(&str, &str, &str) -> String,
) -> rusqlite::Result<u64> {
    let legacy: Vec<(String, String, String, String)> = {
        let mut stmt = c.prepare_cached(
            "SELECT key, tool, input, scope FROM calls
             WHERE key_version < ?1 AND effect IN ('idempotent', 'side-effecting')",
        )?;
        let rows = stmt.query_map([KEY_VERSION], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut n = 0;
    for (old, tool, input, scope) in legacy {
        let new = key_of(&tool, &input, &scope);
        n += c.execute_cached(
            "UPDATE OR IGNORE calls SET key = ?2, key_version = ?3 WHERE key = ?1",
            params![old, new, KEY_VERSION],
        )?;
        c.execute_cached(
            "UPDATE calls SET key_version = ?2 WHERE key = ?1",
            params![old, KEY_VERSION],
        )?;
    }
    Ok(n as u64)
}

/// Moves a claim to `owner` with the next attempt number and the next
/// fencing token: from a dead owner's running claim (`from`), or from
/// `in_doubt` (`from` = None). The row then records `build` (component
/// digest, policy digest), the build the new attempt runs.
pub(crate) fn take_over(
    c: &Connection,
    key: &str,
    from: Option<&str>,
    owner: &str,
    now_ms: i64,
    build: (&str, &str),
) -> rusqlite::Result<Option<TakenOver>> {
    let changed = match from {
        Some(dead) => c.execute_cached(
            "UPDATE calls SET owner = ?3, attempt = attempt + 1, fence = fence + 1, created_at = ?4,
                 component_digest = ?5, policy_digest = ?6
             WHERE key = ?1 AND owner = ?2 AND state = 'running'",
            params![key, dead, owner, now_ms, build.0, build.1],
        )?,
        None => c.execute_cached(
            "UPDATE calls SET state = 'running', owner = ?2, attempt = attempt + 1, fence = fence + 1, outcome = NULL,
                 created_at = ?3, completed_at = NULL, component_digest = ?4, policy_digest = ?5
             WHERE key = ?1 AND state = 'in_doubt'",
            params![key, owner, now_ms, build.0, build.1],
        )?,
    };
    if changed == 0 {
        return Ok(None);
    }
    c.query_row_cached(
        "SELECT attempt, fence FROM calls WHERE key = ?1",
        [key],
        |r| {
            Ok(TakenOver {
                attempt: r.get(0)?,
                fence: r.get(1)?,
            })
        },
    )
    .map(Some)
}

pub(crate) fn list(c: &Connection, limit: usize) -> rusqlite::Result<Vec<CallRecord>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM calls ORDER BY created_at DESC, key LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit as i64], record)?;
    rows.collect()
}

pub(crate) fn gc(
    c: &Connection,
    now_ms: i64,
    finished_before: Option<i64>,
) -> rusqlite::Result<GcReport> {
    let removed = c.execute_cached(
        "DELETE FROM calls WHERE state = 'done'
           AND ((expires_at IS NOT NULL AND expires_at <= ?1)
                OR (?2 IS NOT NULL AND completed_at < ?2))",
        params![now_ms, finished_before],
    )?;
    let kept: i64 = c.query_row_cached(
        "SELECT COUNT(*) FROM calls WHERE state <> 'done'",
        [],
        |r| r.get(0),
    )?;
    Ok(GcReport {
        removed: removed as u64,
        kept_in_flight: kept as u64,
        ..GcReport::default()
    })
}

/// Adds `delta` to a named counter (cache hits, misses, claims...).
pub(crate) fn bump(c: &Connection, name: &str, delta: i64) -> rusqlite::Result<()> {
    c.execute_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        params![name, delta],
    )?;
    Ok(())
}

pub(crate) fn counters(c: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = c.prepare_cached("SELECT name, value FROM counters ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Records an operator's decision to give up on an `in_doubt` call.
pub(crate) fn abandon(
    c: &Connection,
    key: &str,
    outcome: &StoredOutcome,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let outcome = serde_json::to_string(outcome)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    let n = c.execute_cached(
        "UPDATE calls SET state = 'done', outcome = ?2, completed_at = ?3, owner = NULL
         WHERE key = ?1 AND state = 'in_doubt'",
        params![key, outcome, now_ms],
    )?;
    Ok(n > 0)
}

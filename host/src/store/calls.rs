//! The `calls` table: one row per idempotency key.
//!
//! A row is `running` from its claim until its outcome is recorded (`done`),
//! or until its owner is found dead (`in_doubt`). Every function here runs on
//! the owner thread inside a transaction begun with `BEGIN IMMEDIATE`, so a
//! read-then-write is atomic across processes.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// Claimed; its owner is running it (or died doing so).
    Running,
    /// Its outcome is recorded and replays.
    Done,
    /// Its owner died mid-call: the effect may or may not have happened.
    InDoubt,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Running => "running",
            CallState::Done => "done",
            CallState::InDoubt => "in_doubt",
        }
    }

    fn parse(s: &str) -> CallState {
        match s {
            "running" => CallState::Running,
            "done" => CallState::Done,
            // The CHECK constraint admits nothing else.
            _ => CallState::InDoubt,
        }
    }
}

/// A recorded error: its stable kind name and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredError {
    pub kind: String,
    pub message: String,
}

/// A recorded outcome, as JSON in the `outcome` column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StoredError>,
    pub fuel_used: u64,
    pub duration_us: u64,
}

/// One row.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub key: String,
    pub tool: String,
    pub effect: String,
    /// The scope the key was derived with: an explicit key, a run step, or
    /// empty.
    pub scope: String,
    /// The canonical input.
    pub input: String,
    pub state: CallState,
    pub owner: Option<String>,
    pub attempt: u32,
    pub outcome: Option<StoredOutcome>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl CallRecord {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_ms)
    }
}

/// What a caller wants to claim (or look up).
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub key: String,
    pub tool: String,
    pub effect: String,
    pub scope: String,
    pub input: String,
    pub owner: String,
    pub now_ms: i64,
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimOutcome {
    /// The caller owns the key now and must run the call.
    Acquired { attempt: u32 },
    /// Someone claimed it first: running, done or in doubt.
    Existing(Box<CallRecord>),
    /// The scope (an explicit key) is taken by a different call.
    Conflict {
        existing_key: String,
        existing_tool: String,
    },
}

/// What `cache gc` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed: u64,
    pub kept_in_flight: u64,
}

const COLUMNS: &str = "key, tool, effect, scope, input, state, owner, attempt, outcome, created_at, completed_at, expires_at";

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
    })
}

pub(crate) fn get(c: &Connection, key: &str) -> rusqlite::Result<Option<CallRecord>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM calls WHERE key = ?1"),
        [key],
        record,
    )
    .optional()
}

fn scope_conflict(c: &Connection, req: &ClaimRequest) -> rusqlite::Result<Option<ClaimOutcome>> {
    if req.scope.is_empty() {
        return Ok(None);
    }
    let found: Option<(String, String)> = c
        .query_row(
            "SELECT key, tool FROM calls WHERE scope = ?1",
            [&req.scope],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(found
        .filter(|(key, _)| key != &req.key)
        .map(|(existing_key, existing_tool)| ClaimOutcome::Conflict {
            existing_key,
            existing_tool,
        }))
}

/// Claims `req.key` for `req.owner`, unless it is already claimed, recorded
/// and fresh, or its scope belongs to another call. An expired record is
/// replaced by a new claim.
pub(crate) fn claim(c: &Connection, req: &ClaimRequest) -> rusqlite::Result<ClaimOutcome> {
    if let Some(conflict) = scope_conflict(c, req)? {
        return Ok(conflict);
    }
    match get(c, &req.key)? {
        Some(row) if !(row.state == CallState::Done && row.expired(req.now_ms)) => {
            Ok(ClaimOutcome::Existing(Box::new(row)))
        }
        Some(_expired) => {
            c.execute(
                "UPDATE calls SET state = 'running', owner = ?2, attempt = 1, outcome = NULL,
                     created_at = ?3, completed_at = NULL, expires_at = NULL
                 WHERE key = ?1",
                params![req.key, req.owner, req.now_ms],
            )?;
            Ok(ClaimOutcome::Acquired { attempt: 1 })
        }
        None => {
            c.execute(
                "INSERT INTO calls (key, tool, effect, scope, input, state, owner, attempt, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, 1, ?7)",
                params![req.key, req.tool, req.effect, req.scope, req.input, req.owner, req.now_ms],
            )?;
            Ok(ClaimOutcome::Acquired { attempt: 1 })
        }
    }
}

/// Looks `req.key` up without claiming: a fresh record, a scope conflict,
/// or nothing (a miss; expired records are misses).
pub(crate) fn lookup(c: &Connection, req: &ClaimRequest) -> rusqlite::Result<ClaimOutcome> {
    if let Some(conflict) = scope_conflict(c, req)? {
        return Ok(conflict);
    }
    match get(c, &req.key)? {
        Some(row)
            if row.state == CallState::Done
                && !row.expired(req.now_ms)
                && row.outcome.is_some() =>
        {
            Ok(ClaimOutcome::Existing(Box::new(row)))
        }
        _ => Ok(ClaimOutcome::Acquired { attempt: 1 }),
    }
}

/// Records an unclaimed (pure or read-only) outcome. A running claim on the
/// key is never overwritten.
pub(crate) fn put(
    c: &Connection,
    req: &ClaimRequest,
    outcome: &StoredOutcome,
    expires_at: Option<i64>,
) -> rusqlite::Result<()> {
    if scope_conflict(c, req)?.is_some() {
        return Ok(());
    }
    let outcome = serde_json::to_string(outcome)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    c.execute(
        "INSERT INTO calls (key, tool, effect, scope, input, state, attempt, outcome, created_at, completed_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'done', 1, ?6, ?7, ?7, ?8)
         ON CONFLICT (key) DO UPDATE SET
             state = 'done', outcome = excluded.outcome, created_at = excluded.created_at,
             completed_at = excluded.completed_at, expires_at = excluded.expires_at
         WHERE calls.state = 'done'",
        params![req.key, req.tool, req.effect, req.scope, req.input, outcome, req.now_ms, expires_at],
    )?;
    Ok(())
}

/// Records the outcome of a claimed call; only its owner may.
pub(crate) fn complete(
    c: &Connection,
    key: &str,
    owner: &str,
    state: CallState,
    outcome: &StoredOutcome,
    now_ms: i64,
    expires_at: Option<i64>,
) -> rusqlite::Result<()> {
    let outcome = serde_json::to_string(outcome)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    c.execute(
        "UPDATE calls SET state = ?3, outcome = ?4, completed_at = ?5, expires_at = ?6, owner = NULL
         WHERE key = ?1 AND owner = ?2 AND state = 'running'",
        params![key, owner, state.as_str(), outcome, now_ms, expires_at],
    )?;
    Ok(())
}

pub(crate) fn release(c: &Connection, key: &str, owner: &str) -> rusqlite::Result<()> {
    c.execute(
        "DELETE FROM calls WHERE key = ?1 AND owner = ?2 AND state = 'running'",
        params![key, owner],
    )?;
    Ok(())
}

pub(crate) fn mark_in_doubt(c: &Connection, key: &str, dead_owner: &str) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE calls SET state = 'in_doubt' WHERE key = ?1 AND owner = ?2 AND state = 'running'",
        params![key, dead_owner],
    )?;
    Ok(())
}

/// Moves a claim to `owner` with the next attempt number: from a dead
/// owner's running claim (`from`), or from `in_doubt` (`from` = None).
pub(crate) fn take_over(
    c: &Connection,
    key: &str,
    from: Option<&str>,
    owner: &str,
    now_ms: i64,
) -> rusqlite::Result<Option<u32>> {
    let changed = match from {
        Some(dead) => c.execute(
            "UPDATE calls SET owner = ?3, attempt = attempt + 1, created_at = ?4
             WHERE key = ?1 AND owner = ?2 AND state = 'running'",
            params![key, dead, owner, now_ms],
        )?,
        None => c.execute(
            "UPDATE calls SET state = 'running', owner = ?2, attempt = attempt + 1, outcome = NULL,
                 created_at = ?3, completed_at = NULL
             WHERE key = ?1 AND state = 'in_doubt'",
            params![key, owner, now_ms],
        )?,
    };
    if changed == 0 {
        return Ok(None);
    }
    c.query_row("SELECT attempt FROM calls WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .map(Some)
}

pub(crate) fn list(c: &Connection, limit: usize) -> rusqlite::Result<Vec<CallRecord>> {
    let mut stmt = c.prepare(&format!(
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
    let removed = c.execute(
        "DELETE FROM calls WHERE state = 'done'
           AND ((expires_at IS NOT NULL AND expires_at <= ?1)
                OR (?2 IS NOT NULL AND completed_at < ?2))",
        params![now_ms, finished_before],
    )?;
    let kept: i64 = c.query_row(
        "SELECT COUNT(*) FROM calls WHERE state <> 'done'",
        [],
        |r| r.get(0),
    )?;
    Ok(GcReport {
        removed: removed as u64,
        kept_in_flight: kept as u64,
    })
}

/// Adds `delta` to a named counter (cache hits, misses, claims...).
pub(crate) fn bump(c: &Connection, name: &str, delta: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        params![name, delta],
    )?;
    Ok(())
}

pub(crate) fn counters(c: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = c.prepare("SELECT name, value FROM counters ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

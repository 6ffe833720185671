//! Schema versions, kept in SQLite's `user_version`. Each migration runs once,
//! in order, inside one transaction with the version bump, so a crash leaves
//! the database at the old version or the new, never between.

use std::path::Path;

use rusqlite::Connection;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: the idempotency cache.
    "CREATE TABLE calls (
        key          TEXT PRIMARY KEY,
        tool         TEXT NOT NULL,
        effect       TEXT NOT NULL,
        scope        TEXT NOT NULL,
        input        TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('running', 'done', 'in_doubt')),
        owner        TEXT,
        attempt      INTEGER NOT NULL DEFAULT 1,
        outcome      TEXT,
        created_at   INTEGER NOT NULL,
        completed_at INTEGER,
        expires_at   INTEGER
    );
    CREATE UNIQUE INDEX calls_scope ON calls (scope) WHERE scope <> '';",
    // v2: counters for metrics (cache hits, misses, claims...), and an index
    // for `cache gc`, which scans by expiry.
    "CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE INDEX calls_expiry ON calls (expires_at) WHERE expires_at IS NOT NULL;",
    // v3 (issue 8): keys name the effect, not the build. Each row records
    // the component digest, policy digest and limits it ran under, and the
    // version of the key derivation it was written with (`Store::open`
    // re-keys older effect rows; older pure and read-only rows are a cache
    // and go). Only explicit keys (`key:` scopes) must be unique; a `running`
    // index serves the dead-owner sweep.
    "ALTER TABLE calls ADD COLUMN component_digest TEXT;
    ALTER TABLE calls ADD COLUMN policy_digest TEXT;
    ALTER TABLE calls ADD COLUMN limits TEXT;
    ALTER TABLE calls ADD COLUMN key_version INTEGER NOT NULL DEFAULT 1;
    DELETE FROM calls WHERE effect IN ('pure', 'read-only');
    DROP INDEX calls_scope;
    CREATE UNIQUE INDEX calls_explicit_scope ON calls (scope) WHERE scope GLOB 'key:*';
    CREATE INDEX calls_running ON calls (owner) WHERE state = 'running';",
    // v4: the agent journal (runs, steps, content-addressed blobs) and the
    // persisted circuit breakers (see `journal.rs`, `breakers.rs`).
    "CREATE TABLE runs (
        id             TEXT PRIMARY KEY,
        task           TEXT NOT NULL,
        status         TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'partial')),
        config_digest  TEXT NOT NULL,
        config_parts   TEXT NOT NULL,
        chain          TEXT NOT NULL,
        chain_digest   TEXT NOT NULL,
        tools_digest   TEXT NOT NULL,
        max_steps      INTEGER NOT NULL,
        time_budget_ms INTEGER NOT NULL,
        token_budget   INTEGER,
        spent_ms       INTEGER NOT NULL DEFAULT 0,
        owner          TEXT,
        reason         TEXT,
        answer         TEXT,
        sessions       INTEGER NOT NULL DEFAULT 1,
        steps_resumed  INTEGER NOT NULL DEFAULT 0,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        finished_at    INTEGER
    );
    CREATE INDEX runs_created ON runs (created_at);
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        body   TEXT NOT NULL
    );
    CREATE TABLE steps (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id         TEXT NOT NULL REFERENCES runs (id),
        step           INTEGER NOT NULL,
        part           INTEGER NOT NULL,
        kind           TEXT NOT NULL CHECK (kind IN ('model', 'tool')),
        final          INTEGER NOT NULL,
        name           TEXT NOT NULL,
        request_digest TEXT,
        body           TEXT NOT NULL REFERENCES blobs (digest),
        ok             INTEGER NOT NULL,
        error_kind     TEXT,
        cached         INTEGER NOT NULL DEFAULT 0,
        attempts       INTEGER NOT NULL DEFAULT 0,
        retries        INTEGER NOT NULL DEFAULT 0,
        fallbacks      INTEGER NOT NULL DEFAULT 0,
        breaker_opens  INTEGER NOT NULL DEFAULT 0,
        tokens         INTEGER NOT NULL DEFAULT 0,
        fuel           INTEGER NOT NULL DEFAULT 0,
        duration_us    INTEGER NOT NULL,
        report         TEXT,
        tool_digest    TEXT,
        policy_digest  TEXT,
        config_digest  TEXT NOT NULL,
        chain_digest   TEXT NOT NULL,
        tools_digest   TEXT NOT NULL,
        created_at     INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX steps_final ON steps (run_id, step, part) WHERE final = 1;
    CREATE INDEX steps_run ON steps (run_id, step, part);
    CREATE TABLE breakers (
        name       TEXT PRIMARY KEY,
        state      TEXT NOT NULL,
        body       TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    // v5 (issue 13): every claim carries a fencing token that grows with
    // each take-over; `complete` and `release` must present it (see
    // `calls.rs`). The PostgreSQL store has the same column.
    "ALTER TABLE calls ADD COLUMN fence INTEGER NOT NULL DEFAULT 1;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug)]
pub(crate) enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew(i64),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

/// Brings the schema up to date. The version is read inside the write
/// transaction, so processes opening a new database at once migrate it
/// exactly once between them.
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), MigrateError> {
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = (|| {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > SCHEMA_VERSION {
                return Err(MigrateError::TooNew(version));
            }
            let Some(sql) = MIGRATIONS.get(version as usize) else {
                return Ok(None);
            };
            conn.execute_batch(sql)?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", version + 1))?;
            Ok(Some(version))
        })();
        match step {
            Ok(done) => {
                conn.execute_batch("COMMIT")?;
                match done {
                    None => return Ok(()),
                    Some(from) => {
                        tracing::info!(db = %path.display(), from, to = from + 1, "migrated the database schema");
                    }
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

/// The DDL of version `v` alone, so tests can build an old database.
pub fn migration_sql(v: usize) -> Option<&'static str> {
    MIGRATIONS.get(v).copied()
}

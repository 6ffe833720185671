//! PostgreSQL schema versions, in the one-row table `toolhost_schema`.
//!
//! Why a transaction-scoped advisory lock: several hosts may start against
//! a new database at once. Each runs its migrations in one transaction that
//! first takes `pg_advisory_xact_lock(MIGRATION_LOCK)`, then reads the
//! version, applies what is missing and bumps the version. The second host
//! waits on the lock, then reads the new version and applies nothing. The
//! lock ends with the transaction: no advisory lock is ever held across a
//! tool call. DDL is transactional in PostgreSQL, so a failed migration
//! leaves the old version whole.
//!
//! Migration `i` takes the schema from version `i` to `i + 1`. New entries
//! are appended; a shipped entry never changes.

use deadpool_postgres::Object;

use super::super::StoreError;

/// The advisory lock key for migrations (an arbitrary constant: "toolhost").
const MIGRATION_LOCK: i64 = 0x746f_6f6c_686f_7374;

const MIGRATIONS: &[&str] = &[
    // v1 (issue 13): the idempotency cache, counters, and owner heartbeats.
    // Times are Unix milliseconds. `lease_until` is on the database's
    // clock (`toolhost_now_ms()`), so hosts with skewed clocks agree on
    // when a lease ends; `created_at`/`expires_at` are the caller's clock,
    // as on SQLite. `fence` comes from one sequence, so a fencing token
    // never repeats for a key, even after a row is deleted and claimed
    // afresh. `claim_nonce` recognises a claim whose commit reply was lost
    // with a dropped connection.
    "CREATE FUNCTION toolhost_now_ms() RETURNS bigint LANGUAGE sql VOLATILE
         AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
    CREATE SEQUENCE calls_fence;
    CREATE TABLE calls (
        key              text PRIMARY KEY,
        tool             text NOT NULL,
        effect           text NOT NULL,
        scope            text NOT NULL,
        input            text NOT NULL,
        state            text NOT NULL CHECK (state IN ('running', 'done', 'in_doubt')),
        owner            text,
        attempt          integer NOT NULL DEFAULT 1,
        outcome          text,
        created_at       bigint NOT NULL,
        completed_at     bigint,
        expires_at       bigint,
        component_digest text,
        policy_digest    text,
        limits           text,
        fence            bigint NOT NULL,
        lease_until      bigint,
        claim_nonce      bigint
    );
    CREATE UNIQUE INDEX calls_explicit_scope ON calls (scope) WHERE scope LIKE 'key:%';
    CREATE INDEX calls_running ON calls (owner) WHERE state = 'running';
    CREATE INDEX calls_expiry ON calls (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE counters (
        name  text PRIMARY KEY,
        value bigint NOT NULL
    );
    CREATE TABLE owners (
        id          text PRIMARY KEY,
        lease_until bigint NOT NULL,
        host        text NOT NULL,
        pid         integer NOT NULL,
        started_at  bigint NOT NULL
    );",
    // v2 (issue 13, the journal half): the agent journal (runs, steps,
    // content-addressed blobs), with run ownership as a lease (`owner`,
    // `lease_until` on the database's clock, renewed by the owner's
    // heartbeat while the run is `running`) and a fencing token (`fence`,
    // raised by every takeover; every write of the owner checks it), and
    // the shared circuit breakers, whose `version` grows with each write so
    // a reader fetches only the bodies that changed (see `journal.rs`,
    // `breakers.rs`). Blobs are bytes: a tool's text may hold NUL, which
    // PostgreSQL text cannot.
    "CREATE TABLE runs (
        id             text PRIMARY KEY,
        task           text NOT NULL,
        status         text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'partial')),
        config_digest  text NOT NULL,
        config_parts   text NOT NULL,
        chain          text NOT NULL,
        chain_digest   text NOT NULL,
        tools_digest   text NOT NULL,
        max_steps      bigint NOT NULL,
        time_budget_ms bigint NOT NULL,
        token_budget   bigint,
        spent_ms       bigint NOT NULL DEFAULT 0,
        owner          text,
        lease_until    bigint,
        fence          bigint NOT NULL DEFAULT 1,
        reason         text,
        answer         text,
        sessions       bigint NOT NULL DEFAULT 1,
        steps_resumed  bigint NOT NULL DEFAULT 0,
        created_at     bigint NOT NULL,
        updated_at     bigint NOT NULL,
        finished_at    bigint
    );
    CREATE INDEX runs_created ON runs (created_at);
    CREATE INDEX runs_running ON runs (owner) WHERE status = 'running';
    CREATE TABLE blobs (
        digest text PRIMARY KEY,
        body   bytea NOT NULL
    );
    CREATE TABLE steps (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id         text NOT NULL REFERENCES runs (id),
        step           bigint NOT NULL,
        part           bigint NOT NULL,
        kind           text NOT NULL CHECK (kind IN ('model', 'tool')),
        final          boolean NOT NULL,
        name           text NOT NULL,
        request_digest text,
        body           text NOT NULL REFERENCES blobs (digest),
        ok             boolean NOT NULL,
        error_kind     text,
        cached         boolean NOT NULL DEFAULT false,
        attempts       bigint NOT NULL DEFAULT 0,
        retries        bigint NOT NULL DEFAULT 0,
        fallbacks      bigint NOT NULL DEFAULT 0,
        breaker_opens  bigint NOT NULL DEFAULT 0,
        tokens         bigint NOT NULL DEFAULT 0,
        fuel           bigint NOT NULL DEFAULT 0,
        duration_us    bigint NOT NULL,
        report         text,
        tool_digest    text,
        policy_digest  text,
        config_digest  text NOT NULL,
        chain_digest   text NOT NULL,
        tools_digest   text NOT NULL,
        created_at     bigint NOT NULL
    );
    CREATE UNIQUE INDEX steps_final ON steps (run_id, step, part) WHERE final;
    CREATE INDEX steps_run ON steps (run_id, step, part);
    CREATE INDEX steps_body ON steps (body);
    CREATE TABLE breakers (
        name       text PRIMARY KEY,
        state      text NOT NULL,
        body       text NOT NULL,
        updated_at bigint NOT NULL,
        version    bigint NOT NULL DEFAULT 1
    );",
    // v3 (issue 23): which owners are servers that adopt the runs of dead
    // owners, so `runs list` can name who will pick an interrupted run up.
    "ALTER TABLE owners ADD COLUMN recovers boolean NOT NULL DEFAULT false;",
];

/// The PostgreSQL schema version this build writes.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to date, once, however many hosts start at once.
pub(crate) async fn migrate(client: &mut Object, store: &str) -> Result<(), StoreError> {
    let pg = |e: tokio_postgres::Error| super::classify(store, &e);
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS toolhost_schema (version bigint NOT NULL)")
        .await
        .map_err(pg)?;
    let found: Option<i64> = tx
        .query_opt("SELECT version FROM toolhost_schema", &[])
        .await
        .map_err(pg)?
        .map(|r| r.get(0));
    let version = match found {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO toolhost_schema (version) VALUES (0)", &[])
                .await
                .map_err(pg)?;
            0
        }
    };
    if version > PG_SCHEMA_VERSION {
        return Err(StoreError::PgTooNew {
            store: store.to_string(),
            found: version,
            known: PG_SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(pg)?;
        tracing::info!(%store, from = i, to = i + 1, "migrated the PostgreSQL schema");
    }
    tx.execute(
        "UPDATE toolhost_schema SET version = $1",
        &[&PG_SCHEMA_VERSION],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)
}

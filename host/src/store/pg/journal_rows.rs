//! The rows of the agent journal on PostgreSQL (`journal.rs` has the
//! ownership and the write path): the columns read back into
//! [`RunRecord`] and [`StepRecord`], and the one statement that writes a
//! step, fence-checked, in one round trip.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::journal::{RunRecord, RunStatus, StepKind, StepRecord, kind_name};

/// `status` reads `interrupted` for a `running` run whose owner's lease
/// has passed (`store/recovery.rs`).
pub(super) const RUN_COLUMNS: &str = "id, task,
    CASE WHEN status = 'running' AND (owner IS NULL OR lease_until <= toolhost_now_ms())
         THEN 'interrupted' ELSE status END,
    config_digest, config_parts, chain, chain_digest,
    tools_digest, max_steps, time_budget_ms, token_budget, spent_ms, owner, reason, answer,
    sessions, steps_resumed, created_at, updated_at, finished_at";

pub(super) const STEP_COLUMNS: &str =
    "s.step, s.part, s.kind, s.final, s.name, s.request_digest, s.body,
    b.body, s.ok, s.error_kind, s.cached, s.attempts, s.retries, s.fallbacks, s.breaker_opens,
    s.tokens, s.fuel, s.duration_us, s.report, s.tool_digest, s.policy_digest, s.config_digest,
    s.chain_digest, s.tools_digest, s.created_at";

/// A step row, its blob, and the owner's fence check, in one statement:
/// the inserts take their rows from `r`, so a fenced owner writes nothing,
/// and the statement answers whether the fence held.
pub(super) const INSERT_STEP: &str = "WITH r AS (
        UPDATE runs SET spent_ms = $4::bigint, updated_at = $5::bigint,
            lease_until = toolhost_now_ms() + $6::bigint
        WHERE id = $1::text AND owner = $2::text AND fence = $3::bigint
        RETURNING id),
    b AS (INSERT INTO blobs (digest, body) SELECT $7::text, $8::bytea FROM r
        ON CONFLICT (digest) DO NOTHING),
    s AS (INSERT INTO steps (run_id, step, part, kind, final, name, request_digest, body, ok,
            error_kind, cached, attempts, retries, fallbacks, breaker_opens, tokens, fuel,
            duration_us, report, tool_digest, policy_digest, config_digest, chain_digest,
            tools_digest, created_at)
        SELECT r.id, $9::bigint, $10::bigint, $11::text, $12::boolean, $13::text, $14::text,
            $7::text, $15::boolean, $16::text, $17::boolean, $18::bigint, $19::bigint,
            $20::bigint, $21::bigint, $22::bigint, $23::bigint, $24::bigint, $25::text,
            $26::text, $27::text, $28::text, $29::text, $30::text, $5::bigint
        FROM r
        ON CONFLICT (run_id, step, part) WHERE final DO NOTHING)
    SELECT count(*) FROM r";

/// PostgreSQL text cannot hold NUL; free text from a model (an answer, an
/// error message) could. It becomes U+FFFD: the one place the two backends
/// may store different text.
pub(super) fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_string()
    }
}

pub(super) fn opt_text(s: &Option<String>) -> Option<String> {
    s.as_deref().map(text)
}

pub(super) fn run_row(r: &Row) -> RunRecord {
    let parts: String = r.get(4);
    let chain: String = r.get(5);
    let status: String = r.get(2);
    RunRecord {
        id: r.get(0),
        task: r.get(1),
        status: RunStatus::parse(&status),
        config_digest: r.get(3),
        config_parts: serde_json::from_str(&parts).unwrap_or_default(),
        chain: serde_json::from_str(&chain).unwrap_or_default(),
        chain_digest: r.get(6),
        tools_digest: r.get(7),
        max_steps: r.get::<_, i64>(8) as u32,
        time_budget_ms: r.get::<_, i64>(9) as u64,
        token_budget: r.get::<_, Option<i64>>(10).map(|t| t as u64),
        spent_ms: r.get::<_, i64>(11) as u64,
        owner: r.get(12),
        reason: r.get(13),
        answer: r.get(14),
        sessions: r.get::<_, i64>(15) as u32,
        steps_resumed: r.get::<_, i64>(16) as u64,
        created_at: r.get(17),
        updated_at: r.get(18),
        finished_at: r.get(19),
    }
}

pub(super) fn step_row(r: &Row) -> Result<StepRecord, std::string::FromUtf8Error> {
    let kind: String = r.get(2);
    Ok(StepRecord {
        step: r.get::<_, i64>(0) as u32,
        part: r.get::<_, i64>(1) as u32,
        kind: if kind == "model" {
            StepKind::Model
        } else {
            StepKind::Tool
        },
        is_final: r.get(3),
        name: r.get(4),
        request_digest: r.get(5),
        body_digest: r.get(6),
        body: String::from_utf8(r.get(7))?,
        ok: r.get(8),
        error_kind: r.get(9),
        cached: r.get(10),
        attempts: r.get::<_, i64>(11) as u32,
        retries: r.get::<_, i64>(12) as u32,
        fallbacks: r.get::<_, i64>(13) as u32,
        breaker_opens: r.get::<_, i64>(14) as u32,
        tokens: r.get::<_, i64>(15) as u64,
        fuel: r.get::<_, i64>(16) as u64,
        duration_us: r.get::<_, i64>(17) as u64,
        report: r.get(18),
        tool_digest: r.get(19),
        policy_digest: r.get(20),
        config_digest: r.get(21),
        chain_digest: r.get(22),
        tools_digest: r.get(23),
        created_at: r.get(24),
    })
}

/// Who writes, at which fence, renewing the lease by how much.
pub(super) struct Writer<'a> {
    pub run: &'a str,
    pub owner: &'a str,
    pub fence: i64,
    pub lease_ms: i64,
}

/// Writes one step (fence-checked); `false` if the fence no longer holds.
pub(super) async fn insert_step(
    c: &deadpool_postgres::Transaction<'_>,
    w: &Writer<'_>,
    s: &StepRecord,
    spent_ms: u64,
) -> Result<bool, tokio_postgres::Error> {
    let error_kind = opt_text(&s.error_kind);
    let params: [&(dyn ToSql + Sync); 30] = [
        &w.run,
        &w.owner,
        &w.fence,
        &(spent_ms as i64),
        &s.created_at,
        &w.lease_ms,
        &s.body_digest,
        &s.body.as_bytes(),
        &(s.step as i64),
        &(s.part as i64),
        &kind_name(s.kind),
        &s.is_final,
        &s.name,
        &s.request_digest,
        &s.ok,
        &error_kind,
        &s.cached,
        &(s.attempts as i64),
        &(s.retries as i64),
        &(s.fallbacks as i64),
        &(s.breaker_opens as i64),
        &(s.tokens as i64),
        &(s.fuel as i64),
        &(s.duration_us as i64),
        &s.report,
        &s.tool_digest,
        &s.policy_digest,
        &s.config_digest,
        &s.chain_digest,
        &s.tools_digest,
    ];
    let stmt = c.prepare_cached(INSERT_STEP).await?;
    let row = c.query_one(&stmt, &params).await?;
    Ok(row.get::<_, i64>(0) == 1)
}

//! The agent journal's SQL on SQLite: `runs`, `steps` and `blobs`, and
//! the SQLite arms of the journal's [`Store`](crate::store::Store) methods
//! (the contract types are in `store/journal.rs`).

use super::cached::CachedStatements as _;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::journal::{
    Claim, NewRun, RunCursor, RunEnd, RunRecord, RunStatus, StepKind, StepRecord, kind_name,
};

pub(super) const RUN_COLUMNS: &str =
    "id, task, status, config_digest, config_parts, chain, chain_digest,
    tools_digest, max_steps, time_budget_ms, token_budget, spent_ms, owner, reason, answer,
    sessions, steps_resumed, created_at, updated_at, finished_at";

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.into())
}

pub(super) fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let parts: String = r.get(4)?;
    let chain: String = r.get(5)?;
    let status: String = r.get(2)?;
    Ok(RunRecord {
        id: r.get(0)?,
        task: r.get(1)?,
        status: RunStatus::parse(&status),
        config_digest: r.get(3)?,
        config_parts: serde_json::from_str(&parts).unwrap_or_default(),
        chain: serde_json::from_str(&chain).unwrap_or_default(),
        chain_digest: r.get(6)?,
        tools_digest: r.get(7)?,
        max_steps: r.get(8)?,
        time_budget_ms: r.get::<_, i64>(9)? as u64,
        token_budget: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
        spent_ms: r.get::<_, i64>(11)? as u64,
        owner: r.get(12)?,
        reason: r.get(13)?,
        answer: r.get(14)?,
        sessions: r.get(15)?,
        steps_resumed: r.get::<_, i64>(16)? as u64,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
        finished_at: r.get(19)?,
    })
}

pub(crate) fn create_run(c: &Connection, run: &NewRun, owner: &str) -> rusqlite::Result<bool> {
    let parts = serde_json::to_string(&run.config_parts).map_err(json_err)?;
    let chain = serde_json::to_string(&run.chain).map_err(json_err)?;
    let n = c.execute_cached(
        "INSERT INTO runs (id, task, status, config_digest, config_parts, chain, chain_digest,
            tools_digest, max_steps, time_budget_ms, token_budget, owner, created_at, updated_at)
         VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)
         ON CONFLICT (id) DO NOTHING",
        params![
            run.id,
            run.task,
            run.config_digest,
            parts,
            chain,
            run.chain_digest,
            run.tools_digest,
            run.max_steps,
            run.time_budget_ms as i64,
            run.token_budget.map(|t| t as i64),
            owner,
            run.now_ms,
        ],
    )?;
    Ok(n == 1)
}

pub(crate) fn get_run(c: &Connection, id: &str) -> rusqlite::Result<Option<RunRecord>> {
    c.query_row_cached(
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
        [id],
        run_row,
    )
    .optional()
}

pub(crate) fn list_runs(
    c: &Connection,
    limit: usize,
    after: Option<RunCursor>,
) -> rusqlite::Result<Vec<RunRecord>> {
    let (at, id) = match after {
        Some(cursor) => (Some(cursor.created_at), cursor.id),
        None => (None, String::new()),
    };
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs
         WHERE ?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id > ?3)
         ORDER BY created_at DESC, id LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit as i64, at, id], run_row)?;
    rows.collect()
}

/// Compare-and-set on the owner: a resumer takes the run only from the owner
/// it saw dead (or none), so two resumers racing cannot both win.
fn take_run(
    c: &Connection,
    id: &str,
    seen_owner: Option<&str>,
    me: &str,
    max_steps: u32,
    time_budget_ms: u64,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let n = c.execute_cached(
        "UPDATE runs SET owner = ?3, status = 'running', sessions = sessions + 1,
            max_steps = ?4, time_budget_ms = ?5, updated_at = ?6, finished_at = NULL
         WHERE id = ?1 AND owner IS ?2 AND status <> 'completed'",
        params![id, seen_owner, me, max_steps, time_budget_ms as i64, now_ms],
    )?;
    Ok(n == 1)
}

fn put_blob(c: &Connection, digest: &str, body: &str) -> rusqlite::Result<()> {
    c.execute_cached(
        "INSERT INTO blobs (digest, body) VALUES (?1, ?2) ON CONFLICT (digest) DO NOTHING",
        params![digest, body],
    )?;
    Ok(())
}

/// Writes a step row (and its blob), and the run's time spent, in one job.
pub(crate) fn record_step(
    c: &Connection,
    run_id: &str,
    s: &StepRecord,
    spent_ms: u64,
) -> rusqlite::Result<()> {
    put_blob(c, &s.body_digest, &s.body)?;
    c.execute_cached(
        "INSERT INTO steps (run_id, step, part, kind, final, name, request_digest, body, ok,
            error_kind, cached, attempts, retries, fallbacks, breaker_opens, tokens, fuel,
            duration_us, report, tool_digest, policy_digest, config_digest, chain_digest,
            tools_digest, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
            ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
        params![
            run_id,
            s.step,
            s.part,
            kind_name(s.kind),
            s.is_final,
            s.name,
            s.request_digest,
            s.body_digest,
            s.ok,
            s.error_kind,
            s.cached,
            s.attempts,
            s.retries,
            s.fallbacks,
            s.breaker_opens,
            s.tokens as i64,
            s.fuel as i64,
            s.duration_us as i64,
            s.report,
            s.tool_digest,
            s.policy_digest,
            s.config_digest,
            s.chain_digest,
            s.tools_digest,
            s.created_at,
        ],
    )?;
    c.execute_cached(
        "UPDATE runs SET spent_ms = ?2, updated_at = ?3 WHERE id = ?1",
        params![run_id, spent_ms as i64, s.created_at],
    )?;
    Ok(())
}

const STEP_COLUMNS: &str = "s.step, s.part, s.kind, s.final, s.name, s.request_digest, s.body,
    b.body, s.ok, s.error_kind, s.cached, s.attempts, s.retries, s.fallbacks, s.breaker_opens,
    s.tokens, s.fuel, s.duration_us, s.report, s.tool_digest, s.policy_digest, s.config_digest,
    s.chain_digest, s.tools_digest, s.created_at";

fn step_row(r: &Row<'_>) -> rusqlite::Result<StepRecord> {
    let kind: String = r.get(2)?;
    Ok(StepRecord {
        step: r.get(0)?,
        part: r.get(1)?,
        kind: if kind == "model" {
            StepKind::Model
        } else {
            StepKind::Tool
        },
        is_final: r.get(3)?,
        name: r.get(4)?,
        request_digest: r.get(5)?,
        body_digest: r.get(6)?,
        body: r.get(7)?,
        ok: r.get(8)?,
        error_kind: r.get(9)?,
        cached: r.get(10)?,
        attempts: r.get(11)?,
        retries: r.get(12)?,
        fallbacks: r.get(13)?,
        breaker_opens: r.get(14)?,
        tokens: r.get::<_, i64>(15)? as u64,
        fuel: r.get::<_, i64>(16)? as u64,
        duration_us: r.get::<_, i64>(17)? as u64,
        report: r.get(18)?,
        tool_digest: r.get(19)?,
        policy_digest: r.get(20)?,
        config_digest: r.get(21)?,
        chain_digest: r.get(22)?,
        tools_digest: r.get(23)?,
        created_at: r.get(24)?,
    })
}

pub(crate) fn steps(c: &Connection, run_id: &str) -> rusqlite::Result<Vec<StepRecord>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {STEP_COLUMNS} FROM steps s JOIN blobs b ON b.digest = s.body
         WHERE s.run_id = ?1 ORDER BY s.step, s.part, s.id"
    ))?;
    let rows = stmt.query_map([run_id], step_row)?;
    rows.collect()
}

fn finish_run(c: &Connection, id: &str, owner: &str, end: &RunEnd) -> rusqlite::Result<()> {
    let finished = (end.status != RunStatus::Running).then_some(end.now_ms);
    c.execute_cached(
        "UPDATE runs SET status = ?3, reason = ?4, answer = ?5, spent_ms = ?6, updated_at = ?7,
            finished_at = ?8, owner = NULL
         WHERE id = ?1 AND owner IS ?2",
        params![
            id,
            owner,
            end.status.as_str(),
            end.reason,
            end.answer,
            end.spent_ms as i64,
            end.now_ms,
            finished,
        ],
    )?;
    Ok(())
}

/// Bytes the journal holds for each step of a run: its rows' payload plus
/// the blobs it introduced (a blob shared with an earlier step counts once,
/// where it first appeared).
pub(crate) fn bytes_by_step(c: &Connection, run_id: &str) -> rusqlite::Result<Vec<(u32, u64)>> {
    let mut stmt = c.prepare_cached(
        "SELECT s.step,
                SUM(length(s.name) + length(s.body) + length(coalesce(s.request_digest, ''))
                    + length(coalesce(s.error_kind, '')) + length(coalesce(s.report, ''))
                    + length(coalesce(s.tool_digest, '')) + length(coalesce(s.policy_digest, ''))
                    + length(s.config_digest) + length(s.chain_digest) + length(s.tools_digest)
                    + 13 * 8
                    + CASE WHEN s.id = (SELECT MIN(f.id) FROM steps f WHERE f.body = s.body)
                           THEN length(b.body) ELSE 0 END)
         FROM steps s JOIN blobs b ON b.digest = s.body
         WHERE s.run_id = ?1 GROUP BY s.step ORDER BY s.step",
    )?;
    let rows = stmt.query_map([run_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}
impl Sqlite {
    pub(crate) async fn create_run(&self, run: NewRun) -> Result<bool, StoreError> {
        let owner = self.owner.id().to_string();
        let id = run.id.clone();
        let created = self.inner.run(move |c| create_run(c, &run, &owner)).await?;
        if created {
            self.drives(&id, true);
        }
        Ok(created)
    }

    /// Notes whether a session here drives run `id` now.
    pub(crate) fn drives(&self, id: &str, now: bool) {
        let mut driving = self.driving.lock().unwrap_or_else(|p| p.into_inner());
        if now {
            driving.insert(id.to_string());
        } else {
            driving.remove(id);
        }
    }

    fn is_driven_here(&self, id: &str) -> bool {
        let driving = self.driving.lock().unwrap_or_else(|p| p.into_inner());
        driving.contains(id)
    }

    pub(crate) async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let id = id.to_string();
        let mut run = self.inner.run(move |c| get_run(c, &id)).await?;
        self.mark_interrupted(run.iter_mut()).await;
        Ok(run)
    }

    pub(crate) async fn list_runs(
        &self,
        limit: usize,
        after: Option<RunCursor>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut runs = self.inner.run(move |c| list_runs(c, limit, after)).await?;
        self.mark_interrupted(runs.iter_mut()).await;
        Ok(runs)
    }

    /// Refused while the run's owner holds its `flock`.
    pub(crate) async fn claim_run(
        &self,
        id: &str,
        max_steps: u32,
        time_budget_ms: u64,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        loop {
            let Some(run) = self.get_run(id).await? else {
                return Ok(Claim::Missing);
            };
            if run.status == RunStatus::Completed {
                return Ok(Claim::Completed(run));
            }
            // This process's own earlier session (one that stopped on an
            // error) does not keep the run from a resume here.
            let mine_idle =
                run.owner.as_deref() == Some(self.owner.id()) && !self.is_driven_here(id);
            if let Some(owner) = &run.owner
                && !mine_idle
                && self.owner_alive(owner).await.counts_as_alive()
            {
                return Ok(Claim::Busy {
                    owner: owner.clone(),
                });
            }
            let (id2, seen, me) = (
                id.to_string(),
                run.owner.clone(),
                self.owner.id().to_string(),
            );
            let won = self
                .inner
                .run(move |c| {
                    take_run(
                        c,
                        &id2,
                        seen.as_deref(),
                        &me,
                        max_steps,
                        time_budget_ms,
                        now_ms,
                    )
                })
                .await?;
            if won {
                self.drives(id, true);
                let run = self.get_run(id).await?.ok_or(StoreError::Closed)?;
                return Ok(Claim::Taken(run));
            }
            // Someone else changed the owner between our read and write: look again.
        }
    }

    pub(crate) async fn record_step(
        &self,
        run_id: &str,
        step: StepRecord,
        spent_ms: u64,
    ) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        self.inner
            .run(move |c| record_step(c, &run_id, &step, spent_ms))
            .await
    }

    pub(crate) fn queue_step(&self, run_id: &str, step: StepRecord, spent_ms: u64) {
        let run_id = run_id.to_string();
        self.inner.write_behind("a queued journal step", move |c| {
            record_step(c, &run_id, &step, spent_ms)
        });
    }

    pub(crate) async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let run_id = run_id.to_string();
        self.inner.run(move |c| steps(c, &run_id)).await
    }

    pub(crate) async fn add_steps_resumed(&self, run_id: &str, n: u64) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        self.inner
            .run(move |c| {
                c.execute_cached(
                    "UPDATE runs SET steps_resumed = steps_resumed + ?2 WHERE id = ?1",
                    params![run_id, n as i64],
                )
                .map(|_| ())
            })
            .await
    }

    pub(crate) async fn finish_run(&self, id: &str, end: RunEnd) -> Result<(), StoreError> {
        let (run, owner) = (id.to_string(), self.owner.id().to_string());
        self.inner
            .run(move |c| finish_run(c, &run, &owner, &end))
            .await?;
        self.drives(id, false);
        Ok(())
    }

    pub(crate) async fn journal_bytes_by_step(
        &self,
        run_id: &str,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        let run_id = run_id.to_string();
        self.inner.run(move |c| bytes_by_step(c, &run_id)).await
    }
}

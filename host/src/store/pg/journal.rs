//! The agent journal on PostgreSQL: `runs`, `steps` and `blobs`, with run
//! ownership as a lease and a fencing token.
//!
//! Why a lease: on one machine a run's owner is alive while it holds its
//! `flock`; across machines no lock can be seen, so a run is held by
//! `owner` until `lease_until`, renewed by the owner's heartbeat (the same
//! one that renews its claims, `lease.rs`) while the run is `running`, and
//! by every step it writes. A run whose lease ran out has a dead owner and
//! may be taken by a resume on any machine. Lease times are the database's
//! clock (`toolhost_now_ms()`), so the hosts' clocks never have to agree.
//!
//! Why a fencing token: a process can stop without dying (SIGSTOP, a long
//! GC-like pause, a partitioned network) and wake after its lease was taken.
//! `fence` grows by one on every takeover, and every write the owner makes
//! (a step, the resumed-step count, the finish) is conditional on
//! `owner = me AND fence = mine`: the woken process's write matches no row,
//! is refused as [`StoreError::RunFenced`], and the run stays the new
//! owner's. A step and its fence check are one statement (data-modifying
//! CTEs), so they commit together in one round trip.
//!
//! Queued rows (`queue_step`, a model turn whose calls are all pure) wait in
//! memory and are written, in order, in the transaction of the run's next
//! awaited write: one commit per step, as on SQLite.
//!
//! A statement whose connection dropped is retried on a fresh one
//! (`retrying!`): reads are plain; a step write is recognised if its first
//! attempt committed and only the reply was lost (the final row's unique
//! index makes the second insert a no-op, and the fence check still passes
//! because the fence is ours). A resume's served-step count, a statistic,
//! may then count twice.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PgStore;
use crate::store::StoreError;
use crate::store::journal::{
    Claim, NewRun, RunEnd, RunRecord, RunStatus, StepKind, StepRecord, kind_name,
};

/// What the owner heartbeat renews for runs, beside its claims (see
/// `lease::RENEWALS`): every run this owner holds that is still running.
pub(crate) const RENEW_RUNS: &str = "UPDATE runs SET lease_until = toolhost_now_ms() + $2
     WHERE owner = $1 AND status = 'running'";

/// The runs this process holds, with the fencing token it holds each at,
/// and the rows queued for the next write.
#[derive(Debug, Default)]
pub(crate) struct Runs(Mutex<Held>);

#[derive(Debug, Default)]
struct Held {
    fences: HashMap<String, i64>,
    /// Rows queued by `queue_step`, written with the next awaited write.
    pending: Vec<(String, StepRecord, u64)>,
}

const RUN_COLUMNS: &str = "id, task, status, config_digest, config_parts, chain, chain_digest,
    tools_digest, max_steps, time_budget_ms, token_budget, spent_ms, owner, reason, answer,
    sessions, steps_resumed, created_at, updated_at, finished_at";

const STEP_COLUMNS: &str = "s.step, s.part, s.kind, s.final, s.name, s.request_digest, s.body,
    b.body, s.ok, s.error_kind, s.cached, s.attempts, s.retries, s.fallbacks, s.breaker_opens,
    s.tokens, s.fuel, s.duration_us, s.report, s.tool_digest, s.policy_digest, s.config_digest,
    s.chain_digest, s.tools_digest, s.created_at";

/// A step row, its blob, and the owner's fence check, in one statement:
/// the inserts take their rows from `r`, so a fenced owner writes nothing,
/// and the statement answers whether the fence held.
const INSERT_STEP: &str = "WITH r AS (
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
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_string()
    }
}

fn opt_text(s: &Option<String>) -> Option<String> {
    s.as_deref().map(text)
}

fn run_row(r: &Row) -> RunRecord {
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

fn step_row(r: &Row) -> Result<StepRecord, std::string::FromUtf8Error> {
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
struct Writer<'a> {
    run: &'a str,
    owner: &'a str,
    fence: i64,
    lease_ms: i64,
}

/// Writes one step (fence-checked); `false` if the fence no longer holds.
async fn insert_step(
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

/// What a journal write ends with, after its rows.
enum Tail {
    None,
    Resumed(u64),
    Finish(RunEnd),
}

impl PgStore {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.runs.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fence this process holds `run` at, or why it holds none.
    fn fence(&self, run: &str) -> Result<i64, StoreError> {
        self.held()
            .fences
            .get(run)
            .copied()
            .ok_or_else(|| StoreError::RunFenced {
                run: run.to_string(),
                message: "this process does not hold the run (its session ended)".into(),
            })
    }

    /// Why a fenced write was refused: who holds the run now.
    async fn fenced(&self, run: &str, mine: i64) -> StoreError {
        self.held().fences.remove(run);
        let found = retrying!(self, |client, _retry| async move {
            client
                .query_opt("SELECT owner, fence FROM runs WHERE id = $1", &[&run])
                .await
        });
        let message = match found {
            Ok(Some(r)) => format!(
                "another process took it over (fence {}, owner {}); this process held fence {mine}, and its write was refused",
                r.get::<_, i64>(1),
                r.get::<_, Option<String>>(0).as_deref().unwrap_or("none"),
            ),
            Ok(None) => "the run no longer exists".into(),
            Err(e) => format!("fence {mine} no longer holds ({e})"),
        };
        StoreError::RunFenced {
            run: run.to_string(),
            message,
        }
    }

    /// Writes a new run owned by this process at fence 1; `false` if the
    /// id is taken.
    pub(crate) async fn create_run(&self, run: &NewRun) -> Result<bool, StoreError> {
        let parts = serde_json::to_string(&run.config_parts).unwrap_or_default();
        let chain = serde_json::to_string(&run.chain).unwrap_or_default();
        let (task, owner, lease) = (text(&run.task), self.owner_id(), self.lease_ms());
        let (max_steps, budget) = (run.max_steps as i64, run.time_budget_ms as i64);
        let tokens = run.token_budget.map(|t| t as i64);
        let created = retrying!(self, |client, retry| async {
            let row = client
                .query_opt(
                    "INSERT INTO runs (id, task, status, config_digest, config_parts, chain,
                        chain_digest, tools_digest, max_steps, time_budget_ms, token_budget,
                        owner, fence, lease_until, created_at, updated_at)
                     VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9, $10, $11, 1,
                        toolhost_now_ms() + $12, $13, $13)
                     ON CONFLICT (id) DO NOTHING
                     RETURNING fence",
                    &[
                        &run.id,
                        &task,
                        &run.config_digest,
                        &parts,
                        &chain,
                        &run.chain_digest,
                        &run.tools_digest,
                        &max_steps,
                        &budget,
                        &tokens,
                        &owner,
                        &lease,
                        &run.now_ms,
                    ],
                )
                .await?;
            if row.is_some() || !retry {
                return Ok(row.is_some());
            }
            // A retry that found the id taken: ours, if the first attempt
            // committed and only its reply was lost.
            let mine = client
                .query_opt(
                    "SELECT 1 FROM runs WHERE id = $1 AND owner = $2 AND fence = 1
                        AND sessions = 1 AND created_at = $3",
                    &[&run.id, &owner, &run.now_ms],
                )
                .await?;
            Ok(mine.is_some())
        })?;
        if created {
            self.held().fences.insert(run.id.clone(), 1);
        }
        Ok(created)
    }

    pub(crate) async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = retrying!(self, |client, _retry| async {
            client.query_opt(sql.as_str(), &[&id]).await
        })?;
        Ok(row.as_ref().map(run_row))
    }

    pub(crate) async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id LIMIT $1");
        let limit = limit as i64;
        let rows = retrying!(self, |client, _retry| async {
            client.query(sql.as_str(), &[&limit]).await
        })?;
        Ok(rows.iter().map(run_row).collect())
    }

    /// Takes a run to resume it: refused while another owner's lease runs.
    /// The update is a compare-and-set on the fence seen, which it raises,
    /// so two resumers racing cannot both win, and the old owner's writes
    /// are refused from then on.
    pub(crate) async fn claim_run(
        &self,
        id: &str,
        max_steps: u32,
        time_budget_ms: u64,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        let read = format!(
            "SELECT {RUN_COLUMNS}, fence, owner IS NOT NULL AND lease_until > toolhost_now_ms()
             FROM runs WHERE id = $1"
        );
        let take = format!(
            "UPDATE runs SET owner = $3, fence = fence + 1, lease_until = toolhost_now_ms() + $4,
                status = 'running', sessions = sessions + 1, max_steps = $5,
                time_budget_ms = $6, updated_at = $7, finished_at = NULL
             WHERE id = $1 AND fence = $2 AND status <> 'completed'
             RETURNING {RUN_COLUMNS}, fence"
        );
        let (owner, lease) = (self.owner_id().to_string(), self.lease_ms());
        let (max_steps, budget) = (max_steps as i64, time_budget_ms as i64);
        loop {
            let Some(row) = retrying!(self, |client, _retry| async {
                client.query_opt(read.as_str(), &[&id]).await
            })?
            else {
                return Ok(Claim::Missing);
            };
            let run = run_row(&row);
            let (seen, leased): (i64, bool) = (row.get(20), row.get(21));
            if run.status == RunStatus::Completed {
                return Ok(Claim::Completed(run));
            }
            // This process's own earlier session (one that stopped on an
            // error) does not keep the run from a resume here.
            let mine_idle = run.owner.as_deref() == Some(owner.as_str()) && self.fence(id).is_err();
            if leased && !mine_idle {
                return Ok(Claim::Busy {
                    owner: run.owner.unwrap_or_default(),
                });
            }
            let taken = retrying!(self, |client, retry| async {
                let row = client
                    .query_opt(
                        take.as_str(),
                        &[&id, &seen, &owner, &lease, &max_steps, &budget, &now_ms],
                    )
                    .await?;
                if row.is_some() || !retry {
                    return Ok(row);
                }
                // A retry that lost the race may have lost it to its own
                // first attempt, whose reply was lost.
                client
                    .query_opt(
                        &format!(
                            "SELECT {RUN_COLUMNS}, fence FROM runs
                             WHERE id = $1 AND fence = $2 + 1 AND owner = $3"
                        ),
                        &[&id, &seen, &owner],
                    )
                    .await
            })?;
            if let Some(row) = taken {
                self.held().fences.insert(id.to_string(), row.get(20));
                return Ok(Claim::Taken(run_row(&row)));
            }
            // Someone else took it between our read and write: look again.
        }
    }

    /// Journals a step part, with every queued row before it, in one
    /// transaction; refused if this process's fence no longer holds.
    pub(crate) async fn record_step(
        &self,
        run_id: &str,
        step: StepRecord,
        spent_ms: u64,
    ) -> Result<(), StoreError> {
        self.journal_write(run_id, Some((step, spent_ms)), Tail::None)
            .await
    }

    /// Queues a step row: it is written with the next awaited write.
    pub(crate) fn queue_step(&self, run_id: &str, step: StepRecord, spent_ms: u64) {
        self.held()
            .pending
            .push((run_id.to_string(), step, spent_ms));
    }

    pub(crate) async fn add_steps_resumed(&self, run_id: &str, n: u64) -> Result<(), StoreError> {
        self.journal_write(run_id, None, Tail::Resumed(n)).await
    }

    /// Records how the run ended and releases it (only while this process
    /// holds its fence).
    pub(crate) async fn finish_run(&self, id: &str, end: RunEnd) -> Result<(), StoreError> {
        self.journal_write(id, None, Tail::Finish(end)).await?;
        self.held().fences.remove(id);
        Ok(())
    }

    /// This session of `id` is over (it stopped on an error): its queued
    /// rows are dropped, and a resume in this process may take the run
    /// without waiting for the lease.
    pub(crate) fn let_go_run(&self, id: &str) {
        let mut h = self.held();
        h.fences.remove(id);
        h.pending.retain(|(run, _, _)| run != id);
    }

    /// The run's queued rows, then `step`, then `tail`, in one transaction,
    /// each fence-checked; a refusal rolls all of it back.
    async fn journal_write(
        &self,
        run_id: &str,
        step: Option<(StepRecord, u64)>,
        tail: Tail,
    ) -> Result<(), StoreError> {
        let mine = self.fence(run_id)?;
        // This run's queued rows go first; other runs' wait for their own.
        let pending: Vec<(StepRecord, u64)> = {
            let mut h = self.held();
            let (mine_q, others) = std::mem::take(&mut h.pending)
                .into_iter()
                .partition(|(run, _, _)| run == run_id);
            h.pending = others;
            mine_q
                .into_iter()
                .map(|(_, row, spent)| (row, spent))
                .collect()
        };
        let (owner, lease_ms) = (self.owner_id(), self.lease_ms());
        let written = retrying!(self, |client, _retry| async {
            let mut client = client;
            let tx = client.transaction().await?;
            let w = Writer {
                run: run_id,
                owner,
                fence: mine,
                lease_ms,
            };
            for (row, spent) in pending.iter().chain(&step) {
                if !insert_step(&tx, &w, row, *spent).await? {
                    return Ok(false);
                }
            }
            let n = match &tail {
                Tail::None => 1,
                Tail::Resumed(n) => {
                    tx.execute(
                        "UPDATE runs SET steps_resumed = steps_resumed + $4
                         WHERE id = $1 AND owner = $2 AND fence = $3",
                        &[&run_id, &owner, &mine, &(*n as i64)],
                    )
                    .await?
                }
                Tail::Finish(end) => {
                    let finished = (end.status != RunStatus::Running).then_some(end.now_ms);
                    tx.execute(
                        "UPDATE runs SET status = $4, reason = $5, answer = $6, spent_ms = $7,
                            updated_at = $8, finished_at = $9, owner = NULL, lease_until = NULL
                         WHERE id = $1 AND owner = $2 AND fence = $3",
                        &[
                            &run_id,
                            &owner,
                            &mine,
                            &end.status.as_str(),
                            &opt_text(&end.reason),
                            &opt_text(&end.answer),
                            &(end.spent_ms as i64),
                            &end.now_ms,
                            &finished,
                        ],
                    )
                    .await?
                }
            };
            if n != 1 {
                return Ok(false);
            }
            tx.commit().await?;
            Ok(true)
        });
        match written {
            Ok(true) => Ok(()),
            // The transaction rolled back: nothing of it was written.
            Ok(false) => Err(self.fenced(run_id, mine).await),
            Err(e) => {
                // Not written: the queued rows wait for the next write, as
                // SQLite keeps a job whose batch could not commit.
                let mut h = self.held();
                let later = std::mem::take(&mut h.pending);
                h.pending = pending
                    .into_iter()
                    .map(|(row, spent)| (run_id.to_string(), row, spent))
                    .chain(later)
                    .collect();
                Err(e)
            }
        }
    }

    /// Every row of a run's journal, in order, with the blobs.
    pub(crate) async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let sql = format!(
            "SELECT {STEP_COLUMNS} FROM steps s JOIN blobs b ON b.digest = s.body
             WHERE s.run_id = $1 ORDER BY s.step, s.part, s.id"
        );
        let rows = retrying!(self, |client, _retry| async {
            client.query(sql.as_str(), &[&run_id]).await
        })?;
        rows.iter()
            .map(step_row)
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Postgres {
                store: self.display().to_string(),
                message: format!("a journal blob of run {run_id} is not UTF-8: {e}"),
            })
    }

    /// Journal bytes of each step (as SQLite's `bytes_by_step`: a blob
    /// counts once, at the first row that wrote it).
    pub(crate) async fn journal_bytes_by_step(
        &self,
        run_id: &str,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        let rows = retrying!(self, |client, _retry| async {
            client
                .query(
                    "SELECT s.step,
                        SUM(length(s.name) + length(s.body) + length(coalesce(s.request_digest, ''))
                            + length(coalesce(s.error_kind, '')) + length(coalesce(s.report, ''))
                            + length(coalesce(s.tool_digest, ''))
                            + length(coalesce(s.policy_digest, ''))
                            + length(s.config_digest) + length(s.chain_digest)
                            + length(s.tools_digest) + 13 * 8
                            + CASE WHEN s.id = (SELECT MIN(f.id) FROM steps f WHERE f.body = s.body)
                                   THEN octet_length(b.body) ELSE 0 END)::bigint
                     FROM steps s JOIN blobs b ON b.digest = s.body
                     WHERE s.run_id = $1 GROUP BY s.step ORDER BY s.step",
                    &[&run_id],
                )
                .await
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, i64>(1) as u64))
            .collect())
    }
}

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

use super::PgStore;
use super::journal_rows::{
    RUN_COLUMNS, STEP_COLUMNS, Writer, insert_step, opt_text, run_row, step_row, text,
};
use crate::store::StoreError;
use crate::store::journal::{Claim, NewRun, RunCursor, RunEnd, RunRecord, RunStatus, StepRecord};

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

    pub(crate) async fn list_runs(
        &self,
        limit: usize,
        after: Option<&RunCursor>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE $2::BIGINT IS NULL OR created_at < $2 OR (created_at = $2 AND id > $3)
             ORDER BY created_at DESC, id LIMIT $1"
        );
        let limit = limit as i64;
        let at = after.map(|c| c.created_at);
        let id = after.map_or("", |c| c.id.as_str());
        let rows = retrying!(self, |client, _retry| async {
            client.query(sql.as_str(), &[&limit, &at, &id]).await
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

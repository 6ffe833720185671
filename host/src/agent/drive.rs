//! A server's own runs: submitted by a client, created and driven under
//! this server's ownership, cancelled on request.
//!
//! Why the run is created before the answer and driven after it: the client
//! gets its run id (`202`) as soon as the run is durable, before the first
//! model call, and a crash from then on leaves an `interrupted` run that any
//! server adopts. Submission is idempotent on the run id: the same task
//! again is the same run; another task under that id is a conflict, never a
//! second run.

use std::sync::Arc;
use std::time::Duration;

use super::AgentError;
use super::hub::{Hub, LiveRun};
use super::run::{AgentOptions, new_run_id};
use crate::clock::unix_ms;
use crate::store::{Claim, RunEnd, RunRecord, RunStatus, StoreError};

/// How long a cancel waits for the run's session to end before answering
/// that it is still stopping (a tool call in flight finishes first).
pub const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// A run a client asks for.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The client's id for it (idempotent), or a fresh one.
    pub run_id: Option<String>,
    pub task: String,
    pub max_steps: Option<u32>,
    pub time_budget: Option<Duration>,
}

/// What a submission did.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new run, now waiting for a slot or driven.
    Created(RunRecord),
    /// The run with that id and the same task, as it is.
    Existing(RunRecord),
}

/// Why a submission or a cancel was refused.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The id names a run of another task.
    #[error(
        "run `{id}` exists with another task; pick another run_id, or submit the same task to get that run"
    )]
    Conflict { id: String },
    /// Too many runs are waiting for a slot.
    #[error("this server is driving and queueing as many runs as it takes; retry later")]
    Overloaded,
    /// No run has that id.
    #[error("no run `{0}`")]
    NotFound(String),
    /// The run has already ended.
    #[error("run `{id}` already ended `{}`; nothing to cancel", status.as_str())]
    Finished { id: String, status: RunStatus },
    /// Another live process drives the run.
    #[error("run `{id}` is driven by another live process (owner {owner}); cancel it there")]
    Busy { id: String, owner: String },
    /// The agent or the store failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl From<StoreError> for DriveError {
    fn from(e: StoreError) -> Self {
        DriveError::Agent(AgentError::Store(e))
    }
}

impl DriveError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            DriveError::Conflict { .. } => "key_conflict",
            DriveError::Overloaded => "overloaded",
            DriveError::NotFound(_) => "not_found",
            DriveError::Finished { .. } => "run_finished",
            DriveError::Busy { .. } => "run_busy",
            DriveError::Agent(e) => e.kind(),
        }
    }
}

/// How a cancel went.
#[derive(Debug, Clone)]
pub struct Cancelled {
    /// The run as it is now: `partial`, or still `running` when its session
    /// did not end within [`CANCEL_WAIT`].
    pub run: RunRecord,
}

impl Hub {
    /// Creates the run `submission` asks for and drives it in the
    /// background, or finds the one its id already names.
    pub async fn submit(self: &Arc<Self>, submission: Submission) -> Result<Submitted, DriveError> {
        let store = self.agent().store().clone();
        let id = submission.run_id.clone().unwrap_or_else(new_run_id);
        let same = |run: RunRecord| match run.task == submission.task {
            true => Ok(Submitted::Existing(run)),
            false => Err(DriveError::Conflict { id: run.id }),
        };
        if let Some(run) = store.get_run(&id).await? {
            return same(run);
        }
        if !self.has_room() {
            return Err(DriveError::Overloaded);
        }
        // Registered before it exists, so a watcher that learns the id from
        // the answer always finds it live.
        let Some(live) = self.register(&id) else {
            // The same id submitted at the same instant: one creates it.
            return existing(self, &id).await.and_then(same);
        };
        let options = AgentOptions {
            max_steps: submission.max_steps.unwrap_or(self.defaults.max_steps),
            time_budget: submission.time_budget.unwrap_or(self.defaults.time_budget),
            token_budget: self.defaults.token_budget,
        };
        let run = match live
            .agent()
            .create(Some(id.clone()), &submission.task, &options)
            .await
        {
            Ok(run) => run,
            Err(AgentError::RunExists(_)) => {
                drop(live);
                return existing(self, &id).await.and_then(same);
            }
            Err(e) => return Err(e.into()),
        };
        tokio::spawn(drive(self.clone(), live, run.clone()));
        Ok(Submitted::Created(run))
    }

    /// Ends run `id` `partial` (resumable): a run driven here stops before
    /// its next step or during its model call; an interrupted one (its
    /// owner died) is taken and ended at once.
    pub async fn cancel_run(&self, id: &str) -> Result<Cancelled, DriveError> {
        let store = self.agent().store();
        if let Some(mut done) = self.cancel(id) {
            let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
            let run = store
                .get_run(id)
                .await?
                .ok_or_else(|| DriveError::NotFound(id.to_string()))?;
            return Ok(Cancelled { run });
        }
        let run = store
            .get_run(id)
            .await?
            .ok_or_else(|| DriveError::NotFound(id.to_string()))?;
        let busy = |owner: Option<String>| DriveError::Busy {
            id: id.to_string(),
            owner: owner.unwrap_or_default(),
        };
        match run.status {
            RunStatus::Running => return Err(busy(run.owner)),
            RunStatus::Interrupted => {}
            status => {
                return Err(DriveError::Finished { id: run.id, status });
            }
        }
        let run = match store
            .claim_run(id, run.max_steps, run.time_budget_ms, unix_ms())
            .await?
        {
            Claim::Taken(run) => run,
            Claim::Missing => return Err(DriveError::NotFound(id.to_string())),
            Claim::Busy { owner } => return Err(busy(Some(owner))),
            Claim::Completed(run) => {
                return Err(DriveError::Finished {
                    id: run.id,
                    status: run.status,
                });
            }
        };
        let end = RunEnd {
            status: RunStatus::Partial,
            reason: Some(format!(
                "cancelled while its owner was dead; resume with `toolhost agent resume {id}`"
            )),
            answer: run.answer.clone(),
            spent_ms: run.spent_ms,
            now_ms: unix_ms(),
        };
        store.finish_run(id, end).await?;
        let run = store
            .get_run(id)
            .await?
            .ok_or_else(|| DriveError::NotFound(id.to_string()))?;
        Ok(Cancelled { run })
    }
}

async fn existing(hub: &Hub, id: &str) -> Result<RunRecord, DriveError> {
    hub.agent()
        .store()
        .get_run(id)
        .await?
        .ok_or_else(|| DriveError::NotFound(id.to_string()))
}

/// Drives a submitted run once a slot is free (at once when cancelled
/// while waiting: it ends before its first step).
async fn drive(hub: Arc<Hub>, live: LiveRun, run: RunRecord) {
    let slots = hub.slots();
    let mut cancelled = live.cancel_asked();
    let _permit = tokio::select! {
        permit = slots.acquire_owned() => permit.ok(),
        _ = cancelled.wait_for(|c| *c) => None,
    };
    let id = run.id.clone();
    match live.agent().drive_new(run).await {
        Ok(o) => tracing::debug!(target: "toolhost::run", run_id = %id,
            status = o.status.as_str(), "submitted run stopped"),
        Err(e) => tracing::warn!(target: "toolhost::run", run_id = %id, kind = e.kind(),
            error = %e, "a submitted run stopped on an error; a server adopts it once this one is gone"),
    }
    drop(live);
}

//! Agent runs: a tool-calling loop whose every step is journaled, so a run
//! survives rate limits, outages, failing tools, spent budgets and a killed
//! process without repeating a side effect.
//!
//! The loop (`run.rs`): the model, through the chain's retry, fallback and
//! breaker policies, is offered the loaded tools; the tool calls it asks for
//! run in parallel through the sandbox and the idempotency executor, keyed
//! by (run id, step, call index); their results go back to the model, until
//! a final answer, `max_steps`, the time or token budget, or Ctrl-C.
//!
//! Why a journal and not a snapshot: each model response and tool result is
//! written (content-addressed, see `store::journal`) and committed with
//! `synchronous=FULL` before the next step starts. A resume rebuilds the
//! conversation from those rows, serves every journaled step from them (no
//! model call, no tool call) and continues live at the first missing one. A
//! tool call that ran but whose row was lost in the crash is re-asked of the
//! executor under the same key, which replays the recorded outcome: the
//! journal is the fast path, the idempotency key the guarantee.
//!
//! Layout: `digest` (what a run depends on, and what changed), `run` (the
//! loop, resume, ownership), `session` (one session's counts and budgets), `turn` (one model turn, served or
//! live), `tools` (the offered tools, their breakers, one call and its
//! degradation to an error result, and a step's tool phase), `record` (the
//! journal rows), `recover` (a server adopting the runs of dead owners),
//! `hub` (a server's live runs: their events, cancels and admission),
//! `drive` (a run submitted to a server: created, driven, cancelled),
//! `replay` (the journal only, reporting divergence), `event` (progress for
//! the CLI and the run API).

mod digest;
mod drive;
mod event;
mod hub;
mod record;
mod recover;
mod replay;
mod run;
mod session;
mod tools;
mod turn;

pub use digest::{Digests, change_list};
pub use drive::{CANCEL_WAIT, Cancelled, DriveError, Submission, Submitted};
pub use event::{Event, Observer, Silent};
pub use hub::{EVENT_BUFFER, Hub, LiveRun, MAX_WAITING};
pub use recover::Recovery;
pub use replay::{Divergence, ReplayReport};
pub use run::{Agent, AgentOptions, ResumeOptions, RunOutcome};

use crate::store::{RunStatus, StoreError};

/// Why a run could not be started, resumed or replayed (or, with
/// `run_fenced`, went on elsewhere: another process took it over while this
/// one was paused past its lease, and this one's write was refused). A model or tool
/// failure inside a run is not an error here: it ends the run `failed` or
/// becomes a result the model sees.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store failed; the run (if any) stays resumable.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// `--run-id` names a run that already exists.
    #[error("run `{0}` already exists: resume it with `toolhost agent resume {0}`")]
    RunExists(String),
    /// No run has this id.
    #[error("no run `{0}` (see `toolhost runs list`)")]
    NoSuchRun(String),
    /// Another live process owns the run.
    #[error(
        "run `{id}` is being run by another live process (owner {owner}); a run has one owner at a time"
    )]
    Busy { id: String, owner: String },
    /// The run already completed; nothing to resume.
    #[error("run `{0}` already completed; `toolhost replay {0}` re-runs it from the journal")]
    Completed(String),
    /// What the run used changed since it was journaled.
    #[error("run `{id}` was journaled under a different setup: {}; resume with --allow-changed to continue anyway", changes.join("; "))]
    Changed { id: String, changes: Vec<String> },
    /// No model is configured.
    #[error("no models are configured: add [[models]] entries to toolhost.toml")]
    NoModels,
    /// Replay needs a run that ended; this one has not.
    #[error("run `{id}` is {}: only a finished run can be replayed", status.as_str())]
    NotFinished { id: String, status: RunStatus },
    /// The journal cannot be read back (a row the loop cannot use).
    #[error("the journal of run `{id}` is unreadable at step {step}: {message}")]
    Journal {
        id: String,
        step: u32,
        message: String,
    },
}

impl AgentError {
    /// The stable kind for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Store(StoreError::RunFenced { .. }) => "run_fenced",
            AgentError::Store(_) => "store_unavailable",
            AgentError::RunExists(_) => "run_exists",
            AgentError::NoSuchRun(_) => "not_found",
            AgentError::Busy { .. } => "run_busy",
            AgentError::Completed(_) => "run_completed",
            AgentError::Changed { .. } => "run_changed",
            AgentError::NoModels => "config",
            AgentError::NotFinished { .. } => "run_not_finished",
            AgentError::Journal { .. } => "journal_unreadable",
        }
    }
}

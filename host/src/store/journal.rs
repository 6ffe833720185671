//! The agent journal's contract: runs, steps and why a run could not be
//! taken, the same on both backends, and the [`Store`] methods that reach
//! them (a `match` on the backend each; SQLite's arms in `sqlite/journal.rs`,
//! PostgreSQL's in `pg/journal.rs`).
//!
//! Why content-addressed blobs: a checkpoint that copies the conversation at
//! every step grows quadratically (step n stores n messages), which is how
//! agent journals reach gigabytes. Here a step row holds only what that step
//! produced: a model response or a tool result, stored once in `blobs` under
//! its blake3 digest, plus a few numbers and digests. The conversation is
//! rebuilt from the task and the rows, in order, so a run's journal grows
//! linearly in its steps.
//!
//! A row is `final` when it is the step's result (served on resume and
//! replay); a non-final row records an attempt that produced none (the model
//! chain was exhausted, a tool call was `in_doubt`), for `runs show` and
//! `stats`. At most one final row exists per (run, step, part).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Backend, Store, StoreError};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Read back only, never written: a `running` run whose owner is dead
    /// (SQLite: its `flock` is free; PostgreSQL: its lease passed), which a
    /// `toolhost serve` or `agent resume` will take.
    Interrupted,
    Completed,
    Failed,
    Partial,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Partial => "partial",
        }
    }

    pub(crate) fn parse(s: &str) -> RunStatus {
        match s {
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "partial" => RunStatus::Partial,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Running,
        }
    }

    /// Whether the run has not ended: `running` or `interrupted`.
    pub fn is_unfinished(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Interrupted)
    }
}

/// A run as first written.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub task: String,
    pub config_digest: String,
    /// Digest of each config section the run depends on, by section name.
    pub config_parts: BTreeMap<String, String>,
    /// The model chain's entry names, in order.
    pub chain: Vec<String>,
    pub chain_digest: String,
    /// Digest of the tool list offered to the model (names, schemas, builds).
    pub tools_digest: String,
    pub max_steps: u32,
    pub time_budget_ms: u64,
    pub token_budget: Option<u64>,
    pub now_ms: i64,
}

/// One row of `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub task: String,
    pub status: RunStatus,
    pub config_digest: String,
    pub config_parts: BTreeMap<String, String>,
    pub chain: Vec<String>,
    pub chain_digest: String,
    pub tools_digest: String,
    pub max_steps: u32,
    pub time_budget_ms: u64,
    pub token_budget: Option<u64>,
    /// Wall time spent live, over every session of the run.
    pub spent_ms: u64,
    /// The store owner running it now (or last).
    pub owner: Option<String>,
    /// Why it stopped, when it did not complete.
    pub reason: Option<String>,
    pub answer: Option<String>,
    /// Processes that have run it (1 + resumes).
    pub sessions: u32,
    /// Steps served from the journal by resumes.
    pub steps_resumed: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// Where a page of [`Store::list_runs`] ends: the last run's creation time
/// and id, the listing's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    pub created_at: i64,
    pub id: String,
}

impl RunCursor {
    /// The cursor after `run`.
    pub fn after(run: &RunRecord) -> RunCursor {
        RunCursor {
            created_at: run.created_at,
            id: run.id.clone(),
        }
    }

    /// As opaque text (base64url of `created_at:id`), for a client to hand
    /// back.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.created_at, self.id))
    }

    /// The text [`RunCursor::encode`] gave; `None` for anything else.
    pub fn decode(text: &str) -> Option<RunCursor> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (at, id) = text.split_once(':')?;
        Some(RunCursor {
            created_at: at.parse().ok()?,
            id: id.to_string(),
        })
    }
}

/// A step part: the model turn or one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Model,
    Tool,
}

/// One row of `steps`, with its blob.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: u32,
    /// 0 for the model turn, `i + 1` for tool call `i`.
    pub part: u32,
    pub kind: StepKind,
    /// Whether this row is the step's result (see the module docs).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The model entry that served the turn, or the tool.
    pub name: String,
    /// Model: blake3 of the request. Tool: the idempotency key.
    pub request_digest: Option<String>,
    pub body_digest: String,
    /// The model response (JSON) or the tool result text.
    pub body: String,
    pub ok: bool,
    pub error_kind: Option<String>,
    pub cached: bool,
    pub attempts: u32,
    pub retries: u32,
    pub fallbacks: u32,
    pub breaker_opens: u32,
    pub tokens: u64,
    pub fuel: u64,
    pub duration_us: u64,
    /// Model turns: the chain's report (attempts, retries, fallbacks), JSON.
    pub report: Option<String>,
    pub tool_digest: Option<String>,
    pub policy_digest: Option<String>,
    pub config_digest: String,
    pub chain_digest: String,
    pub tools_digest: String,
    pub created_at: i64,
}

impl StepRecord {
    /// The row as JSON for programs (`runs show --json`, the run API), with
    /// `body` and `report`, which the journal keeps as JSON text, given as
    /// JSON values, not strings a program has to parse again. `body` is the
    /// model's response or the tool's output when the step succeeded; when
    /// it failed it is the error text the model was shown, a string. Text
    /// that does not parse (a row written by another version) is kept as
    /// the string it is.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!(self);
        let parsed = |text: &str| {
            serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.into()))
        };
        if self.ok {
            v["body"] = parsed(&self.body);
        }
        if let Some(report) = &self.report {
            v["report"] = parsed(report);
        }
        v
    }
}

/// How a run ends (or pauses).
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    pub reason: Option<String>,
    pub answer: Option<String>,
    pub spent_ms: u64,
    pub now_ms: i64,
}

/// Why a run could not be taken.
#[derive(Debug, Clone)]
pub enum Claim {
    /// This store owns the run now.
    Taken(RunRecord),
    /// No run has that id.
    Missing,
    /// A live owner holds it.
    Busy { owner: String },
    /// It already completed: nothing to resume.
    Completed(RunRecord),
}

/// The `kind` column of a step part.
pub(crate) fn kind_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Model => "model",
        StepKind::Tool => "tool",
    }
}

/// The blake3 digest of `body`, in hex: the blob's address.
pub fn blob_digest(body: &str) -> String {
    blake3::hash(body.as_bytes()).to_hex().to_string()
}
impl Store {
    /// Writes a new run owned by this store; `false` if the id is taken.
    pub async fn create_run(&self, run: NewRun) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.create_run(run).await,
            Backend::Postgres(p) => p.create_run(&run).await,
        }
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_run(id).await,
            Backend::Postgres(p) => p.get_run(id).await,
        }
    }

    /// The newest runs first (by creation, then id), at most `limit`,
    /// those after `after` when given: a page of a listing that stays stable
    /// while runs are added (they sort before any cursor).
    pub async fn list_runs(
        &self,
        limit: usize,
        after: Option<&RunCursor>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_runs(limit, after.cloned()).await,
            Backend::Postgres(p) => p.list_runs(limit, after).await,
        }
    }

    /// Takes ownership of a run to resume it: refused while its owner lives
    /// (SQLite: its `flock` is held; PostgreSQL: its lease has not passed).
    /// The budgets given replace the recorded ones (a resume may extend them).
    pub async fn claim_run(
        &self,
        id: &str,
        max_steps: u32,
        time_budget_ms: u64,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.claim_run(id, max_steps, time_budget_ms, now_ms).await,
            Backend::Postgres(p) => p.claim_run(id, max_steps, time_budget_ms, now_ms).await,
        }
    }

    /// Journals one step part; durable (`synchronous=FULL`, or PostgreSQL's
    /// commit) when this returns. On PostgreSQL it is refused with
    /// [`StoreError::RunFenced`] if another process took the run over.
    pub async fn record_step(
        &self,
        run_id: &str,
        step: StepRecord,
        spent_ms: u64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.record_step(run_id, step, spent_ms).await,
            Backend::Postgres(p) => p.record_step(run_id, step, spent_ms).await,
        }
    }

    /// Queues a step row without waiting for its commit: it commits with
    /// (or before) the next awaited job, in order. For a model turn whose
    /// tool calls are all pure, where losing the row in a crash costs only
    /// asking the model again (see `agent::run`). A failed write is traced.
    pub fn queue_step(&self, run_id: &str, step: StepRecord, spent_ms: u64) {
        match &self.backend {
            Backend::Sqlite(s) => s.queue_step(run_id, step, spent_ms),
            Backend::Postgres(p) => p.queue_step(run_id, step, spent_ms),
        }
    }

    /// This session of run `id` stopped on an error: the store stops
    /// treating the run as one it drives, and a resume in this process may
    /// take it at once (PostgreSQL: its queued rows are dropped too). Other
    /// processes still see a live owner: they wait for this process to die
    /// (SQLite: its `flock`; PostgreSQL: its lease).
    pub fn let_go_run(&self, id: &str) {
        match &self.backend {
            Backend::Sqlite(s) => s.drives(id, false),
            Backend::Postgres(p) => p.let_go_run(id),
        }
    }

    /// Every row of a run's journal, in order, with the blobs.
    pub async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.steps(run_id).await,
            Backend::Postgres(p) => p.steps(run_id).await,
        }
    }

    /// Counts steps served from the journal by a resume.
    pub async fn add_steps_resumed(&self, run_id: &str, n: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.add_steps_resumed(run_id, n).await,
            Backend::Postgres(p) => p.add_steps_resumed(run_id, n).await,
        }
    }

    /// Records how the run ended and releases it (only while this store owns it).
    pub async fn finish_run(&self, id: &str, end: RunEnd) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.finish_run(id, end).await,
            Backend::Postgres(p) => p.finish_run(id, end).await,
        }
    }

    /// Journal bytes of each step of a run: its rows' payload plus the
    /// blobs it introduced (a blob shared with an earlier step counts once,
    /// where it first appeared).
    pub async fn journal_bytes_by_step(&self, run_id: &str) -> Result<Vec<(u32, u64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.journal_bytes_by_step(run_id).await,
            Backend::Postgres(p) => p.journal_bytes_by_step(run_id).await,
        }
    }
}

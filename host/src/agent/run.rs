//! The loop: start, resume, ownership.
//!
//! A step is one model turn and the tool calls it asked for. Rows are
//! committed as they happen (the model turn before any of its tool calls
//! start, each tool outcome as it arrives), so a crash loses at most the
//! work in flight: a model request (asked again on resume) or a tool call
//! (asked again under the same idempotency key, which replays or refuses).
//!
//! Budgets are replay-safe: the step count continues from the journal, the
//! tokens are the journaled turns' sum, and the time spent is stored with
//! every step and added to, never restarted, by a resume. Steps served from
//! the journal cost neither steps' live work, nor tokens, nor time again.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;
use tracing::field::Empty;

use super::AgentError;
use super::digest::{Digests, change_list};
use super::event::{Event, Observer, Silent};
use super::session::{End, Session};
use super::tools::ToolSet;
use crate::clock::unix_ms;
use crate::config::{AgentConfig, Config};
use crate::idempotency::Executor;
use crate::model::{ChatRequest, Message, Role};
use crate::resilience::Chain;
use crate::store::{Claim, NewRun, RunEnd, RunRecord, RunStatus, StepRecord, Store, StoreSink};
use crate::telemetry::{CacheOutcome, TARGET, attrs};

/// The system prompt when `[agent] system` is unset.
pub const DEFAULT_SYSTEM: &str = "You are an agent with tools. Use them when they help, \
     one call or several at once; when you have the answer, reply with it in plain text.";

/// The limits of a new run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub max_steps: u32,
    pub time_budget: Duration,
    pub token_budget: Option<u64>,
}

impl AgentOptions {
    pub fn from_config(c: &AgentConfig) -> Self {
        AgentOptions {
            max_steps: c.max_steps,
            time_budget: Duration::from_secs(c.time_budget_s),
            token_budget: c.token_budget,
        }
    }
}

/// How to resume.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Continue even though a tool or the config changed (the changes are
    /// reported in the outcome).
    pub allow_changed: bool,
    /// New limits; `None` keeps the recorded ones.
    pub max_steps: Option<u32>,
    pub time_budget: Option<Duration>,
}

/// How a run (or this session of it) ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: RunStatus,
    /// The final answer; for a `partial` or `failed` run, the last
    /// answer-like text the model gave, if any.
    pub answer: Option<String>,
    /// Why it did not complete.
    pub reason: Option<String>,
    /// Model turns journaled, in all sessions.
    pub steps: u32,
    /// Of those, served from the journal in this session.
    pub steps_resumed: u32,
    /// Model requests and tool calls made live in this session.
    pub model_requests: u32,
    pub tool_calls: u32,
    /// Live time over every session.
    pub spent_ms: u64,
    pub tokens: u64,
    /// Changes accepted with `--allow-changed`.
    pub changes: Vec<String>,
}

/// Runs agent tasks over an executor (tools) and a chain (models).
///
/// Cloning is cheap and shares the tools' breakers: a server clones its
/// agent per run to give each run its own observer and cancel signal.
#[derive(Clone)]
pub struct Agent {
    pub(crate) executor: Arc<Executor>,
    pub(super) chain: Arc<Chain>,
    pub(crate) tools: Arc<ToolSet>,
    pub(crate) digests: Arc<Digests>,
    pub(crate) system: String,
    pub(super) observer: Arc<dyn Observer>,
    /// Ends the run `partial` (resumable) once true.
    pub(super) cancel: Option<watch::Receiver<bool>>,
    /// Hands the run back (`running`, no owner) once true.
    pub(super) hand_back: Option<watch::Receiver<bool>>,
}

pub(super) fn new_run_id() -> String {
    let hex = crate::store::random_hex();
    format!("run-{}", &hex[..hex.len().min(12)])
}

impl Agent {
    /// An agent over `executor`'s tools and `chain`'s models, set up by
    /// `config`. Tool breakers are shared through `executor`'s store.
    pub fn new(executor: Arc<Executor>, chain: Arc<Chain>, config: &Config) -> Agent {
        let sink = StoreSink::tools(executor.store().clone());
        let tools = ToolSet::new(executor.sandbox(), config, Some(sink));
        let digests = Digests::compute(config, executor.sandbox(), &tools.specs);
        Agent {
            executor,
            chain,
            tools: Arc::new(tools),
            digests: Arc::new(digests),
            system: config
                .agent
                .system
                .clone()
                .unwrap_or_else(|| DEFAULT_SYSTEM.to_string()),
            observer: Arc::new(Silent),
            cancel: None,
            hand_back: None,
        }
    }

    /// Reports progress to `observer`.
    pub fn observe(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Stops the run cleanly (as `partial`, resumable) once `cancel` turns
    /// true: before the next step, or during a model call. Tool calls in
    /// flight finish first, so their outcomes are journaled.
    pub fn cancel_on(mut self, cancel: watch::Receiver<bool>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Like [`Agent::cancel_on`], but the run is handed back rather than
    /// ended: it stays `running` with no owner, which reads `interrupted`,
    /// so the next `toolhost serve` adopts it (a server shutting down).
    /// Both may be set: a server's run is cancelled by its client and
    /// handed back when the server stops.
    pub fn hand_back_on(mut self, hand_back: watch::Receiver<bool>) -> Self {
        self.hand_back = Some(hand_back);
        self
    }

    /// The current setup's digests.
    pub fn digests(&self) -> &Digests {
        &self.digests
    }

    /// The executor tool calls go through.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The store the journal lives in.
    pub fn store(&self) -> &Store {
        self.executor.store()
    }

    /// Starts a new run of `task`: [`Agent::create`], then
    /// [`Agent::drive_new`].
    pub async fn start(
        &self,
        run_id: Option<String>,
        task: &str,
        options: &AgentOptions,
    ) -> Result<RunOutcome, AgentError> {
        let run = self.create(run_id, task, options).await?;
        self.drive_new(run).await
    }

    /// Writes a new run of `task`, owned by this store, without driving it
    /// (a server answers its client before the first model call).
    pub async fn create(
        &self,
        run_id: Option<String>,
        task: &str,
        options: &AgentOptions,
    ) -> Result<RunRecord, AgentError> {
        if self.chain.is_empty() {
            return Err(AgentError::NoModels);
        }
        let id = run_id.unwrap_or_else(new_run_id);
        let new = NewRun {
            id: id.clone(),
            task: task.to_string(),
            config_digest: self.digests.config.clone(),
            config_parts: self.digests.config_parts.clone(),
            chain: self.chain.names(),
            chain_digest: self.digests.chain.clone(),
            tools_digest: self.digests.tools.clone(),
            max_steps: options.max_steps,
            time_budget_ms: options.time_budget.as_millis() as u64,
            token_budget: options.token_budget,
            now_ms: unix_ms(),
        };
        if !self.store().create_run(new).await? {
            return Err(AgentError::RunExists(id));
        }
        self.store()
            .get_run(&id)
            .await?
            .ok_or(AgentError::NoSuchRun(id))
    }

    /// Drives a run [`Agent::create`] wrote, from its first step.
    pub async fn drive_new(&self, run: RunRecord) -> Result<RunOutcome, AgentError> {
        self.drive(run, Vec::new(), Vec::new()).await
    }

    /// Resumes a run that did not complete: journaled steps are served from
    /// the journal, the first missing one runs live.
    pub async fn resume(
        &self,
        run_id: &str,
        options: &ResumeOptions,
    ) -> Result<RunOutcome, AgentError> {
        if self.chain.is_empty() {
            return Err(AgentError::NoModels);
        }
        let store = self.store();
        let run = store
            .get_run(run_id)
            .await?
            .ok_or_else(|| AgentError::NoSuchRun(run_id.to_string()))?;
        if run.status == RunStatus::Completed {
            return Err(AgentError::Completed(run.id));
        }
        let steps = store.steps(run_id).await?;
        let changes = change_list(&run, &steps, &self.digests);
        if !changes.is_empty() && !options.allow_changed {
            return Err(AgentError::Changed {
                id: run.id,
                changes,
            });
        }
        let max_steps = options.max_steps.unwrap_or(run.max_steps);
        let budget = options
            .time_budget
            .map_or(run.time_budget_ms, |d| d.as_millis() as u64);
        let run = match store
            .claim_run(run_id, max_steps, budget, unix_ms())
            .await?
        {
            Claim::Taken(run) => run,
            Claim::Missing => return Err(AgentError::NoSuchRun(run_id.to_string())),
            Claim::Busy { owner } => {
                return Err(AgentError::Busy {
                    id: run_id.to_string(),
                    owner,
                });
            }
            Claim::Completed(run) => return Err(AgentError::Completed(run.id)),
        };
        self.drive(run, steps, changes).await
    }

    /// Drives the run this store now owns; if the session stops on an
    /// error, the store stops renewing its ownership (a resume may take it).
    async fn drive(
        &self,
        run: RunRecord,
        steps: Vec<StepRecord>,
        changes: Vec<String>,
    ) -> Result<RunOutcome, AgentError> {
        let id = run.id.clone();
        let resumed = run.sessions > 1;
        // One `invoke_agent` span per session: a resume is a new session of
        // the same conversation (the run id), its journal-served steps
        // marked as such in their `step` spans.
        let span = tracing::info_span!(
            target: TARGET,
            "invoke_agent",
            otel.name = "invoke_agent toolhost",
            otel.status_code = Empty,
            { attrs::OPERATION } = "invoke_agent",
            { attrs::AGENT_NAME } = "toolhost",
            { attrs::CONVERSATION_ID } = id.as_str(),
            { attrs::RUN_STATUS } = Empty,
            { attrs::STEPS_RESUMED } = Empty,
            { attrs::ERROR_TYPE } = Empty,
        );
        tracing::info!(target: "toolhost::run", run_id = %id, resumed, "run started");
        let outcome = self
            .drive_held(run, steps, changes)
            .instrument(span.clone())
            .await;
        match &outcome {
            Ok(o) => {
                span.record(attrs::RUN_STATUS, o.status.as_str());
                span.record(attrs::STEPS_RESUMED, o.steps_resumed);
                if o.status != RunStatus::Completed {
                    span.record(attrs::ERROR_TYPE, o.status.as_str());
                    span.record("otel.status_code", "error");
                }
                tracing::info!(target: "toolhost::run", run_id = %id, status = o.status.as_str(),
                    steps = o.steps, steps_resumed = o.steps_resumed, tool_calls = o.tool_calls,
                    spent_ms = o.spent_ms, "run finished");
            }
            Err(e) => {
                span.record(attrs::ERROR_TYPE, e.kind());
                span.record("otel.status_code", "error");
                tracing::info!(target: "toolhost::run", run_id = %id, kind = e.kind(), "run stopped");
                self.store().let_go_run(&id);
            }
        }
        outcome
    }

    async fn drive_held(
        &self,
        run: RunRecord,
        steps: Vec<StepRecord>,
        changes: Vec<String>,
    ) -> Result<RunOutcome, AgentError> {
        let mut s = Session::new(run, steps, changes);
        self.observer.event(&Event::Started {
            run_id: s.run.id.clone(),
            resumed: s.run.sessions > 1,
            journaled_steps: s.journaled_turns(),
        });
        let mut request = ChatRequest {
            system: Some(self.system.clone()),
            messages: vec![Message::user(s.run.task.clone())],
            tools: self.tools.specs.clone(),
            max_tokens: None,
        };
        let mut step = 1u32;
        let end = loop {
            let span = step_span(step);
            let response = match s.journal.get(&(step, 0)) {
                Some(row) => {
                    span.record(attrs::CACHE, CacheOutcome::ServedFromJournal.as_str());
                    let response = self.served_turn(&s.run.id, row)?;
                    s.tokens += row.tokens;
                    s.resumed += 1;
                    response
                }
                None => {
                    let turn = self
                        .live_turn(&mut s, step, &request)
                        .instrument(span.clone())
                        .await?;
                    match turn {
                        Ok(response) => {
                            span.record(attrs::CACHE, CacheOutcome::Executed.as_str());
                            response
                        }
                        // A budget stopped the run before this step's
                        // turn: its span says nothing ran.
                        Err(end) => break end,
                    }
                }
            };
            s.turns += 1;
            request.messages.push(Message::assistant(&response));
            if !response.text.trim().is_empty() {
                s.last_text = Some(response.text.clone());
            }
            if response.tool_calls.is_empty() {
                break End {
                    status: RunStatus::Completed,
                    reason: None,
                    answer: Some(response.text),
                };
            }
            let (parts, stops) = self
                .tool_phase(&mut s, step, &response)
                .instrument(span)
                .await?;
            request.messages.push(Message {
                role: Role::User,
                parts,
            });
            if !stops.is_empty() {
                break End::failed(stops.join("; "));
            }
            step += 1;
        };
        self.finish(s, end).await
    }

    async fn finish(&self, s: Session, end: End) -> Result<RunOutcome, AgentError> {
        let spent_ms = s.spent_ms();
        let answer = end.answer.or(s.last_text);
        let store = self.store();
        if s.resumed > 0 {
            store.add_steps_resumed(&s.run.id, s.resumed as u64).await?;
        }
        store
            .finish_run(
                &s.run.id,
                RunEnd {
                    status: end.status,
                    reason: end.reason.clone(),
                    answer: answer.clone(),
                    spent_ms,
                    now_ms: unix_ms(),
                },
            )
            .await?;
        self.observer.event(&Event::Finished {
            run_id: s.run.id.clone(),
            status: end.status.as_str().to_string(),
            reason: end.reason.clone(),
            steps: s.turns,
            tokens: s.tokens,
        });
        Ok(RunOutcome {
            run_id: s.run.id,
            status: end.status,
            answer,
            reason: end.reason,
            steps: s.turns,
            steps_resumed: s.resumed,
            model_requests: s.model_requests,
            tool_calls: s.tool_calls,
            spent_ms,
            tokens: s.tokens,
            changes: s.changes,
        })
    }
}

/// The span of step `n`: its model turn (live, or served from the journal:
/// `toolhost.cache`) and its tool calls.
fn step_span(n: u32) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "step",
        otel.name = format!("step {n}"),
        { attrs::STEP } = n,
        { attrs::CACHE } = Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_agent_section() {
        let c = AgentConfig {
            max_steps: 7,
            time_budget_s: 90,
            token_budget: Some(1_000),
            system: None,
        };
        let o = AgentOptions::from_config(&c);
        assert_eq!(o.max_steps, 7);
        assert_eq!(o.time_budget, Duration::from_secs(90));
        assert_eq!(o.token_budget, Some(1_000));
    }

    #[test]
    fn run_ids_are_short_prefixed_and_fresh() {
        let a = new_run_id();
        assert!(a.starts_with("run-") && a.len() == 16, "{a}");
        assert!(a[4..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, new_run_id());
    }
}

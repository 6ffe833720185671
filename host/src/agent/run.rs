//! The loop: start, resume, budgets, ownership.
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::AgentError;
use super::digest::{Digests, change_list, hex};
use super::event::{Event, Observer, Silent};
use super::tools::{ToolOutcome, ToolSet, call_one};
use crate::clock::unix_ms;
use crate::config::{AgentConfig, Config};
use crate::idempotency::{Executor, Scope};
use crate::model::{ChatRequest, ChatResponse, Message, Part, Role};
use crate::resilience::Chain;
use crate::store::{
    Claim, NewRun, RunEnd, RunRecord, RunStatus, StepKind, StepRecord, Store, StoreSink,
    blob_digest,
};

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
pub struct Agent {
    pub(crate) executor: Arc<Executor>,
    chain: Arc<Chain>,
    pub(crate) tools: ToolSet,
    pub(crate) digests: Digests,
    pub(crate) system: String,
    observer: Arc<dyn Observer>,
    cancel: Option<watch::Receiver<bool>>,
}

/// Where the loop stopped.
struct End {
    status: RunStatus,
    reason: Option<String>,
    answer: Option<String>,
}

impl End {
    fn partial(reason: String) -> Self {
        End {
            status: RunStatus::Partial,
            reason: Some(reason),
            answer: None,
        }
    }

    fn failed(reason: String) -> Self {
        End {
            status: RunStatus::Failed,
            reason: Some(reason),
            answer: None,
        }
    }
}

/// This session's bookkeeping.
struct Session {
    run: RunRecord,
    journal: HashMap<(u32, u32), StepRecord>,
    started: Instant,
    tokens: u64,
    last_text: Option<String>,
    resumed: u32,
    /// Model turns served so far (journal or live).
    turns: u32,
    model_requests: u32,
    tool_calls: u32,
    changes: Vec<String>,
}

impl Session {
    fn spent_ms(&self) -> u64 {
        self.run.spent_ms + self.started.elapsed().as_millis() as u64
    }
}

fn new_run_id() -> String {
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
            tools,
            digests,
            system: config
                .agent
                .system
                .clone()
                .unwrap_or_else(|| DEFAULT_SYSTEM.to_string()),
            observer: Arc::new(Silent),
            cancel: None,
        }
    }

    /// Whether a call of `tool` can have no effect: only then may the turn
    /// that asked for it run ahead of its row's commit.
    fn is_pure(&self, tool: &str) -> bool {
        let sandbox = self.executor.sandbox();
        let Some(t) = sandbox.tool(tool) else {
            // An unknown tool runs nothing.
            return true;
        };
        let effect = sandbox
            .policy(tool)
            .and_then(|p| p.effect)
            .map_or(t.effect, |e| e.max(t.effect));
        effect == crate::config::EffectName::Pure
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

    /// Starts a new run of `task`.
    pub async fn start(
        &self,
        run_id: Option<String>,
        task: &str,
        options: &AgentOptions,
    ) -> Result<RunOutcome, AgentError> {
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
        let run = self
            .store()
            .get_run(&id)
            .await?
            .ok_or_else(|| AgentError::NoSuchRun(id.clone()))?;
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
        let outcome = self.drive_held(run, steps, changes).await;
        if outcome.is_err() {
            self.store().let_go_run(&id);
        }
        outcome
    }

    async fn drive_held(
        &self,
        run: RunRecord,
        steps: Vec<StepRecord>,
        changes: Vec<String>,
    ) -> Result<RunOutcome, AgentError> {
        let journaled = steps
            .iter()
            .filter(|s| s.is_final && s.kind == StepKind::Model)
            .count() as u32;
        let journal = steps
            .into_iter()
            .filter(|s| s.is_final)
            .map(|s| ((s.step, s.part), s))
            .collect();
        self.observer.event(&Event::Started {
            run_id: run.id.clone(),
            resumed: run.sessions > 1,
            journaled_steps: journaled,
        });
        let mut s = Session {
            run,
            journal,
            started: Instant::now(),
            tokens: 0,
            last_text: None,
            resumed: 0,
            turns: 0,
            model_requests: 0,
            tool_calls: 0,
            changes,
        };
        let mut request = ChatRequest {
            system: Some(self.system.clone()),
            messages: vec![Message::user(s.run.task.clone())],
            tools: self.tools.specs.clone(),
            max_tokens: None,
        };
        let mut step = 1u32;
        let end = loop {
            let response = match s.journal.get(&(step, 0)) {
                Some(row) => {
                    let response = self.served_turn(&s.run.id, row)?;
                    s.tokens += row.tokens;
                    s.resumed += 1;
                    response
                }
                None => match self.live_turn(&mut s, step, &request).await? {
                    Ok(response) => response,
                    Err(end) => break end,
                },
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
            let (parts, stops) = self.tool_phase(&mut s, step, &response).await?;
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

    fn served_turn(&self, run_id: &str, row: &StepRecord) -> Result<ChatResponse, AgentError> {
        let response: ChatResponse =
            serde_json::from_str(&row.body).map_err(|e| AgentError::Journal {
                id: run_id.to_string(),
                step: row.step,
                message: e.to_string(),
            })?;
        self.observer.event(&Event::ModelDone {
            step: row.step,
            served_by: row.name.clone(),
            attempts: row.attempts,
            retries: row.retries,
            fallbacks: row.fallbacks,
            duration_ms: row.duration_us / 1000,
            from_journal: true,
            tool_calls: response.tool_calls.len(),
        });
        Ok(response)
    }

    /// Why the run may not take another live step, if it may not.
    fn budget_stop(&self, s: &Session, step: u32) -> Option<End> {
        let done = step - 1;
        if step > s.run.max_steps {
            return Some(End::partial(format!(
                "max_steps ({}) reached after {done} steps",
                s.run.max_steps
            )));
        }
        if s.spent_ms() >= s.run.time_budget_ms {
            return Some(End::partial(format!(
                "time budget ({} ms) spent after {done} steps",
                s.run.time_budget_ms
            )));
        }
        if let Some(limit) = s.run.token_budget
            && s.tokens >= limit
        {
            return Some(End::partial(format!(
                "token budget ({limit}) spent after {done} steps ({} tokens)",
                s.tokens
            )));
        }
        if self.cancel.as_ref().is_some_and(|c| *c.borrow()) {
            return Some(End::partial(format!(
                "interrupted after {done} steps; resume with `toolhost agent resume {}`",
                s.run.id
            )));
        }
        None
    }

    /// One model turn, live: `Err(end)` when the run stops here.
    async fn live_turn(
        &self,
        s: &mut Session,
        step: u32,
        request: &ChatRequest,
    ) -> Result<Result<ChatResponse, End>, AgentError> {
        if let Some(end) = self.budget_stop(s, step) {
            return Ok(Err(end));
        }
        let store = self.store();
        // Breakers other processes (on any host) opened are open here too,
        // from this call on: the store's read is one cheap query.
        self.chain
            .adopt_breakers(&store.breaker_map("model:").await?);
        let opens_before = self.chain.metrics().breaker_opens;
        self.observer.event(&Event::ModelCalling { step });
        let remaining = Duration::from_millis(s.run.time_budget_ms.saturating_sub(s.spent_ms()));
        let started = Instant::now();
        let mut cancel = self.cancel.clone();
        let result = tokio::select! {
            r = tokio::time::timeout(remaining, self.chain.call(request)) => r,
            _ = cancelled(&mut cancel) => {
                return Ok(Err(End::partial(format!(
                    "interrupted during step {step}; resume with `toolhost agent resume {}`",
                    s.run.id
                ))));
            }
        };
        s.model_requests += 1;
        let Ok(result) = result else {
            return Ok(Err(End::partial(format!(
                "time budget ({} ms) spent during the model call of step {step}",
                s.run.time_budget_ms
            ))));
        };
        let duration_us = started.elapsed().as_micros() as u64;
        let opens = self
            .chain
            .metrics()
            .breaker_opens
            .saturating_sub(opens_before) as u32;
        let (report, served) = match &result {
            Ok(served) => (&served.report, Some(&served.response)),
            Err(unserved) => (&unserved.report, None),
        };
        let body = match (served, &result) {
            (Some(r), _) => serde_json::to_string(r).unwrap_or_default(),
            (None, Err(u)) => u.error.to_string(),
            (None, Ok(_)) => String::new(),
        };
        let usage = served.map_or(0, |r| r.usage.input_tokens + r.usage.output_tokens);
        let row = StepRecord {
            step,
            part: 0,
            kind: StepKind::Model,
            is_final: served.is_some(),
            name: report
                .served_by
                .clone()
                .or_else(|| report.attempts.last().map(|a| a.model.clone()))
                .unwrap_or_else(|| "none".into()),
            request_digest: Some(request_digest(request)),
            body_digest: blob_digest(&body),
            body,
            ok: served.is_some(),
            error_kind: result.as_ref().err().map(|u| u.error.kind.to_string()),
            cached: false,
            attempts: report.attempts.len() as u32,
            retries: report.retries.len() as u32,
            fallbacks: report.fallbacks.len() as u32,
            breaker_opens: opens,
            tokens: usage,
            fuel: 0,
            duration_us,
            report: serde_json::to_string(report).ok(),
            tool_digest: None,
            policy_digest: None,
            config_digest: self.digests.config.clone(),
            chain_digest: self.digests.chain.clone(),
            tools_digest: self.digests.tools.clone(),
            created_at: unix_ms(),
        };
        let event = Event::ModelDone {
            step,
            served_by: row.name.clone(),
            attempts: row.attempts,
            retries: row.retries,
            fallbacks: row.fallbacks,
            duration_ms: duration_us / 1000,
            from_journal: false,
            tool_calls: served.map_or(0, |r| r.tool_calls.len()),
        };
        // The turn must be durable before any call with an effect starts: a
        // model asked again after a crash may ask for different calls, and
        // an effect must never be orphaned from its step. A turn that asks
        // only for pure calls (or answers) is committed with the step's
        // next awaited row instead: one fsync per step, and a crash before
        // it costs only this request, asked again.
        let durable_now =
            served.is_none_or(|r| r.tool_calls.iter().any(|c| !self.is_pure(&c.name)));
        if durable_now {
            store.record_step(&s.run.id, row, s.spent_ms()).await?;
        } else {
            store.queue_step(&s.run.id, row, s.spent_ms());
        }
        match result {
            Ok(served) => {
                s.tokens += usage;
                self.observer.event(&event);
                Ok(Ok(served.response))
            }
            Err(unserved) => {
                self.observer.event(&Event::ModelFailed {
                    step,
                    kind: unserved.error.kind.to_string(),
                    message: unserved.error.message.clone(),
                });
                Ok(Err(End::failed(format!(
                    "no model could answer step {step}: {}: {}",
                    unserved.error.kind, unserved.error.message
                ))))
            }
        }
    }

    /// The step's tool calls: from the journal where it has them, the rest
    /// live and in parallel, each journaled as it finishes. Returns the
    /// result parts in call order and the reasons to stop, if any.
    async fn tool_phase(
        &self,
        s: &mut Session,
        step: u32,
        response: &ChatResponse,
    ) -> Result<(Vec<Part>, Vec<String>), AgentError> {
        let calls = &response.tool_calls;
        let mut results: Vec<Option<ToolOutcome>> = vec![None; calls.len()];
        let mut live = Vec::new();
        for (i, slot) in results.iter_mut().enumerate() {
            let part = i as u32 + 1;
            match s.journal.get(&(step, part)) {
                Some(row) => {
                    self.observer.event(&Event::ToolDone {
                        step,
                        index: i as u32,
                        tool: row.name.clone(),
                        error_kind: row.error_kind.clone(),
                        cached: row.cached,
                        from_journal: true,
                        duration_us: row.duration_us,
                    });
                    *slot = Some(ToolOutcome {
                        content: row.body.clone(),
                        error_kind: row.error_kind.clone(),
                        key: row.request_digest.clone(),
                        cached: row.cached,
                        fuel: row.fuel,
                        duration_us: row.duration_us,
                        stop: None,
                    });
                }
                None => live.push(i),
            }
        }
        let mut stops = Vec::new();
        if !live.is_empty() {
            let store = self.store();
            self.tools.adopt(&store.breaker_map("tool:").await?);
            self.observer.event(&Event::ToolsCalling {
                step,
                tools: live.iter().map(|&i| calls[i].name.clone()).collect(),
            });
            let mut set = tokio::task::JoinSet::new();
            for &i in &live {
                let call = calls[i].clone();
                let scope = Scope::Step {
                    run_id: s.run.id.clone(),
                    step,
                    index: i as u32,
                };
                let fut = call_one(
                    self.executor.clone(),
                    self.tools.breaker(&call.name),
                    call,
                    scope,
                    s.run.id.clone(),
                );
                set.spawn(async move { (i, fut.await) });
            }
            while let Some(joined) = set.join_next().await {
                let (i, outcome) = joined.map_err(|e| AgentError::Journal {
                    id: s.run.id.clone(),
                    step,
                    message: format!("a tool call task died: {e}"),
                })?;
                s.tool_calls += 1;
                let name = calls[i].name.clone();
                let digests = self.digests.per_tool.get(&name);
                let row = StepRecord {
                    step,
                    part: i as u32 + 1,
                    kind: StepKind::Tool,
                    is_final: outcome.stop.is_none(),
                    name: name.clone(),
                    request_digest: outcome.key.clone(),
                    body_digest: blob_digest(&outcome.content),
                    body: outcome.content.clone(),
                    ok: outcome.error_kind.is_none(),
                    error_kind: outcome.error_kind.clone(),
                    cached: outcome.cached,
                    attempts: 1,
                    retries: 0,
                    fallbacks: 0,
                    breaker_opens: 0,
                    tokens: 0,
                    fuel: outcome.fuel,
                    duration_us: outcome.duration_us,
                    report: None,
                    tool_digest: digests.map(|d| d.0.clone()),
                    policy_digest: digests.map(|d| d.1.clone()),
                    config_digest: self.digests.config.clone(),
                    chain_digest: self.digests.chain.clone(),
                    tools_digest: self.digests.tools.clone(),
                    created_at: unix_ms(),
                };
                store.record_step(&s.run.id, row, s.spent_ms()).await?;
                self.observer.event(&Event::ToolDone {
                    step,
                    index: i as u32,
                    tool: name,
                    error_kind: outcome.error_kind.clone(),
                    cached: outcome.cached,
                    from_journal: false,
                    duration_us: outcome.duration_us,
                });
                if let Some(stop) = &outcome.stop {
                    stops.push(stop.clone());
                }
                results[i] = Some(outcome);
            }
        }
        let parts = calls
            .iter()
            .zip(results)
            .map(|(call, r)| {
                // Every slot is filled: from the journal or by its task.
                let r = r.unwrap_or_else(|| ToolOutcome {
                    content: String::new(),
                    error_kind: Some("internal".into()),
                    key: None,
                    cached: false,
                    fuel: 0,
                    duration_us: 0,
                    stop: None,
                });
                Part::ToolResult {
                    call_id: call.id.clone(),
                    is_error: r.error_kind.is_some(),
                    content: r.content,
                }
            })
            .collect();
        Ok((parts, stops))
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

/// The digest a model turn's request is journaled under.
pub(crate) fn request_digest(request: &ChatRequest) -> String {
    hex(&serde_json::to_vec(request).unwrap_or_default())
}

/// Resolves once `cancel` turns true; never without one.
async fn cancelled(cancel: &mut Option<watch::Receiver<bool>>) {
    match cancel {
        Some(rx) => {
            if rx.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

//! The tools a run offers the model, their circuit breakers, and one call
//! with its graceful degradation.
//!
//! Why failures become results: a model can often route around a failed
//! tool (retry with corrected arguments, use another tool, answer without
//! it), and a run that crashes on the first tool error wastes everything
//! done before it. So every tool error reaches the model as an error result
//! with a caveat saying the text is not the tool's output. Only two things
//! stop a run: an `in_doubt` call under the default policy (the effect may
//! or may not have happened, and only an operator can say), and a store
//! failure (whether the call ran cannot be known).
//!
//! Each tool has a breaker (the model chain's `BreakerPolicy`, shared
//! across processes through the store). Health failures are the ones that
//! say the tool or its host is in trouble: `timeout`, `trap`, `out_of_fuel`,
//! `memory_limit`, `tool_transient`. A tool's own answers (`tool_failed`,
//! `invalid_input`, `capability_denied`) are deterministic and say nothing
//! about its health. While a tool's breaker is open, calls to it are not
//! made: the model hears that the tool is unavailable.

use std::collections::HashMap;
use std::sync::Arc;

use super::AgentError;
use super::event::Event;
use super::record::tool_row;
use super::run::Agent;
use super::session::Session;
use crate::config::Config;
use crate::idempotency::{ExecError, ExecOptions, Executor, Scope};
use crate::model::{ChatResponse, Part, ToolCall, ToolSpec};
use crate::resilience::{Breaker, BreakerPolicy, BreakerSink, Shared, TokioClock, Verdict};
use crate::sandbox::Sandbox;
use crate::telemetry::{CacheOutcome, TARGET, attrs};
use tracing::Instrument;

/// The caveat appended to every error result the model sees.
pub const CAVEAT: &str = "(caveat: this tool call did not succeed; the text above is an error report, not the tool's output. Correct the arguments and call again if the error is in them, or continue without this result.)";

/// The offered tools and their breakers.
pub(crate) struct ToolSet {
    pub specs: Vec<ToolSpec>,
    breakers: HashMap<String, Arc<Breaker>>,
}

impl ToolSet {
    pub fn new(sandbox: &Sandbox, config: &Config, sink: Option<Arc<dyn BreakerSink>>) -> Self {
        let clock = Arc::new(TokioClock::default());
        let mut specs = Vec::new();
        let mut breakers = HashMap::new();
        for t in sandbox.tools() {
            specs.push(ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                input_schema: t.input_schema.clone(),
            });
            let mut b = Breaker::new(
                t.name.clone(),
                BreakerPolicy::from_config(&config.breaker),
                clock.clone(),
            );
            if let Some(sink) = &sink {
                b = b.with_sink(sink.clone());
            }
            breakers.insert(t.name.clone(), Arc::new(b));
        }
        ToolSet { specs, breakers }
    }

    /// Adopts tool-breaker states other processes published.
    pub fn adopt(&self, states: &HashMap<String, Shared>) {
        for (name, b) in &self.breakers {
            if let Some(s) = states.get(name) {
                b.adopt(s);
            }
        }
    }

    pub fn breaker(&self, tool: &str) -> Option<Arc<Breaker>> {
        self.breakers.get(tool).cloned()
    }
}

/// One tool call's outcome, as the journal keeps it and the model sees it.
#[derive(Debug, Clone)]
pub(crate) struct ToolOutcome {
    /// What the model is given.
    pub content: String,
    pub error_kind: Option<String>,
    pub key: Option<String>,
    pub cached: bool,
    pub fuel: u64,
    pub duration_us: u64,
    /// Set when the run must stop here (in doubt, store failure): why.
    pub stop: Option<String>,
}

fn is_health_failure(kind: &str) -> bool {
    matches!(
        kind,
        "timeout" | "trap" | "out_of_fuel" | "memory_limit" | "tool_transient"
    )
}

fn error_result(kind: &str, message: &str) -> String {
    format!("error: {kind}: {message}\n{CAVEAT}")
}

/// The outcome of a call refused before it reached the executor: nothing
/// ran, nothing was keyed.
fn refused(kind: &str, message: &str) -> ToolOutcome {
    ToolOutcome {
        content: error_result(kind, message),
        error_kind: Some(kind.into()),
        key: None,
        cached: false,
        fuel: 0,
        duration_us: 0,
        stop: None,
    }
}

/// Marks a tool call a resume served from the journal: an `execute_tool`
/// span of no duration, `toolhost.cache = served_from_journal`, never
/// `executed` (the executor is not asked).
fn journal_served_span(tool: &str, call_id: &str) {
    let _span = tracing::info_span!(
        target: TARGET,
        "execute_tool",
        otel.name = format!("execute_tool {tool}"),
        { attrs::OPERATION } = "execute_tool",
        { attrs::TOOL_NAME } = tool,
        { attrs::TOOL_CALL_ID } = call_id,
        { attrs::CACHE } = CacheOutcome::ServedFromJournal.as_str(),
    );
}

/// Runs one call through its breaker and the executor.
pub(crate) async fn call_one(
    executor: Arc<Executor>,
    breaker: Option<Arc<Breaker>>,
    call: ToolCall,
    scope: Scope,
    run_id: String,
) -> ToolOutcome {
    if let Some(why) = &call.invalid_arguments {
        // The executor would refuse this input as `invalid_input`; the text
        // it would parse never reached us (see `ToolCall::invalid_arguments`).
        return refused("invalid_input", why);
    }
    let permit = match breaker.as_ref().map(|b| b.admit()) {
        Some(Err(rejected)) => {
            let message = format!("tool `{}` is unavailable: {rejected}", call.name);
            return refused("circuit_open", &message);
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let started = std::time::Instant::now();
    // The provider's own text where it sent one, so the executor's strict
    // parse sees what the model wrote (see `ToolCall::raw_arguments`).
    let input = call
        .raw_arguments
        .clone()
        .unwrap_or_else(|| call.arguments.to_string());
    let options = ExecOptions {
        scope,
        ..ExecOptions::default()
    };
    let result = executor
        .call_with_id(&call.name, &input, options, Some(&call.id))
        .await;
    let elapsed = started.elapsed().as_micros() as u64;
    match result {
        Ok(out) => {
            if let Some(p) = permit {
                // A replayed outcome says nothing about the tool's health now.
                p.settle(if out.cached {
                    Verdict::Neutral
                } else {
                    Verdict::Success
                });
            }
            ToolOutcome {
                content: out.output.to_string(),
                error_kind: None,
                key: Some(out.key),
                cached: out.cached,
                fuel: out.fuel_used,
                duration_us: if out.cached { elapsed } else { out.duration_us },
                stop: None,
            }
        }
        Err(e) => {
            let kind = e.kind();
            if let Some(p) = permit {
                p.settle(if is_health_failure(kind) {
                    Verdict::Failure(None)
                } else {
                    Verdict::Neutral
                });
            }
            let stop = match &e {
                ExecError::InDoubt { key, .. } => Some(format!(
                    "tool call `{}` (key {key}) is in doubt: it may or may not have taken effect. \
                     Resolve it with `toolhost cache resolve {key} --reconcile|--retry|--abandon|--mark-done OUTPUT`, then \
                     `toolhost agent resume {run_id}`",
                    call.name
                )),
                ExecError::Store(err) => Some(format!(
                    "the store failed during tool call `{}`: {err}; resume with `toolhost agent resume {run_id}`",
                    call.name
                )),
                _ => None,
            };
            let cached = matches!(e, ExecError::Call { cached: true, .. });
            ToolOutcome {
                content: error_result(kind, &e.to_string()),
                error_kind: Some(kind.to_string()),
                key: e.key().map(str::to_string),
                cached,
                fuel: 0,
                duration_us: elapsed,
                stop,
            }
        }
    }
}

impl Agent {
    /// The step's tool calls: from the journal where it has them, the rest
    /// live and in parallel, each journaled as it finishes. Returns the
    /// result parts in call order and the reasons to stop, if any.
    pub(super) async fn tool_phase(
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
                    journal_served_span(&row.name, &calls[i].id);
                    self.observer.event(&Event::ToolDone {
                        step,
                        index: i as u32,
                        tool: row.name.clone(),
                        error_kind: row.error_kind.clone(),
                        cached: row.cached,
                        from_journal: true,
                        duration_us: row.duration_us,
                    });
                    *slot = Some(ToolOutcome::from(row));
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
                // The task runs in this step's span: its `execute_tool`
                // span is the step's child.
                set.spawn(async move { (i, fut.await) }.in_current_span());
            }
            while let Some(joined) = set.join_next().await {
                let (i, outcome) = joined.map_err(|e| AgentError::Journal {
                    id: s.run.id.clone(),
                    step,
                    message: format!("a tool call task died: {e}"),
                })?;
                s.tool_calls += 1;
                let name = calls[i].name.clone();
                let row = tool_row(step, i as u32, &name, &outcome, &self.digests);
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
}

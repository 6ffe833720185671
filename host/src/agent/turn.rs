//! One model turn: served from the journal, or asked live of the chain
//! within the run's budgets and committed before its calls may start.
//!
//! Why a turn may be committed late: a turn that asks for calls with an
//! effect must be durable before any of them starts (a model asked again
//! after a crash may ask for different calls, and an effect must never be
//! orphaned from its step). A turn that asks only for pure calls, or
//! answers, is queued with the step's next awaited row instead: one fsync
//! per step, and a crash before it costs only this request, asked again.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::AgentError;
use super::event::{Event, TurnLive};
use super::record::model_row;
use super::run::Agent;
use super::session::{End, Session};
use crate::model::{ChatRequest, ChatResponse};
use crate::store::StepRecord;

impl Agent {
    /// Whether a call of `tool` can have no effect: only then may the turn
    /// that asked for it run ahead of its row's commit.
    pub(super) fn is_pure(&self, tool: &str) -> bool {
        let sandbox = self.executor.sandbox();
        let Some(t) = sandbox.tool(tool) else {
            // An unknown tool runs nothing.
            return true;
        };
        sandbox.effect(t) == crate::config::EffectName::Pure
    }

    pub(super) fn served_turn(
        &self,
        run_id: &str,
        row: &StepRecord,
    ) -> Result<ChatResponse, AgentError> {
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

    /// One model turn, live: `Err(end)` when the run stops here.
    pub(super) async fn live_turn(
        &self,
        s: &mut Session,
        step: u32,
        request: &ChatRequest,
    ) -> Result<Result<ChatResponse, End>, AgentError> {
        let raised =
            |signal: &Option<watch::Receiver<bool>>| signal.as_ref().is_some_and(|c| *c.borrow());
        let handing_back = raised(&self.hand_back);
        if let Some(end) = s.budget_stop(step, raised(&self.cancel) && !handing_back) {
            return Ok(Err(end));
        }
        if handing_back {
            return Ok(Err(End::handed_back()));
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
        let live: std::sync::Arc<dyn crate::model::LiveSink> = std::sync::Arc::new(TurnLive {
            observer: self.observer.clone(),
            step,
        });
        let (mut cancel, mut hand_back) = (self.cancel.clone(), self.hand_back.clone());
        let result = tokio::select! {
            r = tokio::time::timeout(remaining, self.chain.call_live(request, Some(live))) => r,
            _ = cancelled(&mut hand_back) => return Ok(Err(End::handed_back())),
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
        let served = result.as_ref().ok().map(|s| &s.response);
        let row = model_row(step, request, &result, opens, duration_us, &self.digests);
        let usage = row.tokens;
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
        // Durable before any call with an effect starts (see the module doc).
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

//! Replay: re-run a finished run from its journal alone, with no model call
//! and no tool call, reproduce its answer, and report each step whose
//! request would differ now.
//!
//! Why replay rebuilds the requests instead of just printing the journal:
//! the request a step would send today is built by today's code, config and
//! tools. Comparing its digest with the journaled one is how a deploy's
//! effect on old runs shows (a rebuilt tool, a changed config section, a
//! different tool list) before anyone resumes one of them.

use std::collections::HashMap;

use serde::Serialize;

use super::AgentError;
use super::digest::change_list;
use super::record::request_digest;
use super::run::Agent;
use crate::model::{ChatRequest, ChatResponse, Message, Part, Role};
use crate::store::{RunRecord, RunStatus, StepKind, StepRecord};

/// A step whose request or inputs differ from the journaled ones, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    pub step: u32,
    pub reasons: Vec<String>,
}

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub run_id: String,
    pub status: RunStatus,
    /// Model turns replayed.
    pub steps: u32,
    /// Tool results replayed.
    pub tool_results: u32,
    /// The answer the replay reached, and the one the run recorded.
    pub answer: Option<String>,
    pub recorded_answer: Option<String>,
    pub same_answer: bool,
    pub divergences: Vec<Divergence>,
}

fn unreadable(run: &RunRecord, step: u32, message: impl Into<String>) -> AgentError {
    AgentError::Journal {
        id: run.id.clone(),
        step,
        message: message.into(),
    }
}

impl Agent {
    /// Replays a finished run from the journal (see the module docs).
    pub async fn replay(&self, run_id: &str) -> Result<ReplayReport, AgentError> {
        let store = self.executor.store();
        let run = store
            .get_run(run_id)
            .await?
            .ok_or_else(|| AgentError::NoSuchRun(run_id.to_string()))?;
        if run.status.is_unfinished() {
            return Err(AgentError::NotFinished {
                id: run.id,
                status: run.status,
            });
        }
        let steps = store.steps(run_id).await?;
        // Config sections and tools named once per run, attached to the
        // steps whose recorded digests differ.
        let setup_changes = change_list(&run, &steps, &self.digests);
        let config_changes: Vec<String> = setup_changes
            .iter()
            .filter(|c| c.starts_with("config"))
            .cloned()
            .collect();
        let journal: HashMap<(u32, u32), StepRecord> = steps
            .into_iter()
            .filter(|s| s.is_final)
            .map(|s| ((s.step, s.part), s))
            .collect();
        let mut request = ChatRequest {
            system: Some(self.system.clone()),
            messages: vec![Message::user(run.task.clone())],
            tools: self.tools.specs.clone(),
            max_tokens: None,
        };
        let mut divergences = Vec::new();
        let (mut turns, mut tool_results) = (0u32, 0u32);
        let mut answer = None;
        let mut last_text = None;
        for step in 1u32.. {
            let Some(row) = journal.get(&(step, 0)) else {
                break;
            };
            let mut reasons = Vec::new();
            if row.config_digest != self.digests.config {
                if config_changes.is_empty() {
                    reasons.push("the config changed".to_string());
                }
                reasons.extend(config_changes.iter().cloned());
            }
            if row.tools_digest != self.digests.tools {
                reasons.push("the tool list offered to the model changed".to_string());
            }
            let response: ChatResponse = serde_json::from_str(&row.body)
                .map_err(|e| unreadable(&run, step, e.to_string()))?;
            turns += 1;
            request.messages.push(Message::assistant(&response));
            if !response.text.trim().is_empty() {
                last_text = Some(response.text.clone());
            }
            let mut parts = Vec::new();
            for (i, call) in response.tool_calls.iter().enumerate() {
                let Some(t) = journal.get(&(step, i as u32 + 1)) else {
                    // The run stopped inside this step (in doubt, a crash
                    // before a failure was recorded): nothing more to replay.
                    if run.status == RunStatus::Completed {
                        return Err(unreadable(
                            &run,
                            step,
                            format!("tool result {i} is missing"),
                        ));
                    }
                    break;
                };
                debug_assert_eq!(t.kind, StepKind::Tool);
                tool_results += 1;
                match (self.digests.per_tool.get(&t.name), &t.tool_digest) {
                    (None, Some(_)) => {
                        reasons.push(format!("tool `{}` is no longer loaded", t.name))
                    }
                    (Some((now, policy)), Some(was)) => {
                        if now != was {
                            reasons.push(format!("tool `{}` was rebuilt", t.name));
                        }
                        if t.policy_digest.as_ref().is_some_and(|p| p != policy) {
                            reasons.push(format!("tool `{}`'s policy changed", t.name));
                        }
                    }
                    _ => {}
                }
                parts.push(Part::ToolResult {
                    call_id: call.id.clone(),
                    content: t.body.clone(),
                    is_error: t.error_kind.is_some(),
                });
            }
            // The request this step sent is built before its response.
            let mut sent = request.clone();
            sent.messages.pop();
            if row.request_digest.as_deref() != Some(request_digest(&sent).as_str())
                && reasons.is_empty()
            {
                reasons.push("the request differs (system prompt or conversation)".to_string());
            }
            if !reasons.is_empty() {
                reasons.dedup();
                divergences.push(Divergence { step, reasons });
            }
            if response.tool_calls.is_empty() {
                answer = Some(response.text.clone());
                break;
            }
            request.messages.push(Message {
                role: Role::User,
                parts,
            });
        }
        let answer = answer.or(last_text);
        Ok(ReplayReport {
            run_id: run.id.clone(),
            status: run.status,
            steps: turns,
            tool_results,
            same_answer: answer == run.answer,
            answer,
            recorded_answer: run.answer,
            divergences,
        })
    }
}

//! The journal rows the loop writes: one per model turn, one per tool call.
//!
//! Why one constructor per kind: a row carries the setup it ran under (the
//! config, chain and tools digests) and what a resume needs to serve it
//! again (the body, its digest, the outcome), so every field must be filled
//! the same way on every path. The rows are built here, once, from what the
//! loop has in hand; the loop only decides when to commit them.

use super::digest::{Digests, hex};
use super::tools::ToolOutcome;
use crate::clock::unix_ms;
use crate::model::ChatRequest;
use crate::resilience::{Served, Unserved};
use crate::store::{StepKind, StepRecord, blob_digest};

/// The digest a model turn's request is journaled under.
pub(crate) fn request_digest(request: &ChatRequest) -> String {
    hex(&serde_json::to_vec(request).unwrap_or_default())
}

/// A row of `kind` with `body`, under the current setup, with no outcome
/// counted yet.
fn row(
    step: u32,
    part: u32,
    kind: StepKind,
    name: String,
    body: String,
    digests: &Digests,
) -> StepRecord {
    StepRecord {
        step,
        part,
        kind,
        is_final: true,
        name,
        request_digest: None,
        body_digest: blob_digest(&body),
        body,
        ok: true,
        error_kind: None,
        cached: false,
        attempts: 1,
        retries: 0,
        fallbacks: 0,
        breaker_opens: 0,
        tokens: 0,
        fuel: 0,
        duration_us: 0,
        report: None,
        tool_digest: None,
        policy_digest: None,
        config_digest: digests.config.clone(),
        chain_digest: digests.chain.clone(),
        tools_digest: digests.tools.clone(),
        created_at: unix_ms(),
    }
}

/// The row of model turn `step` (part 0): the response when a model
/// answered (final: a resume serves it), else the error (not final: a
/// resume asks again).
pub(super) fn model_row(
    step: u32,
    request: &ChatRequest,
    result: &Result<Served, Unserved>,
    breaker_opens: u32,
    duration_us: u64,
    digests: &Digests,
) -> StepRecord {
    let (report, body, tokens) = match result {
        Ok(served) => {
            let r = &served.response;
            let body = serde_json::to_string(r).unwrap_or_default();
            (
                &served.report,
                body,
                r.usage.input_tokens + r.usage.output_tokens,
            )
        }
        Err(unserved) => (&unserved.report, unserved.error.to_string(), 0),
    };
    let name = report
        .served_by
        .clone()
        .or_else(|| report.attempts.last().map(|a| a.model.clone()))
        .unwrap_or_else(|| "none".into());
    StepRecord {
        is_final: result.is_ok(),
        request_digest: Some(request_digest(request)),
        ok: result.is_ok(),
        error_kind: result.as_ref().err().map(|u| u.error.kind.to_string()),
        attempts: report.attempts.len() as u32,
        retries: report.retries.len() as u32,
        fallbacks: report.fallbacks.len() as u32,
        breaker_opens,
        tokens,
        duration_us,
        report: serde_json::to_string(report).ok(),
        ..row(step, 0, StepKind::Model, name, body, digests)
    }
}

/// The row of tool call `index` of `step` (part `index + 1`): final unless
/// the outcome stops the run (in doubt, store failure), which a resume must
/// ask the executor about again.
pub(super) fn tool_row(
    step: u32,
    index: u32,
    name: &str,
    outcome: &ToolOutcome,
    digests: &Digests,
) -> StepRecord {
    let per_tool = digests.per_tool.get(name);
    StepRecord {
        is_final: outcome.stop.is_none(),
        request_digest: outcome.key.clone(),
        ok: outcome.error_kind.is_none(),
        error_kind: outcome.error_kind.clone(),
        cached: outcome.cached,
        fuel: outcome.fuel,
        duration_us: outcome.duration_us,
        tool_digest: per_tool.map(|d| d.0.clone()),
        policy_digest: per_tool.map(|d| d.1.clone()),
        ..row(
            step,
            index + 1,
            StepKind::Tool,
            name.to_string(),
            outcome.content.clone(),
            digests,
        )
    }
}

/// A journaled tool call, as the model is given it again on resume.
impl From<&StepRecord> for ToolOutcome {
    fn from(row: &StepRecord) -> Self {
        ToolOutcome {
            content: row.body.clone(),
            error_kind: row.error_kind.clone(),
            key: row.request_digest.clone(),
            cached: row.cached,
            fuel: row.fuel,
            duration_us: row.duration_us,
            stop: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Attempt, ChatResponse, ErrorKind, ModelError, Report, StopReason, Usage};

    fn digests() -> Digests {
        Digests {
            config: "cfg".into(),
            config_parts: BTreeMap::new(),
            chain: "chain".into(),
            tools: "tools".into(),
            per_tool: BTreeMap::from([("echo".to_string(), ("comp".into(), "pol".into()))]),
        }
    }

    fn report(model: &str) -> Report {
        Report {
            served_by: None,
            attempts: vec![Attempt {
                model: model.into(),
                n: 1,
                error: None,
                status: None,
                elapsed_ms: 3,
                first_token_ms: None,
                tokens_discarded: 0,
            }],
            ..Report::default()
        }
    }

    fn request() -> ChatRequest {
        ChatRequest {
            system: None,
            messages: Vec::new(),
            tools: Vec::new(),
            max_tokens: None,
        }
    }

    #[test]
    fn a_served_turn_is_final_and_counts_its_tokens() {
        let response = ChatResponse {
            text: "hi".into(),
            tool_calls: Vec::new(),
            stop: StopReason::EndTurn,
            usage: Usage {
                input_tokens: 5,
                output_tokens: 7,
            },
            model: "m".into(),
        };
        let mut report = report("a");
        report.served_by = Some("a".into());
        let served = Ok(Served {
            response: response.clone(),
            report,
        });
        let row = model_row(2, &request(), &served, 1, 40, &digests());
        assert_eq!((row.step, row.part, row.kind), (2, 0, StepKind::Model));
        assert!(row.is_final && row.ok && row.error_kind.is_none());
        assert_eq!((row.name.as_str(), row.tokens, row.attempts), ("a", 12, 1));
        assert_eq!((row.breaker_opens, row.duration_us), (1, 40));
        let back: ChatResponse = serde_json::from_str(&row.body).unwrap();
        assert_eq!(back, response);
        assert_eq!(row.body_digest, blob_digest(&row.body));
        assert_eq!(row.request_digest, Some(request_digest(&request())));
        assert_eq!(
            (row.config_digest.as_str(), row.chain_digest.as_str()),
            ("cfg", "chain")
        );
        assert!(row.tool_digest.is_none() && row.report.is_some());
    }

    #[test]
    fn an_unserved_turn_is_not_final_and_names_the_last_model_tried() {
        let unserved = Err(Unserved {
            error: ModelError::new(ErrorKind::AllModelsUnavailable, "down"),
            report: report("b"),
        });
        let row = model_row(1, &request(), &unserved, 0, 9, &digests());
        assert!(!row.is_final && !row.ok);
        assert_eq!(row.name, "b");
        assert_eq!(row.tokens, 0);
        assert_eq!(
            row.error_kind.as_deref(),
            Some(ErrorKind::AllModelsUnavailable.to_string().as_str())
        );
        assert!(row.body.contains("down"));
    }

    fn outcome(stop: Option<&str>) -> ToolOutcome {
        ToolOutcome {
            content: "{\"ok\":1}".into(),
            error_kind: None,
            key: Some("k1".into()),
            cached: true,
            fuel: 77,
            duration_us: 12,
            stop: stop.map(str::to_string),
        }
    }

    #[test]
    fn a_tool_row_carries_the_outcome_and_the_tools_digests() {
        let row = tool_row(3, 1, "echo", &outcome(None), &digests());
        assert_eq!((row.step, row.part, row.kind), (3, 2, StepKind::Tool));
        assert!(row.is_final && row.ok && row.cached);
        assert_eq!((row.fuel, row.duration_us, row.attempts), (77, 12, 1));
        assert_eq!(row.request_digest.as_deref(), Some("k1"));
        assert_eq!(row.tool_digest.as_deref(), Some("comp"));
        assert_eq!(row.policy_digest.as_deref(), Some("pol"));
        assert_eq!(row.tools_digest, "tools");
        let unknown = tool_row(3, 0, "nope", &outcome(None), &digests());
        assert!(unknown.tool_digest.is_none() && unknown.policy_digest.is_none());
    }

    #[test]
    fn a_stopping_outcome_is_not_final_so_a_resume_asks_again() {
        let row = tool_row(1, 0, "echo", &outcome(Some("in doubt")), &digests());
        assert!(!row.is_final);
    }

    #[test]
    fn a_journaled_row_gives_back_the_outcome_it_was_made_from() {
        let mut sent = outcome(None);
        sent.error_kind = Some("tool_failed".into());
        let row = tool_row(1, 0, "echo", &sent, &digests());
        let back = ToolOutcome::from(&row);
        assert_eq!(back.content, sent.content);
        assert_eq!(back.error_kind, sent.error_kind);
        assert_eq!(back.key, sent.key);
        assert_eq!((back.cached, back.fuel, back.duration_us), (true, 77, 12));
        assert!(back.stop.is_none());
    }
}

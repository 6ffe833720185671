//! Progress of a run as it happens, for the CLI's live timeline, the JSON
//! lines of `agent run --events` (and any embedder). The loop calls an
//! [`Observer`]; it never waits on one.
//!
//! A streamed turn adds `text_delta` events as its text arrives; an attempt
//! that breaks after some of it came is followed by `retracted` (its text
//! is no part of the turn: the turn commits only when a stream completes),
//! and the retry or fallback that follows shows as `retry` or `fallback`.

use serde::Serialize;

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run starts (or resumes, with the steps its journal holds).
    Started {
        run_id: String,
        resumed: bool,
        journaled_steps: u32,
    },
    /// A model request is in flight.
    ModelCalling { step: u32 },
    /// A model turn is done (live or from the journal).
    ModelDone {
        step: u32,
        served_by: String,
        attempts: u32,
        retries: u32,
        fallbacks: u32,
        duration_ms: u64,
        from_journal: bool,
        tool_calls: usize,
    },
    /// No model could answer.
    ModelFailed {
        step: u32,
        kind: String,
        message: String,
    },
    /// More of the model's answer, as it streams (live turns only).
    TextDelta { step: u32, text: String },
    /// The streaming answer names a tool call (its arguments follow).
    ToolCall { step: u32, id: String, name: String },
    /// A streamed attempt broke after showing output: what it showed since
    /// its attempt began is void, and `tokens_discarded` were thrown away.
    Retracted {
        step: u32,
        model: String,
        kind: String,
        tokens_discarded: u64,
    },
    /// Another attempt on the same model follows, after `delay_ms`.
    Retry {
        step: u32,
        model: String,
        after_attempt: u32,
        reason: String,
        delay_ms: u64,
    },
    /// The turn moves down the fallback chain.
    Fallback {
        step: u32,
        from: String,
        to: String,
        reason: String,
    },
    /// Tool calls are in flight.
    ToolsCalling { step: u32, tools: Vec<String> },
    /// One tool call is done (live or from the journal).
    ToolDone {
        step: u32,
        index: u32,
        tool: String,
        error_kind: Option<String>,
        cached: bool,
        from_journal: bool,
        duration_us: u64,
    },
    /// The run stops (this session of it).
    Finished {
        run_id: String,
        status: String,
        reason: Option<String>,
        steps: u32,
        tokens: u64,
    },
}

/// Receives a run's events. Must not block: it runs on the loop's task.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
}

/// A live turn's model events as run events of `step`.
pub(super) struct TurnLive {
    pub observer: std::sync::Arc<dyn Observer>,
    pub step: u32,
}

impl crate::model::LiveSink for TurnLive {
    fn live(&self, event: &crate::model::Live<'_>) {
        use crate::model::Live;
        let step = self.step;
        let e = match *event {
            Live::Attempt { .. } => return,
            Live::Text(text) => Event::TextDelta {
                step,
                text: text.to_string(),
            },
            Live::ToolCall { id, name } => Event::ToolCall {
                step,
                id: id.to_string(),
                name: name.to_string(),
            },
            Live::Retracted {
                model,
                kind,
                tokens,
            } => Event::Retracted {
                step,
                model: model.to_string(),
                kind: kind.to_string(),
                tokens_discarded: tokens,
            },
            Live::Retry {
                model,
                after_attempt,
                reason,
                delay_ms,
            } => Event::Retry {
                step,
                model: model.to_string(),
                after_attempt,
                reason: reason.to_string(),
                delay_ms,
            },
            Live::Fallback { from, to, reason } => Event::Fallback {
                step,
                from: from.to_string(),
                to: to.to_string(),
                reason: reason.to_string(),
            },
        };
        self.observer.event(&e);
    }
}

/// Ignores every event.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: &Event) {}
}

//! Progress of a run as it happens, for the CLI's live timeline (and any
//! embedder). The loop calls an [`Observer`]; it never waits on one.

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
}

/// Receives a run's events. Must not block: it runs on the loop's task.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
}

/// Ignores every event.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: &Event) {}
}

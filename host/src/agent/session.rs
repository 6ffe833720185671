//! One session of a run: what it has served and spent, and where it stops.
//!
//! Why budgets are checked here and only before a live step: a step served
//! from the journal costs nothing again, so the counts continue from the
//! journal (steps) and the record (time spent in earlier sessions), and only
//! the next live step can spend more.

use std::collections::HashMap;
use std::time::Instant;

use crate::store::{RunRecord, RunStatus, StepKind, StepRecord};

/// Where the loop stopped.
pub(super) struct End {
    pub status: RunStatus,
    pub reason: Option<String>,
    pub answer: Option<String>,
}

impl End {
    pub fn partial(reason: String) -> Self {
        End {
            status: RunStatus::Partial,
            reason: Some(reason),
            answer: None,
        }
    }

    /// Stopped for a server that is shutting down: the run stays `running`
    /// with no owner (so it reads `interrupted`), and the next server adopts
    /// it.
    pub fn handed_back() -> Self {
        End {
            status: RunStatus::Running,
            reason: None,
            answer: None,
        }
    }

    pub fn failed(reason: String) -> Self {
        End {
            status: RunStatus::Failed,
            reason: Some(reason),
            answer: None,
        }
    }
}

/// This session's bookkeeping.
pub(super) struct Session {
    pub run: RunRecord,
    pub journal: HashMap<(u32, u32), StepRecord>,
    pub started: Instant,
    pub tokens: u64,
    pub last_text: Option<String>,
    pub resumed: u32,
    /// Model turns served so far (journal or live).
    pub turns: u32,
    pub model_requests: u32,
    pub tool_calls: u32,
    pub changes: Vec<String>,
}

impl Session {
    /// A session of `run` over its journaled `steps` (only the final rows
    /// are served), starting now.
    pub fn new(run: RunRecord, steps: Vec<StepRecord>, changes: Vec<String>) -> Self {
        let journal = steps
            .into_iter()
            .filter(|s| s.is_final)
            .map(|s| ((s.step, s.part), s))
            .collect();
        Session {
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
        }
    }

    /// The model turns the journal can serve.
    pub fn journaled_turns(&self) -> u32 {
        self.journal
            .values()
            .filter(|s| s.kind == StepKind::Model)
            .count() as u32
    }

    /// Live time over every session.
    pub fn spent_ms(&self) -> u64 {
        self.run.spent_ms + self.started.elapsed().as_millis() as u64
    }

    /// Why the run may not take live step `step`, if it may not;
    /// `interrupted` says the operator asked it to stop.
    pub fn budget_stop(&self, step: u32, interrupted: bool) -> Option<End> {
        let done = step - 1;
        if step > self.run.max_steps {
            return Some(End::partial(format!(
                "max_steps ({}) reached after {done} steps",
                self.run.max_steps
            )));
        }
        if self.spent_ms() >= self.run.time_budget_ms {
            return Some(End::partial(format!(
                "time budget ({} ms) spent after {done} steps",
                self.run.time_budget_ms
            )));
        }
        if let Some(limit) = self.run.token_budget
            && self.tokens >= limit
        {
            return Some(End::partial(format!(
                "token budget ({limit}) spent after {done} steps ({} tokens)",
                self.tokens
            )));
        }
        if interrupted {
            return Some(End::partial(format!(
                "interrupted after {done} steps; resume with `toolhost agent resume {}`",
                self.run.id
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run(max_steps: u32, time_budget_ms: u64, token_budget: Option<u64>) -> RunRecord {
        RunRecord {
            id: "run-1".into(),
            task: "t".into(),
            status: RunStatus::Running,
            config_digest: String::new(),
            config_parts: BTreeMap::new(),
            chain: Vec::new(),
            chain_digest: String::new(),
            tools_digest: String::new(),
            max_steps,
            time_budget_ms,
            token_budget,
            spent_ms: 0,
            owner: None,
            reason: None,
            answer: None,
            sessions: 1,
            steps_resumed: 0,
            created_at: 0,
            updated_at: 0,
            finished_at: None,
        }
    }

    fn reason(end: Option<End>) -> String {
        let end = end.expect("a stop");
        assert_eq!(end.status, RunStatus::Partial);
        end.reason.unwrap()
    }

    #[test]
    fn within_every_budget_the_run_goes_on() {
        let s = Session::new(run(3, 60_000, Some(100)), Vec::new(), Vec::new());
        assert!(s.budget_stop(3, false).is_none());
    }

    #[test]
    fn the_step_after_the_last_allowed_stops() {
        let s = Session::new(run(3, 60_000, None), Vec::new(), Vec::new());
        assert_eq!(
            reason(s.budget_stop(4, false)),
            "max_steps (3) reached after 3 steps"
        );
    }

    #[test]
    fn time_spent_in_earlier_sessions_counts() {
        let mut r = run(10, 5_000, None);
        r.spent_ms = 5_000;
        let s = Session::new(r, Vec::new(), Vec::new());
        assert_eq!(
            reason(s.budget_stop(2, false)),
            "time budget (5000 ms) spent after 1 steps"
        );
    }

    #[test]
    fn spent_tokens_stop_the_run() {
        let mut s = Session::new(run(10, 60_000, Some(100)), Vec::new(), Vec::new());
        s.tokens = 100;
        assert_eq!(
            reason(s.budget_stop(2, false)),
            "token budget (100) spent after 1 steps (100 tokens)"
        );
    }

    #[test]
    fn an_interrupt_stops_the_run_resumably() {
        let s = Session::new(run(10, 60_000, None), Vec::new(), Vec::new());
        assert!(reason(s.budget_stop(1, true)).contains("toolhost agent resume run-1"));
    }
}

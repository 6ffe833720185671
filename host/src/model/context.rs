//! The state one request carries through the wrappers: its budget deadline
//! (shared by every attempt and fallback, so no layer can overspend it) and
//! the [`Report`] they append to; and, for a streamed attempt, the marks
//! its deadlines read and the live viewer it shows its text to.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::ErrorKind;
use super::live::{Live, LiveSink, Marks, StreamState};
use super::report::{Attempt, FellBack, Report, Retried};
use crate::clock::{Clock, TokioClock};

/// One request's budget and accounting.
pub struct CallContext {
    clock: Arc<dyn Clock>,
    started: Duration,
    deadline: Duration,
    report: Mutex<Report>,
    stream: StreamState,
    live: Option<Arc<dyn LiveSink>>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("started", &self.started)
            .field("deadline", &self.deadline)
            .field("live", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl CallContext {
    /// A request that may spend `budget` by `clock`.
    pub fn new(clock: Arc<dyn Clock>, budget: Duration) -> Self {
        let started = clock.now();
        CallContext {
            clock,
            started,
            deadline: started.saturating_add(budget),
            report: Mutex::default(),
            stream: StreamState::default(),
            live: None,
        }
    }

    /// This request, showing what it receives to `sink` as it arrives.
    pub fn with_live(mut self, sink: Arc<dyn LiveSink>) -> Self {
        self.live = Some(sink);
        self
    }

    fn show(&self, event: &Live<'_>) {
        if let Some(sink) = &self.live {
            sink.live(event);
        }
    }

    /// An attempt starts: its stream marks are reset.
    pub(crate) fn begin_attempt(&self, model: &str, n: u32) {
        self.stream.begin();
        self.show(&Live::Attempt { model, n });
    }

    /// The attempt ended (`error` when it failed): its marks, and a
    /// retraction shown if it failed after showing output.
    pub(crate) fn end_attempt(&self, model: &str, error: Option<ErrorKind>) -> Marks {
        let marks = self.stream.end();
        if let Some(kind) = error
            && marks.shown
        {
            self.show(&Live::Retracted {
                model,
                kind,
                tokens: marks.tokens(),
            });
        }
        marks
    }

    /// The attempt in flight, so far.
    pub(crate) fn marks(&self) -> Marks {
        self.stream.marks()
    }

    /// A streamed event arrived; `content` when it carries text or a tool
    /// call (the first such is the attempt's first token).
    pub(crate) fn stream_event(&self, content: bool) {
        let now = tokio::time::Instant::now();
        self.stream.update(|m| {
            m.last_event = Some(now);
            if content && m.first_token.is_none() {
                m.first_token = Some(now);
            }
        });
    }

    /// Text of the answer arrived (counted, not yet shown).
    pub(crate) fn stream_received(&self, text: &str) {
        self.stream
            .update(|m| m.chars += text.chars().count() as u64);
    }

    /// Text may be shown (it is scrubbed of the key).
    pub(crate) fn stream_text(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.stream.update(|m| m.shown = true);
        self.show(&Live::Text(text));
    }

    /// A tool call began.
    pub(crate) fn stream_tool_call(&self, id: &str, name: &str) {
        self.stream.update(|m| {
            m.chars += name.chars().count() as u64;
            m.shown = true;
        });
        self.show(&Live::ToolCall { id, name });
    }

    /// A fragment of a tool call's arguments arrived (not shown).
    pub(crate) fn stream_arguments(&self, fragment: &str) {
        self.stream
            .update(|m| m.chars += fragment.chars().count() as u64);
    }

    /// The provider reported `output_tokens` so far.
    pub(crate) fn stream_usage(&self, output_tokens: u64) {
        self.stream
            .update(|m| m.reported_tokens = Some(output_tokens));
    }

    /// No budget: for calling a provider directly.
    pub fn unbounded() -> Self {
        CallContext::new(Arc::new(TokioClock::default()), Duration::MAX)
    }

    /// Budget left.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.clock.now())
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.clock.now().saturating_sub(self.started)
    }

    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    pub(crate) fn attempt(&self, a: Attempt) {
        self.lock().attempts.push(a);
    }

    pub(crate) fn retried(&self, r: Retried) {
        self.show(&Live::Retry {
            model: &r.model,
            after_attempt: r.after_attempt,
            reason: r.reason,
            delay_ms: r.delay_ms,
        });
        self.lock().retries.push(r);
    }

    pub(crate) fn fell_back(&self, f: FellBack) {
        self.show(&Live::Fallback {
            from: &f.from,
            to: &f.to,
            reason: f.reason,
        });
        self.lock().fallbacks.push(f);
    }

    pub(crate) fn served_by(&self, model: &str) {
        self.lock().served_by = Some(model.to_string());
    }

    /// The report so far.
    pub fn report(&self) -> Report {
        let mut r = self.lock().clone();
        r.elapsed_ms = super::report::ms(self.elapsed());
        r
    }

    fn lock(&self) -> MutexGuard<'_, Report> {
        // Appending to a Vec cannot leave it half-written; a poisoned lock is
        // still a consistent report.
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

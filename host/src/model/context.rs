//! The state one request carries through the wrappers: its budget deadline
//! (shared by every attempt and fallback, so no layer can overspend it) and
//! the [`Report`] they append to.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::report::{Attempt, FellBack, Report, Retried};
use crate::clock::{Clock, TokioClock};

/// One request's budget and accounting.
#[derive(Debug)]
pub struct CallContext {
    clock: Arc<dyn Clock>,
    started: Duration,
    deadline: Duration,
    report: Mutex<Report>,
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
        }
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
        self.lock().retries.push(r);
    }

    pub(crate) fn fell_back(&self, f: FellBack) {
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

//! What [`Breaker::admit`] answers: a [`Permit`] to make one call, settled
//! with its outcome, or [`Rejected`] (`circuit_open`) without any I/O.

use std::sync::Arc;
use std::time::Duration;

use super::{Breaker, Verdict};
use crate::model::report::ms;
use crate::model::{ErrorKind, ModelError};

/// A call the breaker turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Rejected {
    /// The breaker's dependency.
    pub name: String,
    /// Until a probe is admitted; `None` while a half-open probe is in flight.
    pub retry_after: Option<Duration>,
}

impl Rejected {
    fn describe(&self) -> String {
        match self.retry_after {
            Some(wait) => format!(
                "the circuit breaker of `{}` is open for {} ms more",
                self.name,
                ms(wait)
            ),
            None => format!(
                "the circuit breaker of `{}` is half-open and its probe is in flight",
                self.name
            ),
        }
    }
}

impl From<Rejected> for ModelError {
    fn from(r: Rejected) -> ModelError {
        ModelError::new(ErrorKind::CircuitOpen, r.to_string()).with_retry_after(r.retry_after)
    }
}

/// Leave to make one call. Settle it with the outcome; dropped unsettled
/// (the call was cancelled), it frees its probe slot and says nothing.
#[derive(Debug)]
pub struct Permit {
    pub(super) breaker: Arc<Breaker>,
    pub(super) probe: bool,
    pub(super) settled: bool,
}

impl Permit {
    pub fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.breaker.settle(self.probe, verdict);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.probe, Verdict::Neutral);
        }
    }
}

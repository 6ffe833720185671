//! When a breaker opens and for how long ([`BreakerPolicy`]), and what one
//! outcome tells it ([`Verdict`]): only health failures count against a
//! dependency; `rate_limited` is quota; caller errors say nothing.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::BreakerConfig;
use crate::model::{ErrorKind, ModelError};

/// When a breaker opens and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    pub failure_rate: f64,
    pub window: usize,
    pub min_calls: usize,
    pub consecutive_failures: u32,
    pub open: Duration,
    pub max_open: Duration,
    pub half_open_probes: u32,
}

impl BreakerPolicy {
    pub fn from_config(c: &BreakerConfig) -> Self {
        BreakerPolicy {
            failure_rate: c.failure_rate,
            window: c.window as usize,
            min_calls: c.min_calls as usize,
            consecutive_failures: c.consecutive_failures,
            open: Duration::from_millis(c.open_ms),
            max_open: Duration::from_millis(c.max_open_ms),
            half_open_probes: c.half_open_probes,
        }
    }

    /// How long to stay open after `reopens` failed recoveries.
    pub fn open_for(&self, reopens: u32, retry_after: Option<Duration>) -> Duration {
        let grown = self
            .open
            .saturating_mul(2u32.saturating_pow(reopens.min(31)))
            .min(self.max_open);
        grown.max(retry_after.unwrap_or_default().min(self.max_open))
    }

    pub(super) fn trips(&self, window: &VecDeque<bool>, consecutive: u32) -> bool {
        let failures = window.iter().filter(|ok| !**ok).count();
        consecutive >= self.consecutive_failures
            || window.len() >= self.min_calls.max(1)
                && failures as f64 >= self.failure_rate * window.len() as f64
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy::from_config(&BreakerConfig::default())
    }
}

/// What one outcome tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Success,
    /// A health failure, with the provider's `Retry-After` if any.
    Failure(Option<Duration>),
    /// `rate_limited`: up, but out of quota.
    Quota,
    /// Says nothing about health (caller errors, cancelled calls).
    Neutral,
}

impl Verdict {
    pub fn of<T>(result: &Result<T, ModelError>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(e) if e.kind.is_health_failure() => Verdict::Failure(e.retry_after),
            Err(e) if e.kind == ErrorKind::RateLimited => Verdict::Quota,
            Err(_) => Verdict::Neutral,
        }
    }
}

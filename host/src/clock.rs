//! Time, injected. Backoff sleeps, budgets and breaker open times read a
//! [`Clock`], so tests run them on a [`ManualClock`] (sleeps return at once
//! and advance virtual time) and assert exact milliseconds, while production
//! uses [`TokioClock`] (which `tokio::time::pause` also controls).
//!
//! Per-attempt deadlines are the one exception: they race a live network
//! call, so they use the runtime's timer (see `timeout.rs`).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::BoxFuture;

/// A monotonic clock that can sleep.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time since the clock's origin.
    fn now(&self) -> Duration;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The runtime's clock: `tokio::time`, pausable in tests.
#[derive(Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Virtual time: `now` moves only by [`ManualClock::advance`] and by sleeps,
/// which complete at once. Every sleep is recorded.
#[derive(Debug, Default)]
pub struct ManualClock {
    state: Mutex<(Duration, Vec<Duration>)>,
}

impl ManualClock {
    pub fn new() -> Self {
        ManualClock::default()
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.lock().0 += d;
    }

    /// The sleeps taken so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().1.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Duration, Vec<Duration>)> {
        // A panic while holding this lock cannot leave the pair inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.lock().0
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let mut s = self.lock();
        s.0 += d;
        s.1.push(d);
        Box::pin(tokio::task::yield_now())
    }
}

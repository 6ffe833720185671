//! Time, injected: one [`Clock`] for wall time (expiry and TTL decisions,
//! in Unix ms), monotonic time (budgets, breaker open times) and sleeps
//! (backoff). Production uses [`TokioClock`] (which `tokio::time::pause`
//! also controls); tests use one [`ManualClock`], whose sleeps return at
//! once and advance virtual time, so they assert exact milliseconds.
//!
//! Per-attempt deadlines are the one exception: they race a live network
//! call, so they use the runtime's timer (see `resilience/timeout.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A boxed, sendable future: what [`Clock::sleep`] and
/// [`Model::chat`](crate::model::Model::chat) return, so clocks and models
/// can be trait objects and wrappers can nest.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Wall-clock now, in Unix ms (0 if the system clock is before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A clock: wall time, monotonic time, and sleeps.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time since the clock's origin.
    fn now(&self) -> Duration;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    /// Wall time, in Unix ms.
    fn now_ms(&self) -> i64;
}

/// The runtime's clock: `tokio::time`, pausable in tests; wall time from
/// the system clock.
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

    fn now_ms(&self) -> i64 {
        unix_ms()
    }
}

/// Virtual time: it moves only by [`ManualClock::advance`] and by sleeps,
/// which complete at once, and it moves wall and monotonic time alike.
/// Every sleep is recorded. Clones share one time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    state: Arc<Mutex<Manual>>,
}

#[derive(Debug, Default)]
struct Manual {
    /// Monotonic time since the start.
    now: Duration,
    /// Wall time at the start, Unix ms.
    wall_origin_ms: i64,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    /// Starts at monotonic zero and wall time 0 (the Unix epoch).
    pub fn new() -> Self {
        ManualClock::default()
    }

    /// Starts at wall time `wall_ms` (Unix ms).
    pub fn at(wall_ms: i64) -> Self {
        let clock = ManualClock::default();
        clock.lock().wall_origin_ms = wall_ms;
        clock
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.lock().now += d;
    }

    /// The sleeps taken so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Manual> {
        // A panic while holding this lock cannot leave the state inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.lock().now
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let mut s = self.lock();
        s.now += d;
        s.sleeps.push(d);
        Box::pin(tokio::task::yield_now())
    }

    fn now_ms(&self) -> i64 {
        let s = self.lock();
        s.wall_origin_ms + s.now.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_wall_and_monotonic_time_together() {
        let clock = ManualClock::at(1_000);
        let shared = clock.clone();
        shared.advance(Duration::from_millis(250));
        clock.sleep(Duration::from_millis(50)).await;
        assert_eq!(clock.now(), Duration::from_millis(300));
        assert_eq!(clock.now_ms(), 1_300);
        assert_eq!(shared.sleeps(), vec![Duration::from_millis(50)]);
        assert_eq!(ManualClock::new().now_ms(), 0);
    }
}

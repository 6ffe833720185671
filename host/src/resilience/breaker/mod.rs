//! Circuit breakers: stop calling a dependency that is failing, so requests
//! fall back at once instead of spending their budget on timeouts, and the
//! dependency gets room to recover.
//!
//! The [`BreakerPolicy`] is the thresholds (`policy.rs`, with the
//! [`Verdict`] an outcome gives); a [`Breaker`] is one dependency's state
//! (shared by every request, here); [`CircuitBreaker`] wraps a model and
//! asks its breaker before each attempt (`layer.rs`). States:
//!
//! - closed: calls pass; the last `window` health verdicts are kept. It opens
//!   at >= `failure_rate` failures (with at least `min_calls` calls) or at
//!   `consecutive_failures` in a row.
//! - open: calls fail with `circuit_open` without touching the network, for
//!   `open` (x2 per re-open without a recovery in between, up to `max_open`;
//!   longer if the failure carried `Retry-After`).
//! - half-open: after the open time, `half_open_probes` calls are let
//!   through; all succeeding closes it, one failing re-opens it.
//!
//! Only health failures count (`overloaded`, `server_error`, `timeout`,
//! `connection`). `rate_limited` means the dependency is up and our quota is
//! spent: it is counted as quota, not health. Caller errors are not counted
//! at all: a bad request must not take a healthy model out of the chain.

mod layer;
mod permit;
mod policy;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::model::report::ms;

pub use layer::CircuitBreaker;
pub use permit::{Permit, Rejected};
pub use policy::{BreakerPolicy, Verdict};

/// A breaker's state, as `model list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A snapshot of one breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub state: State,
    /// Until a probe is admitted, when open.
    pub open_remaining_ms: Option<u64>,
    pub window_calls: usize,
    pub window_failures: usize,
    pub consecutive_failures: u32,
    /// Times it opened, ever.
    pub opens: u64,
    /// `rate_limited` answers seen, ever.
    pub quota_hits: u64,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Duration },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    window: VecDeque<bool>,
    consecutive: u32,
    /// Opens since the last recovery; grows the open time.
    reopens: u32,
    opens: u64,
    quota_hits: u64,
    /// Wall-clock ms of the last change this breaker made or adopted.
    updated_ms: i64,
}

/// A breaker's state in a form another process can adopt: wall-clock
/// times instead of the monotonic clock's. What `store::breakers` keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    pub state: State,
    /// Unix ms until which an open breaker rejects calls.
    pub open_until_ms: Option<i64>,
    pub reopens: u32,
    pub opens: u64,
    pub quota_hits: u64,
    pub consecutive_failures: u32,
    /// The health window, oldest first (`true`: a success).
    pub window: Vec<bool>,
    /// Unix ms of the change; the newest state wins.
    pub updated_ms: i64,
}

/// The state a breaker is in at `now`, and the ms left while open: an open
/// breaker whose time is up admits a probe, so it reads `half_open` at once,
/// whether or not any process has asked it since. The one rule behind
/// `model list` ([`Breaker::status`], on the monotonic clock) and every
/// reader of persisted states (`/metrics`, `stats`: [`Shared::status_at`],
/// on wall-clock ms), so they cannot disagree.
pub fn state_at(state: State, open_until: Option<i64>, now: i64) -> (State, Option<u64>) {
    match (state, open_until) {
        (State::Open, Some(until)) if now < until => (State::Open, Some((until - now) as u64)),
        (State::Open, _) => (State::HalfOpen, None),
        (other, _) => (other, None),
    }
}

impl Shared {
    /// The state at `now_ms` (Unix ms), and the ms left while open (see
    /// [`state_at`]).
    pub fn status_at(&self, now_ms: i64) -> (State, Option<u64>) {
        state_at(self.state, self.open_until_ms, now_ms)
    }
}

/// Where a breaker publishes its changes so other processes see them.
/// `publish` is called outside the breaker's lock and must not block.
pub trait BreakerSink: Send + Sync + std::fmt::Debug {
    fn publish(&self, name: &str, state: &Shared);
}

pub use crate::clock::unix_ms;

/// One dependency's breaker.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    policy: BreakerPolicy,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    sink: Option<Arc<dyn BreakerSink>>,
}

impl Breaker {
    pub fn new(name: impl Into<String>, policy: BreakerPolicy, clock: Arc<dyn Clock>) -> Self {
        let inner = Inner {
            phase: Phase::Closed,
            window: VecDeque::new(),
            consecutive: 0,
            reopens: 0,
            opens: 0,
            quota_hits: 0,
            updated_ms: 0,
        };
        Breaker {
            name: name.into(),
            policy,
            clock,
            inner: Mutex::new(inner),
            sink: None,
        }
    }

    /// Publishes every change to `sink` (the store, so that every process
    /// and `model list` see this breaker's state).
    pub fn with_sink(mut self, sink: Arc<dyn BreakerSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The dependency's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state as another process would adopt it.
    pub fn share(&self) -> Shared {
        let s = self.lock();
        self.shared(&s)
    }

    fn shared(&self, s: &Inner) -> Shared {
        let now = self.clock.now();
        let (state, open_until_ms) = match s.phase {
            Phase::Closed => (State::Closed, None),
            Phase::Open { until } => (
                State::Open,
                Some(unix_ms() + ms(until.saturating_sub(now)) as i64),
            ),
            Phase::HalfOpen { .. } => (State::HalfOpen, None),
        };
        Shared {
            state,
            open_until_ms,
            reopens: s.reopens,
            opens: s.opens,
            quota_hits: s.quota_hits,
            consecutive_failures: s.consecutive,
            window: s.window.iter().copied().collect(),
            updated_ms: s.updated_ms,
        }
    }

    /// Takes `shared` over if it is newer than what this breaker knows: a
    /// breaker another process opened is open here too. Returns whether it did.
    pub fn adopt(&self, shared: &Shared) -> bool {
        let now = self.clock.now();
        let mut s = self.lock();
        if shared.updated_ms <= s.updated_ms {
            return false;
        }
        s.phase = match (shared.state, shared.open_until_ms) {
            (State::Open, Some(until)) => Phase::Open {
                until: now + Duration::from_millis(until.saturating_sub(unix_ms()).max(0) as u64),
            },
            (State::Closed, _) => Phase::Closed,
            _ => Phase::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            },
        };
        s.window = shared.window.iter().copied().collect();
        s.consecutive = shared.consecutive_failures;
        s.reopens = shared.reopens;
        s.opens = s.opens.max(shared.opens);
        s.quota_hits = s.quota_hits.max(shared.quota_hits);
        s.updated_ms = shared.updated_ms;
        true
    }

    /// Marks a change and hands the new state to the sink, after the lock.
    fn changed(&self, mut s: MutexGuard<'_, Inner>) {
        // Strictly increasing, so two changes in one millisecond both win.
        s.updated_ms = unix_ms().max(s.updated_ms + 1);
        let Some(sink) = &self.sink else {
            return;
        };
        let shared = self.shared(&s);
        drop(s);
        sink.publish(&self.name, &shared);
    }

    /// Asks to make a call: a permit, or a rejection saying how long until a
    /// probe will be admitted. Not tied to models: a tool's breaker is the
    /// same type.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let now = self.clock.now();
        let mut s = self.lock();
        if let Phase::Open { until } = s.phase {
            if now < until {
                let wait = until - now;
                return Err(Rejected {
                    name: self.name.clone(),
                    retry_after: Some(wait),
                });
            }
            tracing::info!(target: "toolhost::model", model = %self.name, "circuit breaker half-open");
            s.phase = Phase::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            };
            self.changed(s);
            s = self.lock();
        }
        let probes = self.policy.half_open_probes;
        match &mut s.phase {
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } if *in_flight + *succeeded >= probes => Err(Rejected {
                name: self.name.clone(),
                retry_after: None,
            }),
            Phase::HalfOpen { in_flight, .. } => {
                *in_flight += 1;
                Ok(Permit {
                    breaker: Arc::clone(self),
                    probe: true,
                    settled: false,
                })
            }
            _ => Ok(Permit {
                breaker: Arc::clone(self),
                probe: false,
                settled: false,
            }),
        }
    }

    /// The breaker's state now.
    pub fn status(&self) -> Status {
        let now = self.clock.now();
        let s = self.lock();
        let (state, open_remaining_ms) = match s.phase {
            Phase::Closed => (State::Closed, None),
            Phase::Open { until } => state_at(State::Open, Some(ms(until) as i64), ms(now) as i64),
            Phase::HalfOpen { .. } => (State::HalfOpen, None),
        };
        Status {
            state,
            open_remaining_ms,
            window_calls: s.window.len(),
            window_failures: s.window.iter().filter(|ok| !**ok).count(),
            consecutive_failures: s.consecutive,
            opens: s.opens,
            quota_hits: s.quota_hits,
        }
    }

    fn settle(&self, probe: bool, verdict: Verdict) {
        let now = self.clock.now();
        let mut s = self.lock();
        // Plain successes of a healthy breaker change nothing worth sharing.
        let worth_sharing = verdict != Verdict::Neutral
            && (verdict != Verdict::Success || probe || s.consecutive > 0);
        if verdict == Verdict::Quota {
            s.quota_hits += 1;
        }
        match (&mut s.phase, probe) {
            (Phase::Closed, false) => match verdict {
                Verdict::Success => self.push(&mut s, true),
                Verdict::Failure(after) => {
                    self.push(&mut s, false);
                    if self.policy.trips(&s.window, s.consecutive) {
                        self.open(&mut s, now, after);
                    }
                }
                Verdict::Quota | Verdict::Neutral => {}
            },
            (
                Phase::HalfOpen {
                    in_flight,
                    succeeded,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                match verdict {
                    Verdict::Success => {
                        *succeeded += 1;
                        if *succeeded >= self.policy.half_open_probes {
                            tracing::info!(target: "toolhost::model", model = %self.name, "circuit breaker closed");
                            s.phase = Phase::Closed;
                            s.reopens = 0;
                        }
                    }
                    Verdict::Failure(after) => {
                        s.reopens += 1;
                        self.open(&mut s, now, after);
                    }
                    Verdict::Quota | Verdict::Neutral => {}
                }
            }
            // A call admitted before the state changed: its verdict is stale.
            _ => {}
        }
        if worth_sharing {
            self.changed(s);
        }
    }

    fn push(&self, s: &mut Inner, ok: bool) {
        s.window.push_back(ok);
        while s.window.len() > self.policy.window {
            s.window.pop_front();
        }
        s.consecutive = if ok { 0 } else { s.consecutive + 1 };
    }

    fn open(&self, s: &mut Inner, now: Duration, retry_after: Option<Duration>) {
        let open_for = self.policy.open_for(s.reopens, retry_after);
        tracing::warn!(target: "toolhost::model", model = %self.name, open_ms = ms(open_for),
            reopens = s.reopens, "circuit breaker opened");
        s.phase = Phase::Open {
            until: now + open_for,
        };
        s.opens += 1;
        s.window.clear();
        s.consecutive = 0;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves Inner consistent before it can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::ManualClock;

    fn breaker() -> (Arc<ManualClock>, Arc<Breaker>) {
        let clock = Arc::new(ManualClock::new());
        (
            clock.clone(),
            Arc::new(Breaker::new("m", BreakerPolicy::default(), clock)),
        )
    }

    fn call(b: &Arc<Breaker>, v: Verdict) -> bool {
        b.admit().map(|p| p.settle(v)).is_ok()
    }

    #[test]
    fn opens_on_rate_but_not_below_min_calls() {
        let (_, b) = breaker();
        let fail = Verdict::Failure(None);
        // 4 calls, 2 failures: 50 %, but under min_calls.
        for v in [Verdict::Success, fail, Verdict::Success, fail] {
            assert!(call(&b, v));
        }
        assert_eq!(b.status().state, State::Closed);
        assert!(call(&b, fail)); // 3 of 5
        assert_eq!(b.status().state, State::Open);
    }

    #[test]
    fn a_cancelled_probe_frees_its_slot() {
        let (clock, b) = breaker();
        for _ in 0..5 {
            call(&b, Verdict::Failure(None));
        }
        clock.advance(Duration::from_secs(30));
        drop(b.admit().unwrap());
        assert_eq!(b.status().state, State::HalfOpen);
        assert!(call(&b, Verdict::Success));
        assert_eq!(b.status().state, State::Closed);
    }

    /// Regression (issue 22): `/metrics` and `stats` said `open` minutes
    /// after a 60 s open period while `model list` said `half_open`. A
    /// persisted state read later, and the live breaker, now agree at every
    /// instant on the injected clock.
    #[test]
    fn a_persisted_state_reads_as_the_live_breaker_does_at_any_instant() {
        let (clock, b) = breaker();
        let at = |b: &Arc<Breaker>, shared: &Shared, later_ms: i64| {
            (
                b.status().state,
                shared.status_at(shared.updated_ms + later_ms).0,
            )
        };
        let closed = b.share();
        assert_eq!(at(&b, &closed, 0), (State::Closed, State::Closed));
        for _ in 0..5 {
            call(&b, Verdict::Failure(None));
        }
        // What the store keeps, as another process would read it.
        let mut shared = b.share();
        let open_ms = shared.open_until_ms.unwrap() - unix_ms();
        shared.updated_ms = unix_ms();
        assert_eq!(at(&b, &shared, 0), (State::Open, State::Open));
        clock.advance(Duration::from_millis(open_ms as u64 / 2));
        assert_eq!(at(&b, &shared, open_ms / 2), (State::Open, State::Open));
        clock.advance(Duration::from_millis(open_ms as u64));
        assert_eq!(
            at(&b, &shared, open_ms + 7 * 60_000),
            (State::HalfOpen, State::HalfOpen),
            "past the open period both say half_open, however long after"
        );
    }

    #[test]
    fn the_state_at_an_instant_is_half_open_once_the_open_time_is_up() {
        assert_eq!(
            state_at(State::Open, Some(100), 40),
            (State::Open, Some(60))
        );
        assert_eq!(
            state_at(State::Open, Some(100), 100),
            (State::HalfOpen, None)
        );
        assert_eq!(state_at(State::Open, None, 0), (State::HalfOpen, None));
        assert_eq!(state_at(State::Closed, None, 0), (State::Closed, None));
        assert_eq!(state_at(State::HalfOpen, None, 0), (State::HalfOpen, None));
    }

    #[test]
    fn open_time_grows_and_caps_and_honours_retry_after() {
        let p = BreakerPolicy::default();
        let s = Duration::from_secs;
        assert_eq!(
            [0, 1, 2, 3, 4, 9].map(|r| p.open_for(r, None)),
            [30, 60, 120, 240, 300, 300].map(s)
        );
        assert_eq!(p.open_for(0, Some(s(45))), s(45));
    }
}

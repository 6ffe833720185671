//! Resilience policies around any [`Model`](crate::model::Model).
//!
//! Policies are values, wrappers do the work (as in tower): a
//! [`RetryPolicy`] decides whether and when to retry and [`Retry`] loops; a
//! [`BreakerPolicy`] holds thresholds and [`CircuitBreaker`] consults a shared
//! [`Breaker`]; a [`FallbackPolicy`] decides whether to move on and
//! [`Fallback`] walks the chain. Each wrapper is itself a `Model`, so they
//! nest, and each can be tested alone. [`Chain`] assembles them from config.
//!
//! Time and chance are injected: every wrapper reads a [`Clock`], and the
//! backoff jitter comes from a seeded RNG, so tests are exact.
//!
//! ## Layout
//!
//! - `classify`: status, headers, body or transport error -> error kind.
//! - `retry`, `timeout`, `breaker`, `fallback`: one policy each.
//! - `context`: one request's budget and report; `report`: the report.
//! - `metrics`: counters over all requests; `chain`: the assembly.
//! - `clock`: [`TokioClock`] and [`ManualClock`].

pub mod breaker;
mod chain;
pub mod classify;
mod clock;
mod context;
pub mod fallback;
mod metrics;
mod report;
pub mod retry;
mod timeout;

pub use breaker::{
    Breaker, BreakerPolicy, BreakerSink, CircuitBreaker, Rejected, Shared, Verdict, unix_ms,
};
pub use chain::{Chain, ChainBuilder, EntrySpec, EntryStatus, Served, Unserved};
pub use clock::{Clock, ManualClock, TokioClock};
pub use context::CallContext;
pub use fallback::{Fallback, FallbackPolicy, Link};
pub use metrics::{Metrics, Snapshot};
pub use report::{Attempt, FellBack, Report, Retried};
pub use retry::{Retry, RetryPolicy};
pub use timeout::AttemptTimeout;

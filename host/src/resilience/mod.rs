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
//! - `retry`, `timeout`, `breaker`, `fallback`: one policy each.
//! - `traced`: one `chat {model}` span per attempt (inside the retry loop).
//! - `metrics`: counters over all requests; `chain`: the assembly.
//!
//! What the wrappers share with the providers lives below them, in
//! [`crate::model`] (the [`CallContext`] and its [`Report`]; the
//! classification of wire errors, `model::classify`) and [`crate::clock`]
//! ([`TokioClock`] and [`ManualClock`]): resilience stands wholly above
//! model, and is re-exported here for callers that name it so.

pub mod breaker;
mod chain;
pub mod fallback;
mod metrics;
pub mod retry;
mod timeout;
mod traced;

pub use crate::clock::{Clock, ManualClock, TokioClock};
pub use crate::model::CallContext;
pub use crate::model::{Attempt, FellBack, Report, Retried};
pub use breaker::{
    Breaker, BreakerPolicy, BreakerSink, CircuitBreaker, Rejected, Shared, Verdict, unix_ms,
};
pub use chain::{Chain, ChainBuilder, EntrySpec, EntryStatus, Served, Unserved};
pub use fallback::{Fallback, FallbackPolicy, Link};
pub use metrics::{Metrics, Snapshot};
pub use retry::{Retry, RetryPolicy};
pub use timeout::AttemptTimeout;
pub use traced::Traced;

//! Prometheus metrics for tool calls served by this process (`/metrics` on
//! `toolhost serve --http`).
//!
//! Why `prometheus-client` rather than counters of our own: it is the
//! Prometheus project's Rust client, so the exposition format, label escaping,
//! histogram buckets and `_total` suffixes are whatever scrapers expect, and
//! we only decide *what* to count.
//!
//! What is counted, and why each label is bounded:
//!
//! | metric | labels |
//! |---|---|
//! | `toolhost_tool_calls_total` | `tool`, `outcome` (`ok`, `error`, `cancelled`) |
//! | `toolhost_tool_errors_total` | `tool`, `kind` (the design's stable names) |
//! | `toolhost_cache_hits_total`, `toolhost_cache_misses_total` | `tool` |
//! | `toolhost_tool_call_duration_seconds` (histogram) | `tool` |
//! | `toolhost_tool_fuel_used_total` | `tool` |
//! | `toolhost_calls_in_flight` (gauge) | none |
//! | `toolhost_max_concurrent_calls` (gauge) | none |
//! | `toolhost_breaker_state` (gauge, 1 for the current state) | `dependency`, `state` |
//!
//! These count the calls this server served. With a journal source
//! ([`ServerMetrics::with_journal`], as `toolhost serve` sets it) the page
//! also carries the journal's runs, model attempts, retries, fallbacks,
//! breaker opens and run tool calls, and the store's count of calls
//! resolved out of doubt (`journal.rs`), from which every rate
//! `toolhost stats` prints can be computed. Breaker states are computed at
//! the scrape, as `model list` computes them (`breakers.rs`).
//!
//! `tool` is always a loaded tool's name or `_unknown`: a client cannot grow
//! the label set by calling made-up names.

mod breakers;
mod journal;

pub use breakers::{
    BreakerReading, BreakerSource, model_breakers, no_breakers, persisted_breakers,
    persisted_breakers_with,
};
pub use journal::{JOURNAL_REFRESH, JournalSource, persisted_journal};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `tool` label of calls to a name no loaded tool has.
pub const UNKNOWN_TOOL: &str = "_unknown";

/// How one call ended, for the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Whether a call was answered from the idempotency cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    Hit,
    Miss,
    /// No lookup happened (refused before a key existed, or cancelled).
    None,
}

impl Cache {
    /// `hit`, `miss`, or `none`, as logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cache::Hit => "hit",
            Cache::Miss => "miss",
            Cache::None => "none",
        }
    }
}

/// One finished call, as the server saw it.
#[derive(Clone, Debug)]
pub struct CallRecord<'a> {
    pub tool: &'a str,
    pub outcome: Outcome,
    /// The error kind, for [`Outcome::Error`].
    pub kind: Option<&'a str>,
    pub cache: Cache,
    /// Fuel burned in this process (0 for a replay).
    pub fuel_used: u64,
    pub duration: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    tool: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    dependency: String,
    state: String,
}

type HistogramFamily = Family<ToolLabels, Histogram, fn() -> Histogram>;

/// Call durations from 100 µs (a cached replay) to about 105 s (past any
/// default limit), doubling: 21 buckets.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// The server's metrics and their registry.
pub struct ServerMetrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    hits: Family<ToolLabels, Counter>,
    misses: Family<ToolLabels, Counter>,
    duration: HistogramFamily,
    fuel: Family<ToolLabels, Counter>,
    in_flight: Gauge<i64, AtomicI64>,
    breaker_state: Family<BreakerLabels, Gauge>,
    breakers: BreakerSource,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// Metrics whose breaker gauges read `breakers` at every scrape.
    pub fn new(max_concurrent_calls: u32, breakers: BreakerSource) -> Self {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let hits = Family::<ToolLabels, Counter>::default();
        let misses = Family::<ToolLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let fuel = Family::<ToolLabels, Counter<u64, AtomicU64>>::default();
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let max_calls = Gauge::<i64, AtomicI64>::default();
        max_calls.set(max_concurrent_calls.into());
        let breaker_state = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "toolhost_tool_calls",
            "Tool calls finished, by tool and outcome (ok, error, cancelled)",
            calls.clone(),
        );
        registry.register(
            "toolhost_tool_errors",
            "Failed tool calls, by tool and error kind",
            errors.clone(),
        );
        registry.register(
            "toolhost_cache_hits",
            "Calls answered from the idempotency cache",
            hits.clone(),
        );
        registry.register(
            "toolhost_cache_misses",
            "Calls that ran because nothing was recorded for their key",
            misses.clone(),
        );
        registry.register(
            "toolhost_tool_call_duration_seconds",
            "Wall-clock time from request to result, replays included",
            duration.clone(),
        );
        registry.register(
            "toolhost_tool_fuel_used",
            "Wasm fuel burned by calls run in this process",
            fuel.clone(),
        );
        registry.register(
            "toolhost_calls_in_flight",
            "Tool calls running now",
            in_flight.clone(),
        );
        registry.register(
            "toolhost_max_concurrent_calls",
            "Calls allowed at once; more are refused as overloaded",
            max_calls,
        );
        registry.register(
            "toolhost_breaker_state",
            "Circuit breakers: 1 for each dependency's current state",
            breaker_state.clone(),
        );
        ServerMetrics {
            registry,
            calls,
            errors,
            hits,
            misses,
            duration,
            fuel,
            in_flight,
            breaker_state,
            breakers,
        }
    }

    /// Adds the journal's numbers (read from `source` at each scrape) to
    /// the page.
    pub fn with_journal(mut self, source: JournalSource) -> Self {
        self.registry
            .register_collector(Box::new(journal::JournalCollector(source)));
        self
    }

    /// Counts one finished call.
    pub fn record(&self, call: &CallRecord<'_>) {
        let tool = ToolLabels {
            tool: call.tool.to_string(),
        };
        self.calls
            .get_or_create(&CallLabels {
                tool: call.tool.to_string(),
                outcome: call.outcome.as_str().to_string(),
            })
            .inc();
        if let Some(kind) = call.kind {
            self.errors
                .get_or_create(&ErrorLabels {
                    tool: call.tool.to_string(),
                    kind: kind.to_string(),
                })
                .inc();
        }
        match call.cache {
            Cache::Hit => {
                self.hits.get_or_create(&tool).inc();
            }
            Cache::Miss => {
                self.misses.get_or_create(&tool).inc();
            }
            Cache::None => {}
        }
        if call.fuel_used > 0 {
            self.fuel.get_or_create(&tool).inc_by(call.fuel_used);
        }
        self.duration
            .get_or_create(&tool)
            .observe(call.duration.as_secs_f64());
    }

    /// Marks a call as running until the returned guard drops.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight {
            metrics: self.clone(),
        }
    }

    /// Calls running now.
    pub fn calls_in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// The Prometheus text exposition (OpenMetrics 1.0) of every metric.
    pub fn render(&self) -> String {
        self.refresh_breakers();
        let mut out = String::new();
        // Writing into a String cannot fail; an Err here would be a bug in
        // the encoder, and a partial page is better than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Sets every breaker's gauges from the source: 1 for its state, 0 for
    /// the others, so `toolhost_breaker_state{state="open"} == 1` alerts.
    fn refresh_breakers(&self) {
        for reading in (self.breakers)() {
            for state in ["closed", "open", "half_open"] {
                let value = i64::from(state == reading.state.as_str());
                self.breaker_state
                    .get_or_create(&BreakerLabels {
                        dependency: reading.dependency.clone(),
                        state: state.to_string(),
                    })
                    .set(value);
            }
        }
    }
}

/// A running call; dropping it (the call ended, failed or was cancelled)
/// takes it off the in-flight gauge.
#[derive(Debug)]
pub struct InFlight {
    metrics: Arc<ServerMetrics>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// The content type of [`ServerMetrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

//! A model chain: the configured models, each wrapped as
//! `Retry(CircuitBreaker(AttemptTimeout(provider)))`, behind a [`Fallback`],
//! with a budget per request, metrics over all of them, and the alert when
//! the primary has been unavailable for too long.
//!
//! Why this order: the retry loop is outermost per model so that each
//! attempt asks the breaker (an opened breaker ends the retries at once, and
//! the request falls back) and so that a spent budget, which it cuts, is not
//! charged to the breaker; the attempt timeout is innermost so that the
//! breaker sees a slow dependency's timeouts as health failures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;
use tracing::field::Empty;

use super::CallContext;
use super::breaker::{self, Breaker, BreakerPolicy, CircuitBreaker};
use super::fallback::{Fallback, Link};
use super::metrics::{Metrics, Snapshot};
use super::retry::{Retry, RetryPolicy, is_transient};
use super::timeout::AttemptTimeout;
use super::traced::Traced;
use crate::clock::{Clock, TokioClock};
use crate::config::{BreakerConfig, Config, RetryConfig};
use crate::model::report::{Report, ms};
use crate::model::{
    self, BuildError, ChatRequest, ChatResponse, ErrorKind, KeyStatus, LiveSink, Model, ModelError,
};
use crate::telemetry::{TARGET, attrs};

/// A response and how it was obtained.
#[derive(Debug, Clone, Serialize)]
pub struct Served {
    pub response: ChatResponse,
    pub report: Report,
}

/// A request no model could answer, and what was tried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Unserved {
    pub error: ModelError,
    pub report: Report,
}

/// What `model list` shows of one entry.
#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub context_window: Option<u64>,
    pub breaker: breaker::Status,
    /// Whether its API key is there; an entry with `no_key` is skipped.
    pub key: KeyStatus,
}

/// Describes one chain entry for listing.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub context_window: Option<u64>,
}

/// Builds a [`Chain`] with injected time and chance.
pub struct ChainBuilder {
    retry: RetryConfig,
    breaker: BreakerConfig,
    alert_after: Duration,
    clock: Arc<dyn Clock>,
    seed: u64,
    entries: Vec<(EntrySpec, Arc<dyn Model>)>,
    /// Entry name -> the unset variable that should hold its key.
    missing_keys: std::collections::BTreeMap<String, String>,
    /// Entries whose key variable is set (for `model list`).
    present_keys: std::collections::BTreeSet<String>,
    sink: Option<Arc<dyn breaker::BreakerSink>>,
}

impl ChainBuilder {
    pub fn new(retry: RetryConfig, breaker: BreakerConfig) -> Self {
        ChainBuilder {
            retry,
            breaker,
            alert_after: Duration::from_millis(
                crate::config::FallbackConfig::default().alert_after_ms,
            ),
            clock: Arc::new(TokioClock::default()),
            seed: rand::random(),
            entries: Vec::new(),
            missing_keys: Default::default(),
            present_keys: Default::default(),
            sink: None,
        }
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Seeds the backoff jitter (each entry's RNG derives from it).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How long the primary may be unavailable before an alert.
    pub fn alert_after(mut self, d: Duration) -> Self {
        self.alert_after = d;
        self
    }

    /// Publishes every breaker change to `sink` (the store: shared state).
    pub fn breaker_sink(mut self, sink: Arc<dyn breaker::BreakerSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Appends a model to the chain.
    pub fn entry(mut self, spec: EntrySpec, model: Arc<dyn Model>) -> Self {
        self.entries.push((spec, model));
        self
    }

    /// Appends a model whose API key variable `var` is unset: it is listed
    /// (as `no key`) but skipped, and the chain goes on to the next one.
    pub fn entry_without_key(mut self, spec: EntrySpec, model: Arc<dyn Model>, var: &str) -> Self {
        self.missing_keys.insert(spec.name.clone(), var.to_string());
        self.entry(spec, model)
    }

    pub fn build(self) -> Chain {
        let retry = RetryPolicy::from_config(&self.retry);
        let timeout = Duration::from_millis(self.retry.attempt_timeout_ms);
        let first_token = Duration::from_millis(self.retry.first_token_timeout_ms);
        let idle = Duration::from_millis(self.retry.idle_timeout_ms);
        let mut links = Vec::new();
        let mut entries = Vec::new();
        for (i, (spec, model)) in self.entries.into_iter().enumerate() {
            let mut breaker = Breaker::new(
                spec.name.clone(),
                BreakerPolicy::from_config(&self.breaker),
                self.clock.clone(),
            );
            if let Some(sink) = &self.sink {
                breaker = breaker.with_sink(sink.clone());
            }
            let breaker = Arc::new(breaker);
            if let Some(var) = self.missing_keys.get(&spec.name) {
                tracing::warn!(model = %spec.name, variable = %var, "skipping a model whose API key variable is not set");
                entries.push((spec, breaker));
                continue;
            }
            let deadlines = AttemptTimeout::new(model, timeout).streaming(first_token, idle);
            let attempt = CircuitBreaker::new(deadlines, breaker.clone());
            let wrapped = Retry::new(
                Traced::new(
                    attempt,
                    spec.provider.clone(),
                    spec.model.clone(),
                    breaker.clone(),
                ),
                retry.clone(),
                self.clock.clone(),
                self.seed.wrapping_add(i as u64),
            );
            links.push(Link {
                model: Arc::new(wrapped),
                context_window: spec.context_window,
            });
            entries.push((spec, breaker));
        }
        Chain {
            fallback: Fallback::new(links),
            entries,
            missing_keys: self.missing_keys,
            present_keys: self.present_keys,
            clock: self.clock,
            budget: Duration::from_millis(self.retry.budget_ms),
            alert_after: self.alert_after,
            metrics: Metrics::default(),
            outage: Mutex::new(Outage::default()),
        }
    }
}

/// When the primary became unavailable, and whether we said so.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Duration>,
    alerted: bool,
}

/// The configured fallback chain with its policies.
pub struct Chain {
    fallback: Fallback,
    entries: Vec<(EntrySpec, Arc<Breaker>)>,
    /// Entries skipped for an unset key variable: name -> variable.
    missing_keys: std::collections::BTreeMap<String, String>,
    present_keys: std::collections::BTreeSet<String>,
    clock: Arc<dyn Clock>,
    budget: Duration,
    alert_after: Duration,
    metrics: Metrics,
    outage: Mutex<Outage>,
}

impl Chain {
    /// The chain `config` describes, on the runtime's clock.
    pub fn from_config(config: &Config) -> Result<Chain, BuildError> {
        Chain::builder_from_config(config).map(ChainBuilder::build)
    }

    /// A builder holding the chain `config` describes, for more options
    /// (a breaker sink, a seed) before [`ChainBuilder::build`].
    pub fn builder_from_config(config: &Config) -> Result<ChainBuilder, BuildError> {
        let mut b = ChainBuilder::new(config.retry.clone(), config.breaker.clone())
            .alert_after(Duration::from_millis(config.fallback.alert_after_ms));
        for m in &config.models {
            let spec = EntrySpec {
                name: m.name.clone(),
                provider: m.provider.as_str().to_string(),
                model: m.model.clone(),
                context_window: m.context_window,
            };
            let provider = model::provider(m)?;
            b = match (&m.api_key_env, KeyStatus::of(m)) {
                (Some(var), KeyStatus::NoKey) => b.entry_without_key(spec, provider, var),
                (_, KeyStatus::Set) => {
                    b.present_keys.insert(spec.name.clone());
                    b.entry(spec, provider)
                }
                _ => b.entry(spec, provider),
            };
        }
        Ok(b)
    }

    /// Adopts breaker states other processes published, by entry name
    /// (newer states only). Returns how many breakers changed.
    pub fn adopt_breakers(
        &self,
        states: &std::collections::HashMap<String, breaker::Shared>,
    ) -> usize {
        self.entries
            .iter()
            .filter(|(spec, b)| states.get(&spec.name).is_some_and(|s| b.adopt(s)))
            .count()
    }

    /// The entry names, in chain order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(s, _)| s.name.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One turn through the chain, in a `turn` span whose children are
    /// its attempts (`traced.rs`): retries and fallbacks show as siblings.
    pub async fn call(&self, req: &ChatRequest) -> Result<Served, Unserved> {
        self.call_live(req, None).await
    }

    /// [`Chain::call`], showing `live` each streamed attempt's text as it
    /// arrives, a broken attempt's partial retracted, and each retry and
    /// fallback as it happens.
    pub async fn call_live(
        &self,
        req: &ChatRequest,
        live: Option<Arc<dyn LiveSink>>,
    ) -> Result<Served, Unserved> {
        let span = tracing::info_span!(
            target: TARGET,
            "turn",
            otel.status_code = Empty,
            { attrs::MODEL_ENTRY } = Empty,
            { attrs::RETRIES } = Empty,
            { attrs::FALLBACKS } = Empty,
            { attrs::ERROR_TYPE } = Empty,
        );
        let result = self.call_traced(req, live).instrument(span.clone()).await;
        let report = match &result {
            Ok(served) => &served.report,
            Err(unserved) => {
                span.record(attrs::ERROR_TYPE, unserved.error.kind.as_str());
                span.record("otel.status_code", "error");
                &unserved.report
            }
        };
        if let Some(by) = &report.served_by {
            span.record(attrs::MODEL_ENTRY, by.as_str());
        }
        span.record(attrs::RETRIES, report.retries.len());
        span.record(attrs::FALLBACKS, report.fallbacks.len());
        result
    }

    async fn call_traced(
        &self,
        req: &ChatRequest,
        live: Option<Arc<dyn LiveSink>>,
    ) -> Result<Served, Unserved> {
        let mut cx = CallContext::new(self.clock.clone(), self.budget);
        if let Some(live) = live {
            cx = cx.with_live(live);
        }
        let result = if self.entries.is_empty() {
            Err(ModelError::new(
                ErrorKind::AllModelsUnavailable,
                "no models are configured",
            ))
        } else if self.missing_keys.len() == self.entries.len() {
            Err(self.no_keys())
        } else {
            self.fallback.chat(req, &cx).await
        };
        let report = cx.report();
        self.metrics
            .observe(&report, result.as_ref().err().map(|e| e.kind));
        self.track_primary(&report);
        match result {
            Ok(response) => Ok(Served { response, report }),
            Err(error) => Err(Unserved { error, report }),
        }
    }

    /// Entries skipped because their key variable is unset, in chain order:
    /// (entry name, variable). Each is worth a warning where a person reads.
    pub fn skipped(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter_map(|(spec, _)| {
                let var = self.missing_keys.get(&spec.name)?;
                Some((spec.name.clone(), var.clone()))
            })
            .collect()
    }

    /// Every entry was skipped: an `auth` error naming each variable.
    fn no_keys(&self) -> ModelError {
        let named: Vec<String> = self
            .skipped()
            .iter()
            .map(|(name, var)| format!("`{name}` needs {var}"))
            .collect();
        ModelError::new(
            ErrorKind::Auth,
            format!(
                "every model in the chain was skipped because its API key variable is not set ({}); export one, or add a model that needs no key",
                named.join(", ")
            ),
        )
    }

    /// Each entry with its breaker's state, in chain order.
    pub fn list(&self) -> Vec<EntryStatus> {
        self.entries
            .iter()
            .map(|(spec, breaker)| EntryStatus {
                name: spec.name.clone(),
                provider: spec.provider.clone(),
                model: spec.model.clone(),
                context_window: spec.context_window,
                breaker: breaker.status(),
                key: if self.missing_keys.contains_key(&spec.name) {
                    KeyStatus::NoKey
                } else if self.present_keys.contains(&spec.name) {
                    KeyStatus::Set
                } else {
                    KeyStatus::NotNeeded
                },
            })
            .collect()
    }

    pub fn metrics(&self) -> Snapshot {
        let (opens, quota) = self.entries.iter().fold((0, 0), |(o, q), (_, b)| {
            let s = b.status();
            (o + s.opens, q + s.quota_hits)
        });
        self.metrics.snapshot(opens, quota)
    }

    /// Starts, ends or alerts on an outage of the primary. Unavailable means
    /// its last attempt failed for a health, quota or breaker reason; caller
    /// errors and `context_length` say nothing about availability.
    fn track_primary(&self, report: &Report) {
        let Some((primary, _)) = self.entries.first() else {
            return;
        };
        let now = self.clock.now();
        let last = report.attempts_on(&primary.name).last().map(|a| a.error);
        let mut o = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            Some(None) => *o = Outage::default(),
            Some(Some(kind)) if is_transient(kind) || kind == ErrorKind::CircuitOpen => {
                let since = *o.since.get_or_insert(now);
                let down = now.saturating_sub(since);
                if down >= self.alert_after && !o.alerted {
                    o.alerted = true;
                    self.metrics.primary_alert();
                    tracing::error!(target: "toolhost::alert", model = %primary.name, down_ms = ms(down),
                        "primary model unavailable for longer than the alert window");
                }
            }
            _ => {}
        }
    }
}

//! Model calls over real HTTP on loopback, against the fault-injecting
//! server in `support::model_server`: classification for both wire formats,
//! retry, fallback, circuit breakers, a soak under injected faults, and the
//! promise that API keys never leak.
//!
//! Backoff sleeps and breaker open times run on a `ManualClock` (sleeps
//! return at once and advance virtual time), so the tests are exact and
//! fast; only per-attempt deadlines use real time, set short where tested.

mod breaker;
mod classify;
mod cli;
mod fallback;
mod redirects;
mod retry;
mod secrets;
mod soak;
mod stream;
mod stream_cli;
mod wire;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use toolhost::config::{BreakerConfig, RetryConfig};
use toolhost::model::{Anthropic, ApiKey, Endpoint, Model, OpenAi};
use toolhost::resilience::{Chain, ChainBuilder, EntrySpec, ManualClock};

use tracing_subscriber::fmt::MakeWriter;

use crate::support::model_server::ModelServer;

/// Which wire format a test model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Anthropic,
    OpenAi,
}

pub const BOTH: [Wire; 2] = [Wire::Anthropic, Wire::OpenAi];

/// A provider of `wire` named `name`, talking to `server`.
pub fn provider(wire: Wire, server: &ModelServer, name: &str, key: Option<&str>) -> Arc<dyn Model> {
    let key = key.map(ApiKey::new);
    match wire {
        Wire::Anthropic => {
            let e = Endpoint::new(name, "claude-sonnet-4-5", Some(server.anthropic_url()), key)
                .unwrap();
            Arc::new(Anthropic::new(e))
        }
        Wire::OpenAi => Arc::new(OpenAi::new(
            Endpoint::new(name, "gpt-4o", Some(server.openai_url()), key).unwrap(),
        )),
    }
}

/// [`provider`], asking for streamed answers.
pub fn streamed(wire: Wire, server: &ModelServer, name: &str, key: Option<&str>) -> Arc<dyn Model> {
    let key = key.map(ApiKey::new);
    match wire {
        Wire::Anthropic => {
            let e = Endpoint::new(name, "claude-sonnet-4-5", Some(server.anthropic_url()), key)
                .unwrap()
                .stream(true);
            Arc::new(Anthropic::new(e))
        }
        Wire::OpenAi => Arc::new(OpenAi::new(
            Endpoint::new(name, "gpt-4o", Some(server.openai_url()), key)
                .unwrap()
                .stream(true),
        )),
    }
}

/// Builds chains on a manual clock with a fixed seed.
pub struct Setup {
    pub clock: Arc<ManualClock>,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    pub seed: u64,
    builder_entries: Vec<(EntrySpec, Arc<dyn Model>)>,
    alert_after: Option<Duration>,
}

impl Setup {
    pub fn new() -> Self {
        Setup {
            clock: Arc::new(ManualClock::new()),
            retry: RetryConfig {
                attempt_timeout_ms: 5_000,
                ..RetryConfig::default()
            },
            breaker: BreakerConfig::default(),
            seed: 42,
            builder_entries: Vec::new(),
            alert_after: None,
        }
    }

    /// Adds a model of `wire` on `server`.
    pub fn model(
        mut self,
        wire: Wire,
        server: &ModelServer,
        name: &str,
        window: Option<u64>,
    ) -> Self {
        let spec = EntrySpec {
            name: name.to_string(),
            provider: format!("{wire:?}").to_lowercase(),
            model: "test".to_string(),
            context_window: window,
        };
        self.builder_entries
            .push((spec, provider(wire, server, name, Some("sk-test-key"))));
        self
    }

    /// Adds a model of `wire` on `server` that asks for streamed answers.
    pub fn streamed_model(mut self, wire: Wire, server: &ModelServer, name: &str) -> Self {
        let spec = EntrySpec {
            name: name.to_string(),
            provider: format!("{wire:?}").to_lowercase(),
            model: "test".to_string(),
            context_window: None,
        };
        self.builder_entries
            .push((spec, streamed(wire, server, name, Some("sk-test-key"))));
        self
    }

    pub fn alert_after(mut self, d: Duration) -> Self {
        self.alert_after = Some(d);
        self
    }

    pub fn build(self) -> (Chain, Arc<ManualClock>) {
        let mut b = ChainBuilder::new(self.retry, self.breaker)
            .clock(self.clock.clone())
            .seed(self.seed);
        if let Some(d) = self.alert_after {
            b = b.alert_after(d);
        }
        for (spec, model) in self.builder_entries {
            b = b.entry(spec, model);
        }
        (b.build(), self.clock)
    }
}

/// Log lines written while a test runs.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Captures every tracing event on this thread (tests run on a
    /// current-thread runtime, so that is all of them) until the guard drops.
    pub fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

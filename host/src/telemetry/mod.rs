//! Traces: OpenTelemetry spans in the GenAI semantic conventions, exported
//! over OTLP (http/protobuf) in the background; and the log formats.
//!
//! Why spans are `tracing` spans bridged by `tracing-opentelemetry`, not
//! OpenTelemetry spans made by hand: the code already speaks `tracing`, a
//! span follows the future it instruments across `.await`s and into spawned
//! tasks (`Instrument::in_current_span`), and with no exporter a span of a
//! disabled callsite costs one relaxed load. Only spans of the target
//! [`TARGET`] reach the exporter (the bridge's filter), so no log event, and
//! no library's own span, ever becomes telemetry.
//!
//! The spans, where they are made:
//!
//! | span | where | parent |
//! |---|---|---|
//! | `invoke_agent toolhost` | `agent/run.rs`, one per run session (run or resume) | none |
//! | `step {n}` | `agent/run.rs` | `invoke_agent` |
//! | `turn` | `resilience/chain.rs`, one model turn through the chain | `step`, or none (`model call`) |
//! | `chat {model}` | `resilience/traced.rs`, one per provider attempt | `turn` |
//! | `execute_tool {tool}` | `idempotency/executor.rs`; journal-served ones in `agent/tools.rs` | `step`, `tools/call`, or none (`toolhost call`) |
//! | `tools/call {tool}` | `mcp/handler.rs` | the client's `_meta.traceparent`, else none |
//!
//! Export: a [`BatchSpanProcessor`] on its own thread (queue 4096, a batch
//! every 500 ms, 3 s per export), so a dead or stuck collector never slows
//! or fails a call: spans past the queue are dropped. [`Telemetry::shutdown`]
//! flushes within [`SHUTDOWN_WITHIN`].
//!
//! Layout: `attrs` (attribute names), `parent` (the W3C trace context of an
//! MCP request), `logs` (text or JSON log lines).

pub mod attrs;
pub mod logs;
pub mod parent;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::TelemetryConfig;

pub use attrs::CacheOutcome;
pub use logs::LogFormat;

/// The `tracing` target of every span that is exported. Log events never
/// use it.
pub const TARGET: &str = "toolhost::trace";

/// Spans waiting for export at most; more are dropped (and counted by the
/// SDK), never waited for.
pub const QUEUE: usize = 4096;
/// How often a batch is sent.
pub const BATCH_EVERY: Duration = Duration::from_millis(500);
/// How long one export may take before it is abandoned (the HTTP
/// client's timeout; the SDK retries a failed export on the exporter's
/// thread, never on a caller's).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long exiting waits for the last spans to leave.
pub const SHUTDOWN_WITHIN: Duration = Duration::from_secs(2);

/// Set once when export starts with `capture_content = true`.
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// Whether spans may carry tool inputs and outputs
/// (`[telemetry] capture_content`, and only while exporting).
pub fn content_captured() -> bool {
    CAPTURE_CONTENT.load(Ordering::Relaxed)
}

/// Sets an attribute on `span`'s OpenTelemetry span only: not a `tracing`
/// field, so no log line can ever print it. For content
/// ([`attrs::TOOL_ARGUMENTS`], [`attrs::TOOL_RESULT`]).
pub fn set_otel_attribute(span: &tracing::Span, key: &'static str, value: String) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.set_attribute(key, value);
}

/// Where traces go, and which setting said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The full URL spans are POSTed to (`.../v1/traces`).
    pub traces_url: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// or `telemetry.otlp_endpoint`.
    pub from: &'static str,
}

/// Why export could not start (the command still runs, untraced).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `OTEL_*` variable holds a value that is not usable.
    #[error("{var}: {message}")]
    BadVariable { var: &'static str, message: String },
    /// The SDK refused to build the exporter.
    #[error("cannot start the OTLP exporter: {0}")]
    Exporter(String),
}

impl Destination {
    /// The destination the environment and `config` name: the traces
    /// variable (used as given), else the general one (plus `/v1/traces`),
    /// else the config's `otlp_endpoint` (plus `/v1/traces`); none when
    /// `OTEL_SDK_DISABLED=true` or nothing is set.
    pub fn resolve(config: &TelemetryConfig) -> Result<Option<Destination>, TelemetryError> {
        Destination::resolve_with(config, |var| std::env::var(var).ok())
    }

    /// [`Destination::resolve`] over an injected environment.
    pub fn resolve_with(
        config: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Destination>, TelemetryError> {
        let set = |var: &str| env(var).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let checked = |var: &'static str, url: String, traces_url: String| {
            crate::config::check_endpoint(&url)
                .map(|()| Destination {
                    traces_url,
                    from: var,
                })
                .map_err(|message| TelemetryError::BadVariable { var, message })
        };
        const TRACES: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
        const GENERAL: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
        if let Some(url) = set(TRACES) {
            return checked(TRACES, url.clone(), url).map(Some);
        }
        if let Some(url) = set(GENERAL) {
            let traces = with_traces_path(&url);
            return checked(GENERAL, url, traces).map(Some);
        }
        Ok(config.otlp_endpoint.as_ref().map(|url| Destination {
            // Validated with the config (`config/telemetry.rs`).
            traces_url: with_traces_path(url),
            from: "telemetry.otlp_endpoint",
        }))
    }
}

/// `base` + `/v1/traces`, as the OTLP specification builds a signal's URL
/// from the general endpoint.
fn with_traces_path(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// The exporter of this process, when one runs.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// No export: spans stay in-process (and cost next to nothing).
    pub fn off() -> Telemetry {
        Telemetry::default()
    }

    /// Starts exporting to `destination` in the background. The exporter
    /// thread and its HTTP client are made here; nothing is sent until the
    /// first batch is due.
    pub fn start(
        destination: &Destination,
        config: &TelemetryConfig,
    ) -> Result<Self, TelemetryError> {
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(destination.traces_url.clone());
        // The standard timeout variables win over ours.
        let timeout_set = [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        if !timeout_set {
            builder = builder.with_timeout(EXPORT_TIMEOUT);
        }
        let exporter = builder
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(BATCH_EVERY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
        // `OTEL_SERVICE_NAME` (read by the SDK) wins over ours.
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("toolhost");
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build();
        CAPTURE_CONTENT.store(config.capture_content, Ordering::Relaxed);
        Ok(Telemetry {
            provider: Some(provider),
        })
    }

    /// Whether spans are being exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// The bridge from `tracing` spans of [`TARGET`] to the exporter; `None`
    /// when nothing is exported.
    pub fn layer<S>(&self) -> Option<Box<dyn Layer<S> + Send + Sync>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let provider = self.provider.as_ref()?;
        let tracer = provider.tracer("toolhost");
        let only_ours =
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Thread ids and busy/idle times say nothing an operator
                // asks of a tool call, and cost on every span.
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(only_ours)
                .boxed(),
        )
    }

    /// Sends what is queued and stops the exporter, waiting at most
    /// [`SHUTDOWN_WITHIN`] (a stuck collector cannot hold the exit).
    pub fn shutdown(&self) {
        let Some(provider) = &self.provider else {
            return;
        };
        // On a thread of its own: the SDK blocks, and the caller may be on
        // an async worker (the Ctrl-C path of `agent run`).
        let provider = provider.clone();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = provider.shutdown_with_timeout(SHUTDOWN_WITHIN);
            let _ = done.send(());
        });
        let _ = wait.recv_timeout(SHUTDOWN_WITHIN + Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn file(url: Option<&str>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: url.map(str::to_string),
            capture_content: false,
        }
    }

    #[test]
    fn the_environment_wins_over_the_file_and_the_traces_variable_over_both() {
        let f = file(Some("http://file:4318/"));
        let d = Destination::resolve_with(&f, env(&[])).unwrap().unwrap();
        assert_eq!(d.traces_url, "http://file:4318/v1/traces");
        assert_eq!(d.from, "telemetry.otlp_endpoint");
        let d = Destination::resolve_with(
            &f,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gen:4318")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (d.traces_url.as_str(), d.from),
            ("http://gen:4318/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT")
        );
        let both = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gen:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/custom"),
        ];
        let d = Destination::resolve_with(&f, env(&both)).unwrap().unwrap();
        assert_eq!(d.traces_url, "http://t:4318/custom", "used as given");
    }

    #[test]
    fn nothing_set_or_sdk_disabled_is_no_export() {
        assert_eq!(
            Destination::resolve_with(&file(None), env(&[])).unwrap(),
            None
        );
        let off = [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gen:4318"),
        ];
        let f = file(Some("http://file:4318"));
        assert_eq!(Destination::resolve_with(&f, env(&off)).unwrap(), None);
    }

    #[test]
    fn a_bad_variable_is_named() {
        let bad = [("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")];
        let e = Destination::resolve_with(&file(None), env(&bad)).unwrap_err();
        assert!(
            e.to_string().starts_with("OTEL_EXPORTER_OTLP_ENDPOINT: "),
            "{e}"
        );
    }
}

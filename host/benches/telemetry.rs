//! What exporting traces costs, beside tracing off in the same run:
//!
//! - `telemetry/{off,exported}/warm_call`: one `echo` call through the
//!   executor on a compiled tool, a fresh key each time (so the guest runs
//!   and the outcome is recorded in SQLite): one `execute_tool` span;
//! - `telemetry/{off,exported}/agent_step`: `Agent` runs of 10 steps on the
//!   scripted model calling `echo`, journaled on SQLite, reported per step:
//!   `invoke_agent`, `step`, `turn`, `chat` and `execute_tool` spans.
//!
//! `off` is the binary with no collector named (no OpenTelemetry layer:
//! every span callsite is disabled); `exported` has the layer and the batch
//! processor sending every span over OTLP/HTTP to a loopback receiver that
//! answers 200 (it reads each request whole, so the export is real work on
//! the exporter's thread). Each side runs under its own subscriber and on
//! its own SQLite file (on `/dev/shm` where it exists: a span costs
//! microseconds, a disk's fsync varies by hundreds), on a current-thread
//! runtime, so the two share nothing but the compiled tool and the machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use toolhost::agent::{Agent, AgentOptions};
use toolhost::config::{Config, TelemetryConfig};
use toolhost::idempotency::{ExecOptions, Executor, Scope};
use toolhost::model::{Scripted, Turn};
use toolhost::resilience::{Chain, ChainBuilder, EntrySpec};
use toolhost::sandbox::{EXAMPLES_DIR, Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};
use toolhost::telemetry::{Destination, Telemetry};
use tracing_subscriber::layer::SubscriberExt;

const STEPS: usize = 10;

/// A loopback OTLP/HTTP receiver that reads every request and answers 200
/// with an empty body (a valid empty `ExportTraceServiceResponse`).
/// Returns its traces URL and the count of requests it answered.
fn receiver() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let url = format!(
        "http://{}/v1/traces",
        listener.local_addr().expect("its address")
    );
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, served)
}

fn turns() -> Vec<Turn> {
    let mut t: Vec<_> = (1..STEPS)
        .map(|k| json!({"tool_calls": [{"name": "echo", "arguments": {"message": format!("step {k}")}}]}))
        .collect();
    t.push(json!({"text": "done"}));
    serde_json::from_value(serde_json::Value::Array(t)).expect("turns")
}

fn chain(config: &Config) -> Arc<Chain> {
    let model = Scripted::new("bench", turns()).by_conversation();
    let spec = EntrySpec {
        name: "bench".into(),
        provider: "scripted".into(),
        model: "bench".into(),
        context_window: None,
    };
    Arc::new(
        ChainBuilder::new(config.retry.clone(), config.breaker.clone())
            .entry(spec, Arc::new(model))
            .build(),
    )
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let tools = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(
        Path::new(EXAMPLES_DIR).join("echo.wasm"),
        tools.path().join("echo.wasm"),
    )
    .expect("copy echo");
    let sandbox = rt
        .block_on(Sandbox::open(SandboxOptions::for_dir(tools.path())))
        .expect("open the sandbox");
    let config = Config::default();
    let options = AgentOptions::from_config(&config.agent);
    // Each side its own store in its own file, so neither measures on a
    // journal the other grew; on tmpfs where there is one, so the disk's
    // fsync latency (which varies far more than a span costs) is not what
    // is compared.
    let shm = Path::new("/dev/shm");
    let db = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temp dir");
    let side = |name: &str| {
        let store = Store::open(
            &db.path().join(format!("{name}.db")),
            StoreOptions::default(),
        )
        .expect("open the store");
        let executor = Arc::new(Executor::new(sandbox.clone(), store));
        let agent = Agent::new(executor.clone(), chain(&config), &config);
        (executor, agent)
    };
    let n = AtomicU64::new(0);

    let (url, served) = receiver();
    let destination = Destination {
        traces_url: url,
        from: "bench",
    };
    let exporting =
        Telemetry::start(&destination, &TelemetryConfig::default()).expect("start the exporter");
    let off = Telemetry::off();

    let mut group = c.benchmark_group("telemetry");
    group.warm_up_time(Duration::from_secs(1));
    for (name, telemetry) in [("off", &off), ("exported", &exporting)] {
        let (executor, agent) = side(name);
        let subscriber = tracing_subscriber::registry().with(telemetry.layer());
        tracing::subscriber::with_default(subscriber, || {
            group.throughput(Throughput::Elements(1));
            group.bench_function(format!("{name}/warm_call"), |b| {
                b.iter(|| {
                    let options = ExecOptions {
                        scope: Scope::Fresh,
                        ..ExecOptions::default()
                    };
                    let out = rt
                        .block_on(executor.call("echo", r#"{"message":"hi"}"#, options))
                        .expect("echo works");
                    assert!(!out.cached);
                })
            });
            group.throughput(Throughput::Elements(STEPS as u64));
            group.bench_function(format!("{name}/agent_step"), |b| {
                b.iter(|| {
                    let id = format!("run-{}", n.fetch_add(1, Ordering::Relaxed));
                    let out = rt
                        .block_on(agent.start(Some(id), "echo", &options))
                        .expect("the run");
                    assert_eq!(out.steps as usize, STEPS);
                })
            });
        });
    }
    group.finish();
    exporting.shutdown();
    assert!(
        served.load(Ordering::Relaxed) > 0,
        "the exported side reached the receiver"
    );
}

criterion_group!(telemetry, benches);
criterion_main!(telemetry);

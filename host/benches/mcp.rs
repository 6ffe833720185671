//! MCP round trips: `tools/call` of `echo` over streamable HTTP on loopback,
//! beside a direct in-process call, in the same run.
//!
//! Every call has the same input, so each one (after the first) is a pure
//! cache replay: what is measured is what MCP adds (JSON-RPC, HTTP, SSE,
//! rmcp's session) on top of the executor, not the sandbox.
//!
//! - criterion: `mcp/direct` (`Executor::call`), `mcp/http_1_client` (one
//!   rmcp client, calls in sequence), `mcp/http_20_clients` (one iteration =
//!   20 clients, each in its own session, calling at once; calls/s = 20 /
//!   time);
//! - then, with `--bench`, a latency table: p50, p99 and calls/s over a fixed
//!   number of calls for each of the three, printed to stdout.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use toolhost::config::ServeConfig;
use toolhost::idempotency::{ExecOptions, Executor};
use toolhost::mcp::{HttpOptions, HttpServer, McpServer};
use toolhost::metrics::{ServerMetrics, no_breakers};
use toolhost::sandbox::{EXAMPLES_DIR, Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};

const INPUT: &str = r#"{"message":"hello"}"#;
const CLIENTS: usize = 20;
/// Calls per series in the latency table.
const SAMPLES: usize = 2000;

type Client = RunningService<RoleClient, ()>;

fn echo_params() -> CallToolRequestParams {
    let arguments = serde_json::from_str(INPUT).expect("an object");
    CallToolRequestParams::new("echo").with_arguments(arguments)
}

async fn connect(url: &str) -> Client {
    ().serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("connect")
}

async fn call(client: &Client) {
    let result = client.call_tool(echo_params()).await.expect("a result");
    assert_ne!(result.is_error, Some(true));
}

struct Fixture {
    executor: Arc<Executor>,
    url: String,
    _http: HttpServer,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn fixture() -> Fixture {
    let tools = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(
        Path::new(EXAMPLES_DIR).join("echo.wasm"),
        tools.path().join("echo.wasm"),
    )
    .expect("copy echo");
    let db = tempfile::tempdir().expect("a temp dir");
    let sandbox = Sandbox::open(SandboxOptions::for_dir(tools.path()))
        .await
        .expect("open the sandbox");
    let path = db.path().join("bench.db");
    let store = tokio::task::spawn_blocking(move || Store::open(&path, StoreOptions::default()))
        .await
        .expect("the opener")
        .expect("open the store");
    let executor = Arc::new(Executor::new(sandbox, store));
    let metrics = Arc::new(ServerMetrics::new(128, no_breakers()));
    let server = McpServer::new(executor.clone(), metrics, 128);
    let options = HttpOptions::new(
        "127.0.0.1:0".parse().expect("an address"),
        None,
        ServeConfig::default(),
    );
    let http = HttpServer::bind(server, options).await.expect("bind");
    let url = http.url();
    executor
        .call("echo", INPUT, ExecOptions::default())
        .await
        .expect("echo works");
    Fixture {
        executor,
        url,
        _http: http,
        _dirs: (tools, db),
    }
}

fn criterion_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, f: &Fixture) {
    let single = rt.block_on(connect(&f.url));
    let many: Vec<Arc<Client>> = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(Arc::new(connect(&f.url).await));
        }
        clients
    });
    let mut group = c.benchmark_group("mcp");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("direct", |b| {
        b.iter(|| {
            rt.block_on(f.executor.call("echo", INPUT, ExecOptions::default()))
                .expect("a replay")
        })
    });
    group.bench_function("http_1_client", |b| b.iter(|| rt.block_on(call(&single))));
    group.bench_function("http_20_clients", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = many
                    .iter()
                    .map(|client| {
                        let client = client.clone();
                        tokio::spawn(async move { call(&client).await })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("a client");
                }
            })
        })
    });
    group.finish();
}

/// p50, p99 and calls/s of `samples` latencies measured over `wall`.
fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<18} p50 {:>9.1} us   p99 {:>9.1} us   {:>9.0} calls/s   ({} calls)",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len() as f64 / wall.as_secs_f64(),
        samples.len()
    );
}

async fn latency_table(f: &Fixture) {
    println!("\nmcp latency table: echo, cached, {SAMPLES} calls per series");
    let start = Instant::now();
    let mut direct = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        f.executor
            .call("echo", INPUT, ExecOptions::default())
            .await
            .expect("a replay");
        direct.push(t.elapsed());
    }
    report("direct", direct, start.elapsed());

    let client = connect(&f.url).await;
    let start = Instant::now();
    let mut one = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        call(&client).await;
        one.push(t.elapsed());
    }
    report("http, 1 client", one, start.elapsed());

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(&f.url).await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut samples = Vec::with_capacity(SAMPLES / CLIENTS);
                for _ in 0..SAMPLES / CLIENTS {
                    let t = Instant::now();
                    call(&client).await;
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut many = Vec::with_capacity(SAMPLES);
    for task in tasks {
        many.extend(task.await.expect("a client"));
    }
    report("http, 20 clients", many, start.elapsed());
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let f = rt.block_on(fixture());
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &rt, &f);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        rt.block_on(latency_table(&f));
    }
}

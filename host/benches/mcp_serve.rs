//! Whole-process MCP serving (issue 25): real server processes, one client
//! implementation for all (rmcp's), the baselines measured in the same run.
//!
//! - **Servers**, each its own process, on stdio and streamable HTTP:
//!   `toolhost serve` (the built-in `echo` and `notes`, a scratch home and
//!   store), a bare rmcp echo that answers in process (`bare.rs`: what
//!   toolhost's own layers cost), and FastMCP's echo
//!   (`support/fastmcp_echo.py`, left out with a note when FastMCP is not
//!   installed).
//! - **Workloads**: an uncached pure call (a new input each call), a cache
//!   hit (the same input, after the warm-up) and a side-effecting call
//!   (`notes`, a new line each call; toolhost only). At 1 client on stdio
//!   and HTTP, and at 20 clients on HTTP (a session each, released
//!   together). The same three through `Executor::call` in this process.
//! - **Figures**: wall-clock p50 and p99 per call, calls/s, the server
//!   process's CPU time per call (`cpu.rs`) and its thread count, beside the
//!   issue's targets.
//! - **Rounds** (default 3) each visit every server and workload, the
//!   starting server rotating; each row shows its median over the rounds
//!   and the range.
//!
//! `cargo bench -p toolhost --bench mcp_serve` (a few minutes); `-- --quick`
//! or `TOOLHOST_BENCH_QUICK=1` for one short round. `TOOLHOST_BENCH_CALLS`
//! (default 1,000; 20 clients make 1/5 of it each) and
//! `TOOLHOST_BENCH_ROUNDS` set the sizes, `TOOLHOST_BENCH_PYTHON` the
//! interpreter with FastMCP (default `python3`), `TOOLHOST_BENCH_SERVERS`
//! which to run (`toolhost,bare,fastmcp,inprocess`, the default). Progress
//! goes to stderr, the table to stdout.

#[path = "mcp_serve/bare.rs"]
mod bare;
#[path = "mcp_serve/cpu.rs"]
mod cpu;
#[path = "mcp_serve/inprocess.rs"]
mod inprocess;
#[path = "mcp_serve/load.rs"]
mod load;
#[path = "mcp_serve/servers.rs"]
mod servers;
#[path = "mcp_serve/table.rs"]
mod table;

use std::time::Instant;

use load::Workload;
use servers::{Conn, Kind, Server, Transport};
use table::{Row, Setup, Table, Who};

/// Clients of the concurrent series.
const CLIENTS: usize = 20;

/// How much to measure.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// Calls of a 1-client series.
    calls: usize,
    /// Unmeasured calls before it.
    warm: usize,
    /// Calls of each client of a concurrent series, and its warm-up.
    per_client: usize,
    warm_per_client: usize,
    rounds: usize,
}

impl Sizes {
    fn from_env(quick: bool) -> Sizes {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        let quick = quick || std::env::var("TOOLHOST_BENCH_QUICK").is_ok_and(|v| v == "1");
        let calls = var("TOOLHOST_BENCH_CALLS")
            .unwrap_or(if quick { 200 } else { 1000 })
            .max(10);
        let rounds = var("TOOLHOST_BENCH_ROUNDS")
            .unwrap_or(if quick { 1 } else { 3 })
            .max(1);
        let per_client = (calls / 5).max(2);
        Sizes {
            calls,
            warm: (calls / 10).max(20),
            per_client,
            warm_per_client: (per_client / 10).max(5),
            rounds,
        }
    }
}

/// One stop of a round: a server, or the executor in process.
enum Stop<'a> {
    Server(&'a Server),
    InProcess(&'a inprocess::InProcess),
}

fn main() {
    if let Ok(role) = std::env::var(bare::ROLE_VAR) {
        bare::run(&role);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs benches without `--bench`: this one
        // starts servers for minutes, so it measures only when asked.
        println!("mcp_serve measures only under `cargo bench --bench mcp_serve`");
        return;
    }
    let sizes = Sizes::from_env(args.iter().any(|a| a == "--quick"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(sizes));
}

async fn run(sizes: Sizes) {
    let started = Instant::now();
    let load_before = loadavg();
    let python = wanted("fastmcp").then(servers::fastmcp_python).flatten();
    let home = servers::ToolhostHome::new();
    let mut all = Vec::new();
    if wanted("toolhost") {
        progress(
            started,
            "starting toolhost serve --http (compiles the built-in tools on a cold cache)",
        );
        all.push(servers::toolhost(&home, Transport::Http).await);
        all.push(servers::toolhost(&home, Transport::Stdio).await);
    }
    progress(started, "starting the baselines");
    if wanted("bare") {
        for transport in [Transport::Stdio, Transport::Http] {
            all.push(servers::bare(transport).await);
        }
    }
    if let Some(python) = &python {
        for transport in [Transport::Stdio, Transport::Http] {
            all.push(servers::fastmcp(python, transport).await);
        }
    }
    let executor = if wanted("inprocess") {
        Some(inprocess::InProcess::open().await)
    } else {
        None
    };
    let mut stops: Vec<Stop> = all.iter().map(Stop::Server).collect();
    stops.extend(executor.as_ref().map(Stop::InProcess));

    let mut table = Table::default();
    let mut source = None;
    for round in 0..sizes.rounds {
        // Rotate where each round starts, so no server is always first.
        let n = stops.len();
        for i in 0..n {
            let stop = &stops[(round + i) % n];
            let name = match stop {
                Stop::Server(s) => format!("{} {}", s.kind.name(), s.transport.name()),
                Stop::InProcess(_) => "Executor::call".into(),
            };
            progress(
                started,
                &format!("round {}/{}: {name}", round + 1, sizes.rounds),
            );
            for (row, series) in visit(stop, sizes).await {
                source.get_or_insert(series.cpu_source);
                table.add(row, &series);
            }
        }
    }
    for server in all {
        if let Conn::Stdio(client) = server.conn {
            let _ = client.cancel().await;
        }
    }
    progress(started, "done");

    print_header(sizes, source, python.as_ref(), &load_before);
    let mut baselines = Vec::new();
    if wanted("bare") {
        baselines.push(Kind::Bare);
    }
    if python.is_some() {
        baselines.push(Kind::FastMcp);
    }
    table.print(&baselines, CLIENTS);
    if python.is_none() && wanted("fastmcp") {
        println!(
            "\nFastMCP rows left out: not installed (`{}`).",
            servers::FASTMCP_INSTALL
        );
    }
}

/// Whether `TOOLHOST_BENCH_SERVERS` (a comma-separated list of
/// `toolhost`, `bare`, `fastmcp`, `inprocess`; default all) names `name`.
fn wanted(name: &str) -> bool {
    std::env::var("TOOLHOST_BENCH_SERVERS")
        .map_or(true, |list| list.split(',').any(|n| n.trim() == name))
}

/// Every series of one stop: toolhost runs all three workloads, a
/// baseline only the uncached echo (it has no cache and no effects).
async fn visit(stop: &Stop<'_>, sizes: Sizes) -> Vec<(Row, load::Series)> {
    let mut out = Vec::new();
    let server = match stop {
        Stop::InProcess(executor) => {
            for workload in Workload::ALL {
                let series = executor.sequential(workload, sizes.warm, sizes.calls).await;
                let row = Row {
                    workload,
                    setup: Setup::InProcess,
                    who: Who::Executor,
                };
                out.push((row, series));
            }
            return out;
        }
        Stop::Server(server) => server,
    };
    let workloads: &[Workload] = match server.kind {
        Kind::Toolhost => &Workload::ALL,
        Kind::Bare | Kind::FastMcp => &[Workload::Uncached],
    };
    for &workload in workloads {
        let row = |setup| Row {
            workload,
            setup,
            who: Who::Server(server.kind),
        };
        match &server.conn {
            Conn::Stdio(client) => {
                let series = sequential(client, server, workload, sizes).await;
                out.push((row(Setup::Stdio1), series));
            }
            Conn::Http { url, .. } => {
                let client = load::connect(url).await;
                let series = sequential(&client, server, workload, sizes).await;
                let _ = client.cancel().await;
                out.push((row(Setup::Http1), series));
                let series = load::concurrent(
                    url,
                    server.pid,
                    workload,
                    CLIENTS,
                    sizes.warm_per_client,
                    sizes.per_client,
                )
                .await;
                out.push((row(Setup::HttpMany), series));
            }
        }
    }
    out
}

/// A 1-client series, checking that toolhost's warm-up ended the way the
/// workload says (a replay only for the cache hit).
async fn sequential(
    client: &load::Client,
    server: &Server,
    workload: Workload,
    sizes: Sizes,
) -> load::Series {
    let (series, last) =
        load::sequential(client, server.pid, workload, sizes.warm, sizes.calls).await;
    if server.kind == Kind::Toolhost {
        let cached = last.as_ref().and_then(load::cached);
        assert_eq!(
            cached,
            Some(workload == Workload::CacheHit),
            "toolhost {}: {}: a replay only when the input repeats",
            server.transport.name(),
            workload.name()
        );
    }
    series
}

fn progress(started: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

/// The 1-, 5- and 15-minute load averages: a busy machine shows here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".into())
}

fn print_header(
    sizes: Sizes,
    source: Option<cpu::Source>,
    python: Option<&servers::Python>,
    load_before: &str,
) {
    let commit = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nmcp_serve: commit {commit}, {cores} cores, load average {load_before} before and {} after",
        loadavg()
    );
    if let Some(python) = python {
        println!("FastMCP {} ({})", python.fastmcp, python.exe.display());
    }
    println!(
        "{} round(s); per row and round: {} calls at 1 client after {} warm-up calls, \
         {CLIENTS} clients x {} calls after {} each",
        sizes.rounds, sizes.calls, sizes.warm, sizes.per_client, sizes.warm_per_client
    );
    println!(
        "each figure: the median over the rounds (min-max); server CPU from {}",
        source.map_or("-", cpu::Source::describe)
    );
    println!(
        "CPU / bare rmcp: toolhost's CPU per call over the bare echo's on the same transport \
         and clients (the bare server has no cache and no effects: it always echoes)"
    );
    println!(
        "in-process rows: Executor::call in the bench process, CPU of the whole bench process\n"
    );
}

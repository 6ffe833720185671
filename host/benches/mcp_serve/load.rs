//! The workloads and the two ways of driving them: one client calling in
//! sequence, and many clients (a session each) released together.
//!
//! Every series warms up first (the same workload, not measured), then
//! reads the server's CPU time, runs, and reads it again: the server's CPU
//! per call is the difference over the calls measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use tokio::sync::Barrier;

use super::cpu;

pub type Client = RunningService<RoleClient, ()>;

/// No call of this bench takes more than milliseconds: one that takes this
/// long is a hung server, and the bench stops rather than waits.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Distinct inputs across the whole run, so no pure call is ever a replay.
static SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// `echo` with a new input every call: toolhost runs the sandbox and
    /// records the result.
    Uncached,
    /// `echo` with the same input every call: a replay from the store.
    CacheHit,
    /// `notes` with a new line every call: claim, run, durable record.
    SideEffect,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Uncached, Workload::CacheHit, Workload::SideEffect];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Uncached => "uncached pure",
            Workload::CacheHit => "cache hit",
            Workload::SideEffect => "side-effecting",
        }
    }

    /// The tool and the (JSON object) input of the next call.
    pub fn next(self) -> (&'static str, String) {
        match self {
            Workload::Uncached => {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                ("echo", format!(r#"{{"message":"m{n}"}}"#))
            }
            Workload::CacheHit => ("echo", r#"{"message":"hello"}"#.to_string()),
            Workload::SideEffect => {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                ("notes", format!(r#"{{"file":"bench.txt","text":"t{n}"}}"#))
            }
        }
    }
}

/// What one series measured.
pub struct Series {
    pub latencies: Vec<Duration>,
    pub wall: Duration,
    /// The server's CPU time over `wall`.
    pub cpu: Duration,
    pub cpu_source: cpu::Source,
    /// The server's threads at the end of the series.
    pub threads: usize,
}

pub async fn connect(url: &str) -> Client {
    tokio::time::timeout(
        CALL_TIMEOUT,
        ().serve(StreamableHttpClientTransport::from_uri(url.to_string())),
    )
    .await
    .expect("the session opens in time")
    .expect("connect")
}

/// One call of `workload`; panics on an error result, a failure or a hang.
pub async fn call(client: &Client, workload: Workload) -> CallToolResult {
    let (tool, input) = workload.next();
    let arguments: JsonObject = serde_json::from_str(&input).expect("an object");
    let params = CallToolRequestParams::new(tool).with_arguments(arguments);
    let result = tokio::time::timeout(CALL_TIMEOUT, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} took over {CALL_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    result
}

/// toolhost's `_meta["toolhost/cached"]` of a result (`None` for a server
/// that says nothing of caching).
pub fn cached(result: &CallToolResult) -> Option<bool> {
    let value = serde_json::to_value(result).ok()?;
    value.get("_meta")?.get("toolhost/cached")?.as_bool()
}

/// `calls` calls in sequence on `client`, after `warm` unmeasured ones;
/// `pid` is the server's. Returns the last warm-up result too (to check
/// what kind of call the workload really was).
pub async fn sequential(
    client: &Client,
    pid: u32,
    workload: Workload,
    warm: usize,
    calls: usize,
) -> (Series, Option<CallToolResult>) {
    let mut last = None;
    for _ in 0..warm {
        last = Some(call(client, workload).await);
    }
    let mut latencies = Vec::with_capacity(calls);
    let (cpu0, _) = cpu::cpu_time(pid);
    let start = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        call(client, workload).await;
        latencies.push(t.elapsed());
    }
    let wall = start.elapsed();
    let (cpu1, cpu_source) = cpu::cpu_time(pid);
    let series = Series {
        latencies,
        wall,
        cpu: cpu1.saturating_sub(cpu0),
        cpu_source,
        threads: cpu::threads(pid),
    };
    (series, last)
}

/// `clients` sessions on `url`, each warming up with `warm` calls, then
/// released together (a barrier) for `per_client` measured calls each.
pub async fn concurrent(
    url: &str,
    pid: u32,
    workload: Workload,
    clients: usize,
    warm: usize,
    per_client: usize,
) -> Series {
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        sessions.push(connect(url).await);
    }
    // Everyone warmed up (and this task read the CPU), then everyone goes.
    let warmed = Arc::new(Barrier::new(clients + 1));
    let go = Arc::new(Barrier::new(clients + 1));
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|client| {
            let (warmed, go) = (warmed.clone(), go.clone());
            tokio::spawn(async move {
                for _ in 0..warm {
                    call(&client, workload).await;
                }
                warmed.wait().await;
                go.wait().await;
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    call(&client, workload).await;
                    latencies.push(t.elapsed());
                }
                (latencies, client)
            })
        })
        .collect();
    warmed.wait().await;
    let (cpu0, _) = cpu::cpu_time(pid);
    let start = Instant::now();
    go.wait().await;
    let mut latencies = Vec::with_capacity(clients * per_client);
    let mut done = Vec::with_capacity(clients);
    for task in tasks {
        let (l, client) = task.await.expect("a client task");
        latencies.extend(l);
        done.push(client);
    }
    let wall = start.elapsed();
    let (cpu1, cpu_source) = cpu::cpu_time(pid);
    let threads = cpu::threads(pid);
    for client in done {
        // Ends the session (DELETE), so sessions do not pile up over rounds.
        let _ = client.cancel().await;
    }
    Series {
        latencies,
        wall,
        cpu: cpu1.saturating_sub(cpu0),
        cpu_source,
        threads,
    }
}

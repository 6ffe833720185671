//! The host's overhead per agent step, beside its baseline in the same run:
//!
//! - `agent/journaled_step`: `Agent` runs of 10 steps on the scripted model
//!   (zero latency) calling `echo`, every model turn and tool outcome
//!   journaled under `synchronous=FULL`, plus the run's own rows;
//! - `agent/bare_step`: the same loop by hand, with the same chain and the
//!   same executor (so the same tool call path), but no journal.
//!
//! Both report time per step (throughput = steps); the difference is what
//! the journal, digests and bookkeeping add to a step. `agent/commit` is
//! the floor under it: one durable (`synchronous=FULL`) store commit, as a
//! journaled step of pure calls costs one, plus the run's own two per run.
//!
//! Each runs twice, beside each other in one run: `agent/sqlite/...` on a
//! SQLite file (WAL, `synchronous=FULL`), `agent/postgres/...` on a
//! throwaway local PostgreSQL cluster that syncs every commit (fsync on,
//! `synchronous_commit = on`), where a journaled step also reads the shared
//! breaker states before its model turn and its tool phase, as on SQLite.
//! `TOOLHOST_BENCH_PG_URL=postgres://...` benches an existing database
//! instead of starting a cluster.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use toolhost::agent::{Agent, AgentOptions};
use toolhost::config::Config;
use toolhost::idempotency::{ExecOptions, Executor, Scope};
use toolhost::model::{ChatRequest, Message, Part, Role, Scripted, ToolSpec, Turn};
use toolhost::resilience::{Chain, ChainBuilder, EntrySpec};
use toolhost::sandbox::{EXAMPLES_DIR, Sandbox, SandboxOptions};
use toolhost::store::Store;

#[path = "support/mod.rs"]
mod support;

use support::{runtime, stores};

const STEPS: usize = 10;

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

/// The loop with no journal: model, tools (through the same executor),
/// results, until the answer.
async fn bare_run(chain: &Chain, executor: &Executor, tools: &[ToolSpec], run: u64) {
    let mut request = ChatRequest {
        system: Some("bench".into()),
        messages: vec![Message::user("echo")],
        tools: tools.to_vec(),
        max_tokens: None,
    };
    for step in 1.. {
        let served = chain.call(&request).await.expect("the model answers");
        let response = served.response;
        request.messages.push(Message::assistant(&response));
        if response.tool_calls.is_empty() {
            return;
        }
        let mut parts = Vec::new();
        for (i, call) in response.tool_calls.iter().enumerate() {
            let options = ExecOptions {
                scope: Scope::Step {
                    run_id: format!("bare-{run}"),
                    step,
                    index: i as u32,
                },
                ..ExecOptions::default()
            };
            let out = executor
                .call(&call.name, &call.arguments.to_string(), options)
                .await
                .expect("echo works");
            parts.push(Part::ToolResult {
                call_id: call.id.clone(),
                content: out.output.to_string(),
                is_error: false,
            });
        }
        request.messages.push(Message {
            role: Role::User,
            parts,
        });
    }
}

/// The executor on `echo` over `store`, and the tool specs it offers.
fn executor(
    rt: &tokio::runtime::Runtime,
    tools: &Path,
    store: Store,
) -> (Arc<Executor>, Vec<ToolSpec>) {
    let sandbox = rt
        .block_on(Sandbox::open(SandboxOptions::for_dir(tools)))
        .expect("open the sandbox");
    let executor = Arc::new(Executor::new(sandbox, store));
    let specs = executor
        .sandbox()
        .tools()
        .map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            input_schema: t.input_schema.clone(),
        })
        .collect();
    (executor, specs)
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let tools = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(
        Path::new(EXAMPLES_DIR).join("echo.wasm"),
        tools.path().join("echo.wasm"),
    )
    .expect("copy echo");
    let stores = stores::open(&rt);
    let (sqlite, postgres) = (stores.sqlite.clone(), stores.postgres.clone());
    let config = Config::default();
    let options = AgentOptions::from_config(&config.agent);
    let n = AtomicU64::new(0);

    let mut group = c.benchmark_group("agent");
    group.measurement_time(Duration::from_secs(5));
    for (name, store) in [("sqlite", sqlite), ("postgres", postgres)] {
        let (executor, specs) = executor(&rt, tools.path(), store);
        group.throughput(Throughput::Elements(STEPS as u64));
        // The scripted model answers by the conversation, so every run is
        // the same 10 steps on one chain.
        let agent = Agent::new(executor.clone(), chain(&config), &config);
        let bare = chain(&config);
        group.bench_function(format!("{name}/journaled_step"), |b| {
            b.iter(|| {
                let id = format!("run-{}", n.fetch_add(1, Ordering::Relaxed));
                let out = rt
                    .block_on(agent.start(Some(id), "echo", &options))
                    .expect("the run");
                assert_eq!(out.steps as usize, STEPS);
            })
        });
        group.bench_function(format!("{name}/bare_step"), |b| {
            b.iter(|| {
                let run = n.fetch_add(1, Ordering::Relaxed);
                rt.block_on(bare_run(&bare, &executor, &specs, run));
            })
        });
        group.throughput(Throughput::Elements(1));
        let store = executor.store().clone();
        group.bench_function(format!("{name}/commit"), |b| {
            b.iter(|| {
                rt.block_on(store.bump(vec![("bench_commit", 1)]))
                    .expect("a durable commit")
            })
        });
    }
    group.finish();
}

criterion_group!(agent, benches);
criterion_main!(agent);

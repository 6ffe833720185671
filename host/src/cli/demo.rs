//! `toolhost demo`: the whole story offline, with no API keys, on the
//! scripted model and the real example tools (`calc`, `jq`, `notes`).
//!
//! 1. A multi-step task on a fallback chain whose primary is rate limited
//!    (retries honour `Retry-After`), then goes down (the chain falls back,
//!    the primary's breaker opens and is persisted).
//! 2. A second task in a child process, SIGKILLed midway, then resumed:
//!    journaled steps come from the journal, the rest run live, and every
//!    `notes` line exists exactly once. The child adopts the open breaker
//!    from the store and never calls the dead primary.
//! 3. A summary with the numbers, from the journal (`toolhost stats`).
//!
//! Everything goes in a fresh directory that is kept, so `runs show` and
//! `stats` can be run on it afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use toolhost::agent::{AgentOptions, ResumeOptions};
use toolhost::config::Config;
use toolhost::store::{RunStatus, StepKind};

use super::progress::Progress;
use super::{Env, Failure};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to put the demo's config, scripts, database and notes
    /// (default: a new directory under the system's temp directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

const FALLBACK_RUN: &str = "demo-fallback";
const CRASH_RUN: &str = "demo-crash";
const CRASH_LINES: usize = 6;
/// The child is killed once its journal holds this many whole steps (the
/// model turn and its tool outcome): that is, during the next turn's model
/// think time ([`THINK_MS`]), never in the middle of a `notes` write. A
/// kill during the write would be honest too, but it leaves the call
/// `in_doubt` for an operator, which is a different story from this one
/// (see `toolhost cache resolve`).
const KILL_AFTER_STEPS: usize = 3;
/// The scripted model's think time per turn in the crash task: the window
/// in which the child is killed.
const THINK_MS: u64 = 250;

fn io(e: impl std::fmt::Display) -> Failure {
    Failure::internal(format!("demo: {e}"))
}

fn call(name: &str, arguments: Value) -> Value {
    json!({ "name": name, "arguments": arguments })
}

/// The turns of the first task: parallel calls, side effects, a repeated
/// pure call (a cache hit), then the answer.
fn order_turns() -> Value {
    let items = json!([
        {"name": "desk lamp", "price": 19.99, "qty": 3},
        {"name": "mug", "price": 4.5, "qty": 2}
    ]);
    json!([
        {"text": "I'll total the order and find its priciest item.",
         "tool_calls": [
            call("calc", json!({"expr": "3*19.99 + 2*4.5"})),
            call("jq", json!({"filter": "max_by(.price) | .name", "input": items}))
         ]},
        {"tool_calls": [call("notes", json!({"file": "orders.txt", "text": "order 1001: total 68.97"}))]},
        {"tool_calls": [call("notes", json!({"file": "orders.txt", "text": "order 1001: priciest item desk lamp"}))]},
        {"text": "Double-checking the total before I answer.",
         "tool_calls": [call("calc", json!({"expr": "3*19.99 + 2*4.5"}))]},
        {"tool_calls": [call("calc", json!({"expr": "68.97 * 0.2"}))]},
        {"text": "Order 1001 totals 68.97 (VAT at 20 % is 13.79); its priciest item is the desk lamp. Both facts are recorded in orders.txt."}
    ])
}

/// The turns of the second task: one `notes` line per turn, with model
/// think time so the child can be killed midway.
fn packing_turns() -> Value {
    let mut turns: Vec<Value> = (1..=CRASH_LINES)
        .map(|k| {
            json!({"delay_ms": THINK_MS, "tool_calls": [call("notes", json!({
                "file": "packing.txt", "text": format!("box {k} of {CRASH_LINES} packed")
            }))]})
        })
        .collect();
    turns.push(
        json!({"text": format!("All {CRASH_LINES} boxes are packed and logged in packing.txt.")}),
    );
    Value::Array(turns)
}

fn write_json(path: &Path, v: &Value) -> Result<(), Failure> {
    std::fs::write(path, serde_json::to_string_pretty(v).map_err(io)?).map_err(io)
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// Writes a config whose backup answers with `backup_script`, compiling
/// into `cache` (see [`artifacts_dir`]).
fn write_config(
    dir: &Path,
    name: &str,
    backup_script: &str,
    tools_dir: &Path,
    cache: &Path,
) -> Result<PathBuf, Failure> {
    let path = dir.join(name);
    let text = format!(
        r#"# Written by `toolhost demo`.
[sandbox]
builtin_tools = false
tools_dir = {tools}
cache_dir = {cache}

[tools.notes]
dirs = [{{ host = {data}, guest = "/data", mode = "rw" }}]

[[models]]
name = "primary"
provider = "scripted"
model = "demo-primary"
script = {primary}

[[models]]
name = "backup"
provider = "scripted"
model = "demo-backup"
script = {backup}

[retry]
max_attempts = 3
base_delay_ms = 10
max_delay_ms = 100

[breaker]
open_ms = 60000

[store]
path = {db}
"#,
        tools = toml_str(tools_dir),
        cache = toml_str(cache),
        data = toml_str(&dir.join("data")),
        primary = toml_str(&dir.join("primary.json")),
        backup = toml_str(&dir.join(backup_script)),
        db = toml_str(&dir.join("toolhost.db")),
    );
    std::fs::write(&path, text).map_err(io)?;
    Ok(path)
}

/// Where the demo's compiled tools go: the artifact cache of the config
/// the demo was started under (by default the user's cache directory,
/// `$XDG_CACHE_HOME/toolhost/artifacts`), so a second demo, and every
/// other command, reuse what the first compiled; without a home directory,
/// the demo's own directory. Never a fixed path in the shared temp
/// directory: another user could plant artifacts there, or own it first.
fn artifacts_dir(env: &Env, dir: &Path) -> PathBuf {
    env.config
        .sandbox
        .effective_cache_dir()
        .unwrap_or_else(|| dir.join("artifacts"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn env_for(config: &Path) -> Result<Env, Failure> {
    Ok(Env {
        config: Config::load(Some(config)).map_err(|e| Failure::config(e.to_string()))?,
        json: false,
        tools_dir: None,
        flags: vec![
            "--config".into(),
            super::lookup::shell_quote(&config.to_string_lossy()),
        ],
        quiet_warnings: false,
    })
}

pub async fn run(env: &Env, args: DemoArgs) -> Result<(), Failure> {
    let t0 = Instant::now();
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "toolhost-demo-{}-{}",
            std::process::id(),
            toolhost::resilience::unix_ms()
        )),
    };
    std::fs::create_dir_all(dir.join("data")).map_err(io)?;
    let dir = dir.canonicalize().map_err(io)?;
    // Only the tools the story uses, so a first run compiles little: from
    // the configured tools directory, else the built-in ones.
    let source = env
        .tools_dir
        .clone()
        .or_else(|| env.config.sandbox.tools_dir.clone());
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).map_err(io)?;
    for t in ["calc", "jq", "notes"] {
        let file = format!("{t}.wasm");
        let copied = match (&source, toolhost::sandbox::builtin::bytes(&file)) {
            (Some(source), _) => std::fs::copy(source.join(&file), tools.join(&file))
                .map(drop)
                .map_err(|e| format!("cannot copy {file} from {}: {e}", source.display())),
            (None, Some(bytes)) => std::fs::write(tools.join(&file), bytes)
                .map_err(|e| format!("cannot write {file}: {e}")),
            (None, None) => Err(format!("{file} is not a built-in tool")),
        };
        copied.map_err(io)?;
    }
    // The primary: two rate limits (Retry-After 30 ms), then from its 5th
    // request on an outage. The backup answers everything.
    write_json(
        &dir.join("primary.json"),
        &json!({"mode": "conversation", "log": "primary.log", "turns": order_turns(),
        "faults": [
            {"at": 1, "count": 2, "kind": "rate_limited", "retry_after_ms": 30},
            {"at": 5, "count": 1_000_000, "kind": "server_error"}
        ]}),
    )?;
    write_json(
        &dir.join("backup.json"),
        &json!({"mode": "conversation", "log": "backup.log", "turns": order_turns()}),
    )?;
    write_json(
        &dir.join("packing.json"),
        &json!({"mode": "conversation", "log": "backup.log", "turns": packing_turns()}),
    )?;
    let cache = artifacts_dir(env, &dir);
    let order_config = write_config(&dir, "toolhost.toml", "backup.json", &tools, &cache)?;
    let crash_config = write_config(&dir, "crash.toml", "packing.json", &tools, &cache)?;

    println!("toolhost demo: offline, scripted models, real sandboxed tools");
    println!("working directory: {}\n", dir.display());

    // 1. Rate limits, an outage, fallback.
    println!("== 1. A task on a chain whose primary is rate limited, then goes down ==");
    let order_env = env_for(&order_config)?;
    let agent = order_env.agent(Some(Arc::new(Progress::stdout()))).await?;
    let options = AgentOptions::from_config(&order_env.config.agent);
    let first = agent
        .start(
            Some(FALLBACK_RUN.into()),
            "Total order 1001 (3 desk lamps at 19.99, 2 mugs at 4.50), find its priciest item, record both in orders.txt, and give the VAT at 20 %.",
            &options,
        )
        .await
        .map_err(super::agent::agent_failure)?;
    print_outcome(&first);
    let store = agent.store().clone();
    drop(agent);
    let primary_before = log_count(&dir.join("primary.log"));

    // 2. A crash and a resume.
    println!("== 2. A second task in a child process, killed with SIGKILL midway, then resumed ==");
    let exe = std::env::current_exe().map_err(io)?;
    let mut child = std::process::Command::new(exe)
        .arg("--config")
        .arg(&crash_config)
        .args([
            "agent",
            "run",
            "Pack the six boxes, logging each one to packing.txt.",
            "--run-id",
            CRASH_RUN,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(io)?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut journaled = 0;
    while journaled < KILL_AFTER_STEPS {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::internal(
                "demo: the child made no progress in 20 s",
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::internal(format!(
                "demo: the child exited early ({status})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        journaled = store
            .steps(CRASH_RUN)
            .await
            .map(|s| {
                s.iter()
                    .filter(|s| s.kind == StepKind::Tool && s.is_final)
                    .count()
            })
            .unwrap_or(0);
    }
    child.kill().map_err(io)?; // SIGKILL
    let _ = child.wait();
    let before = lines(&dir.join("data/packing.txt")).len();
    println!(
        "child pid {pid} killed with SIGKILL during step {}, after {journaled} journaled steps ({before} lines in packing.txt)",
        journaled + 1
    );
    let crash_env = env_for(&crash_config)?;
    let agent = crash_env.agent(Some(Arc::new(Progress::stdout()))).await?;
    let second = agent
        .resume(CRASH_RUN, &ResumeOptions::default())
        .await
        .map_err(super::agent::agent_failure)?;
    print_outcome(&second);
    drop(agent);

    let primary_during = log_count(&dir.join("primary.log")) - primary_before;
    summary(&store, &dir, t0, &first, &second, primary_during).await
}

fn print_outcome(o: &toolhost::agent::RunOutcome) {
    println!(
        "-> {}: {}\n",
        o.status.as_str(),
        o.answer.as_deref().unwrap_or_default()
    );
}

fn log_count(path: &Path) -> usize {
    lines(path).len()
}

async fn summary(
    store: &toolhost::store::Store,
    dir: &Path,
    t0: Instant,
    first: &toolhost::agent::RunOutcome,
    second: &toolhost::agent::RunOutcome,
    primary_during: usize,
) -> Result<(), Failure> {
    let failure =
        |e: toolhost::store::StoreError| Failure::new(1, "store_unavailable", e.to_string());
    let overall = store.stats(None).await.map_err(failure)?;
    let one = store.stats(Some(FALLBACK_RUN)).await.map_err(failure)?;
    let two = store.stats(Some(CRASH_RUN)).await.map_err(failure)?;
    let breakers = store.breaker_states("model:").await.map_err(failure)?;
    let orders = lines(&dir.join("data/orders.txt"));
    let packing = lines(&dir.join("data/packing.txt"));
    let unique = |ls: &[String]| {
        let texts: std::collections::BTreeSet<&str> = ls
            .iter()
            .filter_map(|l| l.split_once(' ').map(|(_, t)| t))
            .collect();
        texts.len()
    };

    println!("== Summary ==");
    println!(
        "task 1 ({FALLBACK_RUN}): {} in {} steps, {} ms",
        first.status.as_str(),
        first.steps,
        first.spent_ms
    );
    println!(
        "  retries          {} (the primary's rate limits, honouring Retry-After)",
        one.retries
    );
    println!(
        "  fallbacks        {} of {} model turns went to the backup (primary outage)",
        one.fell_back, one.model_turns
    );
    for b in &breakers {
        println!(
            "  breaker          {}: {} (opened {} time(s)); persisted, so every process sees it",
            b.name,
            b.state.state.as_str(),
            b.state.opens
        );
    }
    println!(
        "  cache hits       {} of {} tool calls (the repeated pure `calc` call)",
        one.cache_hits, one.tool_calls
    );
    println!(
        "task 2 ({CRASH_RUN}): {} in {} steps after a SIGKILL",
        second.status.as_str(),
        second.steps
    );
    println!(
        "  steps resumed    {} served from the journal (no model call, no tool call), {} live",
        two.steps_resumed,
        second.steps - second.steps_resumed
    );
    println!(
        "  model requests   {primary_during} to the primary (its breaker, opened by task 1 and persisted, \
         was open in the child and in the resume too), {} to the backup over both tasks",
        log_count(&dir.join("backup.log"))
    );
    let exactly_once = orders.len() == 2
        && unique(&orders) == 2
        && packing.len() == CRASH_LINES
        && unique(&packing) == CRASH_LINES;
    println!(
        "effects executed exactly once: {} ({} of 2 order lines, {} of {CRASH_LINES} packing lines, no duplicates)",
        if exactly_once { "yes" } else { "NO" },
        orders.len(),
        packing.len()
    );
    println!(
        "all runs: completion rate {:.0} %, retry rate {:.1} %, fallback rate {:.1} %, {} breaker open(s), journal {:.0} bytes per step",
        overall.completion_rate * 100.0,
        overall.retry_rate * 100.0,
        overall.fallback_rate * 100.0,
        overall.breaker_opens,
        overall.journal_bytes_per_step
    );
    println!("demo finished in {:.1} s", t0.elapsed().as_secs_f64());
    let config = dir.join("toolhost.toml");
    println!(
        "\nlook closer:\n  toolhost --config {0} runs show {FALLBACK_RUN}\n  toolhost --config {0} runs show {CRASH_RUN}\n  toolhost --config {0} stats\n  toolhost --config {0} replay {FALLBACK_RUN}",
        config.display()
    );
    if first.status != RunStatus::Completed
        || second.status != RunStatus::Completed
        || !exactly_once
    {
        return Err(Failure::internal(
            "demo: the story did not end as it should (see above)",
        ));
    }
    Ok(())
}

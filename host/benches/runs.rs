//! Runs per second one `toolhost serve --http` drives, beside the same runs
//! through `toolhost agent run` processes, both measured in the same run on
//! the same machine:
//!
//! - `runs/server`: a batch of runs submitted to one server over the run
//!   API (`POST /v1/runs`), all in flight at once, the server driving
//!   `[serve] max_concurrent_runs` of them at a time; timed until the last
//!   one reads `completed` (`GET /v1/runs`);
//! - `runs/agent_run_processes`: the same batch as `toolhost agent run`
//!   processes, as many at a time as the server drives, each starting,
//!   loading its tools, opening the store, running and exiting.
//!
//! Every run is 3 steps on the scripted model (zero latency), each step one
//! `echo` call, journaled on one SQLite file (`synchronous=FULL`). The
//! difference is what a process per run costs: start-up, loading the
//! tools, opening the store and its migrations check, and exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use toolhost::sandbox::EXAMPLES_DIR;

#[path = "support/mod.rs"]
mod support;

/// Runs per measured batch.
const BATCH: usize = 32;
/// Runs driven at once, by the server and by the processes.
const CONCURRENT: usize = 8;
const BIN: &str = env!("CARGO_BIN_EXE_toolhost");

fn script(dir: &Path) -> PathBuf {
    let turns: Vec<Value> = (1..=3)
        .map(|k| json!({"tool_calls": [{"name": "echo", "arguments": {"message": format!("step {k}")}}]}))
        .chain([json!({"text": "done"})])
        .collect();
    let path = dir.join("script.json");
    std::fs::write(
        &path,
        json!({"mode": "conversation", "turns": turns}).to_string(),
    )
    .expect("write the script");
    path
}

/// A config over the examples, a SQLite file in `dir` and the script.
fn config(dir: &Path) -> PathBuf {
    let text = format!(
        "[sandbox]\nbuiltin_tools = false\ntools_dir = {:?}\ncache_dir = {:?}\n\n[store]\npath = {:?}\n\n[serve]\nmax_concurrent_runs = {CONCURRENT}\n\n[[models]]\nname = \"bench\"\nprovider = \"scripted\"\nmodel = \"bench\"\nscript = {:?}\n",
        EXAMPLES_DIR,
        dir.join("cache"),
        dir.join("runs.db"),
        script(dir),
    );
    let path = dir.join("toolhost.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

fn command(dir: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env_remove("TOOLHOST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// A `toolhost serve --http 127.0.0.1:0` child and its base URL.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Server {
    fn start(dir: &Path, config: &Path) -> Server {
        use std::io::BufRead;
        let mut child = command(dir, config)
            .args(["serve", "--http", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start toolhost serve");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.strip_prefix("toolhost: serving MCP at ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.trim_end_matches("/mcp").to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its URL");
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Submits `BATCH` runs and waits until every one completed.
async fn server_batch(client: &reqwest::Client, base: &str, batch: u64) {
    for i in 0..BATCH {
        let body = json!({"task": "echo", "run_id": format!("s{batch}-{i}")});
        let r = client
            .post(format!("{base}/v1/runs"))
            .body(body.to_string())
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page: Value = client
            .get(format!("{base}/v1/runs?limit={BATCH}"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("JSON");
        let runs = page["runs"].as_array().expect("runs");
        let ours = |r: &&Value| {
            r["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("s{batch}-")))
        };
        let done = runs
            .iter()
            .filter(ours)
            .filter(|r| r["status"] == "completed")
            .count();
        if done == BATCH {
            return;
        }
        assert!(
            runs.iter()
                .filter(ours)
                .all(|r| r["status"] == "running" || r["status"] == "completed"),
            "{page}"
        );
        assert!(
            Instant::now() < deadline,
            "the batch did not finish: {page}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `BATCH` `agent run` processes, `CONCURRENT` at a time.
fn process_batch(dir: &Path, config: &Path, batch: u64) {
    let mut children = Vec::new();
    for i in 0..BATCH {
        if children.len() == CONCURRENT {
            let mut first: std::process::Child = children.remove(0);
            assert!(first.wait().expect("wait").success());
        }
        let child = command(dir, config)
            .args(["agent", "run", "echo", "--run-id", &format!("p{batch}-{i}")])
            .stderr(Stdio::null())
            .spawn()
            .expect("start agent run");
        children.push(child);
    }
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("runs");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    let dir = tempfile::tempdir().expect("a temp dir");
    let config = config(dir.path());
    // Compile the tools once, outside the measurement.
    let out = command(dir.path(), &config)
        .args(["tools", "list"])
        .stderr(Stdio::null())
        .output()
        .expect("tools list");
    assert!(out.status.success());

    let rt = support::runtime();
    let server = Server::start(dir.path(), &config);
    let client = reqwest::Client::new();
    let batches = AtomicU64::new(0);
    group.bench_function("server", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let n = batches.fetch_add(1, Ordering::Relaxed);
                rt.block_on(server_batch(&client, &server.base, n));
            }
            start.elapsed()
        })
    });
    drop(server);
    group.bench_function("agent_run_processes", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let n = batches.fetch_add(1, Ordering::Relaxed);
                process_batch(dir.path(), &config, n);
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(runs, benches);
criterion_main!(runs);

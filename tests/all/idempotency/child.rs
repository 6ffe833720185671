//! Child processes for the cross-process tests: this test binary, run again
//! with `TOOLHOST_IDEM_CHILD` set, plays one caller and exits. A small,
//! fast child: it opens the test kit only, then makes one call.
//!
//! The parent test runs itself (`--exact <its own name>`); the test's first
//! line, [`act_if_child`], turns the process into the child. The child
//! reports on stdout in lines starting with [`MARK`].

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::World;

const ENV: &str = "TOOLHOST_IDEM_CHILD";
pub const MARK: &str = "IDEM-CHILD ";

/// What a child does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Role {
    /// The world's directory (database and `data/`).
    pub world: PathBuf,
    pub tool: String,
    pub input: String,
    /// The explicit idempotency key.
    pub key: String,
    /// A file barrier: `(dir, parties)`. Each child adds a file and waits
    /// until `parties` files exist before calling.
    pub barrier: Option<(PathBuf, usize)>,
    /// Call `tool` from this directory, `data/` granted to it, instead of
    /// the test kit (the Python and JavaScript tools).
    #[serde(default)]
    pub tools_dir: Option<PathBuf>,
}

/// The `--exact` name of test `f` in module `module` (`module_path!()`,
/// whose first segment is the test binary's crate).
pub fn test_path(module: &str, f: &str) -> String {
    let inside = module.split_once("::").map_or("", |(_, rest)| rest);
    format!("{inside}::{f}")
}

/// Starts a child playing `role` in the test `test`.
pub fn spawn(test: &str, role: &Role) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads", "1", "-q"])
        .env(ENV, serde_json::to_string(role).expect("a role serialises"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a child")
}

/// The reports of a child, read on a thread so every read is bounded.
pub struct Reports(mpsc::Receiver<Value>);

impl Reports {
    pub fn of(stdout: ChildStdout) -> Reports {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(v) = line.strip_prefix(MARK)
                    && let Ok(v) = serde_json::from_str(v)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        Reports(rx)
    }

    /// The next report, or a test failure after `timeout`.
    pub fn next(&self, timeout: Duration, what: &str) -> Value {
        self.0
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no `{what}` report from a child within {timeout:?}: {e}"))
    }
}

/// Starts `parties` children playing `role` in `test` (the role's barrier
/// releases them together) and returns each one's `done` report, within
/// `limit` per report.
pub fn race(test: &str, role: &Role, parties: usize, limit: Duration) -> Vec<Value> {
    let mut children: Vec<_> = (0..parties).map(|_| spawn(test, role)).collect();
    let reports: Vec<Reports> = children
        .iter_mut()
        .map(|c| Reports::of(c.stdout.take().expect("piped stdout")))
        .collect();
    let done = reports
        .iter()
        .map(|r| {
            r.next(limit, "ready");
            r.next(limit, "done")
        })
        .collect();
    for mut c in children {
        c.wait().expect("a child exits");
    }
    done
}

/// Every caller of a race succeeded, exactly one ran the tool, and (what
/// proves the overlap) every caller asked while that one execution ran.
pub fn assert_one_execution(done: &[Value]) {
    assert!(done.iter().all(|d| d["ok"] == true), "{done:?}");
    let runners: Vec<_> = done.iter().filter(|d| d["cached"] == false).collect();
    assert_eq!(
        runners.len(),
        1,
        "exactly one process ran the tool: {done:?}"
    );
    let ran_until = runners[0]["ended_ms"].as_i64().expect("ended_ms");
    for d in done {
        assert!(
            d["started_ms"].as_i64().expect("started_ms") < ran_until,
            "every caller asked while the execution was running: {done:?}"
        );
    }
}

/// If this process was started as a child, plays its role and exits.
pub fn act_if_child() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let role: Role = serde_json::from_str(&spec).expect("a role from the parent");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(play(role));
    std::process::exit(0);
}

fn report(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARK}{v}");
    let _ = out.flush();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn play(role: Role) {
    let world = World::at(role.world.clone());
    let ex = match &role.tools_dir {
        Some(dir) => {
            let policies =
                std::collections::BTreeMap::from([(role.tool.clone(), world.append_policy())]);
            world.executor(dir, policies, None).await
        }
        None => world.append_executor().await,
    };
    if let Some((dir, parties)) = &role.barrier {
        std::fs::write(dir.join(format!("{}", std::process::id())), b"").expect("join the barrier");
        let start = Instant::now();
        while std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0) < *parties {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the barrier never filled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    report(json!({"event": "ready", "pid": std::process::id()}));
    let started = now_ms();
    let result = ex
        .call(&role.tool, &role.input, super::keyed(&role.key))
        .await;
    let ended = now_ms();
    let body = match result {
        Ok(out) => json!({"event": "done", "ok": true, "cached": out.cached, "key": out.key,
            "attempt": out.attempt, "output": out.output, "started_ms": started, "ended_ms": ended}),
        Err(e) => json!({"event": "done", "ok": false, "kind": e.kind(), "key": e.key(),
            "message": e.to_string(), "started_ms": started, "ended_ms": ended}),
    };
    report(body);
}

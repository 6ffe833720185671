//! The same three workloads through `Executor::call` in this process (no
//! MCP, no transport), as `cache.rs` builds an executor: the built-in
//! `echo` and `notes` (granted a scratch data directory), a SQLite store.
//! The side-effecting call here is the in-process target (p99 <=
//! 1 ms: claim, run, durable record); the pure ones show what the serving
//! path adds on top of the executor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use toolhost::config::{DirGrant, DirMode, ToolPolicy};
use toolhost::idempotency::{ExecOptions, Executor};
use toolhost::sandbox::{Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};

use super::cpu;
use super::load::{Series, Workload};
use super::servers::artifacts_dir;

pub struct InProcess {
    executor: Arc<Executor>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    pub async fn open() -> InProcess {
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("the notes directory");
        let notes = ToolPolicy {
            dirs: vec![DirGrant {
                host: data,
                guest: "/data".into(),
                mode: DirMode::Rw,
            }],
            ..ToolPolicy::default()
        };
        let options = SandboxOptions {
            builtin: true,
            tools_dir: None,
            only: Some(BTreeSet::from(["echo".to_string(), "notes".to_string()])),
            cache_dir: Some(artifacts_dir()),
            key_dir: Some(artifacts_dir().with_extension("key")),
            policies: BTreeMap::from([("notes".to_string(), notes)]),
            ..SandboxOptions::for_dir(dir.path())
        };
        let sandbox = Sandbox::open(options).await.expect("open the sandbox");
        let path = dir.path().join("inprocess.db");
        let store =
            tokio::task::spawn_blocking(move || Store::open(&path, StoreOptions::default()))
                .await
                .expect("the opener")
                .expect("open the store");
        InProcess {
            executor: Arc::new(Executor::new(sandbox, store)),
            _dir: dir,
        }
    }

    async fn call(&self, workload: Workload) -> bool {
        let (tool, input) = workload.next();
        let out = self
            .executor
            .call(tool, &input, ExecOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        out.cached
    }

    /// `calls` calls in sequence after `warm` unmeasured ones; the CPU is
    /// this whole process's (the bench's idle client runtime included).
    pub async fn sequential(&self, workload: Workload, warm: usize, calls: usize) -> Series {
        let mut cached = false;
        for _ in 0..warm {
            cached = self.call(workload).await;
        }
        assert_eq!(
            cached,
            workload == Workload::CacheHit,
            "{}: a replay only when the input repeats",
            workload.name()
        );
        let pid = std::process::id();
        let mut latencies: Vec<Duration> = Vec::with_capacity(calls);
        let (cpu0, _) = cpu::cpu_time(pid);
        let start = Instant::now();
        for _ in 0..calls {
            let t = Instant::now();
            self.call(workload).await;
            latencies.push(t.elapsed());
        }
        let wall = start.elapsed();
        let (cpu1, cpu_source) = cpu::cpu_time(pid);
        Series {
            latencies,
            wall,
            cpu: cpu1.saturating_sub(cpu0),
            cpu_source,
            threads: 0,
        }
    }
}

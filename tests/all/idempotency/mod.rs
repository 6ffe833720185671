//! Idempotent execution over real SQLite files: keys, replays, claims,
//! exactly-once side effects across tasks and processes, crashes.

mod builds;
mod child;
mod crash;
mod crash_loop;
mod effects;
mod faults;
mod ijson;
mod processes;
mod replay;
mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toolhost::config::{DirGrant, DirMode, EffectName, ToolPolicy};
use toolhost::idempotency::{Clock, Executor, SystemClock};
use toolhost::sandbox::{Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};

pub fn testkit_dir() -> PathBuf {
    PathBuf::from(toolhost::sandbox::TESTKIT_DIR)
}

/// A temp directory with `data/` (granted to `append` at `/data`) and a
/// database file.
pub struct World {
    root: PathBuf,
    /// Removes the directory at the end, in the process that made it.
    _owned: Option<tempfile::TempDir>,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        World {
            root: dir.path().to_path_buf(),
            _owned: Some(dir),
        }
    }

    /// Another process's world (a child's view of its parent's).
    pub fn at(root: PathBuf) -> World {
        World { root, _owned: None }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("toolhost.db")
    }

    /// The lines of `data/<file>` (none if it does not exist).
    pub fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.data().join(file))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// A policy granting `data/` read-write at `/data`.
    pub fn append_policy(&self) -> ToolPolicy {
        ToolPolicy {
            dirs: vec![DirGrant {
                host: self.data(),
                guest: "/data".into(),
                mode: DirMode::Rw,
            }],
            timeout_ms: Some(20_000),
            ..ToolPolicy::default()
        }
    }

    /// The test kit's policies: `append` and `tally` granted `data/`.
    pub fn testkit_policies(&self) -> BTreeMap<String, ToolPolicy> {
        BTreeMap::from([
            ("append".to_string(), self.append_policy()),
            ("tally".to_string(), self.append_policy()),
        ])
    }

    /// A `toolhost.toml` for the CLI: the test kit's tools, `data/`
    /// granted to `append`, this world's database.
    pub fn write_config(&self) -> PathBuf {
        let path = self.root.join("toolhost.toml");
        let text = format!(
            "[sandbox]\nbuiltin_tools = false\ntools_dir = {:?}\ncache_dir = {:?}\nkey_dir = {:?}\n\n[tools.append]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\ntimeout_ms = 20_000\n\n[store]\npath = {:?}\n",
            testkit_dir(),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts.key"),
            self.data(),
            self.db()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An executor over `tools_dir` with the given policies, on this
    /// world's database.
    pub async fn executor(
        &self,
        tools_dir: &Path,
        policies: BTreeMap<String, ToolPolicy>,
        clock: Option<Arc<dyn Clock>>,
    ) -> Executor {
        let mut options = SandboxOptions::for_dir(tools_dir);
        options.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
        options.policies = policies;
        let sandbox = Sandbox::open(options).await.unwrap();
        let store = Store::open(&self.db(), StoreOptions::default()).unwrap();
        Executor::with_clock(
            sandbox,
            store,
            clock.unwrap_or_else(|| Arc::new(SystemClock)),
        )
    }

    /// An executor over the test kit with `append` and `tally` granted `data/`.
    pub async fn append_executor(&self) -> Executor {
        self.executor(&testkit_dir(), self.testkit_policies(), None)
            .await
    }

    /// How many lines of `data/<file>` start with `key`.
    pub fn executions(&self, file: &str, key: &str) -> usize {
        self.lines(file)
            .iter()
            .filter(|l| l.split(' ').next() == Some(key))
            .count()
    }
}

/// A policy that only changes the effect.
pub fn effect_policy(effect: EffectName) -> ToolPolicy {
    ToolPolicy {
        effect: Some(effect),
        ..ToolPolicy::default()
    }
}

/// Fails the test (instead of hanging it) when `fut` takes longer than
/// `secs` seconds: every wait in these tests is bounded.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(std::time::Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs} s"),
    }
}

/// Explicit-key options.
pub fn keyed(key: &str) -> toolhost::idempotency::ExecOptions {
    toolhost::idempotency::ExecOptions {
        scope: toolhost::idempotency::Scope::Explicit(key.into()),
        ..Default::default()
    }
}

//! Idempotent execution over real SQLite files: keys, replays, claims,
//! exactly-once side effects across tasks and processes, crashes.

mod builds;
mod child;
mod crash;
mod crash_loop;
mod disk;
mod effects;
mod faults;
mod ijson;
mod processes;
mod replay;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toolhost::clock::{Clock, TokioClock};
use toolhost::config::{DirGrant, DirMode, EffectName, ToolPolicy};
use toolhost::idempotency::Executor;
use toolhost::sandbox::{Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};

pub fn testkit_dir() -> PathBuf {
    PathBuf::from(toolhost::sandbox::TESTKIT_DIR)
}

/// Declares a store contract test that runs against both backends, as
/// `NAME::sqlite` and `NAME::postgres`: the body gets `$world`, a [`World`]
/// whose stores are a SQLite file, or a fresh database in the shared
/// PostgreSQL cluster (`support::pg`).
macro_rules! on_both_backends {
    ($(#[$attr:meta])* async fn $name:ident($world:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                let $world = crate::idempotency::World::new();
                $body
            }

            $(#[$attr])*
            async fn postgres() {
                let $world = crate::idempotency::World::postgres();
                $body
            }
        }
    };
}
pub(crate) use on_both_backends;

/// The lease of PostgreSQL stores in these tests: short, so a dead owner is
/// seen dead quickly, and long enough for a busy machine's heartbeats.
pub const TEST_LEASE: std::time::Duration = std::time::Duration::from_millis(1_500);

/// A temp directory with `data/` (granted to `append` at `/data`) and a
/// store: a database file in it, or a PostgreSQL database.
pub struct World {
    root: PathBuf,
    /// `None`: SQLite at `db()`. `Some(url)`: that PostgreSQL database.
    pg: Option<String>,
    /// Removes the directory at the end, in the process that made it.
    _owned: Option<tempfile::TempDir>,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        World {
            root: dir.path().to_path_buf(),
            pg: None,
            _owned: Some(dir),
        }
    }

    /// A world whose store is a fresh database in the shared PostgreSQL
    /// cluster.
    pub fn postgres() -> World {
        World::postgres_at(crate::support::pg::fresh_db())
    }

    /// A world whose store is the PostgreSQL database at `url`.
    pub fn postgres_at(url: String) -> World {
        World {
            pg: Some(url),
            ..World::new()
        }
    }

    /// Another process's world (a child's view of its parent's).
    pub fn at(root: PathBuf) -> World {
        World {
            root,
            pg: None,
            _owned: None,
        }
    }

    /// The PostgreSQL URL, if this world's store is one.
    pub fn pg_url(&self) -> Option<&str> {
        self.pg.as_deref()
    }

    /// Opens a store on this world's database: each call is a new store
    /// (a new claim owner).
    pub async fn store(&self) -> Store {
        match &self.pg {
            None => Store::open(&self.db(), StoreOptions::default()).unwrap(),
            Some(url) => Store::open_postgres(
                url,
                StoreOptions {
                    lease: TEST_LEASE,
                    ..StoreOptions::default()
                },
            )
            .await
            .unwrap(),
        }
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
            "[sandbox]\nbuiltin_tools = false\ntools_dir = {:?}\ncache_dir = {:?}\nkey_dir = {:?}\n\n[tools.append]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\ntimeout_ms = 20_000\n\n[store]\n{}\n",
            testkit_dir(),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts.key"),
            self.data(),
            match &self.pg {
                None => format!("path = {:?}", self.db()),
                Some(url) => format!("url = {url:?}\nlease_ms = {}", TEST_LEASE.as_millis()),
            }
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
        let store = self.store().await;
        Executor::with_clock(
            sandbox,
            store,
            clock.unwrap_or_else(|| Arc::new(TokioClock::default())),
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

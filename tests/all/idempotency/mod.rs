//! Idempotent execution over real SQLite files: keys, replays, claims,
//! exactly-once side effects across tasks and processes, crashes.

mod builds;
pub(crate) mod child;
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

pub use crate::support::world::{TEST_LEASE, World};

/// What only the idempotency tests need of a world: the test kit's tools
/// granted `data/`, and executors over any tools directory.
impl World {
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
    pub fn write_testkit_config(&self) -> PathBuf {
        let path = self.path().join("toolhost.toml");
        let text = format!(
            "[sandbox]\nbuiltin_tools = false\ntools_dir = {:?}\ncache_dir = {:?}\nkey_dir = {:?}\n\n[tools.append]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\ntimeout_ms = 20_000\n\n[store]\n{}\n",
            testkit_dir(),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts.key"),
            self.data(),
            self.store_toml()
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

//! Agent runs end to end: the loop over real sandboxed tools and a real
//! journal (a SQLite file, or a database on a throwaway PostgreSQL cluster:
//! the contract tests run on both), on the scripted model (zero latency) or
//! real HTTP to the loopback fault server; crashes are real child processes
//! killed with SIGKILL.

mod breakers;
mod budgets;
mod crash;
mod degradation;
mod journal;
mod ownership;
mod replay;
mod scaleout;
mod stats;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use toolhost::agent::{Agent, AgentOptions};
use toolhost::config::Config;
use toolhost::idempotency::Executor;
use toolhost::model::{BoxFuture, ChatRequest, ChatResponse, Model, ModelError, Scripted, Turn};
use toolhost::resilience::{CallContext, ChainBuilder, EntrySpec};
use toolhost::sandbox::{Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreLocation, StoreOptions, StoreSink};

/// Which store a contract test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The lease of runs and claims on PostgreSQL in these tests: short, so a
/// killed owner's run can be resumed soon (the heartbeat renews every third).
pub const TEST_LEASE_MS: u64 = 900;

/// A temp directory with `data/` (granted to `notes`), a database and a
/// `toolhost.toml`.
pub struct World {
    pub dir: tempfile::TempDir,
    /// Where the tools load from (the examples unless a test copies its own).
    pub tools: PathBuf,
    /// Extra TOML appended to the config.
    pub extra: String,
    /// The PostgreSQL database, when the world runs on one.
    pub pg: Option<String>,
}

pub fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
}

impl World {
    pub fn new() -> World {
        World::on(Backend::Sqlite)
    }

    /// A world whose store is `backend`: a SQLite file in the directory, or
    /// a fresh database in the shared PostgreSQL cluster.
    pub fn on(backend: Backend) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        World {
            dir,
            tools: crate::support::examples_dir(),
            extra: String::new(),
            pg: (backend == Backend::Postgres).then(crate::support::pg::fresh_db),
        }
    }

    /// A world on a database of `cluster` (a private one, for tests that
    /// stop the server).
    pub fn on_cluster(cluster: &crate::support::pg::Cluster) -> World {
        let mut world = World::on(Backend::Sqlite);
        world.pg = Some(cluster.fresh_db());
        world
    }

    /// The `[store]` lines of this world's config.
    fn store_toml(&self) -> String {
        match &self.pg {
            Some(url) => format!(
                "url = {url:?}
lease_ms = {TEST_LEASE_MS}
"
            ),
            None => format!(
                "path = {:?}
",
                self.db()
            ),
        }
    }

    /// Options matching the config's `[store]`.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            lease: std::time::Duration::from_millis(TEST_LEASE_MS),
            ..StoreOptions::default()
        }
    }

    /// Opens this world's store (another owner each time: another "host").
    pub async fn store(&self) -> Store {
        let location = match &self.pg {
            Some(url) => StoreLocation::Postgres(url.clone()),
            None => StoreLocation::Sqlite(self.db()),
        };
        Store::open_at(&location, self.store_options())
            .await
            .unwrap()
    }

    /// How many rows `sql` (a `SELECT 1 FROM ...` that both SQLite and
    /// PostgreSQL read alike) returns from the store; 0 if the store has no
    /// such table yet (the run was killed before the database was made).
    pub fn rows(&self, sql: &str) -> usize {
        match &self.pg {
            Some(url) => {
                let (url, sql) = (url.clone(), sql.to_string());
                // On its own thread: callers may be inside a runtime.
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                            .await
                            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
                        let conn = tokio::spawn(conn);
                        // No table yet: no toolhost has migrated the database.
                        let n = client.query(sql.as_str(), &[]).await.map_or(0, |r| r.len());
                        drop(client);
                        let _ = conn.await;
                        n
                    })
                })
                .join()
                .unwrap()
            }
            None => {
                let Ok(c) = rusqlite::Connection::open_with_flags(
                    self.db(),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                ) else {
                    return 0;
                };
                let Ok(mut stmt) = c.prepare(sql) else {
                    return 0;
                };
                stmt.query_map([], |_| Ok(()))
                    .map_or(0, |rows| rows.count())
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("toolhost.db")
    }

    /// The lines of `data/<file>` (none if it does not exist).
    pub fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.data().join(file))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Copies some example tools into this world's own tools directory
    /// (so a test can rebuild one).
    pub fn own_tools(&mut self, names: &[&str]) {
        let dir = self.path().join("tools");
        std::fs::create_dir_all(&dir).unwrap();
        for n in names {
            let file = format!("{n}.wasm");
            std::fs::copy(crate::support::examples_dir().join(&file), dir.join(&file)).unwrap();
        }
        self.tools = dir;
    }

    /// Writes a script file and returns its path.
    pub fn script(&self, name: &str, script: &Value) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, script.to_string()).unwrap();
        path
    }

    /// Writes `toolhost.toml`: the tools, `notes` granted `data/`, this
    /// database, and `models` (TOML `[[models]]` entries) plus `extra`.
    pub fn write_config(&self, models: &str) -> PathBuf {
        let path = self.path().join("toolhost.toml");
        let text = format!(
            "[sandbox]\nbuiltin_tools = false\ntools_dir = {:?}\ncache_dir = {:?}\nkey_dir = {:?}\n\n[tools.notes]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\n\n[retry]\nbase_delay_ms = 1\nmax_delay_ms = 5\n\n[store]\n{}\n{models}\n{}\n",
            self.tools,
            artifacts(),
            artifacts().with_extension("key"),
            self.data(),
            self.store_toml(),
            self.extra,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The config as `write_config` writes it, loaded.
    pub fn config(&self, models: &str) -> Config {
        Config::load(Some(&self.write_config(models))).unwrap()
    }

    /// An executor on this world's tools and database under `config`.
    pub async fn executor(&self, config: &Config) -> Executor {
        let mut options = SandboxOptions::from_config(config);
        options.tools_dir = Some(self.tools.clone());
        options.user_tools_dir = None;
        options.cache_dir = Some(artifacts());
        let sandbox = Sandbox::open(options).await.unwrap();
        Executor::new(sandbox, self.store().await)
    }

    /// An agent on `models` (in chain order), with breakers shared through
    /// the store. Retries sleep at most a few ms.
    pub async fn agent(&self, config: &Config, models: Vec<Arc<dyn Model>>) -> Agent {
        let executor = Arc::new(self.executor(config).await);
        let mut b = ChainBuilder::new(config.retry.clone(), config.breaker.clone())
            .seed(7)
            .breaker_sink(StoreSink::models(executor.store().clone()));
        for m in models {
            let spec = EntrySpec {
                name: m.name().to_string(),
                provider: "scripted".into(),
                model: m.name().to_string(),
                context_window: None,
            };
            b = b.entry(spec, m);
        }
        Agent::new(executor, Arc::new(b.build()), config)
    }
}

/// Default limits for a new run.
pub fn options() -> AgentOptions {
    AgentOptions {
        max_steps: 20,
        time_budget: std::time::Duration::from_secs(60),
        token_budget: None,
    }
}

/// Scripted turns from JSON.
pub fn turns(v: Value) -> Vec<Turn> {
    serde_json::from_value(v).unwrap()
}

/// A scripted model answering by the conversation, and its request count.
pub fn scripted(name: &str, v: Value) -> (Arc<Counting>, Arc<dyn Model>) {
    let counting = Arc::new(Counting::new(
        Scripted::new(name, turns(v)).by_conversation(),
    ));
    (counting.clone(), counting)
}

/// A tool call in a scripted turn.
pub fn call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

/// Wraps a model, counting and keeping the requests it receives.
pub struct Counting {
    inner: Box<dyn Model>,
    count: AtomicUsize,
    seen: std::sync::Mutex<Vec<ChatRequest>>,
}

impl Counting {
    pub fn new(inner: impl Model + 'static) -> Self {
        Counting {
            inner: Box::new(inner),
            count: AtomicUsize::new(0),
            seen: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<ChatRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Model for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(req.clone());
        self.inner.chat(req, cx)
    }
}

/// A `[[models]]` entry for a scripted model.
pub fn scripted_entry(name: &str, script: &Path) -> String {
    format!(
        "[[models]]\nname = {name:?}\nprovider = \"scripted\"\nmodel = {name:?}\nscript = {script:?}\n"
    )
}

/// The key an `in_doubt` stop names in its reason ("... (key KEY) is in doubt ...").
pub fn in_doubt_key(reason: &str) -> String {
    let after = reason
        .split("(key ")
        .nth(1)
        .expect("the reason names a key");
    after.split(')').next().unwrap_or_default().to_string()
}

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
pub(crate) mod ownership;
mod recovery;
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
use toolhost::store::StoreSink;

pub use crate::support::world::{Backend, World};

pub fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
}

/// What only the agent tests need of a world: its own tools, scripts, a
/// config with a model chain, and an agent.
impl World {
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
    pub async fn config_executor(&self, config: &Config) -> Executor {
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
        let executor = Arc::new(self.config_executor(config).await);
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

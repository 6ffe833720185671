//! The sandbox: loads tool components and runs each call in a fresh,
//! fuel-, time-, memory- and output-limited store with no ambient authority.
//!
//! Layout: `engine` configures wasmtime (the only place), `artifacts` caches
//! compiled components on disk, `metadata` caches what each said it is,
//! `catalog` is the search path (`builtin` tools embedded in the binary, the
//! user's, the configured directory) and learns what is on it without
//! running it, `loader` turns components into [`Tool`]s,
//! `capabilities` builds what a store may touch, `egress` checks and sends
//! outgoing HTTP, `policy` digests a tool's effective limits and grants,
//! `describe` asks new components what they are and picks each name's
//! winner, `prepare` checks a call and runs it, `call` runs one call in
//! one store and names what stopped it, `limits` and `error` are the
//! vocabulary.

mod artifact_key;
mod artifacts;
mod bindings;
pub mod builtin;
mod call;
mod capabilities;
mod catalog;
mod describe;
pub mod egress;
mod engine;
mod error;
mod file_index;
mod limits;
mod loader;
mod metadata;
pub mod policy;
mod prepare;
mod wasm;

pub use artifact_key::{KeyError, default_key_dir};
pub use artifacts::LoadSource;
pub use bindings::WorldVersion;
pub use catalog::Origin;
pub use egress::EgressOptions;
pub use error::{CallError, ErrorKind, LoadError};
pub use limits::{Limits, MAX_WASM_STACK, Overrides};
pub use loader::Tool;
pub use policy::PolicyDigest;
pub use prepare::{Prepared, Reconciled};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::{Config, EffectName, ToolPolicy};
use artifacts::ArtifactCache;
use capabilities::{HostState, OpenedDirs};

/// Where the build put the example tools, for tests and benches that need
/// them as files. The binary never reads it: it carries the examples
/// ([`builtin`]).
pub const EXAMPLES_DIR: &str = env!("TOOLHOST_EXAMPLES_DIR");
/// Where the build put the hostile test tools (never loaded by default).
pub const HOSTILE_DIR: &str = env!("TOOLHOST_HOSTILE_DIR");
/// Where the build put the test kit's tools (side-effect and crash tests).
pub const TESTKIT_DIR: &str = env!("TOOLHOST_TESTKIT_DIR");

/// How to open a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Whether the examples embedded in the binary come first on the search
    /// path.
    pub builtin: bool,
    /// The user's tools directory, searched next; it may not exist.
    pub user_tools_dir: Option<PathBuf>,
    /// The directory searched last (a later tool of the same name wins); it
    /// must exist.
    pub tools_dir: Option<PathBuf>,
    /// Make only these tools ready to call (`None`: all). The others are
    /// still named (for `unknown_tool` and for who wins a name) from cached
    /// metadata, but not checked, loaded or described: a call pays only for
    /// the tool it calls.
    pub only: Option<BTreeSet<String>>,
    /// Where compiled components are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Where the per-user key that authenticates cached artifacts lives;
    /// `None`: [`default_key_dir`].
    pub key_dir: Option<PathBuf>,
    /// Limits for tools without overrides.
    pub limits: Limits,
    /// Per-tool policies (grants and limit overrides).
    pub policies: BTreeMap<String, ToolPolicy>,
    /// Calls that run at once; more wait for a slot.
    pub max_concurrent_calls: u32,
    /// How outgoing HTTP resolves names and trusts servers.
    pub egress: EgressOptions,
}

impl SandboxOptions {
    /// Options from a config: the built-in tools (unless
    /// `builtin_tools = false`), the user's tools directory, its
    /// `tools_dir`, its cache dir (else the user's cache directory), limits
    /// and policies.
    pub fn from_config(config: &Config) -> Self {
        SandboxOptions {
            builtin: config.sandbox.builtin_tools,
            user_tools_dir: crate::paths::user_tools_dir(),
            tools_dir: config.sandbox.tools_dir.clone(),
            only: None,
            cache_dir: config.sandbox.effective_cache_dir(),
            key_dir: config.sandbox.key_dir.clone(),
            limits: Limits::from_config(&config.sandbox),
            policies: config.tools.clone(),
            max_concurrent_calls: config.sandbox.max_concurrent_calls,
            egress: EgressOptions::default(),
        }
    }

    /// Defaults with the given tools directory alone on the search path
    /// (no built-in or user tools) and no artifact cache.
    pub fn for_dir(tools_dir: impl Into<PathBuf>) -> Self {
        SandboxOptions {
            builtin: false,
            user_tools_dir: None,
            tools_dir: Some(tools_dir.into()),
            only: None,
            cache_dir: None,
            key_dir: None,
            limits: Limits::default(),
            policies: BTreeMap::new(),
            max_concurrent_calls: crate::config::SandboxConfig::default().max_concurrent_calls,
            egress: EgressOptions::default(),
        }
    }
}

/// Why a sandbox could not be opened at all (single bad files are not this:
/// they become [`LoadError`]s and are skipped).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The tools directory is missing or unreadable.
    #[error("cannot read tools directory {}: {source}", dir.display())]
    ToolsDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// wasmtime refused the engine configuration (say, no virtual memory for the pool).
    #[error("cannot start the wasm engine: {0}")]
    Engine(String),
}

/// What a successful call returned.
#[derive(Clone, Debug)]
pub struct CallOutput {
    /// The tool's output, parsed.
    pub output: Value,
    /// Fuel the call burned.
    pub fuel_used: u64,
    /// Wall-clock time from instantiation to return.
    pub duration: Duration,
    /// What the tool wrote to stdout and stderr (capped).
    pub stdout: String,
    pub stderr: String,
}

/// What the host hands a tool along with the input.
#[derive(Clone, Debug, Default)]
pub struct CallRequest {
    /// The call's idempotency key (hex); empty if the caller has none.
    pub idempotency_key: String,
    /// 1 on the first execution of the key.
    pub attempt: u32,
    /// Per-call limit overrides.
    pub overrides: Overrides,
}

/// Loaded tools and the engine that runs them. Cheap to clone and share.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    cache: ArtifactCache,
    /// The tools made ready (all, or those `only` named).
    tools: BTreeMap<String, Arc<Tool>>,
    /// Every name on the search path, ready or not.
    names: BTreeSet<String>,
    load_errors: Vec<LoadError>,
    limits: Limits,
    policies: BTreeMap<String, ToolPolicy>,
    /// Each policy's digests, worked out once at open (a policy cannot
    /// change under an open sandbox), and those of a tool without one.
    digests: BTreeMap<String, Digests>,
    no_policy_digests: Digests,
    egress: EgressOptions,
    /// Each policy's granted directories, opened once (by tool name).
    dirs: BTreeMap<String, OpenedDirs>,
    slots: Semaphore,
    runs: AtomicU64,
    // Declared last: dropped after everything that might still run wasm.
    wasm: wasm::LazyWasm,
}

impl Sandbox {
    /// Finds every tool on the search path and makes the wanted ones
    /// ready: cached metadata is read, only what is new is compiled and
    /// described, and a component is loaded on its first call. A bad file is
    /// reported in [`Sandbox::load_errors`] and skipped; only an unusable
    /// directory or engine fails the whole open.
    pub async fn open(options: SandboxOptions) -> Result<Sandbox, OpenError> {
        let search = catalog::SearchPath {
            builtin: options.builtin,
            user: options.user_tools_dir.clone(),
            dir: options.tools_dir.clone(),
        };
        let candidates = catalog::candidates(&search)
            .map_err(|(dir, source)| OpenError::ToolsDir { dir, source })?;
        let cache = ArtifactCache::new(options.cache_dir.as_deref(), options.key_dir.as_deref());
        // Built only if something must be compiled (see `wasm`).
        let wasm = wasm::LazyWasm::new(options.max_concurrent_calls);

        // Reading records is quick, but compiling what is new is seconds of
        // CPU: it all runs on a blocking thread, never on an async worker.
        let (mut entries, mut index) = {
            let (wasm, cache) = (wasm.clone(), cache.clone());
            let only = options.only.clone();
            tokio::task::spawn_blocking(move || {
                let mut index = file_index::Index::read(&cache);
                let compiler = catalog::Compiler {
                    wasm: &wasm,
                    cache: &cache,
                };
                let entries = catalog::identify(candidates, only.as_ref(), &mut index, &compiler);
                (entries, index)
            })
            .await
            .map_err(|e| OpenError::Engine(format!("the compiler thread died: {e}")))?
        };
        if let Some(e) = wasm.failure() {
            return Err(OpenError::Engine(e.to_string()));
        }

        let records = match wasm.started() {
            Some(w) => describe::describe_compiled(&mut entries, w, &options).await,
            None => Vec::new(),
        };
        for entry in &entries {
            index.name(&entry.location, &entry.digest, entry.name());
        }
        if !records.is_empty() || index.dirty() {
            let cache = cache.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for (digest, record) in &records {
                    metadata::write(&cache, digest, record);
                }
                index.write(&cache);
            })
            .await;
        }

        let (winners, mut load_errors) = describe::resolve(entries);
        let names = winners.keys().cloned().collect();
        let wanted = |name: &str| options.only.as_ref().is_none_or(|o| o.contains(name));
        let mut tools = BTreeMap::new();
        for (name, entry) in winners.into_iter().filter(|(n, _)| wanted(n)) {
            match describe::ready_tool(&name, entry) {
                Some(Ok(tool)) => {
                    tools.insert(name, Arc::new(tool));
                }
                Some(Err(e)) => load_errors.push(e),
                None => {}
            }
        }
        // Only the grants of tools that may run are opened.
        let dirs = options
            .policies
            .iter()
            .filter(|(name, _)| wanted(name))
            .map(|(name, policy)| (name.clone(), OpenedDirs::open(Some(policy))))
            .collect();
        let digests = options
            .policies
            .iter()
            .map(|(name, policy)| (name.clone(), Digests::of(&options.limits, Some(policy))))
            .collect();
        Ok(Sandbox {
            inner: Arc::new(Inner {
                cache,
                tools,
                names,
                load_errors,
                limits: options.limits,
                digests,
                no_policy_digests: Digests::of(&options.limits, None),
                policies: options.policies,
                egress: options.egress,
                dirs,
                slots: Semaphore::new(options.max_concurrent_calls as usize),
                runs: AtomicU64::new(0),
                wasm,
            }),
        })
    }

    /// Loads `name`'s component now if it is not yet (from the cache, else
    /// by compiling), and says which it was.
    pub async fn load(&self, name: &str) -> Result<LoadSource, CallError> {
        let Some(tool) = self.tool(name) else {
            return Err(self.unknown(name));
        };
        self.component(tool).await.map(|(_, source)| *source)
    }

    /// A tool's component, loaded on first use off the async workers.
    async fn component<'t>(
        &self,
        tool: &'t Tool,
    ) -> Result<&'t (bindings::ToolPre<HostState>, LoadSource), CallError> {
        tool.component
            .get_or_try_init(|| async {
                let (wasm, cache) = (self.inner.wasm.clone(), self.inner.cache.clone());
                let (location, digest) = (tool.location.clone(), tool.digest.clone());
                tokio::task::spawn_blocking(move || {
                    let w = wasm
                        .get()
                        .map_err(|e| format!("cannot start the wasm engine: {e}"))?;
                    loader::load(&w.engine, &w.linker, &cache, &location, &digest)
                })
                .await
                .map_err(|e| CallError::Internal(format!("the compiler thread died: {e}")))?
                .map_err(|reason| {
                    CallError::Internal(format!("cannot load {}: {reason}", tool.path.display()))
                })
            })
            .await
    }

    /// The `unknown_tool` error for `name`, in the same words everywhere
    /// (`call`, `tools inspect`, agent tool calls, MCP): a file of that
    /// name that was skipped says where it is and why; else a close name
    /// on the search path is suggested.
    pub fn unknown(&self, name: &str) -> CallError {
        let skipped = self
            .inner
            .load_errors
            .iter()
            .find(|e| e.path.file_stem().is_some_and(|stem| stem == name))
            .map(|e| format!("{} was skipped: {}", e.path.display(), e.reason));
        let suggestion = match skipped {
            Some(_) => None,
            None => crate::config::closest_name(name, self.names()).map(str::to_string),
        };
        CallError::UnknownTool {
            name: name.to_string(),
            known: self.inner.names.iter().cloned().collect(),
            suggestion,
            skipped,
        }
    }

    /// Whether the epoch ticker is asleep: true once no call has run for
    /// `engine::LINGER` (an idle host spends no CPU on it).
    pub fn ticker_idle(&self) -> bool {
        self.inner
            .wasm
            .started()
            .is_none_or(|w| w.ticker.is_parked())
    }

    /// How many times the epoch ticker has advanced the engine's epoch.
    pub fn ticks(&self) -> u64 {
        self.inner.wasm.started().map_or(0, |w| w.ticker.ticks())
    }

    /// The loaded tools, by name.
    pub fn tools(&self) -> impl Iterator<Item = &Arc<Tool>> {
        self.inner.tools.values()
    }

    /// Every tool name on the search path, loaded or not (a sandbox opened
    /// for one call loads only that tool, yet knows the others' names).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.names.iter().map(String::as_str)
    }

    /// One loaded tool.
    pub fn tool(&self, name: &str) -> Option<&Arc<Tool>> {
        self.inner.tools.get(name)
    }

    /// Files that were skipped, and why.
    pub fn load_errors(&self) -> &[LoadError] {
        &self.inner.load_errors
    }

    /// The policy configured for a tool, if any.
    pub fn policy(&self, name: &str) -> Option<&ToolPolicy> {
        self.inner.policies.get(name)
    }

    /// The effect the host acts on for `tool`: the tool's own, made
    /// stricter (never looser) by its policy's `effect`. The one place the
    /// rule is written: the executor, the agent, MCP's annotations and
    /// `config check` all ask here.
    pub fn effect(&self, tool: &Tool) -> EffectName {
        let own = tool.effect;
        self.policy(&tool.name)
            .and_then(|p| p.effect)
            .map_or(own, |e| e.max(own))
    }

    /// A tool's limits: the defaults with its policy's overrides.
    pub fn limits_for(&self, name: &str) -> Limits {
        match self.policy(name) {
            Some(p) => self.inner.limits.with_policy(p),
            None => self.inner.limits,
        }
    }

    /// The digest of everything in `tool`'s effective policy that can change
    /// a result under a call's `overrides`: its limits and grants (see
    /// [`policy`]). Recorded with every cached call.
    pub fn policy_digest(&self, tool: &str, overrides: &Overrides) -> PolicyDigest {
        let limits = self.limits_for(tool).with_overrides(overrides);
        policy::digest(&limits, self.policy(tool))
    }

    /// `tool`'s configured policy digest and grants digest, as worked out
    /// at open.
    pub(super) fn digests(&self, tool: &str) -> Digests {
        self.inner
            .digests
            .get(tool)
            .copied()
            .unwrap_or(self.inner.no_policy_digests)
    }

    /// How many calls this sandbox has instantiated a tool for. (Cache hits
    /// never do; tests assert on this instead of on time.)
    pub fn runs(&self) -> u64 {
        self.inner.runs.load(Ordering::Relaxed)
    }
}

/// The two digests of a tool's configured policy that a prepared call
/// carries to its key and its claim.
#[derive(Clone, Copy, Debug)]
pub(super) struct Digests {
    /// [`policy::digest`] of the configured limits and grants.
    pub policy: PolicyDigest,
    /// [`policy::grants_digest`].
    pub grants: PolicyDigest,
}

impl Digests {
    fn of(defaults: &Limits, policy: Option<&ToolPolicy>) -> Digests {
        let limits = match policy {
            Some(p) => defaults.with_policy(p),
            None => *defaults,
        };
        Digests {
            policy: policy::digest(&limits, policy),
            grants: policy::grants_digest(policy),
        }
    }
}

/// Generators shared by the sandbox's property tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use proptest::prelude::*;
    use serde_json::Value;

    /// Arbitrary JSON: scalars of every kind, nested arrays and objects.
    pub(crate) fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z$#/]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        "type|properties|required|items|enum|const|\\$ref|pattern|minimum|anyOf|\\$defs".prop_map(String::from),
                        any::<String>()
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

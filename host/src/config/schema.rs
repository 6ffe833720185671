//! The config's shape and its validation. Field docs state each default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::error::Invalid;
use super::host_pattern::HostPattern;

/// The whole `toolhost.toml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Defaults for every tool.
    pub sandbox: SandboxConfig,
    /// Per-tool policies: grants and overrides, keyed by tool name.
    pub tools: BTreeMap<String, ToolPolicy>,
    /// The model fallback chain, in order.
    pub models: Vec<ModelConfig>,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    pub fallback: FallbackConfig,
    pub agent: AgentConfig,
    pub store: StoreConfig,
    pub serve: super::ServeConfig,
    /// `[telemetry]`: trace export (`config/telemetry.rs`).
    pub telemetry: super::TelemetryConfig,
    /// Where it came from and what is wrong with it that is not fatal
    /// (`config/diagnostics.rs`); not a key of the file.
    #[serde(skip)]
    pub diagnostics: super::Diagnostics,
    /// The file this config was read from (`None`: built-in defaults). Its
    /// directory is what relative paths inside it were resolved against.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[sandbox]`: limits every tool gets unless its policy overrides them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// A directory of `.wasm` tools, searched last (after the built-in
    /// examples and the user's tools directory); default: none.
    pub tools_dir: Option<PathBuf>,
    /// Whether the example tools embedded in the binary are on the search
    /// path. Default true.
    pub builtin_tools: bool,
    /// Wasm instructions (roughly) a call may execute. Default 1e9.
    pub fuel: u64,
    /// Wall-clock limit of a call, host calls included. Default 10 s.
    pub timeout_ms: u64,
    /// Linear memory a call may grow to. Default 64 MiB.
    pub memory_mb: u64,
    /// Largest result a call may return. Default 1 MiB.
    pub max_output_bytes: u64,
    /// Largest stdout, and separately stderr, a call may write. Default 64 KiB.
    pub max_log_bytes: u64,
    /// Largest HTTP response body a call may receive, per response. Default 10 MiB.
    pub max_response_bytes: u64,
    /// Calls that run at once; more wait for a slot. Sizes the instance pool.
    /// Default 128.
    pub max_concurrent_calls: u32,
    /// Where compiled components and tool metadata are cached; default:
    /// `artifacts/` in the user's cache directory (`$XDG_CACHE_HOME/toolhost`).
    pub cache_dir: Option<PathBuf>,
    /// Where the per-user key that authenticates cached artifacts lives
    /// (a 0700 directory of this user); default: the user's state directory,
    /// `$XDG_STATE_HOME/toolhost`, else `~/.local/state/toolhost`.
    pub key_dir: Option<PathBuf>,
}

impl SandboxConfig {
    /// The artifact cache: `cache_dir`, else `artifacts/` in the user's
    /// cache directory; `None` (no cache) without either.
    pub fn effective_cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(crate::paths::default_artifacts)
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            tools_dir: None,
            builtin_tools: true,
            fuel: 1_000_000_000,
            timeout_ms: 10_000,
            memory_mb: 64,
            max_output_bytes: 1_048_576,
            max_log_bytes: 65_536,
            max_response_bytes: 10 << 20,
            max_concurrent_calls: 128,
            cache_dir: None,
            key_dir: None,
        }
    }
}

/// How a tool's calls affect the world, from least to most strict.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum EffectName {
    Pure,
    ReadOnly,
    Idempotent,
    SideEffecting,
}

impl EffectName {
    /// The name as the WIT world and the config spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectName::Pure => "pure",
            EffectName::ReadOnly => "read-only",
            EffectName::Idempotent => "idempotent",
            EffectName::SideEffecting => "side-effecting",
        }
    }
}

/// Whether a granted directory may be written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    #[default]
    Ro,
    Rw,
}

impl DirMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DirMode::Ro => "ro",
            DirMode::Rw => "rw",
        }
    }
}

/// One directory a tool may see, at `guest` inside the sandbox.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    #[serde(default)]
    pub mode: DirMode,
}

/// `[tools.NAME]`: what one tool may touch, and its limit overrides.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToolPolicy {
    pub dirs: Vec<DirGrant>,
    /// Host environment variables the tool sees (only these).
    pub env: Vec<String>,
    /// Hosts the tool may send HTTP requests to (see [`HostPattern`]).
    pub allow_hosts: Vec<String>,
    pub fuel: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub max_log_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
    /// Only ever stricter than the tool's own.
    pub effect: Option<EffectName>,
    /// Read-only freshness. Default 300 s.
    pub ttl_s: Option<u64>,
    /// How long a non-pure call with the empty scope replays. Default 24 h.
    pub idempotency_window_s: Option<u64>,
    /// What the host does with a side-effecting call whose claimant died
    /// before recording its outcome (see [`InDoubtPolicy`]). Default:
    /// `reconcile` when the component exports `reconcile`, else `stop`.
    pub in_doubt: Option<InDoubtPolicy>,
    /// The header that carries the forwarded idempotency key on an
    /// `idempotent` or `side-effecting` call's mutating requests (default
    /// `Idempotency-Key`; `""` sends none).
    pub idempotency_header: Option<String>,
    /// After `reconcile` answered `unknown`, how long later callers of the
    /// key get `in_doubt` before it is asked again. Default 30 s.
    pub reconcile_backoff_s: Option<u64>,
    /// Set when the policy cannot be applied (a granted directory is
    /// missing): why, naming the key and line. Calls of the tool fail with
    /// it; nothing else is affected. Not a key of the file.
    #[serde(skip)]
    pub unusable: Option<String>,
}

/// Header names `idempotency_header` may not take (lower case, as
/// [`http::HeaderName`] keeps them). The framing, routing and hop-by-hop
/// headers belong to the HTTP layer: a key there would break or redirect
/// the request. The credential headers belong to the remote's
/// authentication: a derived key must not pose as one, nor displace one.
pub const FORBIDDEN_KEY_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "http2-settings",
    "authorization",
    "proxy-authorization",
    "cookie",
];

/// See [`ToolPolicy::in_doubt`].
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum InDoubtPolicy {
    /// Ask the tool's `reconcile` whether the effect happened: `committed`
    /// records its output, `not-done` runs `call` again (attempt + 1),
    /// `unknown` stays in doubt (asked again after `reconcile_backoff_s`).
    Reconcile,
    /// Run `call` again (attempt + 1): safe only where the remote dedups by
    /// the forwarded key, which the operator says by choosing it.
    Retry,
    /// `in_doubt` until an operator resolves it. (`fail`, its name before
    /// 0.2.0, still reads as `stop`.)
    #[serde(alias = "fail")]
    Stop,
}

impl InDoubtPolicy {
    /// The name as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            InDoubtPolicy::Reconcile => "reconcile",
            InDoubtPolicy::Retry => "retry",
            InDoubtPolicy::Stop => "stop",
        }
    }
}

/// Which wire format a model speaks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    Anthropic,
    Openai,
    Scripted,
}

impl ProviderName {
    /// The name as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Anthropic => "anthropic",
            ProviderName::Openai => "openai",
            ProviderName::Scripted => "scripted",
        }
    }
}

/// One `[[models]]` entry of the fallback chain.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// How logs, metrics and `served_by` name this entry.
    pub name: String,
    pub provider: ProviderName,
    /// The provider's model id, such as `claude-sonnet-4-5`.
    #[serde(default)]
    pub model: String,
    pub base_url: Option<String>,
    /// The environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Tokens of context; fallback on `context_length` moves to a larger one.
    pub context_window: Option<u64>,
    /// Most tokens of output per turn.
    pub max_tokens: Option<u32>,
    /// The `scripted` provider's file of turns and faults.
    pub script: Option<PathBuf>,
    /// Send the API key over plain `http://` to a host that is not loopback.
    /// Default false: such a `base_url` with an `api_key_env` is refused.
    #[serde(default)]
    pub allow_insecure: bool,
    /// Ask for the answer as a stream of server-sent events (Anthropic
    /// Messages streaming, OpenAI chunks with `stream_options.include_usage`)
    /// and assemble it into the same turn. Default true; `false` sends
    /// exactly the request of a non-streamed call. The scripted provider
    /// ignores it.
    #[serde(default = "yes")]
    pub stream: bool,
}

fn yes() -> bool {
    true
}

/// `[retry]`: which model errors are retried, and how long we wait.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per model, the first included. Default 5.
    pub max_attempts: u32,
    /// Backoff base: attempt n sleeps uniform in [0, min(max, base x 2^n)].
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// All attempts and fallbacks of one request together. Default 120 s.
    pub budget_ms: u64,
    /// One attempt, a whole stream included. Default 60 s.
    pub attempt_timeout_ms: u64,
    /// A streamed attempt: from its start until the first content event
    /// (text or a tool call). Default 30 s.
    pub first_token_timeout_ms: u64,
    /// A streamed attempt: between two events once one has come. An idle
    /// stream is cut, not waited on. Default 30 s.
    pub idle_timeout_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            base_delay_ms: 1_000,
            max_delay_ms: 60_000,
            budget_ms: 120_000,
            attempt_timeout_ms: 60_000,
            first_token_timeout_ms: 30_000,
            idle_timeout_ms: 30_000,
        }
    }
}

/// `[breaker]`: when a dependency is declared unhealthy and for how long.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub failure_rate: f64,
    pub window: u32,
    pub min_calls: u32,
    pub consecutive_failures: u32,
    pub open_ms: u64,
    pub max_open_ms: u64,
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate: 0.5,
            window: 20,
            min_calls: 5,
            consecutive_failures: 5,
            open_ms: 30_000,
            max_open_ms: 300_000,
            half_open_probes: 1,
        }
    }
}

/// `[fallback]`: how the chain reports an unavailable primary.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackConfig {
    /// The primary unavailable for longer than this is an alert. Default 5 min.
    pub alert_after_ms: u64,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            alert_after_ms: 300_000,
        }
    }
}

/// `[agent]`: how long a run may go on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub max_steps: u32,
    pub time_budget_s: u64,
    /// Most tokens (input + output, as providers report them) a run may
    /// spend; unset means no limit. Like the other budgets, counted once
    /// across crashes and resumes.
    pub token_budget: Option<u64>,
    /// The system prompt of every run; unset: a short built-in one.
    pub system: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_steps: 20,
            time_budget_s: 300,
            token_budget: None,
            system: None,
        }
    }
}

/// `[store]`: the SQLite file, or (with `url`) a shared PostgreSQL database.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite file; default: `toolhost.db` in the user's data directory
    /// (`$XDG_DATA_HOME/toolhost`).
    pub path: PathBuf,
    /// `postgres://USER@HOST:PORT/DB`: the shared store, instead of `path`.
    pub url: Option<String>,
    /// How long to wait for another process's lock (SQLite) or for a pooled
    /// connection (PostgreSQL) before failing. Default 5 s.
    pub busy_timeout_ms: u64,
    /// PostgreSQL: the most connections this process opens. Default 16.
    pub pool_size: usize,
    /// PostgreSQL: how long a claim outlives its owner's last heartbeat.
    /// Default 10 s; renewed every third of it.
    pub lease_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            // Empty only without a home directory: validation then asks
            // for a path.
            path: crate::paths::default_store().unwrap_or_default(),
            url: None,
            busy_timeout_ms: 5_000,
            pool_size: 16,
            lease_ms: 10_000,
        }
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.url.is_none() && self.path.as_os_str().is_empty() {
            return Err(Invalid::new(
                "store.path",
                "must not be empty (with no home directory there is no default: set it, or pass --db)",
            ));
        }
        if let Some(url) = &self.url {
            crate::urls::check_url(url).map_err(|e| Invalid::new("store.url", e))?;
        }
        positive("store.busy_timeout_ms", self.busy_timeout_ms)?;
        positive("store.pool_size", self.pool_size as u64)?;
        if self.lease_ms < 300 {
            return Err(Invalid::new(
                "store.lease_ms",
                "must be at least 300 (the heartbeat renews every third of it)",
            ));
        }
        Ok(())
    }
}

/// Linear memory beyond this is refused: a wasm32 memory cannot exceed 4 GiB.
pub const MAX_MEMORY_MB: u64 = 4_096;

fn positive(key: &str, v: u64) -> Result<(), Invalid> {
    if v == 0 {
        return Err(Invalid::new(key, "must be greater than 0"));
    }
    Ok(())
}

fn memory(key: &str, mb: u64) -> Result<(), Invalid> {
    positive(key, mb)?;
    if mb > MAX_MEMORY_MB {
        return Err(Invalid::new(
            key,
            format!("{mb} MiB exceeds the 4096 MiB a wasm32 memory can have"),
        ));
    }
    Ok(())
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let s = &self.sandbox;
        positive("sandbox.fuel", s.fuel)?;
        positive("sandbox.timeout_ms", s.timeout_ms)?;
        memory("sandbox.memory_mb", s.memory_mb)?;
        positive("sandbox.max_output_bytes", s.max_output_bytes)?;
        positive("sandbox.max_log_bytes", s.max_log_bytes)?;
        positive("sandbox.max_response_bytes", s.max_response_bytes)?;
        positive(
            "sandbox.max_concurrent_calls",
            s.max_concurrent_calls.into(),
        )?;
        if s.max_concurrent_calls > 10_000 {
            return Err(Invalid::new(
                "sandbox.max_concurrent_calls",
                "at most 10000",
            ));
        }
        for (name, policy) in &self.tools {
            policy.validate(&format!("tools.{name}"))?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let key = format!("models.{i}");
            if m.name.trim().is_empty() {
                return Err(Invalid::new(format!("{key}.name"), "must not be empty"));
            }
            if !names.insert(&m.name) {
                return Err(Invalid::new(
                    format!("{key}.name"),
                    format!("`{}` names two models", m.name),
                ));
            }
            match m.provider {
                ProviderName::Scripted if m.script.is_none() => {
                    return Err(Invalid::new(
                        format!("{key}.script"),
                        "the scripted provider needs a script file",
                    ));
                }
                ProviderName::Anthropic | ProviderName::Openai if m.model.is_empty() => {
                    return Err(Invalid::new(format!("{key}.model"), "names no model"));
                }
                _ => {}
            }
            if let Some(url) = &m.base_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(Invalid::new(
                    format!("{key}.base_url"),
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
            if let Some(url) = &m.base_url
                && m.api_key_env.is_some()
                && !m.allow_insecure
                && crate::urls::is_plain_remote(url)
            {
                return Err(Invalid::new(
                    format!("{key}.base_url"),
                    format!(
                        "`{url}` is plain http:// to a host that is not loopback: the API key would cross the network readable; use https:// or set allow_insecure = true"
                    ),
                ));
            }
        }
        let r = &self.retry;
        positive("retry.max_attempts", r.max_attempts.into())?;
        positive("retry.budget_ms", r.budget_ms)?;
        positive("retry.attempt_timeout_ms", r.attempt_timeout_ms)?;
        positive("retry.first_token_timeout_ms", r.first_token_timeout_ms)?;
        positive("retry.idle_timeout_ms", r.idle_timeout_ms)?;
        if r.max_delay_ms < r.base_delay_ms {
            return Err(Invalid::new(
                "retry.max_delay_ms",
                "must be at least base_delay_ms",
            ));
        }
        let b = &self.breaker;
        if !(b.failure_rate > 0.0 && b.failure_rate <= 1.0) {
            return Err(Invalid::new("breaker.failure_rate", "must be in (0, 1]"));
        }
        positive("breaker.window", b.window.into())?;
        positive(
            "breaker.consecutive_failures",
            b.consecutive_failures.into(),
        )?;
        positive("breaker.half_open_probes", b.half_open_probes.into())?;
        if b.min_calls > b.window {
            return Err(Invalid::new("breaker.min_calls", "cannot exceed window"));
        }
        if b.max_open_ms < b.open_ms {
            return Err(Invalid::new(
                "breaker.max_open_ms",
                "must be at least open_ms",
            ));
        }
        positive("fallback.alert_after_ms", self.fallback.alert_after_ms)?;
        positive("agent.max_steps", self.agent.max_steps.into())?;
        positive("agent.time_budget_s", self.agent.time_budget_s)?;
        self.store.validate()?;
        self.serve.validate()?;
        self.telemetry.validate()?;
        Ok(())
    }
}

impl ToolPolicy {
    fn validate(&self, key: &str) -> Result<(), Invalid> {
        let opt = |field: &str, v: Option<u64>| {
            v.map_or(Ok(()), |v| positive(&format!("{key}.{field}"), v))
        };
        opt("fuel", self.fuel)?;
        opt("timeout_ms", self.timeout_ms)?;
        opt("max_output_bytes", self.max_output_bytes)?;
        opt("max_log_bytes", self.max_log_bytes)?;
        opt("max_response_bytes", self.max_response_bytes)?;
        opt("ttl_s", self.ttl_s)?;
        opt("idempotency_window_s", self.idempotency_window_s)?;
        opt("reconcile_backoff_s", self.reconcile_backoff_s)?;
        if let Some(name) = &self.idempotency_header
            && !name.is_empty()
        {
            let header = format!("{key}.idempotency_header");
            let Ok(parsed) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return Err(Invalid::new(
                    header,
                    format!("`{name}` is not an HTTP header name (\"\" sends none)"),
                ));
            };
            if FORBIDDEN_KEY_HEADERS.contains(&parsed.as_str()) {
                return Err(Invalid::new(
                    header,
                    format!(
                        "`{name}` cannot carry the forwarded key: the HTTP layer or the remote's authentication owns it (\"\" sends none)"
                    ),
                ));
            }
        }
        if let Some(mb) = self.memory_mb {
            memory(&format!("{key}.memory_mb"), mb)?;
        }
        let mut guests = std::collections::HashSet::new();
        for (i, grant) in self.dirs.iter().enumerate() {
            // A missing directory is not fatal: it makes only this tool
            // unusable (`diagnostics::degrade_missing_grants`).
            if !grant.guest.starts_with('/') || grant.guest.split('/').any(|c| c == "..") {
                return Err(Invalid::new(
                    format!("{key}.dirs.{i}.guest"),
                    format!(
                        "guest path `{}` must be absolute, without `..`",
                        grant.guest
                    ),
                ));
            }
            // Two grants at one guest path would shadow each other, and
            // which one wins would depend on their order.
            if !guests.insert(grant.guest.trim_end_matches('/')) {
                return Err(Invalid::new(
                    format!("{key}.dirs.{i}.guest"),
                    format!("guest path `{}` is granted twice", grant.guest),
                ));
            }
        }
        for var in &self.env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(Invalid::new(
                    format!("{key}.env"),
                    format!("`{var}` is not a variable name"),
                ));
            }
        }
        for host in &self.allow_hosts {
            HostPattern::parse(host).map_err(|e| Invalid::new(format!("{key}.allow_hosts"), e))?;
        }
        Ok(())
    }

    /// The parsed `allow_hosts`, sorted and without duplicates. Entries that
    /// do not parse are skipped: a validated policy has none.
    pub fn host_patterns(&self) -> Vec<HostPattern> {
        let mut patterns: Vec<HostPattern> = self
            .allow_hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).ok())
            .collect();
        patterns.sort();
        patterns.dedup();
        patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(text, Path::new("toolhost.toml"))
    }

    #[test]
    fn empty_is_the_defaults() {
        let mut parsed = parse("").unwrap();
        let file = parsed.file.take().expect("the file it was read from");
        assert!(
            file.is_absolute() && file.ends_with("toolhost.toml"),
            "{file:?}"
        );
        assert_eq!(
            parsed.diagnostics.file.as_deref(),
            Some(Path::new("toolhost.toml"))
        );
        parsed.diagnostics = Default::default();
        assert_eq!(parsed, Config::default());
        assert_eq!(Config::default().sandbox.fuel, 1_000_000_000);
        assert_eq!(Config::default().retry.max_attempts, 5);
    }

    #[test]
    fn the_design_example_parses() {
        let text = r#"
[sandbox]
fuel = 1_000_000_000
timeout_ms = 10_000
memory_mb = 64

[tools.notes]
env = ["NOTES_OWNER"]
allow_hosts = ["api.example.com", "*.example.org", "127.0.0.1:8080"]
timeout_ms = 2_000
effect = "side-effecting"
ttl_s = 300

[[models]]
name = "primary"
provider = "anthropic"
model = "claude-sonnet-4-5"
base_url = "https://api.anthropic.com"
api_key_env = "ANTHROPIC_API_KEY"
context_window = 200_000

[retry]
max_attempts = 5

[breaker]
failure_rate = 0.5

[agent]
max_steps = 20

[store]
path = ".toolhost/toolhost.db"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.tools["notes"].effect, Some(EffectName::SideEffecting));
        assert_eq!(c.tools["notes"].host_patterns().len(), 3);
        assert_eq!(c.models[0].provider, ProviderName::Anthropic);
    }

    #[test]
    fn store_url_selects_postgres_and_excludes_path() {
        let c = parse(
            "[store]\nurl = \"postgres://toolhost@db.internal:5432/toolhost\"\npool_size = 4\n",
        )
        .unwrap();
        assert_eq!(
            c.store.url.as_deref(),
            Some("postgres://toolhost@db.internal:5432/toolhost")
        );
        assert_eq!(c.store.pool_size, 4);
        let e = parse("[store]\npath = \"t.db\"\nurl = \"postgres://u@h/db\"\n").unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("store.url"), Some(3)),
            "{e}"
        );
        assert!(e.message.contains("mutually exclusive"), "{e}");
        let e = parse("[store]\n\nurl = \"mysql://u:pw@h/db\"\n").unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("store.url"), Some(3)),
            "{e}"
        );
        assert!(e.message.contains("not a PostgreSQL URL"), "{e}");
        assert!(!e.message.contains("pw"), "the password is not shown: {e}");
        let e = parse("[store]\nurl = \"postgres://u@h/db?sslmode=sometimes\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("store.url"), "{e}");
        let e = parse("[store]\npool_size = 0\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("store.pool_size"), "{e}");
        let e = parse("[store]\nlease_ms = 10\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("store.lease_ms"), "{e}");
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let e = parse("[sandbox]\nfuell = 5\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("fuell"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_line() {
        let e = parse("[sandbox]\n\ntimeout_ms = \"soon\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("sandbox.timeout_ms"), "{e}");
    }

    /// Every way TOML can spell a key, and every kind of error: each names
    /// the key and its line.
    #[test]
    fn every_error_names_key_and_line_in_every_key_spelling() {
        let cases: &[(&str, &str, usize)] = &[
            // Dotted keys.
            ("sandbox.fuel = \"lots\"\n", "sandbox.fuel", 1),
            ("\n\nsandbox.fuell = 5\n", "sandbox.fuell", 3),
            ("sandbox.memory_mb = 0\n", "sandbox.memory_mb", 1),
            (
                "[tools]\nnotes.timeout_ms = 0\n",
                "tools.notes.timeout_ms",
                2,
            ),
            // Inline tables.
            ("retry = { max_attempts = 0 }\n", "retry.max_attempts", 1),
            (
                "\nretry = { max_attempts = \"x\" }\n",
                "retry.max_attempts",
                2,
            ),
            ("sandbox = { fuel = 1, bogus = 2 }\n", "sandbox.bogus", 1),
            (
                "[tools.x]\ndirs = [\n  { host = 5, guest = \"/d\" },\n]\n",
                "tools.x.dirs.0.host",
                3,
            ),
            // Quoted keys.
            ("[\"sandbox\"]\n\"fuel\" = 0\n", "sandbox.fuel", 2),
            (
                "[tools.\"my-tool\"]\n\n'timeout_ms' = 0\n",
                "tools.my-tool.timeout_ms",
                3,
            ),
            ("[tools.\"a.b\"]\nfuel = true\n", "tools.\"a.b\".fuel", 2),
            // Wrong types, in tables and arrays of tables.
            ("[breaker]\nwindow = -1\n", "breaker.window", 2),
            (
                "[[models]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\n[[models]]\nname = 7\n",
                "models.1.name",
                6,
            ),
            (
                "[[models]]\nname = \"a\"\nprovider = \"nobody\"\n",
                "models.0.provider",
                3,
            ),
            ("[agent]\nmax_steps = 1.5\n", "agent.max_steps", 2),
        ];
        for (text, key, line) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(*key), "{text:?}: {e}");
            assert_eq!(e.line, Some(*line), "{text:?}: {e}");
            let shown = e.to_string();
            assert!(shown.contains(&format!("line {line}")), "{shown}");
        }
    }

    #[test]
    fn plain_http_keys_to_remote_hosts_need_allow_insecure() {
        let entry = |url: &str, extra: &str| {
            format!(
                "[[models]]\nname = \"m\"\nprovider = \"openai\"\nmodel = \"x\"\nbase_url = \"{url}\"\napi_key_env = \"K\"\n{extra}"
            )
        };
        let e = parse(&entry("http://models.example.com/v1", "")).unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("models.0.base_url"), Some(5))
        );
        assert!(e.message.contains("allow_insecure"), "{e}");
        parse(&entry(
            "http://models.example.com/v1",
            "allow_insecure = true\n",
        ))
        .unwrap();
        parse(&entry("https://models.example.com/v1", "")).unwrap();
        parse(&entry("http://127.0.0.1:8000/v1", "")).unwrap();
        // Without a key there is nothing to leak.
        parse("[[models]]\nname = \"m\"\nprovider = \"openai\"\nmodel = \"x\"\nbase_url = \"http://10.0.0.5/v1\"\n").unwrap();
    }

    #[test]
    fn impossible_values_name_key_and_line() {
        let e = parse("[sandbox]\nmemory_mb = 0\n").unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("sandbox.memory_mb"), Some(2))
        );
        let e = parse("[tools.x]\n\nmemory_mb = 9999\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("tools.x.memory_mb"), "{e}");
        let e = parse("[breaker]\nfailure_rate = 1.5\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("breaker.failure_rate"));
    }

    /// Regression (issue 12): a missing grant directory used to stop every
    /// command; now it is a warning that makes only its tool unusable.
    #[test]
    fn a_missing_grant_directory_is_a_warning() {
        let c = parse("[tools.x]\ndirs = [{ host = \"/no/such/dir\", guest = \"/d\" }]\n").unwrap();
        let w = &c.diagnostics.warnings[0];
        assert_eq!(w.line, Some(2));
        assert!(w.message.contains("/no/such/dir"));
    }

    #[test]
    fn the_fallback_alert_window_is_configurable_and_positive() {
        assert_eq!(Config::default().fallback.alert_after_ms, 300_000);
        assert_eq!(
            parse("[fallback]\nalert_after_ms = 60_000\n")
                .unwrap()
                .fallback
                .alert_after_ms,
            60_000
        );
        let e = parse("[fallback]\nalert_after_ms = 0\n").unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("fallback.alert_after_ms"), Some(2))
        );
    }

    #[test]
    fn allow_hosts_accepts_every_documented_form() {
        let c = parse(
            "[tools.fetch]\nallow_hosts = [\"api.example.com\", \"*.example.org\", \"127.0.0.1:8080\", \"[::1]:9000\", \"10.0.0.5\"]\n",
        )
        .unwrap();
        let shown: Vec<String> = c.tools["fetch"]
            .host_patterns()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown.len(), 5, "{shown:?}");
        assert!(shown.contains(&"*.example.org".to_string()), "{shown:?}");
    }

    #[test]
    fn a_malformed_host_pattern_names_key_and_line() {
        for bad in ["https://api.example.com", "api.example.com:0", "a.*.b", ""] {
            let text = format!(
                "[tools.fetch]\ntimeout_ms = 5\n\nallow_hosts = [\"ok.example.com\", \"{bad}\"]\n"
            );
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("tools.fetch.allow_hosts"), "{bad}");
            assert_eq!(e.line, Some(4), "{bad}: {e}");
            assert!(e.message.contains("not a host pattern"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_guest_path_granted_twice_is_an_error() {
        let dir = std::env::temp_dir();
        let text = format!(
            "[tools.x]\ndirs = [{{ host = {0:?}, guest = \"/d\" }}, {{ host = {0:?}, guest = \"/d/\" }}]\n",
            dir.display().to_string()
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("granted twice"), "{e}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn response_cap_must_be_positive() {
        let e = parse("[tools.x]\nmax_response_bytes = 0\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tools.x.max_response_bytes"));
        assert_eq!(Config::default().sandbox.max_response_bytes, 10 << 20);
    }

    #[test]
    fn scripted_models_need_a_script() {
        let e = parse("[[models]]\nname = \"s\"\nprovider = \"scripted\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("models.0.script"));
        assert_eq!(e.line, Some(1));
    }
}

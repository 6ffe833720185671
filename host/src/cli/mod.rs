//! The command line. `anyhow` lives here and nowhere else: the CLI's own
//! failures (reading files, starting the runtime, joining threads) carry
//! their context as `anyhow` chains, and those and the library's typed
//! errors become messages and exit codes at this edge ([`Failure`]).

mod agent;
mod cache;
mod call;
mod completions;
mod config_check;
mod config_init;
mod config_trust;
mod demo;
mod human;
mod lookup;
mod model;
mod output;
mod paths;
mod progress;
mod replay;
mod runs;
mod serve;
mod stats;
mod templates;
mod tools;
mod tools_build;
mod tools_new;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use toolhost::config::Config;
use toolhost::idempotency::Executor;
use toolhost::sandbox::{Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreLocation};
use toolhost::telemetry::{Destination, LogFormat, Telemetry};

pub use output::Failure;

/// The heading every command's help puts the global flags under, apart
/// from the command's own.
const GLOBAL: &str = "Global options";

/// Runs AI-agent tools in WebAssembly sandboxes.
#[derive(Debug, Parser)]
#[command(
    name = "toolhost",
    version,
    about,
    after_help = "Examples:\n  toolhost config init && toolhost agent run \"What is 6*7? Note the answer.\"\n  toolhost call calc --input '{\"expr\":\"2*(3+4)\"}'\n  toolhost demo\n\nEach command's --help has examples of its own."
)]
pub struct Cli {
    /// The config file (default: $TOOLHOST_CONFIG, else ./toolhost.toml once trusted with `config trust`, else toolhost.toml in the user's config directory, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    config: Option<PathBuf>,
    /// Search this directory for tools last (after the built-in and the user's tools), instead of the config's `tools_dir`.
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    tools_dir: Option<PathBuf>,
    /// The store: a SQLite file whose directory must exist, or a shared
    /// PostgreSQL database as postgres://USER@HOST:PORT/DB (default: the
    /// config's `[store]`, else toolhost.db in the user's data directory).
    #[arg(
        long,
        global = true,
        value_name = "PATH|postgres://...",
        help_heading = GLOBAL
    )]
    db: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List or inspect the loaded tools; start and build tool projects.
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// Call a tool once (idempotently: see `cache`).
    #[command(
        after_help = "Examples:\n  toolhost call calc --input '{\"expr\":\"6*7\"}'\n  toolhost call notes --input @note.json --idempotency-key order-7\n  toolhost --json call jq --input '{\"filter\":\".a\",\"input\":{\"a\":1}}'"
    )]
    Call(call::CallArgs),
    /// Inspect and manage recorded calls: list, show, resolve, gc.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Call the model chain, or list it.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Run an agent task, or resume one.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// List runs, or show one run's timeline.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Re-run a finished run from its journal, with no live calls.
    #[command(after_help = "Examples:\n  toolhost replay order-7\n  toolhost --json replay ord")]
    Replay(replay::ReplayArgs),
    /// Reliability numbers, overall or for one run.
    #[command(after_help = "Examples:\n  toolhost stats\n  toolhost stats --run order-7 --json")]
    Stats(stats::StatsArgs),
    /// An offline showcase on the scripted model: fallback, a crash, a resume.
    #[command(
        after_help = "Examples:\n  toolhost demo\n  toolhost demo --dir ./demo && toolhost --config ./demo/toolhost.toml runs list"
    )]
    Demo(demo::DemoArgs),
    /// Serve the tools over MCP: --stdio, or streamable HTTP at /mcp with the run API (/v1/runs), the runs page (/), /metrics and /healthz.
    #[command(
        after_help = "Examples:\n  toolhost serve --stdio\n  TOOLHOST_TOKEN=s3cret toolhost serve --http 127.0.0.1:8765 --token-env TOOLHOST_TOKEN\n  curl -s -X POST http://127.0.0.1:8765/v1/runs -H \"Authorization: Bearer $TOOLHOST_TOKEN\" -d '{\"task\": \"What is 6*7?\"}'\n  open \"http://127.0.0.1:8765/#token=$TOOLHOST_TOKEN\""
    )]
    Serve(serve::ServeArgs),
    /// Check the config: the resolved paths, each tool's grants and limits, the model chain.
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    #[command(
        after_help = "Examples:\n  toolhost completions bash > ~/.local/share/bash-completion/completions/toolhost\n  toolhost completions fish > ~/.config/fish/completions/toolhost.fish"
    )]
    Completions(completions::CompletionsArgs),
}

/// Everything a command needs from the global flags.
pub struct Env {
    pub config: Config,
    pub json: bool,
    tools_dir: Option<PathBuf>,
    /// The global flags as given (`--config`, `--tools-dir`, `--db`, paths
    /// made absolute), for hints that name a command to run.
    flags: Vec<String>,
    /// `config check` reports warnings itself, in its own output.
    quiet_warnings: bool,
}

impl Env {
    /// Opens the sandbox on the search path: the built-in tools, the user's
    /// tools directory, then the configured (or `--tools-dir`) directory.
    pub async fn sandbox(&self) -> Result<Sandbox, Failure> {
        self.sandbox_with(|_| {}).await
    }

    /// [`Env::sandbox`], with `adjust` applied to its options.
    async fn sandbox_with(
        &self,
        adjust: impl FnOnce(&mut SandboxOptions),
    ) -> Result<Sandbox, Failure> {
        let mut options = SandboxOptions::from_config(&self.config);
        if let Some(dir) = &self.tools_dir {
            options.tools_dir = Some(dir.clone());
        }
        adjust(&mut options);
        let sandbox = Sandbox::open(options)
            .await
            .map_err(|e| Failure::usage(e.to_string()))?;
        if !self.quiet_warnings {
            // Against every name on the search path: a call loads only the
            // tool it calls, and a policy for another is not a typo. Given
            // once per config text (`config::warned`), not on every call.
            let names: Vec<&str> = sandbox.names().collect();
            let unknown = self.config.unknown_policies(&names);
            let diagnostics = &self.config.diagnostics;
            let new = match (&diagnostics.file, &diagnostics.digest) {
                (Some(file), Some(digest)) => {
                    toolhost::config::warned::first_time(file, digest, &unknown)
                }
                _ => !unknown.is_empty(),
            };
            if new {
                for w in &unknown {
                    config_check::warn(&w.to_string());
                }
            }
        }
        Ok(sandbox)
    }

    /// Opens the store (`--db`, else the config's `[store]`): SQLite off the
    /// async workers, or a PostgreSQL pool.
    pub async fn store(&self) -> Result<Store, Failure> {
        let store = &self.config.store;
        Store::open_at(
            &toolhost::store::StoreLocation::from_config(store),
            toolhost::store::StoreOptions {
                rekey: Some(toolhost::idempotency::effect_key),
                ..toolhost::store::StoreOptions::from_config(store)
            },
        )
        .await
        .map_err(|e| Failure::new(1, "store_unavailable", e.to_string()))
    }

    /// The sandbox and the store, as one idempotent executor.
    pub async fn executor(&self) -> Result<Executor, Failure> {
        self.executor_with(|_| {}).await
    }

    /// An executor for one call of `tool` in this process: only that tool
    /// is made ready (the others are named from cached metadata, never
    /// loaded), and the instance pool has one slot (this process runs one
    /// call; reserving and freeing 128 slots costs about a millisecond).
    pub async fn executor_for_call(&self, tool: &str) -> Result<Executor, Failure> {
        self.executor_with(|options| {
            options.only = Some([tool.to_string()].into_iter().collect());
            options.max_concurrent_calls = 1;
        })
        .await
    }

    async fn executor_with(
        &self,
        adjust: impl FnOnce(&mut SandboxOptions),
    ) -> Result<Executor, Failure> {
        // Independent, and each mostly file I/O on a blocking thread: opened
        // side by side, a start pays for the slower, not for both.
        let (store, sandbox) = tokio::join!(self.store(), self.sandbox_with(adjust));
        let store = store?;
        Ok(Executor::new(sandbox?, store))
    }
}

pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with success, errors
            // to stderr with exit code 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // Under `serve --stdio` stdout carries only protocol messages.
    let json = cli.json && !matches!(&cli.command, Command::Serve(a) if a.owns_stdout());
    if let Command::Completions(args) = &cli.command {
        return completions::print(args);
    }
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(json),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    // Trusting a config must not load it: every other command refuses an
    // untrusted ./toolhost.toml.
    if let Command::Config(config_check::ConfigCommand::Trust(args)) = &cli.command {
        if cli.config.is_some() {
            return Err(Failure::usage(
                "--config names a config that needs no trust; give the file to trust as `toolhost config trust PATH`",
            ));
        }
        return config_trust::run(args, cli.json);
    }
    // Nor may writing one: it must work where an old ./toolhost.toml is
    // refused (`--force`).
    if let Command::Config(config_check::ConfigCommand::Init(args)) = &cli.command {
        if cli.config.is_some() {
            return Err(Failure::usage(
                "give the file to write as `toolhost config init PATH`, not --config",
            ));
        }
        return config_init::run(args, cli.json);
    }
    let mut cli = cli;
    // Flags are paths relative to where the command runs (a config's are
    // relative to the config); made absolute once, here.
    // A URL (a shared store) is kept as given.
    cli.db = cli.db.map(|db| match StoreLocation::parse(&db) {
        StoreLocation::Sqlite(path) => absolute(&path).to_string_lossy().into_owned(),
        StoreLocation::Postgres(_) => db,
    });
    cli.tools_dir = cli.tools_dir.map(|p| absolute(&p));
    if let Some(db) = &cli.db {
        paths::check_db_parent(std::path::Path::new(db))?;
    }
    // Overrides go in before validation: a grant reaching the `--db` store
    // or the `--tools-dir` directory is refused like a configured one.
    let config = Config::load_adjusted(cli.config.as_deref(), |config| {
        match cli.db.as_deref().map(StoreLocation::parse) {
            Some(StoreLocation::Postgres(url)) => config.store.url = Some(url),
            Some(StoreLocation::Sqlite(path)) => {
                config.store.path = path;
                config.store.url = None;
            }
            None => {}
        }
        if let Some(dir) = &cli.tools_dir {
            config.sandbox.tools_dir = Some(dir.clone());
        }
    })
    .map_err(|e| Failure::config(e.to_string()))?;
    // Logs and traces start once the config is known (`[telemetry]`); a
    // config that does not load is reported without them.
    init_tracing(&config, matches!(cli.command, Command::Serve(_)));
    let flags = global_flags(&cli);
    let env = Env {
        config,
        json: cli.json,
        tools_dir: cli.tools_dir,
        flags,
        quiet_warnings: matches!(cli.command, Command::Config(_)),
    };
    // A config that loads may still name things that do not work (a grant
    // whose directory is missing): each is a warning on every command, and
    // only the tool it concerns is unusable. `config check` lists them
    // itself.
    // A call of the tool a warning makes unusable fails with that warning
    // as its error: said once, not twice.
    let reported = match &cli.command {
        Command::Call(args) => env
            .config
            .tools
            .get(args.tool())
            .and_then(|p| p.unusable.clone()),
        _ => None,
    };
    if !env.quiet_warnings {
        for w in &env.config.diagnostics.warnings {
            let text = w.to_string();
            if reported.as_ref() != Some(&text) {
                config_check::warn(&text);
            }
        }
    }
    // A call or a listing does one thing at a time: one thread runs it (the
    // blocking pool still opens the store and the sandbox side by side).
    // Servers, agents and the demo get a worker per core.
    let mut builder = match &cli.command {
        Command::Call(_) | Command::Tools(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(|e| Failure::internal_from(&e))?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Tools(cmd) => tools::run(&env, cmd).await,
            Command::Call(args) => call::run(&env, args).await,
            Command::Cache(cmd) => cache::run(&env, cmd).await,
            Command::Model(cmd) => model::run(&env, cmd).await,
            Command::Agent(cmd) => agent::run(&env, cmd).await,
            Command::Runs(cmd) => runs::run(&env, cmd).await,
            Command::Replay(args) => replay::run(&env, args).await,
            Command::Stats(args) => stats::run(&env, args).await,
            Command::Demo(args) => demo::run(&env, args).await,
            Command::Serve(args) => serve::run(&env, args).await,
            Command::Config(cmd) => config_check::run(&env, cmd).await,
            // Handled before the config is read: it needs none.
            Command::Completions(_) => Ok(()),
        }
    });
    // Finished spans leave before the process does (bounded: a stuck
    // collector cannot hold the exit).
    flush_telemetry();
    result
}

/// The global flags of this invocation, as a hint should repeat them.
fn global_flags(cli: &Cli) -> Vec<String> {
    let mut flags = Vec::new();
    let paths = [("--config", &cli.config), ("--tools-dir", &cli.tools_dir)];
    for (flag, path) in paths {
        if let Some(p) = path {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            flags.push(flag.to_string());
            flags.push(lookup::shell_quote(&p.to_string_lossy()));
        }
    }
    if let Some(db) = &cli.db {
        // A shared store's URL is repeated with its password hidden: a hint
        // lands in terminals and logs; a SQLite file is made absolute so the
        // command works from any directory.
        let db = if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            toolhost::store::redact_url(db)
        } else {
            let p = std::path::Path::new(db);
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .to_string_lossy()
                .into_owned()
        };
        flags.push("--db".to_string());
        flags.push(lookup::shell_quote(&db));
    }
    flags
}

/// A closed stdout (`toolhost tools list | head -1`) ends the process
/// quietly. Rust ignores SIGPIPE, so a write to a closed pipe is an error,
/// and `println!` panics on it (exit 101 with a panic message). Restoring
/// the default action makes such a write end the process the way `cat` or
/// `ls` end: by the signal, silently. Sockets are unaffected (the standard
/// library and tokio send with `MSG_NOSIGNAL`), and child processes get the
/// default action anyway.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread
    // exists; `signal` with `SIG_DFL` installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// This process's trace exporter, once started; flushed on exit.
static TELEMETRY: std::sync::OnceLock<Telemetry> = std::sync::OnceLock::new();

/// Sends the finished spans and stops the exporter, within
/// `telemetry::SHUTDOWN_WITHIN`; a no-op when nothing is exported. Called
/// on every way out: the normal return and the second Ctrl-C of `agent`.
pub fn flush_telemetry() {
    if let Some(t) = TELEMETRY.get() {
        t.shutdown();
    }
}

/// The log lines (`TOOLHOST_LOG`, else errors only; `serve` also logs a
/// line per tool call and run transition) in the format
/// `TOOLHOST_LOG_FORMAT` names, and the trace exporter when a collector
/// is named (`telemetry::Destination::resolve`).
fn init_tracing(config: &Config, serve: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let default = if serve {
        "error,toolhost::serve=info,toolhost::run=info"
    } else {
        "error"
    };
    let filter =
        EnvFilter::try_from_env("TOOLHOST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let (format, warning) = LogFormat::from_env();
    let logs =
        toolhost::telemetry::logs::layer(format, toolhost::telemetry::logs::colour_on_stderr())
            .with_filter(filter);
    let telemetry = match Destination::resolve(&config.telemetry).and_then(|d| {
        d.map(|d| Telemetry::start(&d, &config.telemetry))
            .transpose()
    }) {
        Ok(t) => t.unwrap_or_else(Telemetry::off),
        Err(e) => {
            config_check::warn(&format!("traces are not exported: {e}"));
            Telemetry::off()
        }
    };
    let traces = telemetry.layer();
    let _ = TELEMETRY.set(telemetry);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    if let Some(w) = warning {
        config_check::warn(&w);
    }
}

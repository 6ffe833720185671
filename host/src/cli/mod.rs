//! The command line. `anyhow` lives here and nowhere else: the CLI's own
//! failures (reading files, starting the runtime, joining threads) carry
//! their context as `anyhow` chains, and those and the library's typed
//! errors become messages and exit codes at this edge ([`Failure`]).

mod agent;
mod cache;
mod call;
mod demo;
mod model;
mod output;
mod paths;
mod progress;
mod replay;
mod runs;
mod serve;
mod stats;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use toolhost::config::Config;
use toolhost::idempotency::Executor;
use toolhost::sandbox::{Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};

pub use output::Failure;

/// Runs AI-agent tools in WebAssembly sandboxes.
#[derive(Debug, Parser)]
#[command(name = "toolhost", version, about)]
pub struct Cli {
    /// The config file (default: ./toolhost.toml, else toolhost.toml in the user's config directory, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Search this directory for tools last (after the built-in and the user's tools), instead of the config's `tools_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    tools_dir: Option<PathBuf>,
    /// The SQLite database; its directory must exist (default: the config's `[store] path`, else toolhost.db in the user's data directory).
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List or inspect the loaded tools.
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// Call a tool once (idempotently: see `cache`).
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
    Replay(replay::ReplayArgs),
    /// Reliability numbers, overall or for one run.
    Stats(stats::StatsArgs),
    /// An offline showcase on the scripted model: fallback, a crash, a resume.
    Demo(demo::DemoArgs),
    /// Serve the tools over MCP: --stdio, or streamable HTTP at /mcp with /metrics and /healthz.
    Serve(serve::ServeArgs),
}

/// Everything a command needs from the global flags.
pub struct Env {
    pub config: Config,
    pub json: bool,
    tools_dir: Option<PathBuf>,
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
        Sandbox::open(options)
            .await
            .map_err(|e| Failure::usage(e.to_string()))
    }

    /// Opens the database (`--db`, else the config's `[store] path`). Opening
    /// runs SQLite (and maybe migrations), so it runs off the async workers.
    pub async fn store(&self) -> Result<Store, Failure> {
        let options = StoreOptions {
            busy_timeout: std::time::Duration::from_millis(self.config.store.busy_timeout_ms),
            ..StoreOptions::default()
        };
        let path = self.config.store.path.clone();
        tokio::task::spawn_blocking(move || Store::open(&path, options))
            .await
            .context("the database opener died")
            .map_err(|e| Failure::internal_from(&e))?
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
    init_tracing();
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
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(json),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let mut cli = cli;
    // Flags are paths relative to where the command runs (a config's are
    // relative to the config); made absolute once, here.
    cli.db = cli.db.map(|p| absolute(&p));
    cli.tools_dir = cli.tools_dir.map(|p| absolute(&p));
    if let Some(db) = &cli.db {
        paths::check_db_parent(db)?;
    }
    // Overrides go in before validation: a grant reaching the `--db` store
    // or the `--tools-dir` directory is refused like a configured one.
    let config = Config::load_adjusted(cli.config.as_deref(), |config| {
        if let Some(db) = &cli.db {
            config.store.path = db.clone();
        }
        if let Some(dir) = &cli.tools_dir {
            config.sandbox.tools_dir = Some(dir.clone());
        }
    })
    .map_err(|e| Failure::config(e.to_string()))?;
    let env = Env {
        config,
        json: cli.json,
        tools_dir: cli.tools_dir,
    };
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
    runtime.block_on(async move {
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
        }
    })
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("TOOLHOST_LOG").unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

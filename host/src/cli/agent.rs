//! `toolhost agent run "TASK"` and `toolhost agent resume RUN`: a run with a
//! live timeline on the terminal (or one JSON document with `--json`), and
//! Ctrl-C as a clean, resumable stop.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use toolhost::agent::{Agent, AgentError, AgentOptions, Observer, ResumeOptions, RunOutcome};
use toolhost::resilience::Chain;
use toolhost::store::{RunStatus, Store, StoreSink};

use super::progress::{JsonLines, Progress};
use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run a task: the model chain with the loaded tools, every step journaled.
    #[command(
        after_help = "Examples:\n  toolhost agent run \"What is 6*7? Note the answer.\"\n  toolhost agent run \"Note order 7\" --run-id order-7 --max-steps 5 --time-budget 60\n  toolhost agent run \"What is 6*7?\" --events"
    )]
    Run(RunArgs),
    /// Continue a run that did not complete, from its journal.
    #[command(
        after_help = "Examples:\n  toolhost agent resume order-7\n  toolhost agent resume ord --allow-changed"
    )]
    Resume(ResumeArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What the agent should do.
    task: String,
    /// The run's id (default: a new random one).
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// Most model turns (default: `[agent] max_steps`).
    #[arg(long, value_name = "N")]
    max_steps: Option<u32>,
    /// Most seconds of live work (default: `[agent] time_budget_s`).
    #[arg(long, value_name = "S")]
    time_budget: Option<u64>,
    /// Print one JSON event per line as the run goes (turn start, text delta, tool call, tool result, retry, fallback, finish) instead of the timeline.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to continue (its id, or a unique prefix of it).
    run: String,
    /// Continue even though a tool or the config changed since it was journaled.
    #[arg(long)]
    allow_changed: bool,
    /// A new step limit (default: the run's).
    #[arg(long, value_name = "N")]
    max_steps: Option<u32>,
    /// A new time budget in seconds, over the whole run (default: the run's).
    #[arg(long, value_name = "S")]
    time_budget: Option<u64>,
}

impl Env {
    /// The model chain, its breakers shared through `store`.
    pub async fn chain(&self, store: &Store) -> Result<Arc<Chain>, Failure> {
        let chain = self.quiet_chain(store).await?;
        for (name, var) in chain.skipped() {
            super::config_check::warn(&format!(
                "model `{name}` is skipped: its API key variable {var} is not set"
            ));
        }
        Ok(chain)
    }

    /// The model chain, its breakers as the store has them, without the
    /// warnings about skipped models (for `serve`, which may never call one).
    pub async fn quiet_chain(&self, store: &Store) -> Result<Arc<Chain>, Failure> {
        let chain = Chain::builder_from_config(&self.config)
            .map_err(|e| Failure::config(e.to_string()))?
            .breaker_sink(StoreSink::models(store.clone()))
            .build();
        let states = store
            .breaker_map("model:")
            .await
            .map_err(|e| Failure::new(1, "store_unavailable", e.to_string()))?;
        chain.adopt_breakers(&states);
        Ok(Arc::new(chain))
    }

    /// An agent over the configured tools and models.
    pub async fn agent(&self, observer: Option<Arc<dyn Observer>>) -> Result<Agent, Failure> {
        let executor = Arc::new(self.executor().await?);
        let chain = self.chain(executor.store()).await?;
        let mut agent = Agent::new(executor, chain, &self.config);
        if let Some(o) = observer {
            agent = agent.observe(o);
        }
        Ok(agent)
    }
}

/// An agent error at the CLI edge.
pub fn agent_failure(e: AgentError) -> Failure {
    let code = match e {
        AgentError::RunExists(_)
        | AgentError::NoSuchRun(_)
        | AgentError::Completed(_)
        | AgentError::NoModels
        | AgentError::NotFinished { .. } => 2,
        _ => 1,
    };
    Failure::new(code, e.kind(), e.to_string())
}

pub async fn run(env: &Env, cmd: AgentCommand) -> Result<(), Failure> {
    let events = matches!(&cmd, AgentCommand::Run(a) if a.events);
    let observer: Option<Arc<dyn Observer>> = if events {
        Some(Arc::new(JsonLines))
    } else if env.json {
        None
    } else {
        Some(Arc::new(Progress::stdout()))
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let agent = env.agent(observer).await?.cancel_on(rx);
    // Ctrl-C: stop between steps (or during a model call), journaled and
    // resumable. A second Ctrl-C ends the process at once (the journal is
    // still consistent: every row is its own commit).
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the calls in flight (Ctrl-C again to quit now)");
            let _ = tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                // The spans that finished still leave (within 2 s).
                super::flush_telemetry();
                std::process::exit(130);
            }
        }
    });
    let outcome = match cmd {
        AgentCommand::Run(args) => {
            let mut options = AgentOptions::from_config(&env.config.agent);
            if let Some(n) = args.max_steps {
                options.max_steps = n;
            }
            if let Some(s) = args.time_budget {
                options.time_budget = Duration::from_secs(s);
            }
            agent.start(args.run_id, &args.task, &options).await
        }
        AgentCommand::Resume(args) => {
            let options = ResumeOptions {
                allow_changed: args.allow_changed,
                max_steps: args.max_steps,
                time_budget: args.time_budget.map(Duration::from_secs),
            };
            match env.resolve_run(agent.store(), &args.run).await {
                Ok(run) => agent.resume(&run, &options).await,
                Err(failure) => {
                    watcher.abort();
                    return Err(failure);
                }
            }
        }
    };
    watcher.abort();
    let mut outcome = outcome.map_err(agent_failure)?;
    // A stop in doubt names the commands to run next, with this run's flags.
    outcome.reason = outcome.reason.map(|r| env.with_flags(&r));
    if events {
        // The `finished` event said it all; the exit code says the rest.
        return match outcome.status {
            RunStatus::Completed => Ok(()),
            status => Err(Failure::new(
                1,
                status.as_str(),
                format!("run {} is {}", outcome.run_id, status.as_str()),
            )),
        };
    }
    report(env.json, &outcome)
}

/// Prints the outcome; a run that did not complete exits 1.
pub fn report(json: bool, o: &RunOutcome) -> Result<(), Failure> {
    let ok = o.status == RunStatus::Completed;
    let body = json!({
        "ok": ok,
        "run_id": o.run_id,
        "status": o.status,
        "answer": o.answer,
        "reason": o.reason,
        "steps": o.steps,
        "steps_resumed": o.steps_resumed,
        "model_requests": o.model_requests,
        "tool_calls": o.tool_calls,
        "spent_ms": o.spent_ms,
        "tokens": o.tokens,
        "changes": o.changes,
    });
    if json {
        if ok {
            println!("{body}");
            return Ok(());
        }
    } else {
        println!();
        for c in &o.changes {
            println!("warning: resumed despite a change: {c}");
        }
        println!(
            "run {} {} after {} steps ({} from the journal) in {} ms",
            o.run_id,
            o.status.as_str(),
            o.steps,
            o.steps_resumed,
            o.spent_ms
        );
        if let Some(r) = &o.reason {
            println!("reason: {r}");
        }
        if let Some(a) = &o.answer {
            println!("\n{a}");
        }
        if ok {
            return Ok(());
        }
    }
    let mut failure = Failure::new(1, o.status.as_str(), o.reason.clone().unwrap_or_default());
    failure.json = Some(body);
    if !json {
        // Already printed above; the exit code carries the rest.
        failure.message = format!("run {} is {}", o.run_id, o.status.as_str());
    }
    Err(failure)
}

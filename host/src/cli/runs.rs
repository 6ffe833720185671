//! `toolhost runs list` and `toolhost runs show RUN`: the journal, read
//! back as a table of runs and as one run's timeline.

use clap::Subcommand;
use serde_json::json;
use toolhost::store::{RunRecord, RunStatus, StepKind, StepRecord, Store};

use super::human::{self, Table};
use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The runs, newest first.
    #[command(
        after_help = "Examples:\n  toolhost runs list\n  toolhost runs list --limit 5 --json"
    )]
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One run's timeline: each step with its duration, attempts, serving
    /// model, cache hits and errors.
    #[command(
        after_help = "Examples:\n  toolhost runs show order-7\n  toolhost runs show ord --json"
    )]
    Show {
        /// The run id, or a unique prefix of it.
        run: String,
    },
}

fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(1, "store_unavailable", e.to_string())
}

pub async fn run(env: &Env, cmd: RunsCommand) -> Result<(), Failure> {
    let store = env.store().await?;
    match cmd {
        RunsCommand::List { limit } => {
            let runs = store.list_runs(limit, None).await.map_err(store_failure)?;
            let pickup = match runs.iter().any(|r| r.status == RunStatus::Interrupted) {
                true => Some(Pickup::ask(env, &store).await?),
                false => None,
            };
            if env.json {
                let runs: Vec<serde_json::Value> =
                    runs.iter().map(|r| run_json(r, pickup.as_ref())).collect();
                println!("{}", json!({"ok": true, "runs": runs}));
                return Ok(());
            }
            if runs.is_empty() {
                println!("no runs yet: start one with `toolhost agent run \"TASK\"`");
                return Ok(());
            }
            let now = human::now_ms();
            let mut table = Table::new(&["RUN", "STATUS", "SPENT", "SESSIONS", "STARTED", "TASK"]);
            for r in &runs {
                let mut task: String = r.task.chars().take(48).collect();
                if task.len() < r.task.len() {
                    task.push_str("...");
                }
                table.row(vec![
                    r.id.clone(),
                    r.status.as_str().to_string(),
                    human::micros(r.spent_ms * 1000),
                    r.sessions.to_string(),
                    human::ago(r.created_at, now),
                    task,
                ]);
            }
            table.print(&[1]);
            if let Some(p) = &pickup {
                println!();
                match &p.server {
                    Some(server) => {
                        println!("interrupted runs (their owner died): {server} adopts them")
                    }
                    None => println!(
                        "interrupted runs (their owner died): resume one with `{}`, or start `toolhost serve`, which adopts them",
                        env.with_flags("toolhost agent resume RUN")
                    ),
                }
            }
            Ok(())
        }
        RunsCommand::Show { run } => {
            let run = env.resolve_run(&store, &run).await?;
            let record = store
                .get_run(&run)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| {
                    Failure::usage(format!("no run `{run}` (see `toolhost runs list`)"))
                        .with_kind("not_found")
                })?;
            let steps = store.steps(&run).await.map_err(store_failure)?;
            let pickup = match record.status == RunStatus::Interrupted {
                true => Some(Pickup::ask(env, &store).await?),
                false => None,
            };
            if env.json {
                let steps: Vec<serde_json::Value> = steps.iter().map(StepRecord::to_json).collect();
                let run = run_json(&record, pickup.as_ref());
                println!("{}", json!({"ok": true, "run": run, "steps": steps}));
            } else {
                show(&record, pickup.as_ref(), &steps);
            }
            Ok(())
        }
    }
}

/// Who will pick up an interrupted run: a live `toolhost serve` that adopts
/// runs, or else the command to resume it.
struct Pickup {
    server: Option<String>,
    /// `toolhost agent resume`, with this invocation's flags.
    command: String,
}

impl Pickup {
    async fn ask(env: &Env, store: &Store) -> Result<Pickup, Failure> {
        let servers = store.recoverers().await.map_err(store_failure)?;
        Ok(Pickup {
            server: servers.first().map(|s| s.to_string()),
            command: env.with_flags("toolhost agent resume"),
        })
    }

    fn for_run(&self, id: &str) -> String {
        match &self.server {
            Some(server) => format!("{server} adopts it"),
            None => format!("resume it with `{} {id}`", self.command),
        }
    }
}

/// A run for `--json`: the journal's row, and for an interrupted run who
/// picks it up (`picked_up_by`).
fn run_json(r: &RunRecord, pickup: Option<&Pickup>) -> serde_json::Value {
    let mut v = json!(r);
    if r.status == RunStatus::Interrupted
        && let Some(p) = pickup
    {
        v["picked_up_by"] = json!(p.for_run(&r.id));
    }
    v
}

fn show(r: &RunRecord, pickup: Option<&Pickup>, steps: &[StepRecord]) {
    println!("run      {}", r.id);
    println!("task     {}", r.task);
    let now = human::now_ms();
    let mut when = format!("started {}", human::ago(r.created_at, now));
    if let Some(done) = r.finished_at {
        when.push_str(&format!(", finished {}", human::ago(done, now)));
    }
    println!("when     {when}");
    let why = match (r.status, pickup) {
        (RunStatus::Interrupted, Some(p)) => Some(format!("its owner died; {}", p.for_run(&r.id))),
        _ => r.reason.clone(),
    };
    println!(
        "status   {}{}",
        r.status.as_str(),
        why.map(|x| format!(" ({x})")).unwrap_or_default()
    );
    println!("chain    {}", r.chain.join(" -> "));
    println!(
        "spent    {} ms live over {} session(s); {} steps served from the journal by resumes",
        r.spent_ms, r.sessions, r.steps_resumed
    );
    println!(
        "budgets  {} steps, {} ms{}",
        r.max_steps,
        r.time_budget_ms,
        r.token_budget
            .map(|t| format!(", {t} tokens"))
            .unwrap_or_default()
    );
    println!();
    println!(
        "{:<5} {:<6} {:<12} {:>9}  what happened",
        "step", "part", "who", "ms"
    );
    for s in steps {
        let ms = format!("{:.1}", s.duration_us as f64 / 1000.0);
        let what = match s.kind {
            StepKind::Model => model_line(s),
            StepKind::Tool => tool_line(s),
        };
        let part = match s.kind {
            StepKind::Model => "model".to_string(),
            StepKind::Tool => format!("tool{}", s.part - 1),
        };
        println!("{:<5} {:<6} {:<12} {:>9}  {what}", s.step, part, s.name, ms);
    }
    if let Some(a) = &r.answer {
        println!("\nanswer: {a}");
    }
}

fn model_line(s: &StepRecord) -> String {
    let mut out = format!("{} attempt(s)", s.attempts);
    if s.retries > 0 {
        out.push_str(&format!(
            ", {} retr{}",
            s.retries,
            if s.retries == 1 { "y" } else { "ies" }
        ));
    }
    let report: serde_json::Value = s
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let errors: Vec<String> = report["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            a["error"]
                .as_str()
                .map(|e| format!("{}#{} {e}", a["model"].as_str().unwrap_or("?"), a["n"]))
        })
        .collect();
    if !errors.is_empty() {
        out.push_str(&format!(" [{}]", errors.join(", ")));
    }
    // Streamed attempts: each one's time to first token, and what the
    // broken ones threw away.
    let first: Vec<String> = report["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let t = a["first_token_ms"].as_u64()?;
            Some(format!(
                "{}#{} {t} ms",
                a["model"].as_str().unwrap_or("?"),
                a["n"]
            ))
        })
        .collect();
    if !first.is_empty() {
        out.push_str(&format!(", first token {}", first.join(", ")));
    }
    let discarded: u64 = report["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["tokens_discarded"].as_u64())
        .sum();
    if discarded > 0 {
        out.push_str(&format!(", {discarded} tokens discarded"));
    }
    for f in report["fallbacks"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            ", fell back {} -> {} ({})",
            f["from"].as_str().unwrap_or("?"),
            f["to"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("?")
        ));
    }
    if s.breaker_opens > 0 {
        out.push_str(&format!(", {} breaker open(s)", s.breaker_opens));
    }
    if !s.is_final {
        out.push_str(&format!(
            "; FAILED: {}",
            s.error_kind.as_deref().unwrap_or("?")
        ));
    } else if let Ok(resp) = serde_json::from_str::<serde_json::Value>(&s.body) {
        let calls = resp["tool_calls"].as_array().map_or(0, Vec::len);
        if calls == 0 {
            out.push_str(" -> answer");
        } else {
            let names: Vec<&str> = resp["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            out.push_str(&format!(" -> {}", names.join(", ")));
        }
    }
    out
}

fn tool_line(s: &StepRecord) -> String {
    let mut out = match &s.error_kind {
        None => "ok".to_string(),
        Some(k) => format!("error: {k}"),
    };
    if s.cached {
        out.push_str(" (cache hit)");
    }
    if s.fuel > 0 {
        out.push_str(&format!(", fuel {}", s.fuel));
    }
    if !s.is_final {
        out.push_str(" (stopped the run)");
    }
    if let Some(k) = &s.request_digest {
        out.push_str(&format!(", key {}", human::short_key(k)));
    }
    out
}

//! `toolhost cache list | show KEY | resolve KEY --reconcile|--retry|--abandon|--mark-done OUTPUT | gc`.

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};
use toolhost::idempotency::RecordedLimits;
use toolhost::store::{CallRecord, CallState};

use super::human::{self, Table, style};
use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Recorded calls, newest first.
    #[command(
        after_help = "Examples:\n  toolhost cache list\n  toolhost cache list --limit 10 --json"
    )]
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One recorded call, with its input and outcome.
    #[command(
        after_help = "Examples:\n  toolhost cache show 05634fbf\n  toolhost cache show 05634fbf --json"
    )]
    Show {
        /// The call's key, or a unique prefix of it.
        key: String,
    },
    /// Decide an `in_doubt` call: ask its tool, run it again once (under its recorded limits), give it up, or record its output.
    #[command(
        after_help = "Examples:\n  toolhost cache resolve 05634fbf --reconcile\n  toolhost cache resolve 05634fbf --retry\n  toolhost cache resolve 05634fbf --abandon\n  toolhost cache resolve 05634fbf --mark-done '{\"charge_id\":\"ch_1\",\"amount\":500,\"currency\":\"usd\",\"status\":\"succeeded\"}'"
    )]
    Resolve(ResolveArgs),
    /// Remove expired outcomes (and, with --older-than, old ones); dead owners' claims become in_doubt.
    #[command(after_help = "Examples:\n  toolhost cache gc\n  toolhost cache gc --older-than 7d")]
    Gc {
        /// Also remove outcomes recorded longer ago than this (30s, 15m, 12h, 7d).
        #[arg(long, value_name = "DUR")]
        older_than: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["reconcile", "retry", "abandon", "mark_done"])))]
pub struct ResolveArgs {
    /// The call's key, or a unique prefix of it.
    key: String,
    /// Ask the tool's `reconcile` whether the effect happened, and act on its answer.
    #[arg(long)]
    reconcile: bool,
    /// Run the call again (attempt + 1, same key).
    #[arg(long)]
    retry: bool,
    /// Record that it will not run; callers get a final failure.
    #[arg(long)]
    abandon: bool,
    /// Record OUTPUT (JSON, checked against the tool's output schema) as its outcome: the effect happened.
    #[arg(long, value_name = "OUTPUT")]
    mark_done: Option<String>,
}

fn record_json(r: &CallRecord, full: bool) -> Value {
    let mut v = json!({
        "key": r.key,
        "tool": r.tool,
        "effect": r.effect,
        "state": r.state.as_str(),
        "scope": r.scope,
        "attempt": r.attempt,
        "created_at_ms": r.created_at,
        "completed_at_ms": r.completed_at,
        "expires_at_ms": r.expires_at,
        "ok": r.outcome.as_ref().map(|o| o.ok),
    });
    if full {
        v["input"] = serde_json::from_str(&r.input).unwrap_or(Value::String(r.input.clone()));
        v["owner"] = json!(r.owner);
        v["outcome"] = json!(r.outcome);
        v["component_digest"] = json!(r.component_digest);
        v["policy_digest"] = json!(r.policy_digest);
        v["limits"] = json!(RecordedLimits::from_row(r));
    }
    v
}

/// `30s`, `15m`, `12h`, `7d`, or plain seconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, Failure> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| Failure::usage(format!("`{s}` is not a duration like 30s, 15m, 12h or 7d")))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(Failure::usage(format!(
                "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            )));
        }
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| Failure::usage(format!("`{s}` is too long")))
}

fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(1, "store_unavailable", e.to_string())
}

pub async fn run(env: &Env, cmd: CacheCommand) -> Result<(), Failure> {
    match cmd {
        CacheCommand::List { limit } => {
            let rows = env
                .store()
                .await?
                .list(limit)
                .await
                .map_err(store_failure)?;
            if env.json {
                let rows: Vec<_> = rows.iter().map(|r| record_json(r, false)).collect();
                println!("{}", json!({ "calls": rows }));
            } else {
                print_list(&rows);
            }
            Ok(())
        }
        CacheCommand::Show { key } => {
            let store = env.store().await?;
            let key = env.resolve_key(&store, &key).await?;
            let row = store.get(&key).await.map_err(store_failure)?;
            let row = row.ok_or_else(|| {
                Failure::new(
                    1,
                    "not_found",
                    format!("no recorded call has key {key} (see `toolhost cache list`)"),
                )
            })?;
            if env.json {
                super::output::print_document(true, &record_json(&row, true));
            } else {
                print_show(env, &row);
            }
            Ok(())
        }
        CacheCommand::Resolve(args) => {
            let executor = env.executor().await?;
            let key = env.resolve_key(executor.store(), &args.key).await?;
            let failure = |e: toolhost::idempotency::ExecError| {
                Failure::new(1, e.kind(), env.with_flags(&e.to_string()))
            };
            if args.abandon || args.mark_done.is_some() {
                let (done, word) = match &args.mark_done {
                    Some(output) => (
                        executor.mark_done_in_doubt(&key, output).await,
                        "marked_done",
                    ),
                    None => (executor.abandon_in_doubt(&key).await, "abandoned"),
                };
                let _ = executor.flush_stats().await;
                done.map_err(failure)?;
                if env.json {
                    println!("{}", json!({"ok": true, "key": key, "resolved": word}));
                } else {
                    println!("{} {key}", word.replace('_', " "));
                }
                return Ok(());
            }
            let (result, word) = if args.reconcile {
                (executor.reconcile_in_doubt(&key).await, "reconciled")
            } else {
                (executor.retry_in_doubt(&key).await, "retried")
            };
            let _ = executor.flush_stats().await;
            match result {
                Ok(out) => {
                    if out.digest_changed {
                        eprintln!(
                            "note: the tool or its policy changed since {} was claimed (digest_changed); it was retried under its recorded limits with the current build",
                            out.key
                        );
                    }
                    if env.json {
                        // A reconcile that answered not-done re-ran the call.
                        let word = if args.reconcile && !out.reconciled {
                            "reconciled_and_ran"
                        } else {
                            word
                        };
                        let body = json!({"ok": true, "key": out.key, "resolved": word,
                            "attempt": out.attempt, "output": out.output,
                            "reconciled": out.reconciled,
                            "digest_changed": out.digest_changed});
                        println!("{body}");
                    } else {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&out.output).unwrap_or_default()
                        );
                    }
                    Ok(())
                }
                Err(e) => Err(failure(e)),
            }
        }
        CacheCommand::Gc { older_than } => {
            let now = toolhost::clock::unix_ms();
            let before = older_than
                .as_deref()
                .map(parse_duration_ms)
                .transpose()?
                .map(|ms| now - ms);
            let store = env.store().await?;
            let report = store.gc(now, before).await.map_err(store_failure)?;
            if env.json {
                println!(
                    "{}",
                    json!({"removed": report.removed, "kept_in_flight": report.kept_in_flight,
                        "swept_in_doubt": report.swept_in_doubt, "locks_removed": report.locks_removed})
                );
            } else {
                let owners = if store.is_shared() {
                    "heartbeat rows"
                } else {
                    "lock files"
                };
                println!(
                    "removed {} recorded calls; {} claims of dead owners are now in_doubt; kept {} in flight or in doubt; removed {} dead owners' {owners}",
                    report.removed,
                    report.swept_in_doubt,
                    report.kept_in_flight,
                    report.locks_removed
                );
            }
            Ok(())
        }
    }
}

/// `cache list` for people: short keys, state and outcome, sizes, times.
fn print_list(rows: &[CallRecord]) {
    if rows.is_empty() {
        println!("no recorded calls yet");
        return;
    }
    let now = human::now_ms();
    let mut table = Table::new(&[
        "KEY", "TOOL", "EFFECT", "STATE", "OUTCOME", "ATTEMPT", "OUTPUT", "RECORDED",
    ]);
    for r in rows {
        let output = r
            .outcome
            .as_ref()
            .and_then(|o| o.output.as_ref())
            .map_or_else(
                || "-".to_string(),
                |v| human::size(v.to_string().len() as u64),
            );
        table.row(vec![
            human::short_key(&r.key).to_string(),
            r.tool.clone(),
            r.effect.clone(),
            r.state.as_str().to_string(),
            outcome_of(r),
            r.attempt.to_string(),
            output,
            human::ago(r.completed_at.unwrap_or(r.created_at), now),
        ]);
    }
    table.print(&[3, 4]);
}

/// `ok`, the recorded error kind, or `-` while there is no outcome.
fn outcome_of(r: &CallRecord) -> String {
    let o = r.outcome.as_ref();
    human::outcome(
        o.map(|o| o.ok),
        o.and_then(|o| o.error.as_ref()).map(|e| e.kind.as_str()),
    )
}

/// How much of an input or output `cache show` prints before cutting it.
const SHOWN_CHARS: usize = 400;

fn cut(text: &str) -> String {
    let mut out: String = text.chars().take(SHOWN_CHARS).collect();
    if out.len() < text.len() {
        out.push_str(&format!(" ... ({} in all)", human::size(text.len() as u64)));
    }
    out
}

/// `cache show KEY` for people: a summary, one fact per line.
fn print_show(env: &Env, r: &CallRecord) {
    let now = human::now_ms();
    let line = |label: &str, value: String| {
        anstream::println!(
            "{}{label:<10}{} {value}",
            style::HEADER,
            style::HEADER.render_reset()
        );
    };
    line("key", r.key.clone());
    line(
        "tool",
        format!("{} ({}), attempt {}", r.tool, r.effect, r.attempt),
    );
    let state = r.state.as_str();
    line(
        "state",
        format!(
            "{}{state}{}, outcome {}",
            style::of(state),
            style::of(state).render_reset(),
            outcome_of(r)
        ),
    );
    if !r.scope.is_empty() {
        line("scope", r.scope.clone());
    }
    let mut when = format!("claimed {}", human::ago(r.created_at, now));
    if let Some(done) = r.completed_at {
        when.push_str(&format!(", recorded {}", human::ago(done, now)));
    }
    match r.expires_at {
        Some(e) if e <= now => when.push_str(&format!(", expired {}", human::ago(e, now))),
        Some(e) => when.push_str(&format!(", expires {}", human::ago(e, now))),
        None => {}
    }
    line("when", when);
    line("input", cut(&r.input));
    if let Some(o) = &r.outcome {
        line(
            "ran",
            format!("{}, fuel {}", human::micros(o.duration_us), o.fuel_used),
        );
        if let Some(v) = &o.output {
            line("output", cut(&v.to_string()));
        }
        if let Some(e) = &o.error {
            line("error", format!("{}: {}", e.kind, cut(&e.message)));
        }
        for r in &o.resolutions {
            line(
                "resolved",
                format!(
                    "{} by {}, attempt {}, {}: {}",
                    r.answer,
                    r.decider,
                    r.attempt,
                    human::ago(r.at_ms, now),
                    cut(&r.evidence)
                ),
            );
        }
    }
    if let Some(owner) = &r.owner {
        line("owner", owner.clone());
    }
    let digest = |d: &Option<String>| {
        d.as_deref()
            .map_or_else(|| "-".to_string(), |d| human::short_key(d).to_string())
    };
    line(
        "digests",
        format!(
            "component {}, policy {}",
            digest(&r.component_digest),
            digest(&r.policy_digest)
        ),
    );
    if let Some(l) = RecordedLimits::from_row(r) {
        line(
            "limits",
            format!(
                "fuel {}, timeout {} ms, memory {}, output {}",
                l.fuel,
                l.timeout_ms,
                human::size(l.memory_bytes),
                human::size(l.max_output_bytes)
            ),
        );
    }
    if r.state == CallState::InDoubt {
        let hint = format!(
            "in doubt: decide with `toolhost cache resolve {} --reconcile`, `--retry`, `--abandon` or `--mark-done OUTPUT`",
            human::short_key(&r.key)
        );
        println!("\n{}", env.with_flags(&hint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30s").unwrap(), 30_000);
        assert_eq!(parse_duration_ms("15m").unwrap(), 900_000);
        assert_eq!(parse_duration_ms("7d").unwrap(), 604_800_000);
        assert_eq!(parse_duration_ms("5").unwrap(), 5_000);
        assert!(parse_duration_ms("5w").is_err());
        assert!(parse_duration_ms("x").is_err());
    }
}

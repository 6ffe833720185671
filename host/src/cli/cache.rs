//! `toolhost cache list | show KEY | resolve KEY --retry|--abandon | gc`.

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};
use toolhost::idempotency::{Clock, RecordedLimits, SystemClock};
use toolhost::store::CallRecord;

use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Recorded calls, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One recorded call, with its input and outcome.
    Show { key: String },
    /// Decide an `in_doubt` call: run it again once (under its recorded limits), or give it up.
    Resolve(ResolveArgs),
    /// Remove expired outcomes (and, with --older-than, old ones); dead owners' claims become in_doubt.
    Gc {
        /// Also remove outcomes recorded longer ago than this (30s, 15m, 12h, 7d).
        #[arg(long, value_name = "DUR")]
        older_than: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["retry", "abandon"])))]
pub struct ResolveArgs {
    key: String,
    /// Run the call again (attempt + 1, same key).
    #[arg(long)]
    retry: bool,
    /// Record that it will not run; callers get a final failure.
    #[arg(long)]
    abandon: bool,
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
                println!(
                    "{:<64}  {:<12} {:<15} {:<9} ATTEMPT",
                    "KEY", "TOOL", "EFFECT", "STATE"
                );
                for r in rows {
                    println!(
                        "{:<64}  {:<12} {:<15} {:<9} {}",
                        r.key,
                        r.tool,
                        r.effect,
                        r.state.as_str(),
                        r.attempt
                    );
                }
            }
            Ok(())
        }
        CacheCommand::Show { key } => {
            let row = env.store().await?.get(&key).await.map_err(store_failure)?;
            let row = row.ok_or_else(|| {
                Failure::new(1, "not_found", format!("no recorded call has key {key}"))
            })?;
            let body = record_json(&row, true);
            super::output::print_document(env.json, &body);
            Ok(())
        }
        CacheCommand::Resolve(args) => {
            let executor = env.executor().await?;
            if args.abandon {
                executor
                    .abandon_in_doubt(&args.key)
                    .await
                    .map_err(|e| Failure::new(1, e.kind(), e.to_string()))?;
                if env.json {
                    println!(
                        "{}",
                        json!({"ok": true, "key": args.key, "resolved": "abandoned"})
                    );
                } else {
                    println!("abandoned {}", args.key);
                }
                return Ok(());
            }
            let result = executor.retry_in_doubt(&args.key).await;
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
                        let body = json!({"ok": true, "key": out.key, "resolved": "retried",
                            "attempt": out.attempt, "output": out.output,
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
                Err(e) => Err(Failure::new(1, e.kind(), e.to_string())),
            }
        }
        CacheCommand::Gc { older_than } => {
            let now = SystemClock.now_ms();
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

//! `toolhost call TOOL --input JSON|@FILE`.

use std::path::Path;

use clap::Args;
use serde_json::json;
use toolhost::idempotency::{ExecError, ExecOptions, ExecOutput, Scope};
use toolhost::sandbox::{ErrorKind, Overrides};

use super::{Env, Failure};

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The tool's name.
    tool: String,
    /// The input: JSON text, or @FILE to read it from a file (@- for stdin).
    #[arg(long, value_name = "JSON|@FILE")]
    input: String,
    /// Name this operation: the same key runs once; reused with another input it is refused.
    #[arg(long, value_name = "K", conflicts_with = "no_cache")]
    idempotency_key: Option<String>,
    /// Run in a fresh scope: never replay an earlier outcome.
    #[arg(long)]
    no_cache: bool,
    /// Fuel for this call (overrides the config).
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock limit for this call, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory limit for this call, in MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
}

impl CallArgs {
    /// The tool this call names.
    pub fn tool(&self) -> &str {
        &self.tool
    }
}

/// The `--input` text: the argument itself, a file (`@FILE`) or stdin (`@-`).
/// I/O failures carry their context through `anyhow`, the CLI's error type.
fn read_input(arg: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(arg.to_string());
    };
    if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the input from stdin")
    } else {
        std::fs::read_to_string(Path::new(path))
            .with_context(|| format!("cannot read input file {path}"))
    }
}

fn check_override(name: &str, v: Option<u64>, max: u64) -> Result<(), Failure> {
    match v {
        Some(0) => Err(Failure::usage(format!("--{name} must be greater than 0"))),
        Some(v) if v > max => Err(Failure::usage(format!("--{name} must be at most {max}"))),
        _ => Ok(()),
    }
}

pub async fn run(env: &Env, args: CallArgs) -> Result<(), Failure> {
    check_override("fuel", args.fuel, u64::MAX)?;
    check_override("timeout-ms", args.timeout_ms, 24 * 3600 * 1000)?;
    check_override("memory-mb", args.memory_mb, toolhost::config::MAX_MEMORY_MB)?;
    if args
        .idempotency_key
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.len() > 256)
    {
        return Err(Failure::usage("--idempotency-key must be 1-256 characters"));
    }
    let input = read_input(&args.input).map_err(|e| Failure::usage_from(&e))?;
    // A call pays only for the tool it calls.
    let executor = env.executor_for_call(&args.tool).await?;
    let scope = match (&args.idempotency_key, args.no_cache) {
        (Some(k), _) => Scope::Explicit(k.clone()),
        (None, true) => Scope::Fresh,
        (None, false) => Scope::Empty,
    };
    let options = ExecOptions {
        scope,
        overrides: Overrides {
            fuel: args.fuel,
            timeout_ms: args.timeout_ms,
            memory_mb: args.memory_mb,
        },
    };
    let result = executor.call(&args.tool, &input, options).await;
    if let Err(e) = executor.flush_stats().await {
        tracing::warn!(error = %e, "cannot record cache counters");
    }
    match result {
        Ok(out) => {
            print_success(env, &args.tool, &out);
            Ok(())
        }
        Err(e) => Err(call_failure(env, &args.tool, &e)),
    }
}

fn print_success(env: &Env, tool: &str, out: &ExecOutput) {
    if out.digest_changed {
        eprintln!("{}", digest_warning(tool));
    }
    if env.json {
        let body = json!({
            "ok": true,
            "tool": tool,
            "output": out.output,
            "fuel_used": out.fuel_used,
            "duration_us": out.duration_us,
            "cached": out.cached,
            "key": out.key,
            "stored_at_ms": out.stored_at,
            "attempt": out.attempt,
            "reconciled": out.reconciled,
            "digest_changed": out.digest_changed,
        });
        println!("{body}");
    } else {
        if out.cached {
            // On stderr: stdout stays the result alone, for pipes.
            let when = out
                .stored_at
                .map(|at| {
                    format!(
                        ", recorded {}",
                        super::human::ago(at, super::human::now_ms())
                    )
                })
                .unwrap_or_default();
            eprintln!(
                "(replayed from cache: key {}{when})",
                super::human::short_key(&out.key)
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&out.output).unwrap_or_default()
        );
    }
}

/// A failed call: exit 1, except a tool that does not exist or a policy
/// that cannot be applied (usage and config errors: exit 2). An `in_doubt`
/// message's `toolhost cache resolve` command carries this call's flags.
fn call_failure(env: &Env, tool: &str, e: &ExecError) -> Failure {
    let usage = matches!(e, ExecError::Call { error, .. }
        if matches!(error.kind(), ErrorKind::UnknownTool | ErrorKind::Config));
    let message = env.with_flags(&e.to_string());
    let mut failure = Failure::new(if usage { 2 } else { 1 }, e.kind(), message.clone());
    let cached = matches!(e, ExecError::Call { cached: true, .. });
    if e.digest_changed() {
        eprintln!("{}", digest_warning(tool));
    }
    failure.json = Some(json!({
        "ok": false,
        "tool": tool,
        "cached": cached,
        "key": e.key(),
        "digest_changed": e.digest_changed(),
        "error": {"kind": e.kind(), "message": message},
    }));
    failure
}

/// The warning for a replay recorded under another build or policy.
pub fn digest_warning(tool: &str) -> String {
    format!(
        "warning: this outcome was recorded under another build or policy of `{tool}` (digest_changed); it replays because the key names the effect, not the build"
    )
}

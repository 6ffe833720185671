//! `toolhost call TOOL --input JSON|@FILE`.

use std::path::Path;

use clap::Args;
use serde_json::json;
use toolhost::sandbox::{CallError, CallRequest, ErrorKind, Overrides};

use super::{Env, Failure};

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The tool's name.
    tool: String,
    /// The input: JSON text, or @FILE to read it from a file (@- for stdin).
    #[arg(long, value_name = "JSON|@FILE")]
    input: String,
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

fn read_input(arg: &str) -> Result<String, Failure> {
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(arg.to_string());
    };
    let read = if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(Path::new(path))
    };
    read.map_err(|e| Failure::usage(format!("cannot read input file {path}: {e}")))
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
    let input = read_input(&args.input)?;
    let sandbox = env.sandbox().await?;
    let request = CallRequest {
        idempotency_key: String::new(),
        attempt: 1,
        overrides: Overrides {
            fuel: args.fuel,
            timeout_ms: args.timeout_ms,
            memory_mb: args.memory_mb,
        },
    };
    match sandbox.call(&args.tool, &input, request).await {
        Ok(out) => {
            if env.json {
                let body = json!({
                    "ok": true,
                    "tool": args.tool,
                    "output": out.output,
                    "fuel_used": out.fuel_used,
                    "duration_us": out.duration.as_micros() as u64,
                });
                println!("{body}");
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.output).unwrap_or_default()
                );
            }
            Ok(())
        }
        Err(e) => Err(call_failure(&args.tool, &e)),
    }
}

/// A failed call: exit 1, except a tool that does not exist (a usage error).
fn call_failure(tool: &str, e: &CallError) -> Failure {
    let code = if e.kind() == ErrorKind::UnknownTool {
        2
    } else {
        1
    };
    let mut failure = Failure::new(code, e.kind().as_str(), e.to_string());
    failure.json = Some(json!({
        "ok": false,
        "tool": tool,
        "error": {"kind": e.kind().as_str(), "message": e.to_string()},
    }));
    failure
}

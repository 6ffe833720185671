//! `toolhost config trust [PATH] [--json]`: vouch for a `toolhost.toml` so
//! runs from its directory use it.
//!
//! A working-directory config is refused until trusted, because a tool
//! with a write grant could have written it (`config::trust`). Trusting
//! reads the file, checks that it is a valid config, shows what it grants,
//! and records its resolved path and blake3 digest in the user's state
//! directory. It never loads a config itself, so it works where every
//! other command refuses the file.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};
use toolhost::config::{Config, DEFAULT_PATH, trust};

use super::Failure;

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The config to trust (default: ./toolhost.toml).
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
}

pub fn run(args: &TrustArgs, json: bool) -> Result<(), Failure> {
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    if path.file_name() != Some(DEFAULT_PATH.as_ref()) {
        return Err(Failure::usage(format!(
            "{}: only a file named {DEFAULT_PATH} is read from a working directory; name any other config with --config (which needs no trust)",
            shown.display()
        )));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", shown.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::config(format!("{}: not UTF-8 text", shown.display())))?;
    // A config that would be refused anyway is not worth a record, and its
    // error (key and line) is what the user needs now.
    let config = Config::parse(&text, &path).map_err(|e| Failure::config(e.to_string()))?;
    let record = trust::trust(&path, text.as_bytes()).map_err(|e| match e {
        trust::TrustError::Read { .. } | trust::TrustError::NoStateDir => {
            Failure::usage(e.to_string())
        }
        trust::TrustError::Write { .. } => Failure::new(1, "io_error", e.to_string()),
    })?;
    let grants = grants(&config);
    if json {
        println!(
            "{}",
            json!({
                "trusted": record.path,
                "blake3": record.blake3,
                "grants": grants,
            })
        );
        return Ok(());
    }
    println!(
        "trusted {} (blake3 {})",
        record.path.display(),
        &record.blake3[..12]
    );
    if grants.is_empty() {
        println!("it grants no tool anything");
    } else {
        println!("it grants:");
        for (tool, list) in &grants {
            let list: Vec<&str> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!("  {tool}: {}", list.join("; "));
        }
    }
    let dir = record.path.parent().unwrap_or(Path::new("/"));
    println!(
        "runs from {} use it until it changes; a changed file must be trusted again",
        dir.display()
    );
    Ok(())
}

/// What each tool's policy grants, one line per grant.
fn grants(config: &Config) -> serde_json::Map<String, Value> {
    config
        .tools
        .iter()
        .filter_map(|(name, policy)| {
            let mut lines: Vec<String> = policy
                .dirs
                .iter()
                .map(|d| format!("{} -> {} ({})", d.host.display(), d.guest, d.mode.as_str()))
                .collect();
            lines.extend(policy.env.iter().map(|v| format!("env {v}")));
            lines.extend(policy.host_patterns().iter().map(|h| format!("http {h}")));
            (!lines.is_empty()).then(|| (name.clone(), json!(lines)))
        })
        .collect()
}

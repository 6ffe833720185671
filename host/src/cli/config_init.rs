//! `toolhost config init [PATH] [--force]`: a commented starter config, so
//! the agent quick start is two commands (`config init`, `agent run`).
//!
//! It writes `toolhost.toml` (default: in the current directory) with a
//! model chain that works offline (the `scripted` provider, a commented
//! local model to put first), a `notes` grant, and the script and the
//! granted `data/` directory beside it, so the file passes
//! `toolhost config check` as written. Nothing is overwritten unless
//! `--force` is given.
//!
//! **Trust** (decision 0074): a `./toolhost.toml` is used only once
//! trusted, because a tool could have written it. These bytes are
//! toolhost's own, written at the user's command, so `config init` records
//! their digest as `config trust` would, and says so. A file swapped in
//! after the write has other bytes and is refused as untrusted.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use toolhost::config::{Config, DEFAULT_PATH, trust};

use super::Failure;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the config (default: ./toolhost.toml); its script and
    /// `data/` directory go beside it.
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// Overwrite the config and its script if they exist.
    #[arg(long)]
    force: bool,
}

/// The scripted model's answers, beside the config.
const SCRIPT_FILE: &str = "toolhost-turns.json";

/// The starter config. `{script}` is [`SCRIPT_FILE`].
const STARTER: &str = r#"# toolhost.toml, written by `toolhost config init`. Every key is optional;
# `toolhost config check` shows what this file resolves to. Relative paths
# are relative to this file's directory. After an edit, run
# `toolhost config trust` (a changed ./toolhost.toml is refused until then).

# The model chain, in order: the first is the primary, the rest fall back.
# To use a local model (Ollama shown; it must support tool calls), uncomment
# this entry; it then comes first and the scripted one is the fallback.
#
# [[models]]
# name = "local"
# provider = "openai"
# model = "qwen2.5:7b"
# base_url = "http://localhost:11434/v1"
# context_window = 32_768
#
# A hosted one reads its key from the variable `api_key_env` names:
#
# [[models]]
# name = "claude"
# provider = "anthropic"
# model = "claude-sonnet-4-5"
# api_key_env = "ANTHROPIC_API_KEY"

# Offline and the same every time: answers from the script beside this file
# (it asks for a `calc` and a `notes` call, then answers). Remove this entry
# once a real model is first.
[[models]]
name = "offline"
provider = "scripted"
script = "{script}"

# A tool sees no files, variables or network unless its policy grants them.
# `notes` (side-effecting: it appends lines to files) may write in ./data,
# which it sees as /data.
[tools.notes]
dirs = [{ host = "./data", guest = "/data", mode = "rw" }]

# Limits for every tool (these are the defaults).
# [sandbox]
# fuel = 1_000_000_000
# timeout_ms = 10_000
# memory_mb = 64

# How long an agent run may go on (these are the defaults).
# [agent]
# max_steps = 20
# time_budget_s = 300
"#;

/// The scripted model's turns: a conversation that calls two tools, one
/// turn each (so what a run prints is the same every time), then answers,
/// whatever the task.
fn script() -> serde_json::Value {
    json!({
        "mode": "conversation",
        "turns": [
            {"tool_calls": [{"name": "calc", "arguments": {"expr": "6*7"}}]},
            {"tool_calls": [
                {"name": "notes", "arguments": {"file": "answers.txt", "text": "6*7 = 42"}}
            ]},
            {"text": "6*7 is 42; I noted it in answers.txt. (This is the scripted model: put a real one first in toolhost.toml.)"}
        ]
    })
}

pub fn run(args: &InitArgs, json_out: bool) -> Result<(), Failure> {
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let path = std::path::absolute(&path).unwrap_or(path);
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let script_path = dir.join(SCRIPT_FILE);
    if !args.force {
        for p in [&path, &script_path] {
            if p.exists() {
                return Err(Failure::usage(format!(
                    "{} exists; nothing was written (--force overwrites it)",
                    p.display()
                )));
            }
        }
    }
    if !dir.is_dir() {
        return Err(Failure::usage(format!(
            "the directory {} does not exist",
            dir.display()
        )));
    }
    let io = |what: &Path, e: std::io::Error| {
        Failure::new(
            1,
            "io_error",
            format!("cannot write {}: {e}", what.display()),
        )
    };
    let text = STARTER.replace("{script}", SCRIPT_FILE);
    // Checked before anything is written: what is written must load.
    Config::parse(&text, &path)
        .map_err(|e| Failure::internal(format!("the starter config: {e}")))?;
    let script = serde_json::to_string_pretty(&script()).unwrap_or_default() + "\n";
    std::fs::write(&script_path, script).map_err(|e| io(&script_path, e))?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| io(&data, e))?;
    std::fs::write(&path, &text).map_err(|e| io(&path, e))?;
    // Only a file named toolhost.toml is ever read from a working
    // directory; any other name is given with --config, which needs no
    // trust.
    let trusted = if path.file_name() == Some(DEFAULT_PATH.as_ref()) {
        trust::trust(&path, text.as_bytes())
            .map(|_| true)
            .map_err(|e| Failure::new(1, "io_error", e.to_string()))?
    } else {
        false
    };
    // The command to run next, as it works from here.
    let task = "agent run \"What is 6*7? Note the answer.\"";
    let quote = |p: &Path| super::lookup::shell_quote(&p.to_string_lossy());
    let here = std::env::current_dir().ok();
    let next = if !trusted {
        format!("toolhost --config {} {task}", quote(&path))
    } else if here.as_deref() == Some(dir.as_path()) {
        format!("toolhost {task}")
    } else {
        format!("cd {} && toolhost {task}", quote(&dir))
    };
    if json_out {
        println!(
            "{}",
            json!({
                "ok": true,
                "config": path,
                "script": script_path,
                "data": data,
                "trusted": trusted,
                "next": next,
            })
        );
        return Ok(());
    }
    println!("wrote {}", path.display());
    println!("  a scripted model (answers from {SCRIPT_FILE}, offline) and a commented local one");
    println!("  notes may write in {} (as /data)", data.display());
    if trusted {
        println!(
            "trusted it, as `toolhost config trust` would: runs from {} use it; after an edit, run `toolhost config trust` again",
            dir.display()
        );
    }
    println!("next: {next}");
    Ok(())
}

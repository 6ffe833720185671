//! `toolhost config check [--json]`: the config as toolhost resolved it
//! (where every file lives, each tool's grants and limits, the model chain
//! and whether each model's key is there) and what is wrong with it.
//!
//! Exit codes: a config that does not load exits 2 before this command
//! runs (the error names the key and line). One that loads exits 2 when
//! something in it cannot work as written: a grant whose directory is
//! missing (its tool is unusable) or a tool file that does not load. A
//! policy for a tool that is not loaded and a model without its key are
//! warnings (exit 0): the first grants nothing, the second is skipped by
//! the chain, and both are normal on a machine that only runs some tools
//! or models.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};
use toolhost::model::KeyStatus;

use super::human::{self, Table, style};
use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved config and what is wrong with it; exit 2 if a tool cannot work as configured.
    #[command(
        after_help = "Examples:\n  toolhost config check\n  toolhost --config /etc/toolhost/toolhost.toml config check --json"
    )]
    Check,
    /// Trust ./toolhost.toml (or PATH) as it is now, so runs from its directory use it.
    #[command(
        after_help = "Examples:\n  toolhost config trust\n  toolhost config trust ../project/toolhost.toml"
    )]
    Trust(super::config_trust::TrustArgs),
    /// Write a commented starter config (an offline model chain, a notes grant) and trust it.
    #[command(
        after_help = "Examples:\n  toolhost config init\n  toolhost config init ~/project/toolhost.toml --force"
    )]
    Init(super::config_init::InitArgs),
}

/// Prints a warning on stderr (yellow on a terminal).
pub fn warn(message: &str) {
    anstream::eprintln!(
        "{}warning{}: {message}",
        style::WARN,
        style::WARN.render_reset()
    );
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub async fn run(env: &Env, cmd: ConfigCommand) -> Result<(), Failure> {
    match cmd {
        // Handled before any config is read: see `cli::run`.
        ConfigCommand::Trust(args) => return super::config_trust::run(&args, env.json),
        ConfigCommand::Init(args) => return super::config_init::run(&args, env.json),
        ConfigCommand::Check => {}
    }
    let config = &env.config;
    let sandbox = env.sandbox().await?;
    // The search path in order: later entries win over earlier ones.
    let mut search = Vec::new();
    if config.sandbox.builtin_tools {
        search.push(json!("builtin"));
    }
    if let Some(user) = toolhost::paths::user_tools_dir() {
        search.push(json!(absolute(&user)));
    }
    if let Some(dir) = &config.sandbox.tools_dir {
        search.push(json!(absolute(dir)));
    }
    let store = match toolhost::store::StoreLocation::from_config(&config.store) {
        toolhost::store::StoreLocation::Sqlite(path) => json!(absolute(&path)),
        toolhost::store::StoreLocation::Postgres(url) => json!(toolhost::store::redact_url(&url)),
    };
    let paths = json!({
        "config": config.diagnostics.file.as_deref().map(absolute),
        "config_source": config.diagnostics.source,
        "config_trusted_because": config.diagnostics.source.map(toolhost::config::Source::reason),
        "store": store,
        "artifacts": config.sandbox.effective_cache_dir().as_deref().map(absolute),
        "key_dir": config.sandbox.key_dir.clone().or_else(toolhost::sandbox::default_key_dir),
        "tools_path": search,
    });
    let tools: Vec<Value> = sandbox
        .tools()
        .map(|t| {
            let limits = sandbox.limits_for(&t.name);
            let policy = sandbox.policy(&t.name).cloned().unwrap_or_default();
            json!({
                "name": t.name,
                "effect": sandbox.effect(t).as_str(),
                "limits": {
                    "fuel": limits.fuel,
                    "timeout_ms": limits.timeout.as_millis() as u64,
                    "memory_mb": limits.memory_bytes >> 20,
                    "max_output_bytes": limits.max_output_bytes,
                },
                "grants": {
                    "dirs": policy.dirs.iter().map(|d| json!({
                        "host": absolute(&d.host),
                        "guest": d.guest,
                        "mode": d.mode.as_str(),
                        "exists": d.host.is_dir(),
                    })).collect::<Vec<_>>(),
                    "env": policy.env.iter().map(|v| json!({
                        "name": v, "set": std::env::var_os(v).is_some(),
                    })).collect::<Vec<_>>(),
                    "allow_hosts": policy.host_patterns().iter().map(ToString::to_string).collect::<Vec<_>>(),
                },
                "unusable": policy.unusable,
            })
        })
        .collect();
    let models: Vec<Value> = config
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "provider": m.provider.as_str(),
                "model": m.model,
                "api_key_env": m.api_key_env,
                "key": KeyStatus::of(m),
            })
        })
        .collect();
    let names: Vec<&str> = sandbox.names().collect();
    let mut warnings: Vec<String> = config
        .diagnostics
        .warnings
        .iter()
        .chain(&config.unknown_policies(&names))
        .map(ToString::to_string)
        .collect();
    for m in &config.models {
        if let (Some(var), KeyStatus::NoKey) = (&m.api_key_env, KeyStatus::of(m)) {
            warnings.push(format!(
                "model `{}` will be skipped: its API key variable {var} is not set",
                m.name
            ));
        }
    }
    let mut errors: Vec<String> = config
        .diagnostics
        .warnings
        .iter()
        .filter(|w| w.unusable_tool.is_some())
        .map(ToString::to_string)
        .collect();
    errors.extend(
        sandbox
            .load_errors()
            .iter()
            .map(|e| format!("load_error: {e}")),
    );
    warnings.retain(|w| !errors.contains(w));
    let ok = errors.is_empty();
    let body = json!({
        "ok": ok,
        "paths": paths,
        "tools": tools,
        "models": models,
        "errors": errors,
        "warnings": warnings,
    });
    if !env.json {
        print_human(&body);
    } else if ok {
        println!("{body}");
    }
    if ok {
        Ok(())
    } else {
        let mut failure = Failure::config(format!(
            "{} problem(s) in the config: see above",
            errors.len()
        ));
        // The document on stdout already says what is wrong.
        failure.json = Some(body);
        Err(failure)
    }
}

fn print_human(body: &Value) {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let heading =
        |text: &str| anstream::println!("{}{text}{}", style::HEADER, style::HEADER.render_reset());
    heading("paths");
    let p = &body["paths"];
    for (label, key) in [
        ("config", "config"),
        ("store", "store"),
        ("artifacts", "artifacts"),
        ("key dir", "key_dir"),
        ("tools", "tools_path"),
    ] {
        let value = if key == "config" && p[key].is_null() {
            "none (built-in defaults)".to_string()
        } else if key == "config" {
            format!("{} ({})", s(&p[key]), s(&p["config_trusted_because"]))
        } else if let Value::Array(items) = &p[key] {
            items.iter().map(s).collect::<Vec<_>>().join(", then ")
        } else {
            s(&p[key])
        };
        println!("  {label:<10} {value}");
    }
    println!();
    heading("tools");
    let mut table = Table::new(&["  NAME", "EFFECT", "LIMITS", "GRANTS"]);
    for t in body["tools"].as_array().into_iter().flatten() {
        let l = &t["limits"];
        let n = |v: &Value| v.as_u64().unwrap_or_default();
        let limits = format!(
            "fuel {}, {} ms, {}",
            n(&l["fuel"]),
            n(&l["timeout_ms"]),
            human::size(n(&l["memory_mb"]) << 20)
        );
        let g = &t["grants"];
        let mut grants: Vec<String> = Vec::new();
        for d in g["dirs"].as_array().into_iter().flatten() {
            let missing = if d["exists"] == true { "" } else { " MISSING" };
            grants.push(format!(
                "{} -> {} ({}){missing}",
                s(&d["host"]),
                s(&d["guest"]),
                s(&d["mode"])
            ));
        }
        for v in g["env"].as_array().into_iter().flatten() {
            let set = if v["set"] == true { "set" } else { "unset" };
            grants.push(format!("env {} ({set})", s(&v["name"])));
        }
        for h in g["allow_hosts"].as_array().into_iter().flatten() {
            grants.push(format!("http {}", s(h)));
        }
        table.row(vec![
            format!("  {}", s(&t["name"])),
            s(&t["effect"]),
            limits,
            if grants.is_empty() {
                "none".to_string()
            } else {
                grants.join("; ")
            },
        ]);
    }
    table.print(&[]);
    println!();
    heading("models");
    let models = body["models"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        println!("  none configured");
    } else {
        let mut table = Table::new(&["  #", "NAME", "PROVIDER", "MODEL", "KEY"]);
        for (i, m) in models.iter().enumerate() {
            let key = match (m["key"].as_str(), m["api_key_env"].as_str()) {
                (Some("set"), Some(var)) => format!("set ({var})"),
                (Some("no_key"), Some(var)) => format!("no key ({var} is not set)"),
                _ => "none needed".to_string(),
            };
            table.row(vec![
                format!("  {}", i + 1),
                s(&m["name"]),
                s(&m["provider"]),
                s(&m["model"]),
                key,
            ]);
        }
        table.print(&[]);
    }
    for w in body["warnings"].as_array().into_iter().flatten() {
        println!();
        warn(&s(w));
    }
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    for e in &errors {
        anstream::println!(
            "\n{}error{}: {}",
            style::BAD,
            style::BAD.render_reset(),
            s(e)
        );
    }
    println!();
    if errors.is_empty() {
        anstream::println!("{}ok{}", style::GOOD, style::GOOD.render_reset());
    }
}

//! `toolhost tools list | inspect NAME`.

use clap::Subcommand;
use serde_json::json;
use toolhost::sandbox::{Sandbox, Tool};

use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// The loaded tools, and files that were skipped.
    List,
    /// One tool: metadata, schemas, effect, digest, limits and grants.
    Inspect {
        /// The tool's name.
        name: String,
    },
}

pub async fn run(env: &Env, cmd: ToolsCommand) -> Result<(), Failure> {
    let sandbox = env.sandbox().await?;
    match cmd {
        ToolsCommand::List => list(env, &sandbox),
        ToolsCommand::Inspect { name } => inspect(env, &sandbox, &name),
    }
}

fn effect(tool: &Tool) -> &'static str {
    tool.effect.as_str()
}

fn list(env: &Env, sandbox: &Sandbox) -> Result<(), Failure> {
    if env.json {
        let tools: Vec<_> = sandbox
            .tools()
            .map(|t| {
                json!({
                    "name": t.name, "version": t.version, "effect": effect(t),
                    "description": t.description, "digest": t.digest,
                    "path": t.path, "origin": t.origin.as_str(),
                })
            })
            .collect();
        let errors: Vec<_> = sandbox
            .load_errors()
            .iter()
            .map(|e| json!({"kind": "load_error", "path": e.path, "message": e.reason}))
            .collect();
        println!("{}", json!({"tools": tools, "load_errors": errors}));
        return Ok(());
    }
    println!(
        "{:<16} {:<9} {:<15} {:<40} FROM",
        "NAME", "VERSION", "EFFECT", "DESCRIPTION"
    );
    for t in sandbox.tools() {
        // Where it came from: `builtin`, else the file (in the user's tools
        // directory or the configured one).
        let from = match t.origin {
            toolhost::sandbox::Origin::Builtin => t.origin.as_str().to_string(),
            toolhost::sandbox::Origin::User | toolhost::sandbox::Origin::Dir => {
                format!("{} {}", t.origin.as_str(), t.path.display())
            }
        };
        println!(
            "{:<16} {:<9} {:<15} {:<40} {from}",
            t.name,
            t.version,
            effect(t),
            t.description
        );
    }
    for e in sandbox.load_errors() {
        eprintln!("skipped {e}");
    }
    Ok(())
}

fn inspect(env: &Env, sandbox: &Sandbox, name: &str) -> Result<(), Failure> {
    let Some(tool) = sandbox.tool(name) else {
        let known: Vec<_> = sandbox.tools().map(|t| t.name.as_str()).collect();
        return Err(Failure::usage(format!(
            "no tool named `{name}` is loaded (loaded: {})",
            known.join(", ")
        )));
    };
    let limits = sandbox.limits_for(name);
    let policy = sandbox.policy(name).cloned().unwrap_or_default();
    let effective_effect = policy.effect.map_or(tool.effect, |e| e.max(tool.effect));
    // The effective grants, as the sandbox applies them: host directories
    // made absolute, hosts in their canonical spelling, each variable with
    // whether the host environment has it (never its value).
    let grants = json!({
        "dirs": policy.dirs.iter().map(|d| json!({
            "host": std::path::absolute(&d.host).unwrap_or_else(|_| d.host.clone()),
            "guest": d.guest,
            "mode": d.mode.as_str(),
        })).collect::<Vec<_>>(),
        "env": policy.env.iter().map(|name| json!({
            "name": name,
            "set": std::env::var_os(name).is_some(),
        })).collect::<Vec<_>>(),
        "allow_hosts": policy
            .host_patterns()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    });
    let body = json!({
        "name": tool.name,
        "description": tool.description,
        "version": tool.version,
        "effect": effect(tool),
        "effective_effect": effective_effect.as_str(),
        "digest": tool.digest,
        "path": tool.path,
        "origin": tool.origin.as_str(),
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "limits": {
            "fuel": limits.fuel,
            "timeout_ms": limits.timeout.as_millis() as u64,
            "memory_mb": limits.memory_bytes >> 20,
            "max_output_bytes": limits.max_output_bytes,
            "max_log_bytes": limits.max_log_bytes,
            "max_response_bytes": limits.max_response_bytes,
        },
        "policy_digest": sandbox.policy_digest(name, &Default::default()).to_string(),
        "grants": grants,
    });
    super::output::print_document(env.json, &body);
    Ok(())
}

//! `toolhost tools list | inspect NAME | new NAME --lang L | build [DIR]`.

use clap::Subcommand;
use serde_json::json;
use toolhost::sandbox::{Sandbox, Tool};

use super::human::{self, style};
use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// The loaded tools, and files that were skipped.
    #[command(
        after_help = "Examples:\n  toolhost tools list\n  toolhost --tools-dir target/wasm32-wasip2/release tools list --json"
    )]
    List,
    /// One tool: metadata, schemas, effect, digest, limits and grants.
    #[command(
        after_help = "Examples:\n  toolhost tools inspect notes\n  toolhost tools inspect http_fetch --json"
    )]
    Inspect {
        /// The tool's name.
        name: String,
    },
    /// Start a tool project in Rust, Python, JavaScript or TypeScript: a greeting tool, its unit test, the SDK and the WIT.
    #[command(
        after_help = "Examples:\n  toolhost tools new word_count --lang python\n  toolhost tools new lookup --lang rust --dir ./tools/lookup\n  toolhost tools new render --lang js\n  toolhost tools new slugify --lang ts"
    )]
    New(super::tools_new::NewArgs),
    /// Build a tool project into DIR/NAME.wasm, check that it loads, and compile it ahead of its first call.
    #[command(
        after_help = "Examples:\n  toolhost tools build\n  toolhost tools build ./word_count --install"
    )]
    Build(super::tools_build::BuildArgs),
}

pub async fn run(env: &Env, cmd: ToolsCommand) -> Result<(), Failure> {
    match cmd {
        ToolsCommand::List => list(env, &env.sandbox().await?),
        ToolsCommand::Inspect { name } => inspect(env, &env.sandbox().await?, &name),
        ToolsCommand::New(args) => super::tools_new::run(env, args),
        ToolsCommand::Build(args) => super::tools_build::run(env, args).await,
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
                    "unusable": sandbox.policy(&t.name).and_then(|p| p.unusable.clone()),
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
        let unusable = sandbox
            .policy(&t.name)
            .is_some_and(|p| p.unusable.is_some());
        let mark = if unusable {
            "(unusable: see the warning) "
        } else {
            ""
        };
        // Where it came from: `builtin`, else the file (in the user's tools
        // directory or the configured one).
        let from = match t.origin {
            toolhost::sandbox::Origin::Builtin => t.origin.as_str().to_string(),
            toolhost::sandbox::Origin::User | toolhost::sandbox::Origin::Dir => {
                format!("{} {}", t.origin.as_str(), t.path.display())
            }
        };
        let description = format!("{mark}{}", t.description);
        println!(
            "{:<16} {:<9} {:<15} {description:<40} {from}",
            t.name,
            t.version,
            effect(t),
        );
    }
    for e in sandbox.load_errors() {
        eprintln!("skipped {e}");
    }
    Ok(())
}

fn inspect(env: &Env, sandbox: &Sandbox, name: &str) -> Result<(), Failure> {
    let Some(tool) = sandbox.tool(name) else {
        // The same kind and words as a call of an unknown tool.
        let error = sandbox.unknown(name);
        return Err(Failure::usage(error.to_string()).with_kind(error.kind().as_str()));
    };
    let limits = sandbox.limits_for(name);
    let policy = sandbox.policy(name).cloned().unwrap_or_default();
    let effective_effect = sandbox.effect(tool);
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
        "world": tool.world.as_str(),
        "reconciles": tool.world.reconciles(),
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
    if env.json {
        super::output::print_document(true, &body);
    } else {
        print_inspect(&body, policy.unusable.as_deref());
    }
    Ok(())
}

/// `tools inspect` for people: what it is, what it may use, and the
/// schemas (pretty JSON: a schema is a document, not a line).
fn print_inspect(body: &serde_json::Value, unusable: Option<&str>) {
    let line = |label: &str, value: String| {
        anstream::println!(
            "{}{label:<12}{} {value}",
            style::HEADER,
            style::HEADER.render_reset()
        );
    };
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    line(
        "tool",
        format!("{} {}", s(&body["name"]), s(&body["version"])),
    );
    line("description", s(&body["description"]));
    let (own, effective) = (s(&body["effect"]), s(&body["effective_effect"]));
    line(
        "effect",
        if own == effective {
            own
        } else {
            format!("{effective} (the tool says {own}; its policy is stricter)")
        },
    );
    line(
        "world",
        if body["reconciles"] == true {
            format!("{} (reconciles calls in doubt)", s(&body["world"]))
        } else {
            format!("{} (cannot reconcile)", s(&body["world"]))
        },
    );
    line(
        "path",
        body["path"]
            .as_str()
            .map_or_else(|| body["path"].to_string(), str::to_string),
    );
    line("digest", s(&body["digest"]));
    line("policy", s(&body["policy_digest"]));
    let l = &body["limits"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_default();
    line(
        "limits",
        format!(
            "fuel {}, timeout {} ms, memory {}, output {}, logs {}, responses {}",
            n(&l["fuel"]),
            n(&l["timeout_ms"]),
            human::size(n(&l["memory_mb"]) << 20),
            human::size(n(&l["max_output_bytes"])),
            human::size(n(&l["max_log_bytes"])),
            human::size(n(&l["max_response_bytes"])),
        ),
    );
    let g = &body["grants"];
    let dirs: Vec<String> = g["dirs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} -> {} ({})",
                d["host"].as_str().unwrap_or("?"),
                s(&d["guest"]),
                s(&d["mode"])
            )
        })
        .collect();
    let env: Vec<String> = g["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let set = if e["set"] == true { "set" } else { "unset" };
            format!("{} ({set})", s(&e["name"]))
        })
        .collect();
    let hosts: Vec<String> = g["allow_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    line("dirs", list(dirs));
    line("env", list(env));
    line("hosts", list(hosts));
    if let Some(why) = unusable {
        anstream::println!(
            "{}unusable{}     {why}",
            style::BAD,
            style::BAD.render_reset()
        );
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    println!("\ninput schema:\n{}", pretty(&body["input_schema"]));
    if !body["output_schema"].is_null() {
        println!("\noutput schema:\n{}", pretty(&body["output_schema"]));
    }
}

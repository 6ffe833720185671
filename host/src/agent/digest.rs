//! What a run depends on, as digests, and what changed since it was
//! journaled.
//!
//! Each step records the digests it ran under: the config, the model chain,
//! the tool list offered to the model, and for a tool call the component and
//! policy digests. A resume compares them with the current setup and refuses
//! on a difference (the failure durable-execution users hit most after a
//! deploy: the code under a half-finished run changed), naming each change;
//! replay reports the same differences per step.
//!
//! Config sections are digested separately so a change can be named. The
//! `[store]` and `[agent]` sections are left out: where the database lives
//! and how long a run may go on do not change what a step does.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::model::ToolSpec;
use crate::sandbox::{Overrides, Sandbox};
use crate::store::{RunRecord, StepKind, StepRecord};

/// blake3 of `bytes`, as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The digests of the current setup.
#[derive(Debug, Clone)]
pub struct Digests {
    /// Over every section below.
    pub config: String,
    /// By section: `sandbox`, `tools`, `models`, `retry`, `breaker`, `fallback`.
    pub config_parts: BTreeMap<String, String>,
    /// The model chain (entries, providers, models, endpoints).
    pub chain: String,
    /// The tools offered to the model: names, descriptions, schemas, builds.
    pub tools: String,
    /// Each loaded tool's (component digest, policy digest).
    pub per_tool: BTreeMap<String, (String, String)>,
}

impl Digests {
    /// Digests `config` and the loaded tools (`specs` as offered).
    pub fn compute(config: &Config, sandbox: &Sandbox, specs: &[ToolSpec]) -> Digests {
        // Debug output of these types is deterministic (ordered maps, no
        // addresses) and covers every field, so a new config key is covered
        // without anyone remembering to add it here.
        let parts: BTreeMap<String, String> = [
            ("sandbox", format!("{:?}", config.sandbox)),
            ("tools", format!("{:?}", config.tools)),
            ("models", format!("{:?}", config.models)),
            ("retry", format!("{:?}", config.retry)),
            ("breaker", format!("{:?}", config.breaker)),
            ("fallback", format!("{:?}", config.fallback)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), hex(v.as_bytes())))
        .collect();
        let all: String = parts.iter().map(|(k, v)| format!("{k}={v};")).collect();
        let per_tool: BTreeMap<String, (String, String)> = sandbox
            .tools()
            .map(|t| {
                let policy = sandbox.policy_digest(&t.name, &Overrides::default());
                (t.name.clone(), (t.digest.clone(), policy.to_string()))
            })
            .collect();
        let offered: Vec<_> = specs
            .iter()
            .map(|s| {
                let build = per_tool.get(&s.name).map(|(d, _)| d.as_str());
                serde_json::json!([s.name, s.description, s.input_schema, build])
            })
            .collect();
        Digests {
            config: hex(all.as_bytes()),
            chain: parts["models"].clone(),
            config_parts: parts,
            tools: hex(serde_json::Value::Array(offered).to_string().as_bytes()),
            per_tool,
        }
    }
}

fn short(d: &str) -> &str {
    &d[..d.len().min(12)]
}

/// What differs between the setup a run was journaled under and `now`:
/// config sections, the tool list, and each tool a step called (rebuilt,
/// policy changed, or gone). Empty when nothing did.
pub fn change_list(run: &RunRecord, steps: &[StepRecord], now: &Digests) -> Vec<String> {
    let mut changes = Vec::new();
    for (section, digest) in &run.config_parts {
        match now.config_parts.get(section) {
            Some(d) if d == digest => {}
            _ => changes.push(format!("config section [{section}] changed")),
        }
    }
    if run.tools_digest != now.tools {
        changes.push("the tool list offered to the model changed".to_string());
    }
    let mut seen = BTreeMap::new();
    for s in steps
        .iter()
        .filter(|s| s.kind == StepKind::Tool && s.is_final)
    {
        if let Some(d) = &s.tool_digest {
            seen.insert(s.name.clone(), (d.clone(), s.policy_digest.clone()));
        }
    }
    for (tool, (was, policy)) in seen {
        match now.per_tool.get(&tool) {
            None => changes.push(format!("tool `{tool}` is no longer loaded")),
            Some((d, p)) => {
                if *d != was {
                    changes.push(format!(
                        "tool `{tool}` was rebuilt (component {} -> {})",
                        short(&was),
                        short(d)
                    ));
                }
                if policy.as_deref().is_some_and(|was| was != p) {
                    changes.push(format!("tool `{tool}`'s policy changed"));
                }
            }
        }
    }
    changes
}

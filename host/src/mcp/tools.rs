//! `tools/list`: each loaded tool as an MCP tool, with hints from its effect.
//!
//! The effect is the one the host acts on (the tool's own, made stricter by
//! its policy), so a client is never told a call is harmless when the host
//! would claim it as a side effect. The mapping:
//!
//! | effect | `readOnlyHint` | `idempotentHint` | `destructiveHint` |
//! |---|---|---|---|
//! | `pure`, `read-only` | true | true | false |
//! | `idempotent` | false | true | false |
//! | `side-effecting` | false | false | true |
//!
//! `openWorldHint` is true exactly when the tool's policy lets it reach
//! outgoing HTTP hosts (`allow_hosts`): its results depend on the outside
//! world. Hints are hints: the host enforces the effect itself.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool as McpTool, ToolAnnotations};
use serde_json::Value;

use crate::config::EffectName;
use crate::sandbox::{Sandbox, Tool};

/// The annotations an effect implies (see the module table).
pub fn annotations(effect: EffectName, open_world: bool) -> ToolAnnotations {
    let (read_only, idempotent, destructive) = match effect {
        EffectName::Pure | EffectName::ReadOnly => (true, true, false),
        EffectName::Idempotent => (false, true, false),
        EffectName::SideEffecting => (false, false, true),
    };
    ToolAnnotations::new()
        .read_only(read_only)
        .idempotent(idempotent)
        .destructive(destructive)
        .open_world(open_world)
}

/// MCP requires an input schema whose root declares `"type": "object"`: a
/// schema without `type` gets it (the SDK's schemas are objects already); the
/// rest is passed on as the tool wrote it, and the host validates every
/// input against the original before any wasm runs.
fn input_schema(schema: &Value) -> Arc<JsonObject> {
    let mut object = schema.as_object().cloned().unwrap_or_default();
    object
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    Arc::new(object)
}

/// An output schema MCP can carry: its root must describe an object
/// (`structuredContent` is an object). Any other schema is left out, and such
/// a tool's results go out as text only.
pub fn output_schema(tool: &Tool) -> Option<Arc<JsonObject>> {
    let object = tool.output_schema.as_ref()?.as_object()?;
    (object.get("type") == Some(&Value::String("object".into()))).then(|| Arc::new(object.clone()))
}

/// One loaded tool as `tools/list` shows it.
pub fn describe(sandbox: &Sandbox, tool: &Tool) -> McpTool {
    let open_world = sandbox
        .policy(&tool.name)
        .is_some_and(|p| !p.allow_hosts.is_empty());
    let mut listed = McpTool::new(
        tool.name.clone(),
        tool.description.clone(),
        input_schema(&tool.input_schema),
    )
    .with_annotations(annotations(sandbox.effect(tool), open_world));
    if let Some(schema) = output_schema(tool) {
        listed = listed.with_raw_output_schema(schema);
    }
    listed
}

/// Every loaded tool, sorted by name.
pub fn list(sandbox: &Sandbox) -> Vec<McpTool> {
    let mut tools: Vec<McpTool> = sandbox.tools().map(|t| describe(sandbox, t)).collect();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_map_to_the_documented_hints() {
        let hints = |e| {
            let a = annotations(e, false);
            (a.read_only_hint, a.idempotent_hint, a.destructive_hint)
        };
        let t = Some(true);
        let f = Some(false);
        assert_eq!(hints(EffectName::Pure), (t, t, f));
        assert_eq!(hints(EffectName::ReadOnly), (t, t, f));
        assert_eq!(hints(EffectName::Idempotent), (f, t, f));
        assert_eq!(hints(EffectName::SideEffecting), (f, f, t));
        assert_eq!(annotations(EffectName::Pure, true).open_world_hint, t);
    }

    #[test]
    fn input_schemas_are_objects() {
        let schema = input_schema(&serde_json::json!({"properties": {}}));
        assert_eq!(schema.get("type"), Some(&Value::String("object".into())));
        let kept = input_schema(&serde_json::json!({"type": "object", "required": ["a"]}));
        assert_eq!(kept.get("required"), Some(&serde_json::json!(["a"])));
    }
}

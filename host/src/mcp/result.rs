//! A call's outcome as an MCP tool result.
//!
//! Success: the output as JSON text, and as `structuredContent` when the tool
//! declares an output schema. Failure: `isError: true` with `kind: message`
//! as text, so a model reads why; JSON-RPC errors stay for protocol faults.
//! Both carry `_meta` under the `toolhost/` prefix (MCP's namespacing for
//! implementation metadata): the key, whether it was replayed (and whether
//! under another build or policy), and for a failure the stable error kind,
//! so programs need not parse the text.

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, MetaObject};
use serde_json::{Value, json};

use crate::idempotency::ExecOutput;

/// `_meta` key of a request's explicit idempotency key.
pub const META_IDEMPOTENCY_KEY: &str = "toolhost/idempotencyKey";
/// `_meta` key of a failed result's `{kind, message}`.
pub const META_ERROR: &str = "toolhost/error";

fn meta(entries: Value) -> Option<MetaObject> {
    match entries {
        Value::Object(map) => Some(MetaObject(map)),
        _ => None,
    }
}

/// A successful (possibly replayed) call.
pub fn success(out: &ExecOutput, structured: bool) -> CallToolResult {
    // Serialising a `Value` cannot fail.
    let text = serde_json::to_string(&out.output).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    if structured && out.output.is_object() {
        result.structured_content = Some(out.output.clone());
    }
    result.meta = meta(json!({
        "toolhost/key": out.key,
        "toolhost/cached": out.cached,
        "toolhost/attempt": out.attempt,
        "toolhost/fuelUsed": out.fuel_used,
        "toolhost/durationUs": out.duration_us,
        // A replay recorded under another build or policy (see the cache rules).
        "toolhost/digestChanged": out.digest_changed,
    }));
    result
}

/// A failed call: `isError`, the kind and a readable message.
pub fn failure(kind: &str, message: &str, key: Option<&str>, cached: bool) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("{kind}: {message}"))]);
    let mut entries = JsonObject::new();
    entries.insert(META_ERROR.into(), json!({"kind": kind, "message": message}));
    if let Some(key) = key {
        entries.insert("toolhost/key".into(), json!(key));
        entries.insert("toolhost/cached".into(), json!(cached));
    }
    result.meta = Some(MetaObject(entries));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_carries_its_kind_in_text_and_meta() {
        let r = failure("out_of_fuel", "ran out", Some("ab12"), false);
        assert_eq!(r.is_error, Some(true));
        let meta = r.meta.expect("meta");
        assert_eq!(meta.get(META_ERROR).unwrap()["kind"], "out_of_fuel");
        let text = serde_json::to_value(&r.content[0]).unwrap();
        assert_eq!(text["text"], "out_of_fuel: ran out");
    }

    #[test]
    fn structured_content_only_when_asked_and_an_object() {
        let out = ExecOutput {
            key: "k".into(),
            cached: true,
            output: json!({"value": 14}),
            fuel_used: 3,
            duration_us: 4,
            stored_at: None,
            attempt: 1,
            digest_changed: false,
            reconciled: false,
        };
        assert_eq!(
            success(&out, true).structured_content,
            Some(json!({"value": 14}))
        );
        assert_eq!(success(&out, false).structured_content, None);
        let list = ExecOutput {
            output: json!([1]),
            ..out
        };
        assert_eq!(success(&list, true).structured_content, None);
    }
}

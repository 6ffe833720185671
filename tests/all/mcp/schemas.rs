//! The tool schemas clients see in `tools/list` are standard JSON Schema:
//! validators in clients (Ajv in the MCP Inspector) warn on formats JSON
//! Schema does not define, and OpenAI's strict tool mode may refuse a
//! property without a type.

use serde_json::Value;

use super::harness::{Harness, Options};

/// The formats JSON Schema 2020-12 defines. Written out here from the
/// spec rather than taken from the SDK's own list, so that a wrong entry
/// there cannot make this check pass.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Every fault of `schema` (rooted at `root`, for `$ref`s), by JSON pointer.
fn faults(schema: &Value, root: &Value, at: &str, found: &mut Vec<String>) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(format)) = object.get("format")
                && !STANDARD_FORMATS.contains(&format.as_str())
            {
                found.push(format!("{at}: non-standard format `{format}`"));
            }
            if let Some(Value::Object(properties)) = object.get("properties") {
                for (name, property) in properties {
                    if !typed(property, root) {
                        found.push(format!("{at}/properties/{name}: no type: {property}"));
                    }
                }
            }
            for (key, value) in object {
                faults(value, root, &format!("{at}/{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                faults(item, root, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Whether `schema` says what type its values are: a `type`, a `$ref` to a
/// schema that does, or alternatives that all do.
fn typed(schema: &Value, root: &Value) -> bool {
    let Some(object) = schema.as_object() else {
        return false;
    };
    if object.contains_key("type") || object.contains_key("const") || object.contains_key("enum") {
        return true;
    }
    if let Some(Value::String(reference)) = object.get("$ref") {
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer));
        return target.is_some_and(|t| typed(t, root));
    }
    ["anyOf", "oneOf", "allOf"].iter().any(|key| {
        object
            .get(*key)
            .and_then(Value::as_array)
            .is_some_and(|all| !all.is_empty() && all.iter().all(|s| typed(s, root)))
    })
}

/// Regression (issue 24, item 13): `http_fetch` and `slow` published
/// `format: uint16`/`uint64`, and `jq`'s `input` had no `type`.
#[tokio::test]
async fn built_in_tool_schemas_use_standard_formats_and_typed_properties() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let tools = client.list_all_tools().await.unwrap();
    let mut found = Vec::new();
    for name in crate::support::BUILT_IN_TOOLS {
        let tool = tools
            .iter()
            .find(|t| t.name == *name)
            .unwrap_or_else(|| panic!("{name} is listed"));
        let input = Value::Object((*tool.input_schema).clone());
        faults(&input, &input, &format!("{name} input"), &mut found);
        let output = tool
            .output_schema
            .as_ref()
            .map(|s| Value::Object((**s).clone()));
        if let Some(output) = output {
            faults(&output, &output, &format!("{name} output"), &mut found);
        }
    }
    assert!(found.is_empty(), "{found:#?}");

    let find = |name: &str| tools.iter().find(|t| t.name == name).unwrap();
    let slow = &find("slow").input_schema["properties"]["ms"];
    assert_eq!(slow["minimum"], 0, "the range stays as bounds: {slow}");
    assert_eq!(slow["maximum"], 600_000, "{slow}");
    let status = &find("http_fetch").output_schema.as_ref().unwrap()["properties"]["status"];
    assert_eq!(status["maximum"], u16::MAX, "{status}");
    let input = &find("jq").input_schema["properties"]["input"];
    assert_eq!(
        input["type"],
        serde_json::json!(any_json_type()),
        "any JSON value: {input}"
    );
    client.cancel().await.unwrap();
}

/// Every JSON type, as the SDK lists them for a field of any JSON value.
fn any_json_type() -> [&'static str; 6] {
    ["null", "boolean", "object", "array", "number", "string"]
}

#[test]
fn the_walk_finds_each_kind_of_fault() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "port": {"type": "integer", "format": "uint16"},
            "any": {"description": "no type"},
            "ok": {"$ref": "#/$defs/Ok"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "number", "format": "double"}]},
        },
        "$defs": {"Ok": {"type": "string", "format": "uri"}},
    });
    let mut found = Vec::new();
    faults(&schema, &schema, "t", &mut found);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("properties/any: no type"), "{found:#?}");
    assert!(found.iter().any(|f| f.contains("`uint16`")), "{found:#?}");
    assert!(found.iter().any(|f| f.contains("`double`")), "{found:#?}");
}

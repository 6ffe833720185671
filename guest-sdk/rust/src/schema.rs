//! The JSON Schemas a tool publishes, in standard JSON Schema only.
//!
//! schemars describes Rust's number types with formats of its own
//! (`uint16`, `uint64`, `int32`, `double`, ...) and a `serde_json::Value`
//! with no `type` at all. JSON Schema 2020-12 registers neither kind of
//! format, so validators in MCP clients (Ajv in the MCP Inspector) warn on
//! every listing, and OpenAI's strict tool mode may refuse a property
//! without a type. [`Standard`] rewrites what schemars derives:
//!
//! - a format JSON Schema does not define is removed; an integer one leaves
//!   its range as `minimum`/`maximum` (none for 128-bit types, whose bounds
//!   a JSON number cannot carry exactly);
//! - a property that says nothing of its type (a `Value`, which accepts any
//!   JSON) gets the list of every JSON type.

use schemars::Schema;
use schemars::transform::{Transform, transform_subschemas};
use serde_json::{Map, Value, json};

/// The formats JSON Schema 2020-12 defines (its "Vocabularies for Semantic
/// Content With format").
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

/// Every JSON type, for a property that accepts any value (`integer` is a
/// `number`).
pub const ANY_TYPE: [&str; 6] = ["null", "boolean", "object", "array", "number", "string"];

/// Keywords that give a schema its values other than by `type`.
const TYPED_OTHERWISE: &[&str] = &["$ref", "enum", "const", "anyOf", "oneOf", "allOf", "not"];

/// The range of an integer format of schemars', where a JSON number holds it.
fn range(format: &str) -> Option<(Value, Value)> {
    Some(match format {
        "int8" => (json!(i8::MIN), json!(i8::MAX)),
        "int16" => (json!(i16::MIN), json!(i16::MAX)),
        "int32" => (json!(i32::MIN), json!(i32::MAX)),
        "int64" | "int" => (json!(i64::MIN), json!(i64::MAX)),
        "uint8" => (json!(0), json!(u8::MAX)),
        "uint16" => (json!(0), json!(u16::MAX)),
        "uint32" => (json!(0), json!(u32::MAX)),
        "uint64" | "uint" => (json!(0), json!(u64::MAX)),
        "uint128" => (json!(0), Value::Null),
        _ => return None,
    })
}

/// The transform (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Standard;

impl Transform for Standard {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        standard_format(object);
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            for property in properties.values_mut() {
                typed(property);
            }
        }
    }
}

/// Removes a format JSON Schema does not define, keeping an integer's range.
fn standard_format(object: &mut Map<String, Value>) {
    let Some(Value::String(format)) = object.get("format") else {
        return;
    };
    if STANDARD_FORMATS.contains(&format.as_str()) {
        return;
    }
    let format = format.clone();
    object.remove("format");
    let Some((min, max)) = range(&format) else {
        return;
    };
    for (key, bound) in [("minimum", min), ("maximum", max)] {
        if !bound.is_null() {
            // A bound of the tool's own (`#[schemars(range(max = ...))]`) is
            // tighter, so it stays.
            object.entry(key).or_insert(bound);
        }
    }
}

/// Gives `property` every JSON type when nothing else says what it holds.
fn typed(property: &mut Value) {
    match property {
        Value::Bool(true) => *property = json!({"type": ANY_TYPE}),
        Value::Object(object)
            if !object.contains_key("type")
                && !TYPED_OTHERWISE.iter().any(|k| object.contains_key(*k)) =>
        {
            object.insert("type".into(), json!(ANY_TYPE));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use schemars::generate::SchemaSettings;

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Everything {
        port: u16,
        count: u64,
        #[schemars(range(max = 600_000))]
        ms: u64,
        ratio: f64,
        delta: i32,
        /// Any JSON.
        value: serde_json::Value,
        values: Vec<serde_json::Value>,
        when: Option<u32>,
        inner: Inner,
    }

    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        raw: serde_json::Value,
        id: usize,
    }

    #[test]
    fn only_standard_formats_and_typed_properties_remain() {
        let schema = SchemaSettings::draft2020_12()
            .with_transform(Standard)
            .into_generator()
            .into_root_schema_for::<Everything>();
        let schema = serde_json::to_value(&schema).unwrap();
        let text = schema.to_string();
        assert!(!text.contains("\"format\""), "{text}");
        let p = &schema["properties"];
        assert_eq!(
            p["port"],
            json!({"type": "integer", "minimum": 0, "maximum": 65535})
        );
        assert_eq!(p["count"]["maximum"], json!(u64::MAX));
        assert_eq!(p["ms"]["maximum"], 600_000, "the tool's own bound stays");
        assert_eq!(p["ratio"], json!({"type": "number"}));
        assert_eq!(p["delta"]["minimum"], json!(i32::MIN));
        assert_eq!(p["value"]["type"], json!(ANY_TYPE));
        assert_eq!(p["value"]["description"], "Any JSON.");
        assert_eq!(p["when"]["type"], json!(["integer", "null"]));
        let inner = &schema["$defs"]["Inner"]["properties"];
        assert_eq!(inner["raw"], json!({"type": ANY_TYPE}));
        assert_eq!(inner["id"]["minimum"], 0);
    }
}

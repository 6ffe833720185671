//! Test tool `legacy_append` (side-effecting), a component of the frozen
//! `toolhost:tool/tool@0.1.0` world (`host/wit/tool-0.1.0`), written
//! against the WIT directly rather than through the SDK (which builds 0.2.0
//! components): what a tool built before 0.2.0 looks like. It appends
//! `"<idempotency-key> <text>"` to `/data/<file>`, then waits `sleep_ms`,
//! like the test kit's `append`, so the crash and `cache resolve` tests can
//! run on it.

use std::io::Write;

wit_bindgen::generate!({
    path: "../../../host/wit/tool-0.1.0",
    world: "tool",
});

use toolhost::tool::types::Effect;

const INPUT_SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"file":{"type":"string"},"text":{"type":"string"},"sleep_ms":{"type":"integer","minimum":0}},"required":["file","text"],"additionalProperties":false}"#;
const OUTPUT_SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"appended":{"type":"boolean"},"attempt":{"type":"integer"}},"required":["appended","attempt"]}"#;

struct Legacy;

/// The string value of `"name": "..."` in the host's canonical JSON (no
/// escapes in the test inputs; anything else is refused).
fn field<'a>(input: &'a str, name: &str) -> Option<&'a str> {
    let start = input.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = start + input[start..].find('"')?;
    let value = &input[start..end];
    (!value.contains('\\')).then_some(value)
}

/// The integer value of `"name": n`, if present.
fn number(input: &str, name: &str) -> Option<u64> {
    let start = input.find(&format!("\"{name}\":"))? + name.len() + 3;
    let digits: String = input[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl Guest for Legacy {
    fn describe() -> Metadata {
        Metadata {
            name: "legacy_append".into(),
            description: "Appends one line to a file in /data, then waits (a 0.1.0 component)."
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            input_schema: INPUT_SCHEMA.into(),
            output_schema: Some(OUTPUT_SCHEMA.into()),
            effect: Effect::SideEffecting,
        }
    }

    fn call(ctx: CallContext, input: String) -> Result<String, ToolError> {
        let (Some(file), Some(text)) = (field(&input, "file"), field(&input, "text")) else {
            return Err(ToolError::InvalidInput(
                "file and text: plain strings".into(),
            ));
        };
        if file.is_empty() || file.contains('/') || file.contains("..") {
            return Err(ToolError::InvalidInput("file: a plain file name".into()));
        }
        let path = format!("/data/{file}");
        let line = format!("{} {text}\n", ctx.idempotency_key);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| ToolError::Failed(format!("{path}: {e}")))?;
        let sleep_ms = number(&input, "sleep_ms").unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
        Ok(format!(r#"{{"appended":true,"attempt":{}}}"#, ctx.attempt))
    }
}

export!(Legacy);

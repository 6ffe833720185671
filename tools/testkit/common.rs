//! What the test kit's effect tools share: their input, and one line per
//! execution appended to a file in `/data`, in one write (a host killed
//! mid-call never leaves half a line that the next line would be glued to).
//! Included by each tool with `#[path]`, so each stays one small component.

use std::io::Write;

use toolhost_sdk::{Context, Deserialize, JsonSchema, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A file name inside `/data` (no `/`, no `..`).
    pub file: String,
    pub text: String,
    /// Milliseconds to wait after writing.
    #[serde(default)]
    pub sleep_ms: u64,
}

/// Appends `"<idempotency-key> <text>"` to `/data/<file>`, then waits.
pub fn record_execution(input: &Input, ctx: &Context) -> Result<(), ToolError> {
    if input.file.is_empty() || input.file.contains('/') || input.file.contains("..") {
        return Err(ToolError::InvalidInput("file: a plain file name".into()));
    }
    let path = std::path::PathBuf::from("/data").join(&input.file);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| toolhost_sdk::io_error(&path, e))?;
    let line = format!("{} {}\n", ctx.idempotency_key, input.text);
    file.write_all(line.as_bytes())
        .map_err(|e| toolhost_sdk::io_error(&path, e))?;
    file.flush().map_err(|e| toolhost_sdk::io_error(&path, e))?;
    std::thread::sleep(std::time::Duration::from_millis(input.sleep_ms));
    Ok(())
}

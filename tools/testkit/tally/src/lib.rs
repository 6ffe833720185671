//! Test tool `tally` (idempotent): records one execution of a key by
//! appending `"<idempotency-key> <text>"` to `/data/<file>`, then waits
//! `sleep_ms`. It stands for an effect that is safe to repeat (a PUT, an
//! upsert): the host may re-run it after a crash, and the appended line
//! lets a test count how often it did.
//!
//! Built by the build into the test kit's directory (`sandbox::TESTKIT_DIR`);
//! it needs a `dirs` grant for `/data`.

use std::io::Write;

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

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

#[derive(Serialize, JsonSchema)]
pub struct Output {
    pub tallied: bool,
    /// Which execution of the key this was.
    pub attempt: u32,
}

pub fn tally(input: Input, ctx: &Context) -> Result<Output, ToolError> {
    if input.file.is_empty() || input.file.contains('/') || input.file.contains("..") {
        return Err(ToolError::InvalidInput("file: a plain file name".into()));
    }
    let path = std::path::PathBuf::from("/data").join(&input.file);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| toolhost_sdk::io_error(&path, e))?;
    // One write, so a host killed mid-call never leaves half a line that
    // the next line would be glued to.
    let line = format!("{} {}\n", ctx.idempotency_key, input.text);
    file.write_all(line.as_bytes())
        .map_err(|e| toolhost_sdk::io_error(&path, e))?;
    file.flush().map_err(|e| toolhost_sdk::io_error(&path, e))?;
    std::thread::sleep(std::time::Duration::from_millis(input.sleep_ms));
    Ok(Output {
        tallied: true,
        attempt: ctx.attempt,
    })
}

toolhost_sdk::export_tool! {
    name: "tally",
    description: "Counts an execution in a file in /data (idempotent), then waits.",
    effect: Idempotent,
    run: tally,
}

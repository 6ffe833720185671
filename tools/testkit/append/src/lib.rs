//! Test tool `append` (side-effecting): appends `"<idempotency-key> <text>"`
//! as one line to `/data/<file>`, then waits `sleep_ms`, so a test can kill
//! the host after the effect and before the outcome is recorded.
//!
//! Built by the build into its own directory (`sandbox::TESTKIT_DIR`); it
//! needs a `dirs` grant for `/data`.

#[path = "../../common.rs"]
mod common;

pub use common::Input;
use toolhost_sdk::{Context, JsonSchema, Serialize, ToolError};

#[derive(Serialize, JsonSchema)]
pub struct Output {
    pub appended: bool,
    /// Which execution of the key this was.
    pub attempt: u32,
}

pub fn append(input: Input, ctx: &Context) -> Result<Output, ToolError> {
    common::record_execution(&input, ctx)?;
    Ok(Output {
        appended: true,
        attempt: ctx.attempt,
    })
}

toolhost_sdk::export_tool! {
    name: "append",
    description: "Appends one line to a file in /data, then waits.",
    effect: SideEffecting,
    run: append,
}

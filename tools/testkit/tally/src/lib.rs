//! Test tool `tally` (idempotent): records one execution of a key by
//! appending `"<idempotency-key> <text>"` to `/data/<file>`, then waits
//! `sleep_ms`. It stands for an effect that is safe to repeat (a PUT, an
//! upsert): the host may re-run it after a crash, and the appended line
//! lets a test count how often it did.
//!
//! Built by the build into the test kit's directory (`sandbox::TESTKIT_DIR`);
//! it needs a `dirs` grant for `/data`.

#[path = "../../common.rs"]
mod common;

pub use common::Input;
use toolhost_sdk::{Context, JsonSchema, Serialize, ToolError};

#[derive(Serialize, JsonSchema)]
pub struct Output {
    pub tallied: bool,
    /// Which execution of the key this was.
    pub attempt: u32,
}

pub fn tally(input: Input, ctx: &Context) -> Result<Output, ToolError> {
    common::record_execution(&input, ctx)?;
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

//! Hostile test tool `bigout`: returns a 4 MiB result (over the 1 MiB cap, well within memory).
//!
//! Built by the build like the examples but kept out of the default tools
//! directory: it exists to prove the sandbox holds.

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
pub struct Input {}

#[derive(Serialize, JsonSchema)]
pub struct Output {
    pub done: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct Big {
    pub blob: String,
}

pub fn run(_: Input, _ctx: &Context) -> Result<Big, ToolError> {
    Ok(Big {
        blob: "x".repeat(4 << 20),
    })
}

toolhost_sdk::export_tool! {
    name: "bigout",
    description: "Returns a 4 MiB result.",
    effect: Pure,
    run: run,
}

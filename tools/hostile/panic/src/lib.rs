//! Hostile test tool `panic`: panics.
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

pub fn run(_: Input, _ctx: &Context) -> Result<Output, ToolError> {
    panic!("the hostile tool panicked on purpose");
}

toolhost_sdk::export_tool! {
    name: "panic",
    description: "Panics.",
    effect: Pure,
    run: run,
}

//! Hostile test tool `spin`: loops forever.
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
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving anything about the loop.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

toolhost_sdk::export_tool! {
    name: "spin",
    description: "Loops forever.",
    effect: Pure,
    run: run,
}

//! Hostile test tool `membomb`: allocates and touches memory until it runs out.
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
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so nothing is lazily elided.
        hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
    }
}

toolhost_sdk::export_tool! {
    name: "membomb",
    description: "Allocates memory until it runs out.",
    effect: Pure,
    run: run,
}

//! Hostile test tool `recurse`: recurses without end.
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

#[inline(never)]
#[allow(unconditional_recursion)] // The point of this tool.
fn descend(depth: u64) -> u64 {
    // A frame with a local buffer, and a use after the call, so the recursion
    // can be neither elided nor turned into a loop.
    let buf = std::hint::black_box([depth as u8; 64]);
    descend(depth + 1).wrapping_add(buf[0] as u64)
}

pub fn run(_: Input, _ctx: &Context) -> Result<Output, ToolError> {
    std::hint::black_box(descend(0));
    Ok(Output { done: true })
}

toolhost_sdk::export_tool! {
    name: "recurse",
    description: "Recurses without end.",
    effect: Pure,
    run: run,
}

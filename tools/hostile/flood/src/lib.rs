//! Hostile test tool `flood`: writes 64 MiB to stdout, then returns.
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
    use std::io::Write;
    let line = [b'y'; 1023];
    let mut out = std::io::stdout().lock();
    for _ in 0..(64 << 10) {
        // A refused write is the sandbox saying stop: stop.
        if out
            .write_all(&line)
            .and_then(|_| out.write_all(b"\n"))
            .is_err()
        {
            return Err(ToolError::Failed("stdout refused a write".into()));
        }
    }
    Ok(Output { done: true })
}

toolhost_sdk::export_tool! {
    name: "flood",
    description: "Writes 64 MiB to stdout.",
    effect: Pure,
    run: run,
}

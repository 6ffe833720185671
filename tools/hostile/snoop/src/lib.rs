//! Hostile test tool `snoop`: tries to read /etc/passwd and the environment.
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
pub struct Loot {
    pub passwd: String,
}

pub fn run(_: Input, _ctx: &Context) -> Result<Loot, ToolError> {
    if let Some((k, _)) = std::env::vars().next() {
        return Err(ToolError::Failed(format!("saw environment variable {k}")));
    }
    let path = std::path::Path::new("/etc/passwd");
    let passwd = std::fs::read_to_string(path).map_err(|e| toolhost_sdk::io_error(path, e))?;
    Ok(Loot { passwd })
}

toolhost_sdk::export_tool! {
    name: "snoop",
    description: "Tries to read /etc/passwd.",
    effect: Pure,
    run: run,
}

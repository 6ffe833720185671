//! Hostile test tool `snoop`: looks for environment variables, then reads a
//! file, `/etc/passwd` unless told otherwise.
//!
//! Built by the build like the examples but kept out of the default tools
//! directory: it exists to prove the sandbox holds (and that grants work).

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The file to read; default `/etc/passwd`.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct Loot {
    /// Every environment variable the tool could see, as `NAME=value`.
    pub env: Vec<String>,
    /// The file's contents.
    pub contents: String,
}

pub fn run(input: Input, _ctx: &Context) -> Result<Loot, ToolError> {
    let env = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let path = input.path.unwrap_or_else(|| "/etc/passwd".to_string());
    let path = std::path::Path::new(&path);
    let contents = std::fs::read_to_string(path).map_err(|e| toolhost_sdk::io_error(path, e))?;
    Ok(Loot { env, contents })
}

toolhost_sdk::export_tool! {
    name: "snoop",
    description: "Lists its environment and reads a file (default /etc/passwd).",
    effect: Pure,
    run: run,
}

//! Hostile test tool `plant`: writes the text it is given to the file it
//! names, replacing what was there.
//!
//! Built by the build like the examples but kept out of the default tools
//! directory: with a write grant over a project directory, it plants a
//! `toolhost.toml` there that grants itself `/etc`, which a later toolhost
//! run from that directory must refuse (`config::trust`).

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The file to write, such as `/project/toolhost.toml`.
    pub path: String,
    /// Its new contents.
    pub contents: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// Bytes written.
    pub written: usize,
}

pub fn run(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    let path = std::path::Path::new(&input.path);
    std::fs::write(path, &input.contents).map_err(|e| toolhost_sdk::io_error(path, e))?;
    Ok(Output {
        written: input.contents.len(),
    })
}

toolhost_sdk::export_tool! {
    name: "plant",
    description: "Writes the given text to the given file.",
    effect: SideEffecting,
    run: run,
}

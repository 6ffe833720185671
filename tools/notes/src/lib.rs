//! `notes`: appends one line, `"<idempotency-key> <text>"`, to a file in
//! `/data`, the directory its policy grants (read-write).
//!
//! The example of a side-effecting tool: running it twice appends twice, so
//! the host must run it exactly once per idempotency key. The key is written
//! with the text so that a repeated execution shows in the file. Without a
//! `dirs` grant there is no `/data` and every call is `capability_denied`.

use std::io::Write;
use std::path::{Path, PathBuf};

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

/// Where the granted directory is mounted inside the sandbox.
pub const DATA_DIR: &str = "/data";

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A file name inside `/data`, such as `log.txt` (no `/`, no `..`).
    pub file: String,
    /// The line to append (one line: no newlines).
    pub text: String,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct Output {
    /// Always true: a failed append is an error, not `false`.
    pub appended: bool,
}

/// Refuses anything but a plain file name: the tool writes only directly
/// inside its data directory, whatever the grant would let it reach.
fn file_name(name: &str) -> Result<&str, ToolError> {
    if name.is_empty()
        || name == "."
        || name.contains('/')
        || name.contains('\\')
        || name.contains("..")
        || name.contains('\0')
    {
        return Err(ToolError::InvalidInput(format!(
            "file `{name}` must be a plain file name (no `/`, no `..`)"
        )));
    }
    Ok(name)
}

/// Appends to `<dir>/<input.file>`; `dir` is `/data` in the sandbox and a
/// temporary directory in unit tests.
pub fn append_in(dir: &Path, input: Input, ctx: &Context) -> Result<Output, ToolError> {
    let name = file_name(&input.file)?;
    if input.text.contains(['\n', '\r']) {
        return Err(ToolError::InvalidInput("text must be one line".into()));
    }
    let path: PathBuf = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| toolhost_sdk::io_error(&path, e))?;
    // One write of the whole line, so concurrent appends never interleave
    // inside a line.
    let line = format!("{} {}\n", ctx.idempotency_key, input.text);
    file.write_all(line.as_bytes())
        .map_err(|e| toolhost_sdk::io_error(&path, e))?;
    Ok(Output { appended: true })
}

pub fn run(input: Input, ctx: &Context) -> Result<Output, ToolError> {
    append_in(Path::new(DATA_DIR), input, ctx)
}

toolhost_sdk::export_tool! {
    name: "notes",
    description: "Appends a line, tagged with the call's idempotency key, to a file in /data.",
    effect: SideEffecting,
    run: run,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(file: &str, text: &str) -> Input {
        Input {
            file: file.into(),
            text: text.into(),
        }
    }

    #[test]
    fn appends_key_and_text_as_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests();
        append_in(dir.path(), input("log.txt", "hello"), &ctx).unwrap();
        append_in(dir.path(), input("log.txt", "again"), &ctx).unwrap();
        let text = std::fs::read_to_string(dir.path().join("log.txt")).unwrap();
        let key = &ctx.idempotency_key;
        assert_eq!(text, format!("{key} hello\n{key} again\n"));
    }

    #[test]
    fn refuses_paths_as_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "a/b", "..", "", "/etc/passwd", "x..y"] {
            let err = append_in(dir.path(), input(bad, "t"), &Context::for_tests()).unwrap_err();
            assert!(matches!(err, ToolError::InvalidInput(_)), "{bad}: {err:?}");
        }
        let err =
            append_in(dir.path(), input("ok", "two\nlines"), &Context::for_tests()).unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
    }
}

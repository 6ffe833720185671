//! Hostile test tool `misbehave`: fails in the way its input names, one mode
//! per failure a guest can cause that the SDK's `export_tool!` would never
//! let through. It implements the world's `Guest` trait by hand so it can
//! break the calling convention on purpose.
//!
//! Built by the build like the examples but kept out of the default tools
//! directory: it exists to prove every such failure gets a named error kind,
//! never `internal`.

use toolhost_sdk::__private::{CallContext, Guest, Metadata, WitToolError};
use toolhost_sdk::{Context, Deserialize, Effect, JsonSchema, Serialize, ToolError};

/// Which failure to cause.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `exit(0)` in the middle of a call.
    ExitZero,
    /// `exit(3)` in the middle of a call (WASI 0.2 reports it as status 1).
    ExitNonZero,
    /// Executes `unreachable`.
    Unreachable,
    /// Returns bytes that are not UTF-8 as the result string.
    BadUtf8,
    /// Calls a host function with a resource handle it never received.
    ForgedHandle,
    /// Returns text that is not JSON.
    NotJson,
}

#[derive(Deserialize, JsonSchema)]
pub struct Input {
    pub mode: Mode,
}

#[derive(Serialize, JsonSchema)]
pub struct Output {
    pub done: bool,
}

/// Only its types matter: `describe` derives the schemas from them.
pub fn run(_: Input, _ctx: &Context) -> Result<Output, ToolError> {
    Ok(Output { done: true })
}

pub struct Misbehave;

impl Guest for Misbehave {
    fn describe() -> Metadata {
        toolhost_sdk::__private::describe(
            "misbehave",
            "Fails in the way its input names.",
            env!("CARGO_PKG_VERSION"),
            Effect::Pure,
            run,
        )
    }

    fn call(_ctx: CallContext, input: String) -> Result<String, WitToolError> {
        let input: Input = toolhost_sdk::serde_json::from_str(&input)
            .map_err(|e| WitToolError::InvalidInput(e.to_string()))?;
        match input.mode {
            Mode::ExitZero => std::process::exit(0),
            Mode::ExitNonZero => std::process::exit(3),
            Mode::Unreachable => unreachable_instruction(),
            Mode::BadUtf8 => {
                // SAFETY: deliberately not UTF-8; the string is only lowered
                // into the canonical ABI, which is exactly what is under test.
                Ok(unsafe { String::from_utf8_unchecked(vec![b'{', 0xff, 0xfe, b'}']) })
            }
            Mode::ForgedHandle => {
                forged_handle();
                Ok("{\"done\":true}".into())
            }
            Mode::NotJson => Ok("this is not JSON".into()),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn unreachable_instruction() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn unreachable_instruction() -> ! {
    std::process::abort()
}

#[cfg(target_os = "wasi")]
fn forged_handle() {
    // SAFETY: deliberately a handle this instance was never given; the host
    // must refuse it, which is what is under test.
    let stream = unsafe { wasip2::io::streams::OutputStream::from_handle(0x7fff_0000) };
    let _ = stream.blocking_write_and_flush(b"hello");
}

#[cfg(not(target_os = "wasi"))]
fn forged_handle() {}

toolhost_sdk::bindings::export!(Misbehave with_types_in toolhost_sdk::bindings);

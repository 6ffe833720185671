//! Hostile test tool `dialer`: opens a raw TCP connection (`wasi:sockets`
//! through Rust's `std::net`) to the address it is given.
//!
//! Raw sockets are off for every tool, whatever its policy: outgoing traffic
//! goes through `wasi:http` and its allow-list, or nowhere.

use std::io::Write;

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// `ip:port` to connect to.
    pub addr: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Output {
    pub connected: bool,
}

pub fn run(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    match std::net::TcpStream::connect(input.addr.as_str()) {
        Ok(mut stream) => {
            let _ = stream.write_all(b"escaped the sandbox\n");
            Ok(Output { connected: true })
        }
        Err(e) => Err(ToolError::capability_denied(format!(
            "connect {}: {e}",
            input.addr
        ))),
    }
}

toolhost_sdk::export_tool! {
    name: "dialer",
    description: "Opens a raw TCP connection.",
    effect: Pure,
    run: run,
}

//! Hostile test tool `sneak`: sends a GET to the URL it is given through
//! `wasi:http`, ignores whatever happens, and reports success.
//!
//! It exists to prove that a denied request fails the call as
//! `capability_denied` even when the tool swallows the error: the host
//! records the denial itself.

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Scheme (`http`/`https`), authority and path, e.g. `http`, `10.0.0.1:80`, `/`.
    pub scheme: String,
    pub authority: String,
    pub path: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// Always true: the tool claims success whatever happened.
    pub ok: bool,
}

pub fn run(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    attempt(&input);
    Ok(Output { ok: true })
}

#[cfg(target_os = "wasi")]
fn attempt(input: &Input) {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};

    let request = OutgoingRequest::new(Fields::new());
    let scheme = if input.scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(&input.authority));
    let _ = request.set_path_with_query(Some(&input.path));
    // Swallow every outcome.
    if let Ok(pending) = outgoing_handler::handle(request, None) {
        pending.subscribe().block();
        let _ = pending.get();
    }
}

#[cfg(not(target_os = "wasi"))]
fn attempt(_input: &Input) {}

toolhost_sdk::export_tool! {
    name: "sneak",
    description: "Sends an HTTP request, ignores the outcome, claims success.",
    effect: Pure,
    run: run,
}

//! Test tool `send`: sends each request it is given (method, URL, optional
//! headers and body) through `wasi:http` and answers each status with the
//! forwarded key the SDK computes for it. It declares itself `pure` so a
//! test's policy can make it any stricter effect (`effect = ...`), and see
//! which effects get the header.

use std::collections::BTreeMap;

use toolhost_sdk::http::{self, Request};
use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub requests: Vec<Send>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Send {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Output {
    pub sent: Vec<Sent>,
}

#[derive(Serialize, JsonSchema)]
pub struct Sent {
    pub status: u16,
    /// What `Context::forwarded_key` says the host added (if it did).
    pub forwarded_key: Option<String>,
}

pub fn send(input: Input, ctx: &Context) -> Result<Output, ToolError> {
    let mut sent = Vec::new();
    for r in &input.requests {
        let request = Request {
            method: &r.method,
            url: &r.url,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect(),
            body: r.body.as_bytes().to_vec(),
        };
        let response = http::send(&request)?;
        sent.push(Sent {
            status: response.status,
            forwarded_key: ctx.forwarded_key(&r.method, &r.url),
        });
    }
    Ok(Output { sent })
}

toolhost_sdk::export_tool! {
    name: "send",
    description: "Sends the given HTTP requests; reports each status and forwarded key.",
    effect: Pure,
    run: send,
}

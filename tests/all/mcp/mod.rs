//! The MCP server (`toolhost serve`) driven by real MCP clients over real
//! transports: the rmcp client over streamable HTTP on 127.0.0.1 and over
//! stdio of the real binary, hand-written requests for the hygiene rules,
//! and the official Python client.

mod breakers;
pub(crate) mod harness;
mod http;
mod hygiene;
mod limits;
mod python;
mod schemas;
mod stdio;

//! Tools written in other languages than Rust, built from source with their
//! SDKs and the real `toolhost tools build`, held to the same contracts as
//! the Rust tools: schemas, keys and effects, limits, error kinds, grants,
//! MCP and agent runs.

mod python;
mod scaffold;

//! Tools written in other languages than Rust, built from source with their
//! SDKs and toolchains, held to the same contracts as the Rust tools:
//! schemas, keys and effects, limits, error kinds, grants, MCP and agent
//! runs; and `tools new` / `tools build` for every language.

mod js;
mod python;
mod scaffold;

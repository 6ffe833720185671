//! # toolhost
//!
//! The host that makes an AI agent's tools production-grade: each tool is a
//! WebAssembly component run in a fresh, fuel-, time-, memory- and
//! output-limited sandbox per call, with no ambient authority.
//!
//! ## Layout
//!
//! - [`config`]: `toolhost.toml`, parsed strictly (unknown keys are errors).
//! - [`sandbox`]: wasmtime, narrowed: loading, limits, capabilities, calls.
//! - [`model`]: model providers (Anthropic, OpenAI-compatible, scripted).
//! - [`resilience`]: retry, fallback, circuit breakers and error classes
//!   around any model.
//! - [`agent`]: agent runs: the tool-calling loop, its journal, resume,
//!   replay and budgets.
//! - [`store`]: SQLite: the idempotency cache, the journal, breakers, stats.
//! - [`mcp`]: the MCP server (`toolhost serve`): stdio and streamable HTTP.
//! - [`metrics`]: Prometheus metrics of served calls (`/metrics`).
//! - [`paths`]: where state lives by default: the user's data, cache,
//!   state and config directories, never the current one.
//! - [`hint`]: commands in hints, repeating the process's own flags.
//! - `cli`: the `toolhost` binary's commands (`anyhow` lives only there).
//!
//! `ARCHITECTURE.md` at the repository root has the data flow and invariants.

pub mod agent;
pub mod config;
pub mod hint;
pub mod idempotency;
pub mod mcp;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod resilience;
pub mod sandbox;
pub mod store;

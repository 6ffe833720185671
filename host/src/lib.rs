//! # toolhost
//!
//! The host that makes an AI agent's tools production-grade: each tool is a
//! WebAssembly component run in a fresh, fuel-, time-, memory- and
//! output-limited sandbox per call, with no ambient authority.
//!
//! ## Layout
//!
//! From the foundation up (a module uses only modules below it):
//!
//! - Foundation, depending on nothing above it: [`config`] (`toolhost.toml`,
//!   parsed strictly: unknown keys are errors), [`paths`] (where state lives
//!   by default: the user's data, cache, state and config directories, never
//!   the current one), [`json`] (the strict I-JSON parse and canonical JSON),
//!   [`clock`] (wall time, monotonic time and sleeps, injectable) and
//!   [`urls`] (store and model URLs as text, checked and redacted).
//! - [`sandbox`]: wasmtime, narrowed: loading, limits, capabilities, calls.
//! - [`telemetry`]: OpenTelemetry spans exported over OTLP, and the log
//!   formats (beside [`model`] and [`sandbox`]: it names only config).
//! - [`model`]: the `Model` trait and its types, and the providers
//!   (Anthropic, OpenAI-compatible, scripted).
//! - [`resilience`]: retry, fallback and circuit breakers around any model.
//! - [`store`]: SQLite or PostgreSQL behind one facade: the idempotency
//!   cache, the agent journal, shared breakers, stats.
//! - [`idempotency`]: keys and the `Executor`: every tool call, looked up,
//!   claimed, run once and recorded.
//! - [`agent`]: agent runs: the tool-calling loop, its journal, resume,
//!   replay and budgets.
//! - [`mcp`]: the MCP server (`toolhost serve`): stdio and streamable HTTP.
//! - [`metrics`]: Prometheus metrics of served calls (`/metrics`).
//! - [`web`]: the run API (`/v1/runs`) and the runs page (`/`) of
//!   `serve --http`, mounted on the MCP server's router.
//! - [`hint`]: commands in hints, repeating the process's own flags.
//! - `cli` (in the binary): the `toolhost` commands (`anyhow` lives only
//!   there).
//!
//! Arrows point down only: the foundation ([`json`], [`clock`], [`urls`],
//! [`paths`], [`config`]) names nothing above it; `src/layers.rs` holds the
//! layer table and the test that keeps it so.
//!
//! `ARCHITECTURE.md` at the repository root is the map (the arrows, the
//! call and step paths, the crash windows); the manual is `docs/`.

// The API docs are built with `--document-private-items` (the module docs
// argue the design and name the private pieces that carry it out), so a
// link to a private item resolves there; the lint that flags such links
// for public-only docs does not apply.
#![allow(rustdoc::private_intra_doc_links)]

pub mod agent;
pub mod clock;
pub mod config;
pub mod hint;
pub mod idempotency;
pub mod json;
#[cfg(test)]
mod layers;
pub mod mcp;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod resilience;
pub mod sandbox;
pub mod store;
pub mod telemetry;
pub mod urls;
pub mod web;

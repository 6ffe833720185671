//! JSON as the host reads and writes it, for every layer above: the one
//! strict parse of a call's input (I-JSON, RFC 7493: duplicate names, lone
//! surrogates, numbers that lose precision and excessive depth are refused,
//! and each refusal names the path), and RFC 8785 canonical JSON, the text
//! the guest is handed and the idempotency key hashes.
//!
//! Why a leaf of its own: the sandbox, the idempotency keys, the MCP server
//! and the agent all need the same parse and the same canonical text, and
//! none of them should reach into another's module for it.

mod canonical;
mod ijson;

pub use canonical::canonical_json;
pub use ijson::{IJsonError, MAX_DEPTH, parse_ijson};

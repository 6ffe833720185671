//! Idempotent execution: every call gets a key, and the key decides whether
//! the call runs, replays, waits, or refuses.
//!
//! | effect | key covers | on a recorded outcome | before running | after running |
//! |---|---|---|---|---|
//! | `pure` | tool, input, scope, component + grants digests | replay | nothing | record (never limit or transient errors) |
//! | `read-only` | as pure | replay while fresh (TTL) | nothing | record with expiry |
//! | `idempotent` | tool, input, scope | replay (even across builds: `digest_changed`) | claim | record; a limit error releases the claim; a dead owner's claim re-runs |
//! | `side-effecting` | tool, input, scope | replay (even across builds: `digest_changed`) | claim (`BEGIN IMMEDIATE`) | record; a limit error, trap or dead owner leaves it `in_doubt` |
//!
//! Why a side-effecting call that hit a limit is `in_doubt` rather than
//! released: the tool may have done its effect and then run out of time
//! before returning. Only the tool's own `transient` error says "nothing
//! happened, try again", so only that releases the claim.
//!
//! Where each rule lives:
//!
//! - `ijson`: the one parse of the input (I-JSON, refusals name the path);
//!   the guest is handed the canonical text the key hashes;
//! - `key`: canonical JSON and the key derivation, per effect;
//! - `scope`: which calls are "the same call";
//! - `executor`: the effect table above; pure and read-only lookups;
//! - `claimed`: claims, waiting (`still_running`), recording with retries;
//! - `guard`: a cancelled caller's claim is settled, never stranded;
//! - `pending`: a write the store refused is retried until it lands;
//! - `flight`: in-process callers of one key queue, and leave no entry;
//! - `memo`: recorded pure outcomes kept in memory;
//! - `retention`: how long each kind of row answers;
//! - `outcome`: what is recorded and how it replays;
//! - `reconcile`: what an `in_doubt` row's tool policy does with it
//!   (`reconcile`, `retry`, `stop`), and the resolutions it records;
//! - `operator`: `cache resolve --reconcile|--retry|--abandon|--mark-done`;
//! - `errors`: the error kinds (`in_doubt`, `key_conflict`, `still_running`).

mod claimed;
mod errors;
mod executor;
mod flight;
mod guard;
mod key;
mod memo;
mod operator;
mod outcome;
mod pending;
mod reconcile;
mod retention;
mod scope;

pub use crate::clock::{Clock, ManualClock};
pub use crate::json::canonical_json;
pub use crate::json::{IJsonError, MAX_DEPTH, parse_ijson};
pub use claimed::{RECORD_ATTEMPTS, WAIT_GRACE};
pub use errors::ExecError;
pub use executor::{ExecOptions, ExecStats, Executor};
pub use key::{Build, KeyParts, derive_key};
pub use memo::MEMO_CAPACITY;
pub use outcome::{ExecOutput, RecordedLimits};
pub use pending::{RETRY_FIRST, RETRY_MAX};
pub use reconcile::{DEFAULT_RECONCILE_BACKOFF, Decider};
pub use retention::{
    DEFAULT_TTL, DEFAULT_WINDOW, EXPLICIT_RETENTION, FRESH_RETENTION, PURE_RETENTION,
};
pub use scope::Scope;

/// The key of an idempotent or side-effecting call (which names the effect:
/// tool, canonical input, rendered scope; never the build).
pub fn effect_key(tool: &str, canonical_input: &str, scope: &str) -> String {
    derive_key(&KeyParts {
        tool,
        canonical_input,
        scope,
        build: None,
    })
}

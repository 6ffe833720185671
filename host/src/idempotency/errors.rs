//! Why a call did not succeed, with the stable kind names of the contract.

use crate::sandbox::CallError;
use crate::store::StoreError;

/// Why a call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The call (or its recorded replay) failed in the sandbox.
    #[error("{error}")]
    Call {
        key: Option<String>,
        /// Replayed from the store rather than run now.
        cached: bool,
        /// Replayed from a run under another component or policy digest.
        digest_changed: bool,
        error: CallError,
    },
    /// The call was claimed and its outcome never recorded (its claimant
    /// died, it hit a limit mid-effect, or recording failed): its effect may
    /// or may not have happened.
    #[error(
        "call {key} is in doubt: {reason}; resolve it with `toolhost cache resolve {key} --retry|--abandon`"
    )]
    InDoubt { key: String, reason: String },
    /// The explicit key already names a different call (another tool or input).
    #[error(
        "idempotency key `{scope}` was already used for another call ({tool}, key {existing_key}); nothing ran"
    )]
    KeyConflict {
        key: String,
        scope: String,
        tool: String,
        existing_key: String,
    },
    /// Another caller holds the claim past this caller's wait limit.
    #[error(
        "call {key} is still running in another caller after {waited_ms} ms; ask again later for its outcome"
    )]
    StillRunning { key: String, waited_ms: u64 },
    /// `cache resolve` on a call that is not in doubt (running, done): there
    /// is nothing for an operator to decide.
    #[error(
        "call {key} is {state}, not in_doubt: only a call in doubt can be resolved (see `toolhost cache show {key}`)"
    )]
    NotInDoubt { key: String, state: String },
    /// `cache resolve` on a key no recorded call has.
    #[error("no recorded call has key {key} (see `toolhost cache list`)")]
    NoSuchCall { key: String },
    /// The store failed before anything ran.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ExecError {
    /// The stable kind name for `--json` and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::Call { error, .. } => error.kind().as_str(),
            ExecError::InDoubt { .. } => "in_doubt",
            ExecError::KeyConflict { .. } => "key_conflict",
            ExecError::StillRunning { .. } => "still_running",
            ExecError::NotInDoubt { .. } => "not_in_doubt",
            ExecError::NoSuchCall { .. } => "not_found",
            ExecError::Store(_) => "store_unavailable",
        }
    }

    /// The call's key, when one was derived.
    pub fn key(&self) -> Option<&str> {
        match self {
            ExecError::Call { key, .. } => key.as_deref(),
            ExecError::InDoubt { key, .. }
            | ExecError::KeyConflict { key, .. }
            | ExecError::StillRunning { key, .. }
            | ExecError::NotInDoubt { key, .. }
            | ExecError::NoSuchCall { key } => Some(key),
            ExecError::Store(_) => None,
        }
    }

    /// Whether this is a replay from a run under other digests.
    pub fn digest_changed(&self) -> bool {
        matches!(
            self,
            ExecError::Call {
                digest_changed: true,
                ..
            }
        )
    }

    pub(crate) fn fresh(key: &str, error: CallError) -> Self {
        ExecError::Call {
            key: Some(key.to_string()),
            cached: false,
            digest_changed: false,
            error,
        }
    }

    pub(crate) fn in_doubt(key: &str, reason: impl Into<String>) -> Self {
        ExecError::InDoubt {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<CallError> for ExecError {
    fn from(error: CallError) -> Self {
        ExecError::Call {
            key: None,
            cached: false,
            digest_changed: false,
            error,
        }
    }
}

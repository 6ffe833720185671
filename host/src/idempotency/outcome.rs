//! What a call returns, what is worth recording, and how a recorded outcome
//! replays.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ExecError;
use crate::sandbox::{CallError, CallOutput, ErrorKind, Limits};
use crate::store::{CallRecord, StoredError, StoredOutcome};

/// A successful (possibly replayed) call.
#[derive(Clone, Debug)]
pub struct ExecOutput {
    pub key: String,
    /// Replayed from the store rather than run now.
    pub cached: bool,
    pub output: Value,
    pub fuel_used: u64,
    /// The duration of the run that produced the outcome.
    pub duration_us: u64,
    /// When the outcome was recorded (Unix ms), if it was.
    pub stored_at: Option<i64>,
    /// Which execution of the key produced it (1 unless retried).
    pub attempt: u32,
    /// The outcome came from a run under another component or policy digest
    /// than the tool has now (a rebuilt tool, an edited config). Only effect
    /// keys can replay across builds; pure and read-only keys cover them.
    pub digest_changed: bool,
    /// The outcome is what the tool's `reconcile` found had happened (the
    /// call was in doubt), not what a run returned.
    pub reconciled: bool,
}

/// Outcomes worth replaying: the tool's own answers. Limits, traps,
/// transient and host errors depend on the moment, not the input.
pub(crate) fn recordable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ToolFailed | ErrorKind::InvalidInput | ErrorKind::CapabilityDenied
    )
}

pub(crate) fn to_stored(result: &Result<CallOutput, CallError>) -> StoredOutcome {
    match result {
        Ok(out) => StoredOutcome {
            ok: true,
            output: Some(out.output.clone()),
            error: None,
            fuel_used: out.fuel_used,
            duration_us: out.duration.as_micros() as u64,
            resolutions: Vec::new(),
        },
        Err(e) => StoredOutcome {
            ok: false,
            output: None,
            error: Some(StoredError {
                kind: e.kind().as_str().to_string(),
                message: e.to_string(),
            }),
            fuel_used: 0,
            duration_us: 0,
            resolutions: Vec::new(),
        },
    }
}

/// The result of a run made now.
pub(crate) fn fresh(
    result: Result<CallOutput, CallError>,
    key: &str,
    attempt: u32,
    stored_at: Option<i64>,
) -> Result<ExecOutput, ExecError> {
    match result {
        Ok(out) => Ok(ExecOutput {
            key: key.to_string(),
            cached: false,
            output: out.output,
            fuel_used: out.fuel_used,
            duration_us: out.duration.as_micros() as u64,
            stored_at,
            attempt,
            digest_changed: false,
            reconciled: false,
        }),
        Err(e) => Err(ExecError::fresh(key, e)),
    }
}

/// A recorded outcome, replayed.
pub(crate) fn replay(row: CallRecord, digest_changed: bool) -> Result<ExecOutput, ExecError> {
    let Some(outcome) = row.outcome else {
        return Err(ExecError::in_doubt(
            &row.key,
            "its record has no readable outcome",
        ));
    };
    if outcome.ok {
        let reconciled = outcome
            .resolutions
            .last()
            .is_some_and(|r| r.answer == "committed");
        return Ok(ExecOutput {
            key: row.key,
            cached: true,
            output: outcome.output.unwrap_or(Value::Null),
            fuel_used: outcome.fuel_used,
            duration_us: outcome.duration_us,
            stored_at: row.completed_at,
            attempt: row.attempt,
            digest_changed,
            reconciled,
        });
    }
    let error = outcome.error.unwrap_or(StoredError {
        kind: "tool_failed".into(),
        message: "recorded failure without a message".into(),
    });
    Err(ExecError::Call {
        key: Some(row.key),
        cached: true,
        digest_changed,
        error: CallError::from_recorded(&error.kind, error.message),
    })
}

/// A call's limits as recorded with its row, so `cache resolve --retry`
/// re-runs under them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedLimits {
    pub fuel: u64,
    pub timeout_ms: u64,
    pub memory_bytes: u64,
    pub max_output_bytes: u64,
    pub max_log_bytes: u64,
    pub max_response_bytes: u64,
}

impl From<Limits> for RecordedLimits {
    fn from(l: Limits) -> Self {
        RecordedLimits {
            fuel: l.fuel,
            timeout_ms: u64::try_from(l.timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: l.memory_bytes,
            max_output_bytes: l.max_output_bytes,
            max_log_bytes: l.max_log_bytes,
            max_response_bytes: l.max_response_bytes,
        }
    }
}

impl From<RecordedLimits> for Limits {
    fn from(r: RecordedLimits) -> Self {
        Limits {
            fuel: r.fuel,
            timeout: std::time::Duration::from_millis(r.timeout_ms),
            memory_bytes: r.memory_bytes,
            max_output_bytes: r.max_output_bytes,
            max_log_bytes: r.max_log_bytes,
            max_response_bytes: r.max_response_bytes,
        }
    }
}

impl RecordedLimits {
    pub(crate) fn to_json(self) -> String {
        serde_json::to_string(&self).expect("plain numbers always serialise")
    }

    /// The limits recorded in a row (`None` for rows from before they were).
    pub fn from_row(row: &CallRecord) -> Option<RecordedLimits> {
        row.limits
            .as_deref()
            .and_then(|l| serde_json::from_str(l).ok())
    }
}

//! Pending writes: a claimed call ran, and the store refused to record what
//! happened (a full disk, a failing one). The write is not given up: a
//! background task retries it with bounded backoff until it lands, so the
//! row is recorded (or `in_doubt`) soon after the store accepts writes
//! again, without a restart.
//!
//! Until then the key is noted on the [`Store`] as unrecorded, and a waiter
//! in this process answers `in_doubt` at once instead of waiting out its
//! limit for `still_running`: the call is over, only its record is missing.
//! A waiter in another process cannot be told (telling it would take the
//! very write that fails); it sees a live owner's claim until the write
//! lands (docs/decisions/0031-pending-outcome-writes.md).

use std::time::Duration;

use crate::store::{CallState, Store, StoreError, StoredOutcome};

/// First and longest pause between two tries of a pending write: once the
/// store takes writes again, the row lands within about [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(50);
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// The write a claimed call still owes the store.
#[derive(Clone, Debug)]
pub(crate) enum PendingWrite {
    /// Its outcome.
    Complete {
        state: CallState,
        outcome: StoredOutcome,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    },
    /// Dropping the claim (the call may run again).
    Release,
    /// Marking it `in_doubt` (a cancelled side-effecting caller).
    MarkInDoubt,
}

/// Retries `write` for this process's claim on `key` under `fence` in the
/// background until it lands, or until the claim is no longer this
/// process's (fenced, taken over, resolved). Each round also tries to mark
/// the row `in_doubt` through a fresh connection, so a write that can never
/// land (rather than one waiting for space) still leaves the row
/// resolvable. Without a runtime (the process is ending) nothing is
/// spawned: the owner's death settles the claim.
pub(crate) fn retry_in_background(store: &Store, key: &str, fence: i64, write: PendingWrite) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    store.note_unrecorded(key, true);
    let (store, key) = (store.clone(), key.to_string());
    runtime.spawn(async move {
        let mut pause = RETRY_FIRST;
        let mut tries = 0u64;
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
            tries += 1;
            match try_once(&store, &key, fence, &write).await {
                Ok(()) => {
                    tracing::info!(%key, tries, "a pending claim write landed");
                    break;
                }
                Err(StoreError::Fenced { .. } | StoreError::NotOwner { .. }) => {
                    tracing::info!(%key, "a pending claim write is moot: the claim is no longer this process's");
                    break;
                }
                Err(e) => {
                    match store.mark_in_doubt_fresh(&key, fence).await {
                        Ok(true) => {
                            tracing::warn!(%key, error = %e, "an outcome cannot be recorded; its claim is now in_doubt");
                            break;
                        }
                        // Not this process's running claim any more.
                        Ok(false) => break,
                        Err(_) if tries == 1 || tries.is_power_of_two() => {
                            tracing::warn!(%key, tries, error = %e, "a claim write is still pending; retrying");
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        store.note_unrecorded(&key, false);
    });
}

/// One try of `write`.
pub(crate) async fn try_once(
    store: &Store,
    key: &str,
    fence: i64,
    write: &PendingWrite,
) -> Result<(), StoreError> {
    match write {
        PendingWrite::Complete {
            state,
            outcome,
            now_ms,
            expires_at_ms,
        } => {
            store
                .complete(key, fence, *state, outcome.clone(), *now_ms, *expires_at_ms)
                .await
        }
        PendingWrite::Release => store.release(key, fence).await,
        PendingWrite::MarkInDoubt => {
            let owner = store.owner_id().to_string();
            match store.mark_in_doubt(key, &owner, fence).await? {
                true => Ok(()),
                false => Err(StoreError::NotOwner {
                    key: key.to_string(),
                    found: "a row that is no longer this claim".into(),
                }),
            }
        }
    }
}

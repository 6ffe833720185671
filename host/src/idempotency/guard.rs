//! The claim guard: settles a claim whose caller was cancelled (its future
//! dropped) before the outcome was committed. A side-effecting call becomes
//! `in_doubt`, because the tool may have acted; an idempotent one is
//! released. Without this, the claim would stay `running` under a live
//! owner and every later caller would wait and then fail.
//!
//! The guard stays armed until the outcome (or the release) has committed:
//! a caller cancelled while its outcome is being written, or between write
//! retries, is covered too. Settling is conditional on the row still being
//! this owner's `running` claim, so an outcome that did land is never undone.

use super::pending::{PendingWrite, retry_in_background};
use crate::config::EffectName;
use crate::store::Store;

pub(crate) struct ClaimGuard {
    store: Store,
    key: String,
    fence: i64,
    effect: EffectName,
    armed: bool,
}

impl ClaimGuard {
    pub(crate) fn arm(store: &Store, key: &str, fence: i64, effect: EffectName) -> Self {
        ClaimGuard {
            store: store.clone(),
            key: key.to_string(),
            fence,
            effect,
            armed: true,
        }
    }

    /// The outcome is committed (or settled otherwise): nothing to do.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the process is ending; liveness settles it.
        };
        let (store, key, fence, effect) = (
            self.store.clone(),
            self.key.clone(),
            self.fence,
            self.effect,
        );
        runtime.spawn(async move {
            let owner = store.owner_id().to_string();
            let settled = match effect {
                EffectName::Idempotent => store.release(&key, fence).await.map(|()| true),
                _ => store.mark_in_doubt(&key, &owner, fence).await,
            };
            match settled {
                Ok(_)
                | Err(
                    crate::store::StoreError::NotOwner { .. }
                    | crate::store::StoreError::Fenced { .. },
                ) => {}
                Err(e) => {
                    tracing::warn!(%key, error = %e, "cannot settle a cancelled claim; marking it in_doubt afresh");
                    if let Err(e) = store.mark_in_doubt_fresh(&key, fence).await {
                        tracing::error!(%key, error = %e, "cannot settle a cancelled claim; retrying in the background");
                        let write = match effect {
                            EffectName::Idempotent => PendingWrite::Release,
                            _ => PendingWrite::MarkInDoubt,
                        };
                        retry_in_background(&store, &key, fence, write);
                    }
                }
            }
        });
    }
}

//! Claimed calls (idempotent, side-effecting): claim, wait, run once, record.
//!
//! The claim is a `running` row written in a `BEGIN IMMEDIATE` batch; the
//! caller who wrote it runs the tool, everyone else waits for its outcome:
//!
//! - in this process, on the key's flight lock (see `flight`), or, for a
//!   claim held by this store under another executor, on the store's
//!   "settled" signal: no polling;
//! - across processes, by re-reading the row on the read-only connection
//!   with backoff (2 ms doubling to 100 ms), probing the owner's liveness
//!   off the async workers.
//!
//! A waiter gives up after its own limit (the call's timeout plus
//! [`WAIT_GRACE`] for recording) with `still_running`: nothing of its own
//! timed out. A claim whose owner is dead becomes `in_doubt`; what happens
//! to an `in_doubt` row then is the tool's `in_doubt` policy (`reconcile`).
//!
//! Recording an outcome is retried ([`RECORD_ATTEMPTS`], with backoff). If
//! it still fails, the row is marked `in_doubt` through a fresh connection
//! and the caller gets `in_doubt`. If that fails too (a full disk refuses
//! every write), the write becomes a pending one (see `pending`): retried in
//! the background until it lands, while waiters in this process answer
//! `in_doubt` rather than wait for `still_running`. The row is never left
//! `running` under a live owner for good.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::executor::{Executor, Pending, conflict};
use super::guard::ClaimGuard;
use super::outcome::{fresh, recordable, replay, to_stored};
use super::pending::{self, PendingWrite};
use super::reconcile::{Action, Decider};
use super::retention::expiry;
use super::{ExecError, ExecOutput};
use crate::config::EffectName;
use crate::sandbox::{CallError, CallOutput, ErrorKind, Prepared};
use crate::store::{CallState, ClaimOutcome, StoreError};

/// Time a waiter allows, beyond the call's own timeout, for the owner to
/// record its outcome.
pub const WAIT_GRACE: Duration = Duration::from_secs(1);
/// How many times an outcome write is tried before the row goes `in_doubt`.
pub const RECORD_ATTEMPTS: u32 = 3;
/// First and longest pause between two polls of another process's claim.
const POLL_FIRST: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(100);

/// How long a caller waits for another caller's claim.
pub(crate) fn wait_limit(prepared: &Prepared) -> Duration {
    prepared.limits.timeout + WAIT_GRACE
}

/// What to do with a claimed call's result.
enum Settle {
    /// Record it as the key's outcome.
    Record(CallState),
    /// Release the claim: the call may run again.
    Release,
}

impl Executor {
    /// Idempotent and side-effecting: claim, run once, record.
    pub(crate) async fn claimed(
        &self,
        pending: Pending<'_>,
        started: Instant,
    ) -> Result<ExecOutput, ExecError> {
        let key = pending.request.key.clone();
        let limit = wait_limit(pending.prepared);
        let build = (
            pending.request.component_digest.clone(),
            pending.request.policy_digest.clone(),
        );
        loop {
            // Subscribe before reading, so a settle in between is not missed.
            let mut settled = self.store.settled();
            settled.borrow_and_update();
            let mut request = pending.request.clone();
            request.now_ms = self.clock.now_ms();
            let row = match self.store.claim(request.clone()).await? {
                ClaimOutcome::Acquired { attempt, fence } => {
                    return self.run_claimed(&pending, attempt, fence).await;
                }
                ClaimOutcome::Conflict {
                    existing_key,
                    existing_tool,
                } => return Err(conflict(&request, existing_key, existing_tool)),
                ClaimOutcome::Existing(row) => row,
            };
            match row.state {
                CallState::Done => {
                    self.counters.hits.fetch_add(1, Relaxed);
                    let changed = Executor::digest_changed(&row, &request);
                    if changed {
                        tracing::warn!(
                            key = %row.key,
                            "replaying an outcome recorded under another build or policy of `{}` (digest_changed)",
                            row.tool
                        );
                    }
                    return replay(*row, changed);
                }
                CallState::InDoubt => match self.in_doubt_action(&pending) {
                    Action::Stop => {
                        self.counters.in_doubt.fetch_add(1, Relaxed);
                        return Err(ExecError::in_doubt(
                            &key,
                            "it was claimed and its outcome never recorded",
                        ));
                    }
                    Action::Reconcile => {
                        if let Some(out) = self.reconcile_row(&pending, &row, false).await? {
                            return Ok(out);
                        }
                        // Someone else took it over first: look again.
                    }
                    Action::Rerun => {
                        let now = self.clock.now_ms();
                        if let Some(taken) =
                            self.store.take_over(&key, None, now, build.clone()).await?
                        {
                            let why = if pending.effect == EffectName::Idempotent {
                                "the tool is idempotent: running it again is as running it once"
                            } else {
                                "in_doubt = \"retry\": the remote dedups by the forwarded key"
                            };
                            let resolution = self.resolution(&row, Decider::Policy, "retry", why);
                            self.count_resolution(&resolution).await;
                            let mut resolutions = row
                                .outcome
                                .as_ref()
                                .map(|o| o.resolutions.clone())
                                .unwrap_or_default();
                            resolutions.push(resolution);
                            let rerun = Pending {
                                resolutions,
                                ..pending.clone()
                            };
                            return self.run_claimed(&rerun, taken.attempt, taken.fence).await;
                        }
                        // Someone else took it over first: look again.
                    }
                },
                CallState::Running => {
                    let owner = row.owner.clone().unwrap_or_default();
                    let fence = row.fence;
                    if owner == self.store.owner_id() && self.store.is_unrecorded(&key) {
                        // The call is over; only its record is missing.
                        self.counters.in_doubt.fetch_add(1, Relaxed);
                        return Err(ExecError::in_doubt(
                            &key,
                            "it ran, but the store refused to record its outcome; this process keeps retrying the write, and a later call replays the outcome once it lands",
                        ));
                    }
                    if self
                        .store
                        .claim_alive(&key, &owner, fence)
                        .await
                        .counts_as_alive()
                    {
                        let Some(left) = limit.checked_sub(started.elapsed()) else {
                            return Err(ExecError::StillRunning {
                                key,
                                waited_ms: started.elapsed().as_millis() as u64,
                            });
                        };
                        if owner == self.store.owner_id() {
                            // This store's own claim (another executor, or a
                            // cancelled caller's guard about to settle it).
                            let _ = tokio::time::timeout(left, settled.changed()).await;
                        } else {
                            self.poll_until_settled(&key, &owner, fence, left).await?;
                        }
                        continue;
                    }
                    // Dead: its claim is in doubt. The next turn of the loop
                    // reports it, or re-runs it where that is allowed.
                    self.store.mark_in_doubt(&key, &owner, fence).await?;
                }
            }
        }
    }

    /// Waits for another process's claim by reading the row (no write lock)
    /// with backoff, until it is no longer `owner`'s running claim under
    /// `fence`, the claim is dead, or `left` has passed.
    async fn poll_until_settled(
        &self,
        key: &str,
        owner: &str,
        fence: i64,
        left: Duration,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + left;
        let mut pause = POLL_FIRST;
        while Instant::now() < deadline {
            tokio::time::sleep(pause.min(deadline - Instant::now())).await;
            pause = (pause * 2).min(POLL_MAX);
            let row = self.store.get(key).await?;
            let still = row.is_some_and(|r| {
                r.state == CallState::Running
                    && r.owner.as_deref() == Some(owner)
                    && r.fence == fence
            });
            if !still
                || !self
                    .store
                    .claim_alive(key, owner, fence)
                    .await
                    .counts_as_alive()
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs a call this process has claimed and records what happened. The
    /// claim guard stays armed until the outcome is committed.
    pub(crate) async fn run_claimed(
        &self,
        pending: &Pending<'_>,
        attempt: u32,
        fence: i64,
    ) -> Result<ExecOutput, ExecError> {
        self.counters.claims.fetch_add(1, Relaxed);
        let key = &pending.request.key;
        let guard = ClaimGuard::arm(&self.store, key, fence, pending.effect);
        let result = self.run(pending.prepared, key, attempt).await;
        let settle = match result.as_ref().err().map(CallError::kind) {
            None => Settle::Record(CallState::Done),
            Some(k) if recordable(k) => Settle::Record(CallState::Done),
            // The tool says nothing happened: the key may run again.
            Some(ErrorKind::ToolTransient) => Settle::Release,
            Some(_) if pending.effect == EffectName::Idempotent => Settle::Release,
            // A limit or trap mid-call: the effect may have happened.
            Some(_) => Settle::Record(CallState::InDoubt),
        };
        let settled = self.settle(pending, fence, &result, settle).await;
        guard.disarm();
        settled?;
        let stored_at = match &result {
            Ok(_) => Some(self.clock.now_ms()),
            Err(e) if recordable(e.kind()) => Some(self.clock.now_ms()),
            Err(_) => None,
        };
        fresh(result, key, attempt, stored_at)
    }

    /// The write `settle` calls for, as of now.
    fn owed_write(
        &self,
        pending: &Pending<'_>,
        result: &Result<CallOutput, CallError>,
        settle: &Settle,
    ) -> PendingWrite {
        match *settle {
            Settle::Release => PendingWrite::Release,
            Settle::Record(state) => {
                let now_ms = self.clock.now_ms();
                let policy = self.sandbox.policy(&pending.prepared.tool.name);
                let mut outcome = to_stored(result);
                outcome.resolutions = pending.resolutions.clone();
                PendingWrite::Complete {
                    state,
                    outcome,
                    now_ms,
                    expires_at_ms: match state {
                        CallState::Done => expiry(pending.effect, pending.scope, policy, now_ms),
                        _ => None,
                    },
                }
            }
        }
    }

    /// Records `result` as the outcome of this process's claim under
    /// `fence` (a reconciled one: nothing ran), as [`Executor::settle`].
    pub(crate) async fn settle_recorded(
        &self,
        pending: &Pending<'_>,
        fence: i64,
        result: &Result<CallOutput, CallError>,
    ) -> Result<(), ExecError> {
        self.settle(pending, fence, result, Settle::Record(CallState::Done))
            .await
    }

    /// Records (or releases) a claimed call's outcome, retrying a failed
    /// write; if every try fails, marks the row `in_doubt` through a fresh
    /// connection and reports `in_doubt`.
    async fn settle(
        &self,
        pending: &Pending<'_>,
        fence: i64,
        result: &Result<CallOutput, CallError>,
        settle: Settle,
    ) -> Result<(), ExecError> {
        let key = &pending.request.key;
        if matches!(settle, Settle::Record(CallState::InDoubt)) {
            self.counters.in_doubt.fetch_add(1, Relaxed);
        }
        let mut last = None;
        for attempt in 0..RECORD_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
            let written = self.owed_write(pending, result, &settle);
            match pending::try_once(&self.store, key, fence, &written).await {
                Ok(()) => return Ok(()),
                Err(e @ StoreError::Fenced { .. }) => {
                    self.counters.in_doubt.fetch_add(1, Relaxed);
                    self.counters.fenced.fetch_add(1, Relaxed);
                    tracing::warn!(%key, error = %e, "fenced: a newer owner holds this claim; this caller's outcome was not recorded");
                    return Err(ExecError::in_doubt(
                        key,
                        format!(
                            "it ran, but it was fenced off and its outcome was not recorded: {e}"
                        ),
                    ));
                }
                Err(StoreError::NotOwner { found, .. }) => {
                    self.counters.in_doubt.fetch_add(1, Relaxed);
                    return Err(ExecError::in_doubt(
                        key,
                        format!(
                            "it ran, but its claim was no longer this process's ({found}), so its outcome was not recorded"
                        ),
                    ));
                }
                Err(e) => {
                    tracing::warn!(%key, attempt = attempt + 1, error = %e, "cannot record a claimed call's outcome");
                    last = Some(e);
                }
            }
        }
        let last = last.map(|e| e.to_string()).unwrap_or_default();
        let later = match self.store.mark_in_doubt_fresh(key, fence).await {
            Ok(_) => "",
            Err(e) => {
                tracing::error!(%key, error = %e, "cannot mark an unrecorded call in_doubt; retrying its write in the background");
                let write = self.owed_write(pending, result, &settle);
                pending::retry_in_background(&self.store, key, fence, write);
                "; this process keeps retrying the write, and a later call replays the outcome once it lands"
            }
        };
        self.counters.in_doubt.fetch_add(1, Relaxed);
        Err(ExecError::in_doubt(
            key,
            format!("it ran, but its outcome could not be recorded ({last}){later}"),
        ))
    }
}

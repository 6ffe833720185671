//! In doubt is a question, not a verdict: what the host does with a claimed
//! call whose owner died before recording its outcome (design.md, "Exactly-
//! once past the sandbox wall"; decision 0085).
//!
//! | policy | on the next call of the key (and `cache resolve --reconcile`) |
//! |---|---|
//! | `reconcile` (default when the component exports it) | ask `reconcile`: `committed(out)` records `out` (flagged `reconciled`), `not-done` runs `call` once with attempt + 1, `unknown` stays `in_doubt`, asked again at most once per `reconcile_backoff_s` |
//! | `retry` | run `call` again with attempt + 1 (safe where the remote dedups by the forwarded key) |
//! | `stop` (default otherwise) | `in_doubt` until an operator decides |
//!
//! An `idempotent` tool's call re-runs whatever the policy says: running it
//! twice is as running it once. Every decision is kept with the outcome
//! ([`Resolution`]: who decided, the answer, the evidence), shown by `cache
//! show`, and counted (`resolutions.<decider>.<answer>` in the store's
//! counters, read by `stats` and `/metrics`).
//!
//! Asking runs under a take-over of the row, like a re-run: one asker at a
//! time, fenced, and a crash while asking leaves the row in doubt again.

use std::time::Duration;

use super::executor::{Executor, Pending};
use super::outcome::fresh;
use super::pending::{self, PendingWrite};
use super::{ExecError, ExecOutput};
use crate::config::{EffectName, InDoubtPolicy};
use crate::sandbox::{CallOutput, CallRequest, Overrides, Reconciled};
use crate::store::{CallRecord, CallState, Resolution, StoredError, StoredOutcome};

/// How long after an `unknown` answer later callers get `in_doubt` before
/// `reconcile` is asked again, unless a policy says otherwise.
pub const DEFAULT_RECONCILE_BACKOFF: Duration = Duration::from_secs(30);

/// Who decided how a call came out of doubt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decider {
    /// The tool's `reconcile` answered.
    Reconcile,
    /// The tool's `in_doubt` policy (or its effect) re-ran it.
    Policy,
    /// An operator's `cache resolve`.
    Operator,
}

impl Decider {
    pub fn as_str(self) -> &'static str {
        match self {
            Decider::Reconcile => "reconcile",
            Decider::Policy => "policy",
            Decider::Operator => "operator",
        }
    }
}

/// Every (decider, answer) counter name, so the counters stay a fixed set.
const COUNTERS: &[(&str, &str, &str)] = &[
    ("reconcile", "committed", "resolutions.reconcile.committed"),
    ("reconcile", "not_done", "resolutions.reconcile.not_done"),
    ("reconcile", "unknown", "resolutions.reconcile.unknown"),
    ("policy", "retry", "resolutions.policy.retry"),
    ("operator", "retry", "resolutions.operator.retry"),
    ("operator", "abandon", "resolutions.operator.abandon"),
    ("operator", "mark_done", "resolutions.operator.mark_done"),
];

/// The counter of `resolution`, if it is one of [`COUNTERS`].
pub(crate) fn counter_name(resolution: &Resolution) -> Option<&'static str> {
    COUNTERS
        .iter()
        .find(|(d, a, _)| *d == resolution.decider && *a == resolution.answer)
        .map(|(_, _, name)| *name)
}

/// What the host does with an in-doubt row of a tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Ask the tool's `reconcile`.
    Reconcile,
    /// Run it again (the `retry` policy, or an idempotent tool).
    Rerun,
    /// Leave it to an operator.
    Stop,
}

impl Executor {
    /// The tool's `in_doubt` policy as configured, else its default.
    pub(crate) fn in_doubt_policy(&self, pending: &Pending<'_>) -> InDoubtPolicy {
        let tool = &pending.prepared.tool;
        self.sandbox
            .policy(&tool.name)
            .and_then(|p| p.in_doubt)
            .unwrap_or(if tool.world.reconciles() {
                InDoubtPolicy::Reconcile
            } else {
                InDoubtPolicy::Stop
            })
    }

    /// What to do with an in-doubt row of this call's tool.
    pub(crate) fn in_doubt_action(&self, pending: &Pending<'_>) -> Action {
        if pending.effect == EffectName::Idempotent {
            return Action::Rerun;
        }
        match self.in_doubt_policy(pending) {
            InDoubtPolicy::Reconcile if pending.prepared.tool.world.reconciles() => {
                Action::Reconcile
            }
            // A policy that asks a tool without `reconcile` (a rebuilt
            // one, say) cannot be followed: nothing is guessed.
            InDoubtPolicy::Reconcile | InDoubtPolicy::Stop => Action::Stop,
            InDoubtPolicy::Retry => Action::Rerun,
        }
    }

    fn backoff(&self, pending: &Pending<'_>) -> Duration {
        self.sandbox
            .policy(&pending.prepared.tool.name)
            .and_then(|p| p.reconcile_backoff_s)
            .map_or(DEFAULT_RECONCILE_BACKOFF, Duration::from_secs)
    }

    /// A resolution made now about `row`'s attempt.
    pub(crate) fn resolution(
        &self,
        row: &CallRecord,
        decider: Decider,
        answer: &str,
        evidence: impl Into<String>,
    ) -> Resolution {
        Resolution {
            decider: decider.as_str().to_string(),
            answer: answer.to_string(),
            evidence: evidence.into(),
            at_ms: self.clock.now_ms(),
            attempt: row.attempt,
        }
    }

    /// Counts a resolution in the store's counters (a failed count costs a
    /// number on a dashboard, never the call).
    pub(crate) async fn count_resolution(&self, resolution: &Resolution) {
        if let Some(name) = counter_name(resolution)
            && let Err(e) = self.store.bump(vec![(name, 1)]).await
        {
            tracing::warn!(error = %e, "cannot count a resolution");
        }
    }

    /// Asks the tool's `reconcile` about the in-doubt `row` and acts on the
    /// answer. `forced` (an operator asked) skips the backoff after an
    /// `unknown`. `Ok(None)`: another caller took the row over first.
    pub(crate) async fn reconcile_row(
        &self,
        pending: &Pending<'_>,
        row: &CallRecord,
        forced: bool,
    ) -> Result<Option<ExecOutput>, ExecError> {
        let key = pending.request.key.clone();
        let prior = row
            .outcome
            .as_ref()
            .map(|o| o.resolutions.clone())
            .unwrap_or_default();
        let now = self.clock.now_ms();
        if !forced
            && let Some(last) = prior.last()
            && last.answer == "unknown"
        {
            let backoff = self.backoff(pending);
            let since = Duration::from_millis(now.saturating_sub(last.at_ms).max(0) as u64);
            if since < backoff {
                self.counters
                    .in_doubt
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(ExecError::in_doubt(
                    &key,
                    format!(
                        "its tool's reconcile could not tell {} s ago ({}); it is asked again {} s after that",
                        since.as_secs(),
                        last.evidence,
                        backoff.as_secs()
                    ),
                ));
            }
        }
        let build = (
            pending.request.component_digest.clone(),
            pending.request.policy_digest.clone(),
        );
        let Some(taken) = self.store.take_over(&key, None, now, build).await? else {
            return Ok(None);
        };
        let request = CallRequest {
            idempotency_key: key.clone(),
            attempt: row.attempt,
            overrides: Overrides::default(),
        };
        let asked = self.sandbox.reconcile(pending.prepared, request).await;
        let with = |resolution: Resolution| {
            let mut all = prior.clone();
            all.push(resolution);
            all
        };
        match asked {
            Ok(Some(Reconciled::Committed(output))) => {
                let resolution =
                    self.resolution(row, Decider::Reconcile, "committed", output.to_string());
                self.count_resolution(&resolution).await;
                let resolved = Pending {
                    resolutions: with(resolution),
                    ..pending.clone()
                };
                let result = Ok(CallOutput {
                    output,
                    fuel_used: 0,
                    duration: Duration::ZERO,
                    stdout: String::new(),
                    stderr: String::new(),
                });
                self.settle_recorded(&resolved, taken.fence, &result)
                    .await?;
                let mut out = fresh(result, &key, row.attempt, Some(self.clock.now_ms()))?;
                out.reconciled = true;
                Ok(Some(out))
            }
            Ok(Some(Reconciled::NotDone)) => {
                let resolution = self.resolution(
                    row,
                    Decider::Reconcile,
                    "not_done",
                    "the remote has no record of the effect",
                );
                self.count_resolution(&resolution).await;
                let resolved = Pending {
                    resolutions: with(resolution),
                    ..pending.clone()
                };
                self.run_claimed(&resolved, taken.attempt, taken.fence)
                    .await
                    .map(Some)
            }
            other => {
                let why = match other {
                    Ok(Some(Reconciled::Unknown(why))) => why,
                    Ok(_) => "the tool no longer exports reconcile".to_string(),
                    Err(e) => format!("reconcile failed: {} ({e})", e.kind()),
                };
                let resolution = self.resolution(row, Decider::Reconcile, "unknown", why.clone());
                self.count_resolution(&resolution).await;
                let outcome = StoredOutcome {
                    ok: false,
                    output: None,
                    error: Some(StoredError {
                        kind: "in_doubt".into(),
                        message: format!("reconcile could not tell: {why}"),
                    }),
                    fuel_used: 0,
                    duration_us: 0,
                    resolutions: with(resolution),
                };
                let write = PendingWrite::Complete {
                    state: CallState::InDoubt,
                    outcome,
                    now_ms: self.clock.now_ms(),
                    expires_at_ms: None,
                };
                pending::try_once(&self.store, &key, taken.fence, &write).await?;
                self.store.notify_settled();
                self.counters
                    .in_doubt
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(ExecError::in_doubt(
                    &key,
                    format!(
                        "its tool's reconcile could not tell whether the effect happened: {why}"
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counted_pair_has_one_name() {
        let names: std::collections::BTreeSet<_> = COUNTERS.iter().map(|c| c.2).collect();
        assert_eq!(names.len(), COUNTERS.len());
        for (d, a, name) in COUNTERS {
            assert_eq!(*name, format!("resolutions.{d}.{a}"));
        }
        let r = Resolution {
            decider: "reconcile".into(),
            answer: "committed".into(),
            evidence: String::new(),
            at_ms: 0,
            attempt: 1,
        };
        assert_eq!(counter_name(&r), Some("resolutions.reconcile.committed"));
        let odd = Resolution {
            answer: "maybe".into(),
            ..r
        };
        assert_eq!(counter_name(&odd), None);
    }
}

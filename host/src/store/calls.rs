//! The idempotency table's contract: the types both backends keep, and the
//! facade's methods for it.
//!
//! A row is `running` from its claim until its outcome is recorded (`done`),
//! or until its owner is found dead, its run hit a limit mid-effect, or its
//! outcome could not be written (`in_doubt`). Writes on a claim (`complete`,
//! `release`, `mark_in_doubt`) change the row only while it is that owner's
//! `running` claim under the same fencing token (`fence`, bumped by every
//! take-over), and say whether it was. Each method dispatches on the
//! backend: the SQL is in `sqlite/calls.rs` and `pg/calls.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sqlite::calls;
use super::{Backend, Store, StoreError};

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// Claimed; its owner is running it (or died doing so).
    Running,
    /// Its outcome is recorded and replays.
    Done,
    /// Its owner died mid-call: the effect may or may not have happened.
    InDoubt,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Running => "running",
            CallState::Done => "done",
            CallState::InDoubt => "in_doubt",
        }
    }

    pub(crate) fn parse(s: &str) -> CallState {
        match s {
            "running" => CallState::Running,
            "done" => CallState::Done,
            // The CHECK constraint admits nothing else.
            _ => CallState::InDoubt,
        }
    }
}

/// A recorded error: its stable kind name and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredError {
    pub kind: String,
    pub message: String,
}

/// A recorded outcome, as JSON in the `outcome` column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StoredError>,
    pub fuel_used: u64,
    pub duration_us: u64,
    /// How the call came out of doubt (or why it has not), oldest first:
    /// every question asked of `reconcile` and every decision of a policy or
    /// an operator. Empty for a call that never was in doubt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolutions: Vec<Resolution>,
}

/// One decision about a call in doubt: who decided, what the answer was,
/// and the evidence it rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// `reconcile` (the tool's answer), `policy` (the tool's `in_doubt`
    /// policy) or `operator` (`cache resolve`).
    pub decider: String,
    /// `committed`, `not_done`, `unknown`, `retry`, `abandon` or `mark_done`.
    pub answer: String,
    /// What it rests on: the output `reconcile` found, why it could not
    /// tell, which policy re-ran the call.
    pub evidence: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The attempt that was in doubt.
    pub attempt: u32,
}

/// One row.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub key: String,
    pub tool: String,
    pub effect: String,
    /// The scope the key was derived with: an explicit key, a run step, or
    /// empty.
    pub scope: String,
    /// The canonical input.
    pub input: String,
    pub state: CallState,
    pub owner: Option<String>,
    pub attempt: u32,
    pub outcome: Option<StoredOutcome>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// blake3 of the wasm that ran (or is running) the call; `None` on rows
    /// recorded before digests were kept.
    pub component_digest: Option<String>,
    /// The policy digest (limits and grants) it ran under.
    pub policy_digest: Option<String>,
    /// The limits it ran under, as JSON (see `idempotency::RecordedLimits`).
    pub limits: Option<String>,
    /// The fencing token of the claim that wrote the row: 1 for the first
    /// claim, one more for every take-over.
    pub fence: i64,
}

impl CallRecord {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_ms)
    }

    /// The row an unclaimed (pure or read-only) `outcome` is recorded as,
    /// at the request's `now_ms`.
    pub(crate) fn recorded(
        request: ClaimRequest,
        outcome: StoredOutcome,
        expires_at: Option<i64>,
    ) -> CallRecord {
        CallRecord {
            key: request.key,
            tool: request.tool,
            effect: request.effect,
            scope: request.scope,
            input: request.input,
            state: CallState::Done,
            owner: None,
            attempt: 1,
            outcome: Some(outcome),
            created_at: request.now_ms,
            completed_at: Some(request.now_ms),
            expires_at,
            component_digest: Some(request.component_digest),
            policy_digest: Some(request.policy_digest),
            limits: Some(request.limits),
            fence: 0,
        }
    }
}

/// What a caller wants to claim (or look up).
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub key: String,
    pub tool: String,
    pub effect: String,
    pub scope: String,
    pub input: String,
    pub owner: String,
    pub now_ms: i64,
    /// Recorded with the row: blake3 of the component's wasm, hex.
    pub component_digest: String,
    /// Recorded with the row: the policy digest (limits and grants), hex.
    pub policy_digest: String,
    /// Recorded with the row: the call's limits as JSON, so `cache resolve
    /// --retry` re-runs under them.
    pub limits: String,
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimOutcome {
    /// The caller owns the key now and must run the call; its writes on the
    /// claim present `fence`.
    Acquired { attempt: u32, fence: i64 },
    /// Someone claimed it first: running, done or in doubt.
    Existing(Box<CallRecord>),
    /// The scope (an explicit key) is taken by a different call.
    Conflict {
        existing_key: String,
        existing_tool: String,
    },
}

/// A claim taken over (from a dead owner, or from `in_doubt`): the attempt
/// the new owner runs and the fencing token its writes must present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TakenOver {
    pub attempt: u32,
    pub fence: i64,
}

/// What `cache gc` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Finished rows removed (expired, or older than asked).
    pub removed: u64,
    /// Rows left `running` (live owners) or `in_doubt` (for an operator).
    pub kept_in_flight: u64,
    /// `running` rows of dead owners moved to `in_doubt`.
    pub swept_in_doubt: u64,
    /// Lock files (SQLite) or heartbeat rows (PostgreSQL) of dead owners
    /// removed.
    pub locks_removed: u64,
}

/// Whether a write that needs this owner's `running` claim found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// The row was this owner's running claim, and is now written.
    Yes,
    /// It was not: what the row says instead (`done`, `in_doubt`, another
    /// owner, or no row at all).
    No(String),
    /// The claim was taken over since: the row's fencing token is now
    /// `current` (what the row says is in `found`).
    Fenced { current: i64, found: String },
}

/// The scope prefix of an explicit `--idempotency-key`: the only scope that
/// can conflict.
pub const EXPLICIT_SCOPE_PREFIX: &str = "key:";

/// What the row holding `req`'s explicit scope answers: a conflict (another
/// tool or input), that row (the same operation under another key), or
/// nothing (it is `req.key`'s own row). Both backends decide with this.
pub(crate) fn explicit_answer(row: CallRecord, req: &ClaimRequest) -> Option<ClaimOutcome> {
    if row.tool != req.tool || row.input != req.input {
        Some(ClaimOutcome::Conflict {
            existing_key: row.key,
            existing_tool: row.tool,
        })
    } else if row.key != req.key {
        Some(ClaimOutcome::Existing(Box::new(row)))
    } else {
        None
    }
}

/// What a row says, for an error message when a claim was not held.
pub(crate) fn describe(row: Option<&CallRecord>) -> String {
    match row {
        None => "no row".to_string(),
        Some(row) => match &row.owner {
            Some(o) => format!("{} (owner {o}, fence {})", row.state.as_str(), row.fence),
            None => format!("{} (fence {})", row.state.as_str(), row.fence),
        },
    }
}

/// Why a write presenting `fence` changed nothing: the claim was taken
/// over (a newer token), or the row is otherwise not this claim's.
pub(crate) fn not_held(row: Option<&CallRecord>, fence: i64) -> Held {
    let found = describe(row);
    match row {
        Some(r) if r.fence > fence => Held::Fenced {
            current: r.fence,
            found,
        },
        _ => Held::No(found),
    }
}

impl Store {
    /// One row, read without taking the write lock.
    pub async fn get(&self, key: &str) -> Result<Option<CallRecord>, StoreError> {
        let key = key.to_string();
        match &self.backend {
            Backend::Sqlite(s) => s.reader.read(move |c| calls::get(c, &key)).await,
            Backend::Postgres(p) => p.get(&key).await,
        }
    }

    /// Claims `request.key` for this owner, unless it is already claimed,
    /// recorded and fresh, or its explicit scope belongs to another call.
    pub async fn claim(&self, request: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.inner.run(move |c| calls::claim(c, &request)).await,
            Backend::Postgres(p) => p.claim(&request).await,
        }
    }

    /// Records the outcome of this process's claim on `key` under `fence`.
    /// Fails with [`StoreError::Fenced`] if the claim was taken over since,
    /// and [`StoreError::NotOwner`] if the row is otherwise not this claim.
    pub async fn complete(
        &self,
        key: &str,
        fence: i64,
        state: CallState,
        outcome: StoredOutcome,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.injected()?;
        let held = match &self.backend {
            Backend::Sqlite(s) => {
                let (k, owner) = (key.to_string(), s.owner.id().to_string());
                s.inner
                    .run(move |c| {
                        calls::complete(
                            c,
                            &k,
                            &owner,
                            fence,
                            state,
                            &outcome,
                            now_ms,
                            expires_at_ms,
                        )
                    })
                    .await?
            }
            Backend::Postgres(p) => {
                p.complete(key, fence, state, &outcome, now_ms, expires_at_ms)
                    .await?
            }
        };
        self.notify_settled();
        held_or_error(key, fence, held)
    }

    /// Stores a pure or read-only outcome without a claim. On SQLite it
    /// returns before the row commits (it is written behind, within a few
    /// milliseconds); this process's lookups and reads see it at once.
    pub async fn put(
        &self,
        request: ClaimRequest,
        outcome: StoredOutcome,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            // A lost pure or read-only result costs a recompute, never a
            // repeated effect: written behind, unsynced, and held in memory
            // for this process's lookups until it commits (decision 0092).
            Backend::Sqlite(s) => {
                let held = CallRecord::recorded(request.clone(), outcome.clone(), expires_at_ms);
                let n = s.unwritten.hold(held);
                let (unwritten, key) = (s.unwritten.clone(), request.key.clone());
                s.inner.write_behind_then(
                    "a pure or read-only result",
                    move |c| calls::put(c, &request, &outcome, expires_at_ms),
                    move || unwritten.committed(&key, n),
                );
                Ok(())
            }
            Backend::Postgres(p) => p.put(&request, &outcome, expires_at_ms).await,
        }
    }

    /// Drops this process's claim on `key` under `fence`: the call may run
    /// again. Fails like [`Store::complete`] when the claim is not held.
    pub async fn release(&self, key: &str, fence: i64) -> Result<(), StoreError> {
        self.injected()?;
        let held = match &self.backend {
            Backend::Sqlite(s) => {
                let (k, owner) = (key.to_string(), s.owner.id().to_string());
                s.inner
                    .run(move |c| calls::release(c, &k, &owner, fence))
                    .await?
            }
            Backend::Postgres(p) => p.release(key, fence).await?,
        };
        self.notify_settled();
        held_or_error(key, fence, held)
    }

    /// Marks `owner`'s running claim on `key` under `fence` as `in_doubt`;
    /// false if the row was no longer that (already recorded, or taken
    /// over). On PostgreSQL another owner's claim is marked only once its
    /// lease has expired.
    pub async fn mark_in_doubt(
        &self,
        key: &str,
        owner: &str,
        fence: i64,
    ) -> Result<bool, StoreError> {
        let marked = match &self.backend {
            Backend::Sqlite(s) => {
                let (key, owner) = (key.to_string(), owner.to_string());
                s.inner
                    .run(move |c| calls::mark_in_doubt(c, &key, &owner, fence))
                    .await?
            }
            Backend::Postgres(p) => p.mark_in_doubt(key, owner, fence).await?,
        };
        self.notify_settled();
        Ok(marked)
    }

    /// The last resort after the recording path failed: marks this
    /// process's running claim `in_doubt` through a fresh connection (the
    /// usual one may be the broken part), so the row is never left
    /// `running` under a live owner for every later caller to wait on.
    pub async fn mark_in_doubt_fresh(&self, key: &str, fence: i64) -> Result<bool, StoreError> {
        let marked = match &self.backend {
            Backend::Sqlite(s) => s.mark_in_doubt_fresh(key, fence).await?,
            Backend::Postgres(p) => p.mark_in_doubt_fresh(key, fence).await?,
        };
        self.notify_settled();
        Ok(marked)
    }

    /// Takes over a claim (a dead owner's, or an `in_doubt` one being
    /// retried): this process owns it, the attempt number goes up and the
    /// fencing token moves on. The row then records `build` (component
    /// digest, policy digest).
    pub async fn take_over(
        &self,
        key: &str,
        from: Option<String>,
        now_ms: i64,
        build: (String, String),
    ) -> Result<Option<TakenOver>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let (key, owner) = (key.to_string(), s.owner.id().to_string());
                s.inner
                    .run(move |c| {
                        calls::take_over(
                            c,
                            &key,
                            from.as_deref(),
                            &owner,
                            now_ms,
                            (&build.0, &build.1),
                        )
                    })
                    .await
            }
            Backend::Postgres(p) => p.take_over(key, from.as_deref(), now_ms, &build).await,
        }
    }

    /// Looks a key up without claiming it (pure and read-only calls),
    /// without taking a write lock.
    pub async fn lookup(&self, request: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => match s.unwritten.lookup(&request) {
                Some(held) => Ok(held),
                None => s.reader.read_now(move |c| calls::lookup(c, &request)).await,
            },
            Backend::Postgres(p) => p.lookup(&request).await,
        }
    }

    /// Moves the `running` claims of dead owners to `in_doubt` and removes
    /// what dead owners left (lock files, or heartbeat rows):
    /// `(claims swept, owners removed)`.
    pub async fn sweep_dead_owners(&self) -> Result<(u64, u64), StoreError> {
        let (swept, owners) = match &self.backend {
            Backend::Sqlite(s) => s.sweep_dead_owners().await?,
            Backend::Postgres(p) => p.sweep_dead_owners().await?,
        };
        if swept > 0 {
            self.notify_settled();
        }
        Ok((swept, owners))
    }

    /// Records an operator's decision to give up on an `in_doubt` call.
    pub async fn abandon(
        &self,
        key: &str,
        outcome: StoredOutcome,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = match &self.backend {
            Backend::Sqlite(s) => {
                let key = key.to_string();
                s.inner
                    .run(move |c| calls::abandon(c, &key, &outcome, now_ms))
                    .await?
            }
            Backend::Postgres(p) => p.abandon(key, &outcome, now_ms).await?,
        };
        self.notify_settled();
        Ok(done)
    }

    /// Adds to named counters, in one job.
    pub async fn bump(&self, counts: Vec<(&'static str, i64)>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.inner
                    .run(move |c| {
                        for (name, delta) in counts {
                            calls::bump(c, name, delta)?;
                        }
                        Ok(())
                    })
                    .await
            }
            Backend::Postgres(p) => p.bump(&counts).await,
        }
    }

    /// Every counter and its value.
    pub async fn counters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.inner.run(calls::counters).await,
            Backend::Postgres(p) => p.counters().await,
        }
    }

    pub async fn list(&self, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.reader.read(move |c| calls::list(c, limit)).await,
            Backend::Postgres(p) => p.list(limit).await,
        }
    }

    /// Removes finished rows that expired, or that finished before
    /// `older_than_ms` when given; moves dead owners' claims to `in_doubt`
    /// and removes what dead owners left. Claims of live owners are kept.
    pub async fn gc(
        &self,
        now_ms: i64,
        finished_before_ms: Option<i64>,
    ) -> Result<GcReport, StoreError> {
        let (swept, locks) = self.sweep_dead_owners().await?;
        let report = match &self.backend {
            Backend::Sqlite(s) => {
                s.inner
                    .run(move |c| calls::gc(c, now_ms, finished_before_ms))
                    .await?
            }
            Backend::Postgres(p) => p.gc(now_ms, finished_before_ms).await?,
        };
        Ok(GcReport {
            swept_in_doubt: swept,
            locks_removed: locks,
            ..report
        })
    }
}

/// A claim write's answer as the caller's result.
fn held_or_error(key: &str, fence: i64, held: Held) -> Result<(), StoreError> {
    match held {
        Held::Yes => Ok(()),
        Held::No(found) => Err(StoreError::NotOwner {
            key: key.to_string(),
            found,
        }),
        Held::Fenced { current, found } => Err(StoreError::Fenced {
            key: key.to_string(),
            fence,
            current,
            found,
        }),
    }
}

//! Idempotent execution: every call gets a key, and the key decides whether
//! the call runs, replays, waits, or refuses.
//!
//! | effect | on a recorded outcome | before running | after running |
//! |---|---|---|---|
//! | `pure` | replay | nothing | record (never limit or transient errors) |
//! | `read-only` | replay while fresh (TTL) | nothing | record with expiry |
//! | `idempotent` | replay | claim | record; on a limit error release (re-running is allowed) |
//! | `side-effecting` | replay | claim (`BEGIN IMMEDIATE`) | record; on a limit error or trap, `in_doubt` |
//!
//! A claim is a `running` row owned by this process. Callers who find one
//! wait for its outcome: in this process on the key's lock, across processes
//! by polling the row. A claim whose owner died (see `store::liveness`) is
//! never re-run on its own for a side-effecting tool: it becomes `in_doubt`
//! until an operator (`toolhost cache resolve`) or the tool's policy
//! (`in_doubt = "retry"`) decides.
//!
//! Why a side-effecting call that hit a limit is `in_doubt` rather than
//! released: the tool may have done its effect and then run out of time
//! before returning. Only the tool's own `transient` error says "nothing
//! happened, try again", so only that releases the claim.

mod clock;
mod key;

pub use clock::{Clock, ManualClock, SystemClock};
pub use key::{KeyParts, canonical_json, derive_key};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{EffectName, InDoubtPolicy};
use crate::sandbox::{CallError, CallOutput, CallRequest, ErrorKind, Overrides, Prepared, Sandbox};
use crate::store::{
    CallRecord, CallState, ClaimOutcome, ClaimRequest, Store, StoreError, StoredError,
    StoredOutcome,
};

/// Read-only results stay fresh this long unless the policy says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// A non-pure call with the empty scope replays for this long by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(86_400);
/// How often a caller polls a claim held by another process.
const POLL: Duration = Duration::from_millis(10);

/// Which calls count as "the same call".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Outside a run and without a key: same input, same call (within the
    /// tool's idempotency window).
    #[default]
    Empty,
    /// `--idempotency-key K`: the caller names the operation.
    Explicit(String),
    /// `--no-cache`: a scope no other call shares.
    Fresh,
    /// Inside an agent run: one call of one step.
    Step {
        run_id: String,
        step: u32,
        index: u32,
    },
}

impl Scope {
    fn render(&self) -> String {
        match self {
            Scope::Empty => String::new(),
            Scope::Explicit(k) => format!("key:{k}"),
            Scope::Fresh => format!("fresh:{}", crate::store::random_hex()),
            Scope::Step {
                run_id,
                step,
                index,
            } => format!("run:{run_id}:{step}:{index}"),
        }
    }
}

/// A call's options beyond tool and input.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub scope: Scope,
    pub overrides: Overrides,
}

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
}

/// Why a call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The call (or its recorded replay) failed in the sandbox.
    #[error("{error}")]
    Call {
        key: Option<String>,
        cached: bool,
        error: CallError,
    },
    /// The call was claimed by a process that died before recording an
    /// outcome: its effect may or may not have happened.
    #[error(
        "call {key} is in doubt: {reason}; resolve it with `toolhost cache resolve {key} --retry|--abandon`"
    )]
    InDoubt { key: String, reason: String },
    /// The explicit key already names a different call.
    #[error(
        "idempotency key `{scope}` was already used for another call ({tool}, key {existing_key}); nothing ran"
    )]
    KeyConflict {
        key: String,
        scope: String,
        tool: String,
        existing_key: String,
    },
    /// Another caller holds the claim and has not finished in time.
    #[error("call {key} is still running in another process after {waited_ms} ms")]
    StillRunning { key: String, waited_ms: u64 },
    /// The store failed; whether the call ran is reported in the message.
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
            ExecError::StillRunning { .. } => "timeout",
            ExecError::Store(_) => "store_unavailable",
        }
    }

    /// The call's key, when one was derived.
    pub fn key(&self) -> Option<&str> {
        match self {
            ExecError::Call { key, .. } => key.as_deref(),
            ExecError::InDoubt { key, .. }
            | ExecError::KeyConflict { key, .. }
            | ExecError::StillRunning { key, .. } => Some(key),
            ExecError::Store(_) => None,
        }
    }

    fn fresh(key: &str, error: CallError) -> Self {
        ExecError::Call {
            key: Some(key.to_string()),
            cached: false,
            error,
        }
    }
}

impl From<CallError> for ExecError {
    fn from(error: CallError) -> Self {
        ExecError::Call {
            key: None,
            cached: false,
            error,
        }
    }
}

/// Outcomes worth replaying: the tool's own answers. Limits, traps,
/// transient and host errors depend on the moment, not the input.
fn recordable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ToolFailed | ErrorKind::InvalidInput | ErrorKind::CapabilityDenied
    )
}

fn to_stored(result: &Result<CallOutput, CallError>) -> StoredOutcome {
    match result {
        Ok(out) => StoredOutcome {
            ok: true,
            output: Some(out.output.clone()),
            error: None,
            fuel_used: out.fuel_used,
            duration_us: out.duration.as_micros() as u64,
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
        },
    }
}

/// Counters since this executor started.
#[derive(Debug, Default)]
struct Counters {
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
    claims: std::sync::atomic::AtomicU64,
    in_doubt: std::sync::atomic::AtomicU64,
}

/// Hit, miss and claim counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    pub hits: u64,
    pub misses: u64,
    pub claims: u64,
    pub in_doubt: u64,
}

/// Runs calls through the sandbox with idempotency keys kept in the store.
pub struct Executor {
    sandbox: Sandbox,
    store: Store,
    clock: Arc<dyn Clock>,
    /// One lock per key in flight in this process: duplicates wait here,
    /// then find the recorded outcome.
    flights: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    memo: Memo,
    counters: Counters,
}

/// Settles a claim whose caller was cancelled (its future dropped) while the
/// tool ran: a side-effecting call becomes `in_doubt`, because the tool may
/// have acted; an idempotent one is released. Without this, the claim would
/// stay `running` under a live owner and every later caller would wait.
struct ClaimGuard {
    store: Store,
    key: String,
    effect: EffectName,
    armed: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the process is ending; liveness settles it.
        };
        let (store, key, effect) = (self.store.clone(), self.key.clone(), self.effect);
        runtime.spawn(async move {
            let owner = store.owner_id().to_string();
            let settled = match effect {
                EffectName::Idempotent => store.release(&key).await,
                _ => store.mark_in_doubt(&key, &owner).await,
            };
            if let Err(e) = settled {
                tracing::warn!(%key, error = %e, "cannot settle a cancelled claim");
            }
        });
    }
}

/// Recorded pure outcomes, kept in memory as well. A pure outcome never
/// changes once recorded, so replaying it from memory is replaying it from
/// the database without the round trip to the owner thread. Bounded, oldest
/// out first.
#[derive(Default)]
struct Memo {
    inner: std::sync::Mutex<(
        HashMap<String, CallRecord>,
        std::collections::VecDeque<String>,
    )>,
}

/// How many pure outcomes the memo keeps.
const MEMO_CAPACITY: usize = 4096;

impl Memo {
    fn get(&self, key: &str) -> Option<CallRecord> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0.get(key).cloned()
    }

    fn put(&self, row: &CallRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *inner;
        if map.insert(row.key.clone(), row.clone()).is_none() {
            order.push_back(row.key.clone());
        }
        while order.len() > MEMO_CAPACITY {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

impl Executor {
    pub fn new(sandbox: Sandbox, store: Store) -> Self {
        Executor::with_clock(sandbox, store, Arc::new(SystemClock))
    }

    /// With an injected clock (tests move time by hand).
    pub fn with_clock(sandbox: Sandbox, store: Store, clock: Arc<dyn Clock>) -> Self {
        Executor {
            sandbox,
            store,
            clock,
            flights: std::sync::Mutex::new(HashMap::new()),
            memo: Memo::default(),
            counters: Counters::default(),
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> ExecStats {
        use std::sync::atomic::Ordering::Relaxed;
        ExecStats {
            hits: self.counters.hits.load(Relaxed),
            misses: self.counters.misses.load(Relaxed),
            claims: self.counters.claims.load(Relaxed),
            in_doubt: self.counters.in_doubt.load(Relaxed),
        }
    }

    /// Adds this executor's counts to the store's counters and resets them.
    pub async fn flush_stats(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        let counts = vec![
            ("cache_hits", c.hits.swap(0, Relaxed) as i64),
            ("cache_misses", c.misses.swap(0, Relaxed) as i64),
            ("claims", c.claims.swap(0, Relaxed) as i64),
            ("in_doubt", c.in_doubt.swap(0, Relaxed) as i64),
        ];
        self.store.bump(counts).await
    }

    /// The effect the host acts on: the tool's own, made stricter (never
    /// looser) by its policy.
    pub fn effect_of(&self, prepared: &Prepared) -> EffectName {
        let own = prepared.tool.effect;
        self.sandbox
            .policy(&prepared.tool.name)
            .and_then(|p| p.effect)
            .map_or(own, |e| e.max(own))
    }

    /// The key a call would get, and the claim request behind it.
    fn request(&self, prepared: &Prepared, effect: EffectName, scope: &Scope) -> ClaimRequest {
        let tool = &prepared.tool;
        let canonical = canonical_json(&prepared.input);
        let policy =
            crate::sandbox::policy::digest(&prepared.limits, self.sandbox.policy(&tool.name))
                .to_string();
        // Pure calls replay across scopes, so they ignore an agent step's
        // scope; an explicit key still names the operation.
        let scope = match (effect, scope) {
            (EffectName::Pure, Scope::Step { .. }) => String::new(),
            (_, s) => s.render(),
        };
        let key = derive_key(&KeyParts {
            tool: &tool.name,
            component_digest: &tool.digest,
            policy_digest: &policy,
            canonical_input: &canonical,
            scope: &scope,
        });
        ClaimRequest {
            key,
            tool: tool.name.clone(),
            effect: effect.as_str().to_string(),
            scope,
            input: canonical,
            owner: self.store.owner_id().to_string(),
            now_ms: self.clock.now_ms(),
        }
    }

    /// Runs (or replays) one call.
    pub async fn call(
        &self,
        tool: &str,
        input: &str,
        options: ExecOptions,
    ) -> Result<ExecOutput, ExecError> {
        let prepared = self.sandbox.prepare(tool, input, &options.overrides)?;
        let effect = self.effect_of(&prepared);
        let request = self.request(&prepared, effect, &options.scope);
        let key = request.key.clone();

        let flight = self.flight(&key);
        let result = {
            let _turn = flight.lock().await;
            match effect {
                EffectName::Pure | EffectName::ReadOnly => {
                    self.unclaimed(&prepared, effect, request).await
                }
                EffectName::Idempotent | EffectName::SideEffecting => {
                    self.claimed(&prepared, effect, request, &options.scope)
                        .await
                }
            }
        };
        drop(flight);
        self.land(&key);
        result
    }

    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.entry(key.to_string()).or_default().clone()
    }

    /// Forgets a key's lock once nobody holds or waits for it.
    fn land(&self, key: &str) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(key).is_some_and(|f| Arc::strong_count(f) == 1) {
            flights.remove(key);
        }
    }

    fn expiry(
        &self,
        prepared: &Prepared,
        effect: EffectName,
        scope: &str,
        now: i64,
    ) -> Option<i64> {
        let policy = self.sandbox.policy(&prepared.tool.name);
        let ms = |d: Duration| now + d.as_millis() as i64;
        match effect {
            EffectName::ReadOnly => Some(ms(policy
                .and_then(|p| p.ttl_s)
                .map_or(DEFAULT_TTL, Duration::from_secs))),
            EffectName::Pure => None,
            _ if scope.is_empty() => Some(ms(policy
                .and_then(|p| p.idempotency_window_s)
                .map_or(DEFAULT_WINDOW, Duration::from_secs))),
            _ => None,
        }
    }

    async fn run(
        &self,
        prepared: &Prepared,
        key: &str,
        attempt: u32,
    ) -> Result<CallOutput, CallError> {
        let request = CallRequest {
            idempotency_key: key.to_string(),
            attempt,
            overrides: Overrides::default(),
        };
        self.sandbox.run(prepared, request).await
    }

    fn bump(&self, counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pure and read-only: look up, else run and record.
    async fn unclaimed(
        &self,
        prepared: &Prepared,
        effect: EffectName,
        request: ClaimRequest,
    ) -> Result<ExecOutput, ExecError> {
        let key = request.key.clone();
        let pure = effect == EffectName::Pure;
        if pure && let Some(row) = self.memo.get(&key) {
            self.bump(&self.counters.hits);
            return replay(row);
        }
        match self.store.lookup(request.clone()).await? {
            ClaimOutcome::Existing(row) => {
                self.bump(&self.counters.hits);
                if pure {
                    self.memo.put(&row);
                }
                return replay(*row);
            }
            ClaimOutcome::Conflict {
                existing_key,
                existing_tool,
            } => return Err(conflict(&request, existing_key, existing_tool)),
            ClaimOutcome::Acquired { .. } => {}
        }
        self.bump(&self.counters.misses);
        let result = self.run(prepared, &key, 1).await;
        let now = self.clock.now_ms();
        let recorded = match &result {
            Ok(_) => true,
            Err(e) => recordable(e.kind()),
        };
        if recorded {
            let expires = self.expiry(prepared, effect, &request.scope, now);
            let request = ClaimRequest {
                now_ms: now,
                ..request
            };
            let outcome = to_stored(&result);
            match self
                .store
                .put(request.clone(), outcome.clone(), expires)
                .await
            {
                Ok(()) if pure => self.memo.put(&CallRecord {
                    key: key.clone(),
                    tool: request.tool,
                    effect: request.effect,
                    scope: request.scope,
                    input: request.input,
                    state: CallState::Done,
                    owner: None,
                    attempt: 1,
                    outcome: Some(outcome),
                    created_at: now,
                    completed_at: Some(now),
                    expires_at: None,
                }),
                Ok(()) => {}
                // The call succeeded; failing to cache it costs a re-run later.
                Err(e) => tracing::warn!(%key, error = %e, "cannot record a pure outcome"),
            }
        }
        fresh(result, &key, 1, recorded.then_some(now))
    }

    /// Idempotent and side-effecting: claim, run once, record.
    async fn claimed(
        &self,
        prepared: &Prepared,
        effect: EffectName,
        request: ClaimRequest,
        _scope: &Scope,
    ) -> Result<ExecOutput, ExecError> {
        let key = request.key.clone();
        let started = std::time::Instant::now();
        let wait_limit = prepared.limits.timeout * 2 + Duration::from_secs(2);
        loop {
            let request = ClaimRequest {
                now_ms: self.clock.now_ms(),
                ..request.clone()
            };
            let attempt = match self.store.claim(request.clone()).await? {
                ClaimOutcome::Acquired { attempt } => attempt,
                ClaimOutcome::Conflict {
                    existing_key,
                    existing_tool,
                } => return Err(conflict(&request, existing_key, existing_tool)),
                ClaimOutcome::Existing(row) => match row.state {
                    CallState::Done => {
                        self.bump(&self.counters.hits);
                        return replay(*row);
                    }
                    CallState::InDoubt => {
                        return Err(
                            self.in_doubt(&key, "its claimant died before recording an outcome")
                        );
                    }
                    CallState::Running => {
                        let owner = row.owner.clone().unwrap_or_default();
                        if self.store.owner_alive(&owner) {
                            if started.elapsed() > wait_limit {
                                return Err(ExecError::StillRunning {
                                    key,
                                    waited_ms: started.elapsed().as_millis() as u64,
                                });
                            }
                            tokio::time::sleep(POLL).await;
                            continue;
                        }
                        let retry = effect == EffectName::Idempotent
                            || self
                                .sandbox
                                .policy(&prepared.tool.name)
                                .and_then(|p| p.in_doubt)
                                == Some(InDoubtPolicy::Retry);
                        if !retry {
                            self.store.mark_in_doubt(&key, &owner).await?;
                            return Err(self
                                .in_doubt(&key, "its claimant died before recording an outcome"));
                        }
                        match self
                            .store
                            .take_over(&key, Some(owner), self.clock.now_ms())
                            .await?
                        {
                            Some(attempt) => attempt,
                            // Someone else took it over first: look again.
                            None => continue,
                        }
                    }
                },
            };
            self.bump(&self.counters.claims);
            return self.run_claimed(prepared, effect, &request, attempt).await;
        }
    }

    /// Runs a call this process has claimed and records what happened.
    async fn run_claimed(
        &self,
        prepared: &Prepared,
        effect: EffectName,
        request: &ClaimRequest,
        attempt: u32,
    ) -> Result<ExecOutput, ExecError> {
        let key = &request.key;
        let mut guard = ClaimGuard {
            store: self.store.clone(),
            key: key.clone(),
            effect,
            armed: true,
        };
        let result = self.run(prepared, key, attempt).await;
        // From here on the outcome is recorded below, even if this future
        // is dropped at an await: the store's jobs run to completion.
        guard.armed = false;
        let now = self.clock.now_ms();
        let kind = result.as_ref().err().map(CallError::kind);
        match kind {
            None => {}
            Some(k) if recordable(k) => {}
            Some(ErrorKind::ToolTransient) => {
                // The tool says nothing happened: the key may run again.
                self.store.release(key).await?;
                return fresh(result, key, attempt, None);
            }
            Some(_) if effect == EffectName::Idempotent => {
                self.store.release(key).await?;
                return fresh(result, key, attempt, None);
            }
            Some(_) => {
                // A limit or trap mid-call: the effect may have happened.
                self.bump(&self.counters.in_doubt);
                self.store
                    .complete(key, CallState::InDoubt, to_stored(&result), now, None)
                    .await?;
                return fresh(result, key, attempt, None);
            }
        }
        let expires = self.expiry(prepared, effect, &request.scope, now);
        self.store
            .complete(key, CallState::Done, to_stored(&result), now, expires)
            .await?;
        fresh(result, key, attempt, Some(now))
    }

    fn in_doubt(&self, key: &str, reason: &str) -> ExecError {
        self.bump(&self.counters.in_doubt);
        ExecError::InDoubt {
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    /// `cache resolve KEY --retry`: runs an `in_doubt` call again, once.
    pub async fn retry_in_doubt(&self, key: &str) -> Result<ExecOutput, ExecError> {
        let row = self.store.get(key).await?.ok_or_else(|| not_found(key))?;
        if row.state != CallState::InDoubt {
            return Err(ExecError::Call {
                key: Some(key.to_string()),
                cached: false,
                error: CallError::InvalidInput(format!(
                    "call {key} is {}, not in_doubt",
                    row.state.as_str()
                )),
            });
        }
        let prepared = self
            .sandbox
            .prepare(&row.tool, &row.input, &Overrides::default())?;
        let effect = self.effect_of(&prepared);
        let request = self.request(&prepared, effect, &Scope::Empty);
        // The tool or its policy changed since: this is no longer that call.
        if request.key != key && row.scope.is_empty() {
            return Err(ExecError::Call {
                key: Some(key.to_string()),
                cached: false,
                error: CallError::InvalidInput(format!(
                    "tool `{}` or its policy changed since {key} was claimed; abandon it instead",
                    row.tool
                )),
            });
        }
        let attempt = self
            .store
            .take_over(key, None, self.clock.now_ms())
            .await?
            .ok_or_else(|| self.in_doubt(key, "another operator resolved it first"))?;
        let request = ClaimRequest {
            key: key.to_string(),
            scope: row.scope.clone(),
            ..request
        };
        self.run_claimed(&prepared, effect, &request, attempt).await
    }

    /// `cache resolve KEY --abandon`: records that the call will not run.
    pub async fn abandon_in_doubt(&self, key: &str) -> Result<(), ExecError> {
        let outcome = StoredOutcome {
            ok: false,
            output: None,
            error: Some(StoredError {
                kind: "tool_failed".into(),
                message: "abandoned by an operator after its claimant died (in_doubt)".into(),
            }),
            fuel_used: 0,
            duration_us: 0,
        };
        if self
            .store
            .abandon(key, outcome, self.clock.now_ms())
            .await?
        {
            Ok(())
        } else {
            Err(not_found(key))
        }
    }
}

fn not_found(key: &str) -> ExecError {
    ExecError::Call {
        key: Some(key.to_string()),
        cached: false,
        error: CallError::InvalidInput(format!("no in_doubt call has key {key}")),
    }
}

fn conflict(request: &ClaimRequest, existing_key: String, tool: String) -> ExecError {
    ExecError::KeyConflict {
        key: request.key.clone(),
        scope: request
            .scope
            .strip_prefix("key:")
            .unwrap_or(&request.scope)
            .to_string(),
        tool,
        existing_key,
    }
}

fn fresh(
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
        }),
        Err(e) => Err(ExecError::fresh(key, e)),
    }
}

/// A recorded outcome, replayed.
fn replay(row: CallRecord) -> Result<ExecOutput, ExecError> {
    let Some(outcome) = row.outcome else {
        return Err(ExecError::InDoubt {
            key: row.key,
            reason: "its record has no readable outcome".into(),
        });
    };
    if outcome.ok {
        return Ok(ExecOutput {
            key: row.key,
            cached: true,
            output: outcome.output.unwrap_or(Value::Null),
            fuel_used: outcome.fuel_used,
            duration_us: outcome.duration_us,
            stored_at: row.completed_at,
            attempt: row.attempt,
        });
    }
    let error = outcome.error.unwrap_or(StoredError {
        kind: "tool_failed".into(),
        message: "recorded failure without a message".into(),
    });
    Err(ExecError::Call {
        key: Some(row.key),
        cached: true,
        error: CallError::from_recorded(&error.kind, error.message),
    })
}

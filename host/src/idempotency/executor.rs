//! The executor: derives a call's key and sends it down the path its effect
//! calls for. Pure and read-only calls are looked up, run and recorded here;
//! claimed calls (idempotent, side-effecting) go through `claimed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::flight::Flights;
use super::key::{Build, KeyParts, derive_key};
use super::memo::Memo;
use super::outcome::{RecordedLimits, fresh, recordable, replay, to_stored};
use super::retention::expiry;
use super::{Clock, ExecError, ExecOutput, Scope};
use crate::clock::TokioClock;
use crate::config::EffectName;
use crate::sandbox::{CallError, CallOutput, CallRequest, Overrides, Prepared, Sandbox};
use crate::store::{CallRecord, ClaimOutcome, ClaimRequest, Store, StoreError};
use crate::telemetry::{self, CacheOutcome, TARGET, attrs};
use tracing::Instrument;
use tracing::field::Empty;

/// A call's options beyond tool and input.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub scope: Scope,
    pub overrides: Overrides,
}

/// Counters since this executor started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) claims: AtomicU64,
    pub(crate) in_doubt: AtomicU64,
    /// Outcomes refused because the claim's fencing token was superseded.
    pub(crate) fenced: AtomicU64,
}

/// Hit, miss and claim counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    pub hits: u64,
    pub misses: u64,
    pub claims: u64,
    pub in_doubt: u64,
    /// Outcomes refused by fencing (the claim was taken over meanwhile).
    pub fenced: u64,
}

/// Runs calls through the sandbox with idempotency keys kept in the store.
pub struct Executor {
    pub(crate) sandbox: Sandbox,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    flights: Flights,
    memo: Memo,
    pub(crate) counters: Counters,
}

/// A call on its way: what was prepared, its effect, scope and request.
#[derive(Clone)]
pub(crate) struct Pending<'a> {
    pub(crate) prepared: &'a Prepared,
    pub(crate) effect: EffectName,
    pub(crate) scope: &'a Scope,
    pub(crate) request: ClaimRequest,
    /// How it came out of doubt, recorded with its outcome (empty unless
    /// it was in doubt).
    pub(crate) resolutions: Vec<crate::store::Resolution>,
}

impl Executor {
    pub fn new(sandbox: Sandbox, store: Store) -> Self {
        Executor::with_clock(sandbox, store, Arc::new(TokioClock::default()))
    }

    /// With an injected clock (tests move time by hand).
    pub fn with_clock(sandbox: Sandbox, store: Store, clock: Arc<dyn Clock>) -> Self {
        Executor {
            sandbox,
            store,
            clock,
            flights: Flights::default(),
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
        let c = &self.counters;
        ExecStats {
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            claims: c.claims.load(Relaxed),
            in_doubt: c.in_doubt.load(Relaxed),
            fenced: c.fenced.load(Relaxed),
        }
    }

    /// Keys with an in-process flight entry right now (0 when idle: entries
    /// of finished and cancelled callers are dropped).
    pub fn flights_in_progress(&self) -> usize {
        self.flights.len()
    }

    /// Adds this executor's counts to the store's counters and resets them.
    pub async fn flush_stats(&self) -> Result<(), StoreError> {
        let c = &self.counters;
        let counts = vec![
            ("cache_hits", c.hits.swap(0, Relaxed) as i64),
            ("cache_misses", c.misses.swap(0, Relaxed) as i64),
            ("claims", c.claims.swap(0, Relaxed) as i64),
            ("in_doubt", c.in_doubt.swap(0, Relaxed) as i64),
            ("fenced", c.fenced.swap(0, Relaxed) as i64),
        ];
        self.store.bump(counts).await
    }

    /// The key of a call and the scope text it was derived with: the
    /// contract's key rule (see `key`). Pure calls replay across agent
    /// steps, so they ignore a step's scope; an explicit key still names
    /// the operation.
    pub(crate) fn key_of(&self, prepared: &Prepared, scope: &Scope) -> (String, String) {
        let (tool, effect) = (&prepared.tool, prepared.effect);
        let scope = match (effect, scope) {
            (EffectName::Pure, Scope::Step { .. }) => String::new(),
            (_, s) => s.render(),
        };
        let grants;
        let build = match effect {
            EffectName::Pure | EffectName::ReadOnly => {
                grants = prepared.grants_digest.to_string();
                Some(Build {
                    component_digest: &tool.digest,
                    grants_digest: &grants,
                })
            }
            EffectName::Idempotent | EffectName::SideEffecting => None,
        };
        let key = derive_key(&KeyParts {
            tool: &tool.name,
            canonical_input: prepared.canonical_input(),
            scope: &scope,
            build,
        });
        (key, scope)
    }

    /// The row a call would write: its key, and the digests and limits it
    /// runs under. The policy digest is the tool's configured policy (not
    /// this call's overrides), so only a config edit reads as a change.
    pub(crate) fn claim_request(
        &self,
        prepared: &Prepared,
        key: String,
        scope: String,
    ) -> ClaimRequest {
        let tool = &prepared.tool;
        ClaimRequest {
            key,
            tool: tool.name.clone(),
            effect: prepared.effect.as_str().to_string(),
            scope,
            input: prepared.canonical_input().to_string(),
            owner: self.store.owner_id().to_string(),
            now_ms: self.clock.now_ms(),
            component_digest: tool.digest.clone(),
            policy_digest: prepared.policy_digest.to_string(),
            limits: RecordedLimits::from(prepared.limits).to_json(),
        }
    }

    /// Whether `row` was recorded under another build than `request`'s.
    /// Rows from before digests were kept count as unchanged: unknown is
    /// not a change.
    pub(crate) fn digest_changed(row: &CallRecord, request: &ClaimRequest) -> bool {
        let differs = |recorded: &Option<String>, now: &str| {
            recorded
                .as_deref()
                .is_some_and(|r| !r.is_empty() && r != now)
        };
        differs(&row.component_digest, &request.component_digest)
            || differs(&row.policy_digest, &request.policy_digest)
    }

    /// Runs (or replays) one call.
    pub async fn call(
        &self,
        tool: &str,
        input: &str,
        options: ExecOptions,
    ) -> Result<ExecOutput, ExecError> {
        self.call_with_id(tool, input, options, None).await
    }

    /// [`Executor::call`], in an `execute_tool {tool}` span that names the
    /// caller's id for the call (`gen_ai.tool.call.id`: the model's call id
    /// in a run, the JSON-RPC request id over MCP).
    ///
    /// The span says how the call was answered (`toolhost.cache`):
    /// `executed` is recorded only where the guest is started (`run`), so a
    /// replay, a wait that saw another caller's outcome, or a refusal before
    /// anything ran is never reported as executed.
    pub async fn call_with_id(
        &self,
        tool: &str,
        input: &str,
        options: ExecOptions,
        call_id: Option<&str>,
    ) -> Result<ExecOutput, ExecError> {
        let span = tracing::info_span!(
            target: TARGET,
            "execute_tool",
            otel.name = format!("execute_tool {tool}"),
            otel.status_code = Empty,
            { attrs::OPERATION } = "execute_tool",
            { attrs::TOOL_NAME } = tool,
            { attrs::TOOL_CALL_ID } = call_id,
            { attrs::EFFECT } = Empty,
            { attrs::CACHE } = Empty,
            { attrs::FUEL } = Empty,
            { attrs::ERROR_TYPE } = Empty,
        );
        let result = self
            .call_inner(tool, input, options)
            .instrument(span.clone())
            .await;
        let replayed = match &result {
            Ok(out) => {
                if !out.cached {
                    span.record(attrs::FUEL, out.fuel_used);
                }
                if telemetry::content_captured() {
                    telemetry::set_otel_attribute(
                        &span,
                        attrs::TOOL_RESULT,
                        out.output.to_string(),
                    );
                }
                out.cached
            }
            Err(e) => {
                span.record(attrs::ERROR_TYPE, e.kind());
                span.record("otel.status_code", "error");
                matches!(e, ExecError::Call { cached: true, .. })
            }
        };
        if replayed {
            span.record(attrs::CACHE, CacheOutcome::Replayed.as_str());
        }
        result
    }

    async fn call_inner(
        &self,
        tool: &str,
        input: &str,
        options: ExecOptions,
    ) -> Result<ExecOutput, ExecError> {
        let prepared = self.sandbox.prepare(tool, input, &options.overrides)?;
        let effect = prepared.effect;
        let span = tracing::Span::current();
        span.record(attrs::EFFECT, effect.as_str());
        if telemetry::content_captured() {
            // The canonical text the guest sees; never the key.
            telemetry::set_otel_attribute(
                &span,
                attrs::TOOL_ARGUMENTS,
                prepared.canonical_input().to_string(),
            );
        }
        let (key, scope) = self.key_of(&prepared, &options.scope);
        if effect == EffectName::Pure
            && let Some(row) = self.memo.get(&key)
            && !row.expired(self.clock.now_ms())
        {
            self.counters.hits.fetch_add(1, Relaxed);
            return replay(row, false);
        }
        let pending = Pending {
            prepared: &prepared,
            effect,
            scope: &options.scope,
            request: self.claim_request(&prepared, key.clone(), scope),
            resolutions: Vec::new(),
        };

        let ticket = self.flights.join(&key);
        let lock = ticket.lock();
        let started = std::time::Instant::now();
        let limit = super::claimed::wait_limit(&prepared);
        // Callers of this key in this process queue here and wake when the
        // one ahead has recorded its outcome.
        let Ok(_turn) = tokio::time::timeout(limit, lock.lock()).await else {
            return Err(ExecError::StillRunning {
                key,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        };
        match effect {
            EffectName::Pure | EffectName::ReadOnly => self.unclaimed(pending).await,
            EffectName::Idempotent | EffectName::SideEffecting => {
                self.claimed(pending, started).await
            }
        }
    }

    pub(crate) async fn run(
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
        // The one place a guest starts: only here is a call `executed`.
        tracing::Span::current().record(attrs::CACHE, CacheOutcome::Executed.as_str());
        self.sandbox.run(prepared, request).await
    }

    /// Pure and read-only: look up, else run and record.
    async fn unclaimed(&self, pending: Pending<'_>) -> Result<ExecOutput, ExecError> {
        let Pending {
            prepared,
            effect,
            scope,
            request,
            ..
        } = pending;
        let key = request.key.clone();
        let pure = effect == EffectName::Pure;
        match self.store.lookup(request.clone()).await? {
            ClaimOutcome::Existing(row) => {
                self.counters.hits.fetch_add(1, Relaxed);
                // Another key under the same explicit key, tool and input:
                // the operation was recorded under another build or grants.
                let other_build = row.key != key;
                if pure && !other_build {
                    self.memo.put(&row);
                }
                return replay(*row, other_build);
            }
            ClaimOutcome::Conflict {
                existing_key,
                existing_tool,
            } => return Err(conflict(&request, existing_key, existing_tool)),
            ClaimOutcome::Acquired { .. } => {}
        }
        self.counters.misses.fetch_add(1, Relaxed);
        let result = self.run(prepared, &key, 1).await;
        let now = self.clock.now_ms();
        let recorded = match &result {
            Ok(_) => true,
            Err(e) => recordable(e.kind()),
        };
        if recorded {
            let policy = self.sandbox.policy(&prepared.tool.name);
            let expires = expiry(effect, scope, policy, now);
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
                Ok(()) if pure => self
                    .memo
                    .put(&CallRecord::recorded(request, outcome, expires)),
                Ok(()) => {}
                // The call succeeded; failing to cache it costs a re-run later.
                Err(e) => tracing::warn!(%key, error = %e, "cannot record a pure outcome"),
            }
        }
        fresh(result, &key, 1, recorded.then_some(now))
    }
}

pub(crate) fn conflict(request: &ClaimRequest, existing_key: String, tool: String) -> ExecError {
    ExecError::KeyConflict {
        key: request.key.clone(),
        scope: super::scope::explicit_name(&request.scope).to_string(),
        tool,
        existing_key,
    }
}

//! What an operator decides: `cache resolve KEY --reconcile | --retry |
//! --abandon | --mark-done OUTPUT`. Each decision is recorded with the
//! outcome (decider `operator`, or `reconcile` for the tool's own answer).
//!
//! `--retry` runs an `in_doubt` call once more (attempt + 1, same key) under
//! the limits recorded with its claim, so a call that went in doubt under
//! `--timeout-ms 100` is retried with 100 ms again, not with the config's
//! default. The key names the effect, not the build, so a rebuilt tool or
//! an edited policy still retries the same call; the output says so
//! (`digest_changed`). `--abandon` records a final `tool_failed`, so later
//! callers with the key get an answer instead of `in_doubt`.

use super::executor::{Executor, Pending};
use super::outcome::RecordedLimits;
use super::reconcile::Decider;
use super::{ExecError, ExecOutput, Scope};
use crate::config::EffectName;
use crate::sandbox::{CallError, Overrides, Prepared};
use crate::store::{CallRecord, CallState, ClaimRequest, Resolution, StoredError, StoredOutcome};

/// An in-doubt row made ready to act on: the row, its call prepared under
/// the limits recorded with its claim, the claim request and its scope.
struct InDoubtCall {
    row: CallRecord,
    prepared: Prepared,
    request: ClaimRequest,
    scope: Scope,
    digest_changed: bool,
}

impl Executor {
    /// The in-doubt row of `key`, prepared as its call would be: refused
    /// unless it is in doubt and still matches its tool and input.
    async fn in_doubt_call(&self, key: &str) -> Result<InDoubtCall, ExecError> {
        let row = self.store.get(key).await?.ok_or_else(|| not_found(key))?;
        if row.state != CallState::InDoubt {
            return Err(ExecError::NotInDoubt {
                key: key.to_string(),
                state: row.state.as_str().to_string(),
            });
        }
        let mut prepared = self
            .sandbox
            .prepare(&row.tool, &row.input, &Overrides::default())?;
        if let Some(limits) = RecordedLimits::from_row(&row) {
            prepared.limits = limits.into();
        }
        let effect = prepared.effect;
        if matches!(effect, EffectName::Pure | EffectName::ReadOnly) {
            return Err(refused(
                key,
                format!(
                    "`{}` is {} now; it is not claimed, so it cannot be retried as a claim",
                    row.tool,
                    effect.as_str()
                ),
            ));
        }
        let scope = scope_of(&row.scope);
        let (now_key, _) = self.key_of(&prepared, &scope);
        if now_key != key && !row.scope.starts_with("fresh:") {
            return Err(refused(
                key,
                format!(
                    "call {key} no longer matches its tool `{}` and input; abandon it instead",
                    row.tool
                ),
            ));
        }
        let mut request = self.claim_request(&prepared, key.to_string(), row.scope.clone());
        request.now_ms = self.clock.now_ms();
        let digest_changed = Executor::digest_changed(&row, &request);
        if digest_changed {
            tracing::warn!(%key, tool = %row.tool, "resolving under another build or policy than the claim's (digest_changed)");
        }
        Ok(InDoubtCall {
            row,
            prepared,
            request,
            scope,
            digest_changed,
        })
    }

    /// `cache resolve KEY --retry`: runs an `in_doubt` call again, once.
    pub async fn retry_in_doubt(&self, key: &str) -> Result<ExecOutput, ExecError> {
        let c = self.in_doubt_call(key).await?;
        let build = (
            c.request.component_digest.clone(),
            c.request.policy_digest.clone(),
        );
        let taken = self
            .store
            .take_over(key, None, c.request.now_ms, build)
            .await?
            .ok_or_else(|| ExecError::in_doubt(key, "another operator resolved it first"))?;
        let resolution = self.resolution(
            &c.row,
            Decider::Operator,
            "retry",
            "an operator ran it again (cache resolve --retry)",
        );
        self.count_resolution(&resolution).await;
        let mut resolutions = prior(&c.row);
        resolutions.push(resolution);
        let pending = Pending {
            prepared: &c.prepared,
            effect: c.prepared.effect,
            scope: &c.scope,
            request: c.request.clone(),
            resolutions,
        };
        let mut out = self
            .run_claimed(&pending, taken.attempt, taken.fence)
            .await?;
        out.digest_changed = c.digest_changed;
        Ok(out)
    }

    /// `cache resolve KEY --reconcile`: asks the tool's `reconcile` now
    /// (whatever its policy and backoff) and acts on its answer, as the
    /// next call would.
    pub async fn reconcile_in_doubt(&self, key: &str) -> Result<ExecOutput, ExecError> {
        let c = self.in_doubt_call(key).await?;
        if !c.prepared.tool.world.reconciles() {
            return Err(refused(
                key,
                format!(
                    "`{}` does not export reconcile ({}); resolve it with --retry, --abandon or --mark-done",
                    c.row.tool,
                    c.prepared.tool.world.as_str()
                ),
            ));
        }
        let pending = Pending {
            prepared: &c.prepared,
            effect: c.prepared.effect,
            scope: &c.scope,
            request: c.request.clone(),
            resolutions: Vec::new(),
        };
        let mut out = self
            .reconcile_row(&pending, &c.row, true)
            .await?
            .ok_or_else(|| ExecError::in_doubt(key, "another operator resolved it first"))?;
        out.digest_changed = c.digest_changed;
        Ok(out)
    }

    /// `cache resolve KEY --mark-done OUTPUT`: records OUTPUT (JSON that
    /// satisfies the tool's output schema) as the outcome of an in-doubt
    /// call, for an effect the operator knows happened.
    pub async fn mark_done_in_doubt(&self, key: &str, output: &str) -> Result<(), ExecError> {
        let c = self.in_doubt_call(key).await?;
        let output = self
            .sandbox
            .check_output(&c.prepared.tool, output)
            .map_err(|e| refused(key, format!("OUTPUT {e}")))?;
        let resolution = self.resolution(
            &c.row,
            Decider::Operator,
            "mark_done",
            "an operator recorded the output (cache resolve --mark-done)",
        );
        let mut resolutions = prior(&c.row);
        resolutions.push(resolution.clone());
        let outcome = StoredOutcome {
            ok: true,
            output: Some(output),
            error: None,
            fuel_used: 0,
            duration_us: 0,
            resolutions,
        };
        self.settle_by_operator(key, outcome, &resolution).await
    }

    /// `cache resolve KEY --abandon`: records that the call will not run.
    pub async fn abandon_in_doubt(&self, key: &str) -> Result<(), ExecError> {
        let row = self.store.get(key).await?.ok_or_else(|| not_found(key))?;
        let resolution = self.resolution(
            &row,
            Decider::Operator,
            "abandon",
            "an operator gave it up (cache resolve --abandon)",
        );
        let mut resolutions = prior(&row);
        resolutions.push(resolution.clone());
        let outcome = StoredOutcome {
            ok: false,
            output: None,
            error: Some(StoredError {
                kind: "tool_failed".into(),
                message: "abandoned by an operator after it went in_doubt".into(),
            }),
            fuel_used: 0,
            duration_us: 0,
            resolutions,
        };
        self.settle_by_operator(key, outcome, &resolution).await
    }

    /// Records an operator's final outcome of an in-doubt row.
    async fn settle_by_operator(
        &self,
        key: &str,
        outcome: StoredOutcome,
        resolution: &Resolution,
    ) -> Result<(), ExecError> {
        if self
            .store
            .abandon(key, outcome, self.clock.now_ms())
            .await?
        {
            self.count_resolution(resolution).await;
            return Ok(());
        }
        // Nothing recorded: say whether the key exists in another state.
        match self.store.get(key).await? {
            Some(row) => Err(ExecError::NotInDoubt {
                key: key.to_string(),
                state: row.state.as_str().to_string(),
            }),
            None => Err(not_found(key)),
        }
    }
}

/// The resolutions already recorded with a row.
fn prior(row: &CallRecord) -> Vec<Resolution> {
    row.outcome
        .as_ref()
        .map(|o| o.resolutions.clone())
        .unwrap_or_default()
}

/// The scope a row's scope text came from (for expiry and re-keying).
fn scope_of(rendered: &str) -> Scope {
    if let Some(k) = rendered.strip_prefix(crate::store::EXPLICIT_SCOPE_PREFIX) {
        return Scope::Explicit(k.to_string());
    }
    if rendered.is_empty() {
        return Scope::Empty;
    }
    if rendered.starts_with("fresh:") {
        return Scope::Fresh;
    }
    let mut parts = rendered
        .strip_prefix("run:")
        .unwrap_or(rendered)
        .rsplitn(3, ':');
    let index = parts.next().and_then(|i| i.parse().ok());
    let step = parts.next().and_then(|s| s.parse().ok());
    match (parts.next(), step, index) {
        (Some(run_id), Some(step), Some(index)) => Scope::Step {
            run_id: run_id.to_string(),
            step,
            index,
        },
        _ => Scope::Empty,
    }
}

fn refused(key: &str, message: String) -> ExecError {
    ExecError::Call {
        key: Some(key.to_string()),
        cached: false,
        digest_changed: false,
        error: CallError::InvalidInput(message),
    }
}

fn not_found(key: &str) -> ExecError {
    ExecError::NoSuchCall {
        key: key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_back_from_their_text() {
        for scope in [
            Scope::Empty,
            Scope::Explicit("order:17".into()),
            Scope::Step {
                run_id: "r:1".into(),
                step: 3,
                index: 0,
            },
        ] {
            assert_eq!(scope_of(&scope.render()), scope);
        }
        assert_eq!(scope_of(&Scope::Fresh.render()), Scope::Fresh);
    }
}

//! What an operator decides: `cache resolve KEY --retry|--abandon`.
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
use super::{ExecError, ExecOutput, Scope};
use crate::config::EffectName;
use crate::sandbox::{CallError, Overrides};
use crate::store::{CallState, StoredError, StoredOutcome};

impl Executor {
    /// `cache resolve KEY --retry`: runs an `in_doubt` call again, once.
    pub async fn retry_in_doubt(&self, key: &str) -> Result<ExecOutput, ExecError> {
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
        let (now_key, _) = self.key_of(&prepared, &scope_of(&row.scope));
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
            tracing::warn!(%key, tool = %row.tool, "retrying under another build or policy than the claim's (digest_changed)");
        }
        let build = (
            request.component_digest.clone(),
            request.policy_digest.clone(),
        );
        let taken = self
            .store
            .take_over(key, None, request.now_ms, build)
            .await?
            .ok_or_else(|| ExecError::in_doubt(key, "another operator resolved it first"))?;
        let scope = scope_of(&row.scope);
        let pending = Pending {
            prepared: &prepared,
            effect,
            scope: &scope,
            request,
        };
        let mut out = self
            .run_claimed(&pending, taken.attempt, taken.fence)
            .await?;
        out.digest_changed = digest_changed;
        Ok(out)
    }

    /// `cache resolve KEY --abandon`: records that the call will not run.
    pub async fn abandon_in_doubt(&self, key: &str) -> Result<(), ExecError> {
        let outcome = StoredOutcome {
            ok: false,
            output: None,
            error: Some(StoredError {
                kind: "tool_failed".into(),
                message: "abandoned by an operator after it went in_doubt".into(),
            }),
            fuel_used: 0,
            duration_us: 0,
        };
        if self
            .store
            .abandon(key, outcome, self.clock.now_ms())
            .await?
        {
            return Ok(());
        }
        // Nothing abandoned: say whether the key exists in another state.
        match self.store.get(key).await? {
            Some(row) => Err(ExecError::NotInDoubt {
                key: key.to_string(),
                state: row.state.as_str().to_string(),
            }),
            None => Err(not_found(key)),
        }
    }
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

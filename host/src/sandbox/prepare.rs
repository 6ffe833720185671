//! One call's way through the sandbox: [`Sandbox::prepare`] checks it
//! without running anything (the tool exists and is usable, the input is
//! I-JSON that satisfies the input schema) and fixes what it runs under;
//! [`Sandbox::run`] runs the [`Prepared`] call in a fresh store and checks
//! the output against the output schema.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::bindings::types::Reconciliation;
use super::egress::Forward;
use super::{CallError, CallOutput, CallRequest, Limits, Overrides, PolicyDigest, Sandbox, Tool};
use super::{bindings, call, capabilities::OpenedDirs};
use crate::config::EffectName;

impl Sandbox {
    /// Runs `tool` on a JSON `input` in a fresh sandbox.
    ///
    /// The input must be JSON that satisfies the tool's input schema; it is
    /// checked here, before any wasm runs, and a violation names the failing
    /// JSON path. The output must be JSON that satisfies the output schema.
    pub async fn call(
        &self,
        tool: &str,
        input: &str,
        request: CallRequest,
    ) -> Result<CallOutput, CallError> {
        let prepared = self.prepare(tool, input, &request.overrides)?;
        self.run(&prepared, request).await
    }

    /// Checks a call without running it: the tool exists, the input is JSON
    /// and satisfies the input schema. Yields what [`Sandbox::run`] needs.
    pub fn prepare(
        &self,
        tool: &str,
        input: &str,
        overrides: &Overrides,
    ) -> Result<Prepared, CallError> {
        let Some(t) = self.tool(tool) else {
            return Err(self.unknown(tool));
        };
        if let Some(reason) = self.policy(tool).and_then(|p| p.unusable.as_ref()) {
            return Err(CallError::Config(reason.clone()));
        }
        // Parsed once, as I-JSON; the guest gets the canonical text, which
        // is exactly what the idempotency key hashes.
        let parsed =
            crate::json::parse_ijson(input).map_err(|e| CallError::InvalidInput(e.to_string()))?;
        check(t.input_validator()?, &parsed)
            .map_err(|e| CallError::InvalidInput(format!("input {e}")))?;
        let digests = self.digests(tool);
        Ok(Prepared {
            effect: self.effect(t),
            policy_digest: digests.policy,
            grants_digest: digests.grants,
            tool: t.clone(),
            text: crate::json::canonical_json(&parsed),
            input: parsed,
            limits: self.limits_for(tool).with_overrides(overrides),
        })
    }

    /// Runs a prepared call in a fresh store. (`request.overrides` were
    /// applied by [`Sandbox::prepare`].)
    pub async fn run(
        &self,
        prepared: &Prepared,
        request: CallRequest,
    ) -> Result<CallOutput, CallError> {
        let done = match self.execute(prepared, request, Export::Call).await? {
            Ran::Call(done) => done,
            Ran::Reconcile(_) => unreachable!("call runs call"),
        };
        let output = parse_output(&done.value, prepared.tool.output_validator()?)?;
        Ok(CallOutput {
            output,
            fuel_used: done.fuel_used,
            duration: done.duration,
            stdout: done.stdout,
            stderr: done.stderr,
        })
    }

    /// `text` as an output of `tool`: JSON that satisfies its output
    /// schema (an operator's `cache resolve --mark-done OUTPUT`), or why not.
    pub fn check_output(&self, tool: &Tool, text: &str) -> Result<Value, String> {
        let output: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        if let Some(v) = tool.output_validator().map_err(|e| e.to_string())? {
            check(v, &output)?;
        }
        Ok(output)
    }

    /// Asks a prepared call's tool whether the effect of `request`'s key
    /// happened (its `reconcile`), under the same grants and limits as the
    /// call. A committed output must satisfy the output schema, as a
    /// call's would. `None`: the component does not export `reconcile`.
    pub async fn reconcile(
        &self,
        prepared: &Prepared,
        request: CallRequest,
    ) -> Result<Option<Reconciled>, CallError> {
        let Some(done) = (match self.execute(prepared, request, Export::Reconcile).await? {
            Ran::Reconcile(done) => done,
            Ran::Call(_) => unreachable!("reconcile runs reconcile"),
        }) else {
            return Ok(None);
        };
        Ok(Some(match done.value {
            Reconciliation::Committed(text) => {
                let output = parse_output(&text, prepared.tool.output_validator()?)?;
                Reconciled::Committed(output)
            }
            Reconciliation::NotDone => Reconciled::NotDone,
            Reconciliation::Unknown(why) => Reconciled::Unknown(why),
        }))
    }

    /// One export of a prepared call's tool in a fresh store, under the
    /// call's grants, limits and forwarded key.
    async fn execute(
        &self,
        prepared: &Prepared,
        request: CallRequest,
        export: Export,
    ) -> Result<Ran, CallError> {
        let t = &prepared.tool;
        let limits = prepared.limits;
        let (pre, _) = self.component(t).await?;
        let forward = Forward::for_call(
            prepared.effect,
            self.policy(&t.name),
            &request.idempotency_key,
        );
        let ctx = bindings::types::CallContext {
            idempotency_key: request.idempotency_key,
            attempt: request.attempt.max(1),
            deadline_ms: limits.timeout.as_millis() as u64,
        };
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .map_err(|_| CallError::Internal("the sandbox is shutting down".into()))?;
        self.inner.runs.fetch_add(1, Ordering::Relaxed);
        let wasm = self.inner.wasm.get().map_err(CallError::Internal)?;
        let _running = wasm.ticker.enter();
        let no_dirs;
        let dirs = match self.inner.dirs.get(&t.name) {
            Some(d) => d,
            None => {
                no_dirs = OpenedDirs::open(None);
                &no_dirs
            }
        };
        let grants = call::Grants {
            tool: Some(&t.name),
            policy: self.policy(&t.name),
            dirs,
            forward,
        };
        let (engine, egress, text) = (&wasm.engine, &self.inner.egress, &prepared.text);
        Ok(match export {
            Export::Call => {
                Ran::Call(call::call(engine, pre, &limits, &grants, egress, ctx, text).await?)
            }
            Export::Reconcile => Ran::Reconcile(
                call::reconcile(engine, pre, &limits, &grants, egress, ctx, text).await?,
            ),
        })
    }
}

/// Which export [`Sandbox::execute`] runs.
enum Export {
    Call,
    Reconcile,
}

/// What it returned.
enum Ran {
    Call(call::Finished<String>),
    Reconcile(Option<call::Finished<Reconciliation>>),
}

/// What a tool's `reconcile` said about a call in doubt.
#[derive(Clone, Debug, PartialEq)]
pub enum Reconciled {
    /// The effect happened: the output `call` would have returned (checked
    /// against the output schema).
    Committed(Value),
    /// It did not happen: running `call` again is safe.
    NotDone,
    /// The remote cannot tell (yet), and why.
    Unknown(String),
}

/// A call that passed [`Sandbox::prepare`].
#[derive(Clone, Debug)]
pub struct Prepared {
    pub tool: Arc<Tool>,
    /// The parsed input.
    pub input: Value,
    /// The input as RFC 8785 canonical JSON: what the guest is handed.
    text: String,
    /// The limits the call will run under (defaults, policy, overrides).
    pub limits: Limits,
    /// The effect the host acts on ([`Sandbox::effect`]).
    pub effect: EffectName,
    /// The digest of the tool's configured policy (its limits and grants,
    /// without this call's overrides): what a cached row records, so only a
    /// config edit reads as a change.
    pub policy_digest: PolicyDigest,
    /// The digest of the grants alone: part of a pure or read-only key.
    pub grants_digest: PolicyDigest,
}

impl Prepared {
    /// The canonical input text the guest will see (and the key hashes).
    pub fn canonical_input(&self) -> &str {
        &self.text
    }
}

/// A tool's result text, which the tool chose: JSON that satisfies its
/// output schema, or `tool_failed` saying why not.
fn parse_output(text: &str, validator: Option<&jsonschema::Validator>) -> Result<Value, CallError> {
    let output: Value = serde_json::from_str(text)
        .map_err(|e| CallError::ToolFailed(format!("the tool returned invalid JSON: {e}")))?;
    if let Some(v) = validator {
        check(v, &output).map_err(|e| CallError::ToolFailed(format!("the tool's output {e}")))?;
    }
    Ok(output)
}

/// Checks `value` against a schema; the error names the failing JSON path.
fn check(validator: &jsonschema::Validator, value: &Value) -> Result<(), String> {
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(err) => {
            let path = err.instance_path().to_string();
            let at = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            Err(format!("violates its schema at {at}: {err}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{ErrorKind, tests_support};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A tool's result is whatever bytes it chose: never a panic, and
        /// anything unusable is `tool_failed`.
        #[test]
        fn arbitrary_output_text_is_json_or_tool_failed(text in any::<String>()) {
            if let Err(e) = parse_output(&text, None) {
                prop_assert_eq!(e.kind(), ErrorKind::ToolFailed);
            }
        }

        #[test]
        fn arbitrary_output_json_is_checked_against_the_schema(
            value in tests_support::json_value(),
        ) {
            let schema = serde_json::json!({
                "type": "object",
                "properties": {"n": {"type": "integer"}},
                "required": ["n"],
            });
            let validator = jsonschema::draft202012::new(&schema).unwrap();
            match parse_output(&value.to_string(), Some(&validator)) {
                Ok(v) => prop_assert!(v["n"].is_i64() || v["n"].is_u64()),
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ToolFailed),
            }
        }
    }
}

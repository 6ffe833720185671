//! One call in one fresh store: set the limits, instantiate, run, and turn
//! whatever happened into an output or a typed [`CallError`].

use std::time::{Duration, Instant};

use wasmtime::{Engine, PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi::I32Exit;

use super::bindings::ToolPre;
use super::bindings::types::{CallContext, Metadata, Reconciliation, ToolError};
use super::capabilities::{HostState, OpenedDirs};
use super::egress::{EgressOptions, Forward};
use super::error::CallError;
use super::limits::Limits;
use crate::config::ToolPolicy;

/// What a finished call produced.
#[derive(Debug)]
pub(crate) struct Finished<T> {
    pub value: T,
    pub fuel_used: u64,
    pub duration: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl<T> Finished<T> {
    /// The value, and the run's numbers and logs to put another value in.
    fn split(self) -> (T, Finished<()>) {
        let run = Finished {
            value: (),
            fuel_used: self.fuel_used,
            duration: self.duration,
            stdout: self.stdout,
            stderr: self.stderr,
        };
        (self.value, run)
    }
}

impl Finished<()> {
    /// This run's numbers and logs with `value`.
    fn with<U>(self, value: U) -> Finished<U> {
        Finished {
            value,
            fuel_used: self.fuel_used,
            duration: self.duration,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// What a call may touch: its tool's policy and the directories that
/// policy grants, opened when the sandbox opened.
pub(crate) struct Grants<'a> {
    /// The tool's name, for refusals that name the config key to grant
    /// (`None`: `describe`, which runs under no policy).
    pub tool: Option<&'a str>,
    pub policy: Option<&'a ToolPolicy>,
    pub dirs: &'a OpenedDirs,
    /// The idempotency key header its mutating requests carry, if any.
    pub forward: Option<Forward>,
}

/// Runs `describe` under `limits`.
pub(crate) async fn describe(
    engine: &Engine,
    pre: &ToolPre<HostState>,
    limits: &Limits,
    egress: &EgressOptions,
) -> Result<Metadata, CallError> {
    let no_dirs = OpenedDirs::open(None);
    let nothing = Grants {
        tool: None,
        policy: None,
        dirs: &no_dirs,
        forward: None,
    };
    match execute(engine, pre, limits, &nothing, egress, Op::Describe)
        .await?
        .value
    {
        Done::Describe(meta) => Ok(meta),
        _ => unreachable!("describe returns metadata"),
    }
}

/// Runs `call(ctx, input)` under `limits`, mapping a tool-reported error to
/// the matching [`CallError`].
pub(crate) async fn call(
    engine: &Engine,
    pre: &ToolPre<HostState>,
    limits: &Limits,
    grants: &Grants<'_>,
    egress: &EgressOptions,
    ctx: CallContext,
    input: &str,
) -> Result<Finished<String>, CallError> {
    let op = Op::Call {
        ctx,
        input: input.to_string(),
    };
    let (done, run) = execute(engine, pre, limits, grants, egress, op)
        .await?
        .split();
    let value = match done {
        Done::Call(Ok(output)) => output,
        Done::Call(Err(e)) => return Err(name_the_grant(tool_error(e), grants)),
        _ => unreachable!("call returns a result"),
    };
    if value.len() as u64 > limits.max_output_bytes {
        return Err(CallError::OutputTooLarge(format!(
            "the result is {} bytes, over the {}-byte cap",
            value.len(),
            limits.max_output_bytes
        )));
    }
    Ok(run.with(value))
}

/// The SDK's marker for `capability_denied` failures (see `toolhost_sdk`).
const CAPABILITY_DENIED_PREFIX: &str = "capability_denied: ";

fn tool_error(e: ToolError) -> CallError {
    match e {
        ToolError::InvalidInput(m) => CallError::InvalidInput(m),
        ToolError::Transient(m) => CallError::ToolTransient(m),
        ToolError::Failed(m) => match m.strip_prefix(CAPABILITY_DENIED_PREFIX) {
            Some(rest) => CallError::CapabilityDenied(rest.to_string()),
            None => CallError::ToolFailed(m),
        },
    }
}

/// A tool's own `capability_denied` (a path outside its grants, or a write
/// to a read-only one) with the config key that grants it: the user reads
/// the fix in the error, not in the manual.
fn name_the_grant(e: CallError, grants: &Grants<'_>) -> CallError {
    let (CallError::CapabilityDenied(why), Some(tool)) = (&e, grants.tool) else {
        return e;
    };
    let granted: Vec<String> = grants
        .policy
        .map(|p| {
            p.dirs
                .iter()
                .map(|d| format!("{} ({})", d.guest, d.mode.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let hint = if granted.is_empty() {
        format!(
            "`{tool}` has no directory grants: give it one under `[tools.{tool}]` in the config, as `dirs = [{{ host = \"./data\", guest = \"/data\", mode = \"rw\" }}]`"
        )
    } else {
        format!(
            "`{tool}` may reach only its grants ({}): add one to `dirs` under `[tools.{tool}]` in the config whose `guest` path holds it, with `mode = \"rw\"` to write",
            granted.join(", ")
        )
    };
    CallError::CapabilityDenied(format!("{why}; {hint}"))
}

/// Runs `reconcile(ctx, input)` under `limits` and the call's grants:
/// what the remote says about the effect of `call(ctx, input)`. `None`
/// for a component that does not export it.
pub(crate) async fn reconcile(
    engine: &Engine,
    pre: &ToolPre<HostState>,
    limits: &Limits,
    grants: &Grants<'_>,
    egress: &EgressOptions,
    ctx: CallContext,
    input: &str,
) -> Result<Option<Finished<Reconciliation>>, CallError> {
    if !pre.world().reconciles() {
        return Ok(None);
    }
    let op = Op::Reconcile {
        ctx,
        input: input.to_string(),
    };
    let finished = execute(engine, pre, limits, grants, egress, op).await?;
    let (done, run) = finished.split();
    let value = match done {
        Done::Reconcile(Some(Ok(answer))) => answer,
        Done::Reconcile(Some(Err(e))) => {
            return Err(name_the_grant(tool_error(e), grants));
        }
        _ => unreachable!("a reconciling component's reconcile returns an answer"),
    };
    Ok(Some(run.with(value)))
}

/// Which export to run.
enum Op {
    Describe,
    Call { ctx: CallContext, input: String },
    Reconcile { ctx: CallContext, input: String },
}

/// What the export returned.
enum Done {
    Describe(Metadata),
    Call(Result<String, ToolError>),
    Reconcile(Option<Result<Reconciliation, ToolError>>),
}

async fn execute(
    engine: &Engine,
    pre: &ToolPre<HostState>,
    limits: &Limits,
    grants: &Grants<'_>,
    egress: &EgressOptions,
    op: Op,
) -> Result<Finished<Done>, CallError> {
    let state = HostState::new(
        limits,
        grants.policy,
        grants.dirs,
        egress,
        grants.forward.clone(),
    )
    .map_err(CallError::CapabilityDenied)?;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.memory);
    // Fails only on an engine without fuel, which `engine::build` never makes.
    store
        .set_fuel(limits.fuel)
        .map_err(|e| CallError::Internal(format!("set fuel: {e}")))?;
    // Past the deadline, stop; before it, yield to tokio once per tick so a
    // spinning guest shares its executor thread.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        if Instant::now() >= ctx.data().deadline {
            ctx.data_mut().timed_out = true;
            return Err(wasmtime::Error::msg("deadline exceeded"));
        }
        Ok(UpdateDeadline::Yield(1))
    });

    let started = Instant::now();
    // The outer timeout also covers time the guest spends in host calls
    // (sleeps, I/O), which epochs cannot interrupt.
    let outcome = {
        let store = &mut store;
        let work = async move {
            let tool = pre.instantiate(&mut *store).await?;
            match op {
                Op::Describe => tool.describe(&mut *store).await.map(Done::Describe),
                Op::Call { ctx, input } => {
                    tool.call(&mut *store, &ctx, &input).await.map(Done::Call)
                }
                Op::Reconcile { ctx, input } => tool
                    .reconcile(&mut *store, &ctx, &input)
                    .await
                    .map(Done::Reconcile),
            }
        };
        tokio::time::timeout(limits.timeout, work).await
    };
    let duration = started.elapsed();
    let fuel_left = store.get_fuel().unwrap_or(0);
    let data = store.data();
    // What the host refused or cut off fails the call whatever the tool did
    // next: it may have caught the error and returned normally. A denied
    // request comes first: it is the policy speaking, and what the tool did
    // after it (flood its log, time out) is a consequence.
    if let Some(e) = host_recorded(data, limits, grants) {
        return Err(e);
    }
    let value = match outcome {
        Err(_elapsed) => return Err(timeout(limits)),
        Ok(Ok(value)) => value,
        Ok(Err(e)) => return Err(classify(data, limits, &e)),
    };
    Ok(Finished {
        value,
        fuel_used: limits.fuel.saturating_sub(fuel_left),
        duration,
        stdout: data.stdout.text(),
        stderr: data.stderr.text(),
    })
}

fn timeout(limits: &Limits) -> CallError {
    CallError::Timeout {
        ms: limits.timeout.as_millis() as u64,
    }
}

/// Names what stopped a call: the audit of every error wasmtime and WASI can
/// raise while a guest runs. Each maps to a design kind with a readable
/// message; the wasm backtrace, if any, goes to the debug log, never into
/// the message. `internal` is left for what only a host bug can cause.
///
/// | what happened | kind |
/// |---|---|
/// | the epoch callback saw the deadline pass | `timeout` |
/// | the limiter refused a memory or table (growth or initial size) | `memory_limit` |
/// | `Trap::OutOfFuel` | `out_of_fuel` |
/// | `Trap::Interrupt` (an epoch deadline without our flag) | `timeout` |
/// | any other [`Trap`] (unreachable, stack overflow, out-of-bounds access, integer overflow, division by zero, a bad indirect call, a component entered twice...) | `trap` |
/// | `wasi:cli/exit` ([`I32Exit`]) | `tool_failed`, "the tool exited with status n" |
/// | the pool is out of slots ([`PoolConcurrencyLimitError`]): the semaphore should make this impossible | `internal` |
/// | anything else raised while lifting the guest's values or serving its host calls: invalid UTF-8, a pointer or length outside its memory, a bad variant discriminant, an unknown or misused resource handle | `trap`, "the tool broke the component ABI: ..." |
///
/// The flags the host set while the call ran are more precise than the trap
/// they caused (a refused `memory.grow` surfaces as Rust's abort), so they
/// come first.
fn classify(state: &HostState, limits: &Limits, e: &wasmtime::Error) -> CallError {
    tracing::debug!(error = ?e, "a call stopped");
    if state.timed_out {
        return timeout(limits);
    }
    if state.memory.hit() {
        return CallError::MemoryLimit {
            limit_mb: limits.memory_bytes >> 20,
        };
    }
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return CallError::ToolFailed(format!(
            "the tool exited with status {} instead of returning a result",
            exit.0
        ));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallError::OutOfFuel { limit: limits.fuel },
        Some(Trap::Interrupt) => timeout(limits),
        Some(trap) => {
            let mut msg = match trap {
                Trap::StackOverflow => format!(
                    "wasm trap: call stack exhausted (the stack is limited to {} KiB)",
                    super::limits::MAX_WASM_STACK >> 10
                ),
                other => other.to_string(),
            };
            if let Some(panic) = panic_message(&state.stderr.text()) {
                msg = format!("{msg}; the tool panicked: {panic}");
            }
            CallError::Trap(msg)
        }
        None if e.is::<PoolConcurrencyLimitError>() => {
            CallError::Internal(format!("the instance pool is exhausted: {e}"))
        }
        // Not a trap, yet raised while the guest ran: the canonical ABI or a
        // host call refused what the guest handed it. The root cause is the
        // readable part; the context chain holds the backtrace.
        None => CallError::Trap(format!(
            "the tool broke the component ABI: {}",
            e.root_cause()
        )),
    }
}

/// Refusals the host recorded while the call ran: an outgoing request the
/// policy denied, a response body over its cap, a log over its cap.
fn host_recorded(state: &HostState, limits: &Limits, grants: &Grants<'_>) -> Option<CallError> {
    let egress = state.egress.record();
    if let Some(why) = egress.denied() {
        let hint = match grants.tool {
            Some(tool) => format!(
                "; to allow it, add the host to `allow_hosts` under `[tools.{tool}]` in the config"
            ),
            None => String::new(),
        };
        return Some(CallError::CapabilityDenied(format!("{why}{hint}")));
    }
    if let Some(why) = egress.body_overflow() {
        return Some(CallError::OutputTooLarge(why));
    }
    [("stdout", &state.stdout), ("stderr", &state.stderr)]
        .into_iter()
        .find(|(_, log)| log.overflowed())
        .map(|(name, _)| {
            CallError::OutputTooLarge(format!(
                "the tool wrote more than {} bytes to {name}",
                limits.max_log_bytes
            ))
        })
}

/// The message of a Rust panic from its stderr report, if there is one.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let report = &stderr[start..];
    // "panicked at src/lib.rs:3:5:\nthe message\nnote: ..."
    let message: Vec<&str> = report
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("note: "))
        .collect();
    let message = message.join("\n");
    Some(if message.is_empty() {
        report.lines().next()?.to_string()
    } else {
        message
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a tool wrote to stderr, reading a panic out of it never
        /// panics.
        #[test]
        fn arbitrary_stderr_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = panic_message(&text);
            let _ = panic_message(&format!("x panicked at {text}"));
        }

        /// Whatever error a tool returned, it maps to its kind.
        #[test]
        fn arbitrary_tool_errors_map_to_their_kind(text in proptest::prelude::any::<String>(), which in 0u8..3) {
            let (e, want) = match which {
                0 => (ToolError::InvalidInput(text.clone()), super::super::ErrorKind::InvalidInput),
                1 => (ToolError::Transient(text.clone()), super::super::ErrorKind::ToolTransient),
                _ => (ToolError::Failed(text.clone()), if text.starts_with(CAPABILITY_DENIED_PREFIX) {
                    super::super::ErrorKind::CapabilityDenied
                } else {
                    super::super::ErrorKind::ToolFailed
                }),
            };
            proptest::prop_assert_eq!(tool_error(e).kind(), want);
        }
    }

    #[test]
    fn panic_messages_are_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("boom"));
        assert_eq!(panic_message("nothing here"), None);
    }
}

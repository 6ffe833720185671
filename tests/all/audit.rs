//! The guest-reachable error audit: every failure a tool can cause ends in a
//! named design kind with a readable message, never `internal`. One test per
//! failure; the `misbehave` tool breaks the rules the SDK would keep.
//! (Fuel, timeouts, memory, stack, output and log caps, panics and denied
//! capabilities are driven by the other hostile tools in `hostile.rs`; the
//! last test here runs all of them once more and checks none is `internal`.)

use serde_json::json;
use toolhost::sandbox::{CallError, ErrorKind, Overrides};

use crate::support::{call, call_with, hostile};

async fn misbehave(mode: &str) -> CallError {
    let input = json!({ "mode": mode }).to_string();
    let err = call(hostile(), "misbehave", &input)
        .await
        .expect_err("misbehave always fails");
    // The host still serves a normal call afterwards.
    let out = call(hostile(), "echo", r#"{"message":"after"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["message"], "after");
    err
}

/// A readable message: one line of prose, no wasm backtrace.
fn readable(err: &CallError) {
    let text = err.to_string();
    assert!(!text.contains("wasm backtrace"), "{text}");
    assert!(!text.contains("\n    "), "{text}");
}

#[tokio::test]
async fn exit_with_a_status_is_tool_failed() {
    let err = misbehave("exit_non_zero").await;
    assert_eq!(err.kind(), ErrorKind::ToolFailed, "{err}");
    // WASI 0.2's exit carries only ok/err, so 3 arrives as 1.
    assert!(err.to_string().contains("exited with status 1"), "{err}");
    readable(&err);
}

#[tokio::test]
async fn exit_zero_before_returning_is_tool_failed() {
    let err = misbehave("exit_zero").await;
    assert_eq!(err.kind(), ErrorKind::ToolFailed, "{err}");
    assert!(err.to_string().contains("exited with status 0"), "{err}");
    readable(&err);
}

#[tokio::test]
async fn unreachable_is_a_trap() {
    let err = misbehave("unreachable").await;
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    readable(&err);
}

#[tokio::test]
async fn a_result_that_is_not_utf8_is_a_trap() {
    let err = misbehave("bad_utf8").await;
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert!(err.to_string().contains("component ABI"), "{err}");
    readable(&err);
}

#[tokio::test]
async fn a_forged_resource_handle_is_a_trap() {
    let err = misbehave("forged_handle").await;
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert!(err.to_string().contains("handle"), "{err}");
    readable(&err);
}

#[tokio::test]
async fn a_result_that_is_not_json_is_tool_failed() {
    let err = misbehave("not_json").await;
    assert_eq!(err.kind(), ErrorKind::ToolFailed, "{err}");
    assert!(err.to_string().contains("invalid JSON"), "{err}");
}

#[tokio::test]
async fn an_initial_memory_over_the_limit_is_memory_limit() {
    // Every Rust tool starts with more than 1 MiB of memory (stack and
    // data): instantiation itself is refused, and says why.
    let overrides = Overrides {
        memory_mb: Some(1),
        ..Overrides::default()
    };
    let err = call_with(hostile(), "echo", r#"{"message":"x"}"#, overrides)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryLimit, "{err}");
    readable(&err);
}

#[tokio::test]
async fn no_hostile_tool_ends_in_internal() {
    let quick = Overrides {
        fuel: Some(50_000_000),
        timeout_ms: Some(2_000),
        memory_mb: Some(16),
    };
    let cases: &[(&str, &str)] = &[
        ("spin", "{}"),
        ("membomb", "{}"),
        ("recurse", "{}"),
        ("bigout", "{}"),
        ("flood", "{}"),
        ("panic", "{}"),
        ("snoop", r#"{"path":"/etc/passwd"}"#),
        ("misbehave", r#"{"mode":"exit_zero"}"#),
        ("misbehave", r#"{"mode":"exit_non_zero"}"#),
        ("misbehave", r#"{"mode":"unreachable"}"#),
        ("misbehave", r#"{"mode":"bad_utf8"}"#),
        ("misbehave", r#"{"mode":"forged_handle"}"#),
        ("misbehave", r#"{"mode":"not_json"}"#),
        ("misbehave", r#"{"mode":"no_such_mode"}"#),
    ];
    for (tool, input) in cases {
        let err = call_with(hostile(), tool, input, quick).await.unwrap_err();
        assert_ne!(err.kind(), ErrorKind::Internal, "{tool} {input}: {err}");
        readable(&err);
    }
}

/// `memory_mb` bounds the sum of a call's memories: `twomem` grows each of
/// its two memories by 40 MiB, which a per-memory limit of 64 MiB would let
/// through twice.
#[tokio::test]
async fn two_memories_share_one_limit() {
    let limit = |mb| Overrides {
        memory_mb: Some(mb),
        ..Overrides::default()
    };
    let err = call_with(hostile(), "twomem", "{}", limit(64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryLimit, "{err}");
    assert!(err.to_string().contains("64 MiB"), "{err}");
    // With room for both, the same component runs: the limit, not the
    // component, stopped it.
    let out = call_with(hostile(), "twomem", "{}", limit(128))
        .await
        .unwrap();
    assert_eq!(out.output["grown_mb"], 80);
}

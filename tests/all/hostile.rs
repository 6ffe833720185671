//! Tools that attack the sandbox. Each one gets its typed error, within its
//! limit plus a small margin, and afterwards the same host serves a normal
//! call correctly.

use std::time::{Duration, Instant};

use serde_json::json;
use toolhost::sandbox::{CallError, ErrorKind, Overrides};

use crate::support::{call, call_with, hostile};

/// Slack for scheduling and teardown on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(500);

async fn attack(tool: &str, overrides: Overrides) -> (CallError, Duration) {
    let sandbox = hostile(); // Loading is not part of the call's time.
    let start = Instant::now();
    let result = call_with(sandbox, tool, "{}", overrides).await;
    let elapsed = start.elapsed();
    let err = result.expect_err("a hostile tool must fail");
    (err, elapsed)
}

/// The host still works after an attack.
async fn still_serves() {
    let out = call(hostile(), "echo", r#"{"message":"still here"}"#)
        .await
        .unwrap();
    assert_eq!(out.output, json!({"message": "still here"}));
}

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel() {
    let overrides = Overrides {
        fuel: Some(50_000_000),
        ..Overrides::default()
    };
    let (err, elapsed) = attack("spin", overrides).await;
    assert_eq!(err.kind(), ErrorKind::OutOfFuel, "{err}");
    assert!(err.to_string().contains("50000000"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    still_serves().await;
}

#[tokio::test]
async fn an_infinite_loop_with_fuel_to_spare_times_out() {
    let overrides = Overrides {
        fuel: Some(u64::MAX / 2),
        timeout_ms: Some(300),
        ..Overrides::default()
    };
    let (err, elapsed) = attack("spin", overrides).await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        elapsed >= Duration::from_millis(300),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(300) + MARGIN,
        "took {elapsed:?}"
    );
    still_serves().await;
}

#[tokio::test]
async fn a_long_host_call_times_out_too() {
    // `slow` sleeps in a host call, where epochs cannot reach: the outer
    // deadline must.
    let sandbox = crate::support::examples();
    let overrides = Overrides {
        timeout_ms: Some(200),
        ..Overrides::default()
    };
    let start = Instant::now();
    let err = call_with(sandbox, "slow", r#"{"ms":5000}"#, overrides)
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // The guest asked the host to sleep 5 s: ending well before that proves
    // the outer deadline cut the host call. The window also holds the first
    // load of `slow` from the artifact cache, which a parallel suite on two
    // cores has been seen to stretch past a second, so the slack is wider
    // than `MARGIN`; it stays far below the 5 s the call would otherwise take.
    assert!(
        elapsed < Duration::from_millis(200) + Duration::from_millis(2_300),
        "took {elapsed:?}"
    );
    still_serves().await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let overrides = Overrides {
        memory_mb: Some(16),
        ..Overrides::default()
    };
    let (err, elapsed) = attack("membomb", overrides).await;
    assert_eq!(err.kind(), ErrorKind::MemoryLimit, "{err}");
    assert!(err.to_string().contains("16 MiB"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    still_serves().await;
}

#[tokio::test]
async fn deep_recursion_traps_on_the_stack_limit() {
    let (err, elapsed) = attack("recurse", Overrides::default()).await;
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert!(err.to_string().contains("call stack exhausted"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    still_serves().await;
}

#[tokio::test]
async fn a_huge_result_is_output_too_large() {
    let (err, _) = attack("bigout", Overrides::default()).await;
    assert_eq!(err.kind(), ErrorKind::OutputTooLarge, "{err}");
    assert!(err.to_string().contains("1048576"), "{err}");
    still_serves().await;
}

#[tokio::test]
async fn a_stdout_flood_is_output_too_large() {
    let (err, _) = attack("flood", Overrides::default()).await;
    assert_eq!(err.kind(), ErrorKind::OutputTooLarge, "{err}");
    assert!(err.to_string().contains("stdout"), "{err}");
    still_serves().await;
}

#[tokio::test]
async fn a_panic_is_a_trap_with_the_panic_message() {
    let (err, _) = attack("panic", Overrides::default()).await;
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert!(err.to_string().contains("panicked on purpose"), "{err}");
    still_serves().await;
}

#[tokio::test]
async fn reading_etc_passwd_is_capability_denied() {
    let (err, _) = attack("snoop", Overrides::default()).await;
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    assert!(!err.to_string().contains("root:"), "leaked: {err}");
    still_serves().await;
}

#[tokio::test]
async fn a_component_of_another_world_is_skipped_not_loaded() {
    assert!(hostile().tool("otherworld").is_none());
    let error = hostile()
        .load_errors()
        .iter()
        .find(|e| e.path.ends_with("otherworld.wasm"))
        .expect("otherworld is reported");
    assert!(error.reason.contains("toolhost:tool"), "{error}");
}

/// Grants open exactly what they name: a granted variable and directory are
/// visible, nothing else is, and `..` cannot climb out of the directory.
#[tokio::test]
async fn grants_open_only_what_they_name() {
    use std::collections::BTreeMap;
    use toolhost::config::{DirGrant, DirMode, ToolPolicy};
    use toolhost::sandbox::{Sandbox, SandboxOptions};

    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("note.txt"), "granted").unwrap();
    let policy = ToolPolicy {
        dirs: vec![DirGrant {
            host: data.path().to_path_buf(),
            guest: "/data".into(),
            mode: DirMode::Ro,
        }],
        // PATH is set in every test environment; HOME may be too, unlisted.
        env: vec!["PATH".into()],
        ..ToolPolicy::default()
    };
    let mut options = SandboxOptions::for_dir(crate::support::hostile_dir());
    options.cache_dir =
        Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
    options.policies = BTreeMap::from([("snoop".to_string(), policy)]);
    let sandbox = Sandbox::open(options).await.unwrap();

    let out = call(&sandbox, "snoop", r#"{"path":"/data/note.txt"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["contents"], "granted");
    let env: Vec<String> = serde_json::from_value(out.output["env"].clone()).unwrap();
    assert_eq!(env.len(), 1, "{env:?}");
    assert!(env[0].starts_with("PATH="), "{env:?}");

    for escape in [
        "/data/../etc/passwd",
        "/data/../../../../etc/passwd",
        "/etc/passwd",
    ] {
        let input = json!({ "path": escape }).to_string();
        let err = call(&sandbox, "snoop", &input).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::CapabilityDenied | ErrorKind::ToolFailed
            ),
            "{escape}: {err}"
        );
        assert!(!err.to_string().contains("root:"), "{escape} leaked: {err}");
    }

    // Without a policy there is no /data: the same read is denied.
    let out = call(hostile(), "snoop", r#"{"path":"/data/note.txt"}"#)
        .await
        .unwrap_err();
    assert_eq!(out.kind(), ErrorKind::CapabilityDenied);
}

/// Raw sockets are off for every tool: a TCP connect to a listening
/// loopback port fails, and the listener never sees a connection.
#[tokio::test]
async fn raw_sockets_are_off() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let input = json!({ "addr": addr.to_string() }).to_string();
    let err = call(hostile(), "dialer", &input).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    still_serves().await;
}

/// The pool reuses memory slots and, where the kernel can scan for touched
/// pages, keeps them resident between calls (`sandbox/engine.rs`): a reused
/// slot must still read as zero. With one call slot every call reuses the
/// same memory; each one plants a secret in a zero-initialised static and in
/// pages it grows, and the next finds none of it.
#[tokio::test]
async fn a_reused_memory_slot_reads_as_zero_to_the_next_call() {
    use toolhost::sandbox::{Sandbox, SandboxOptions};
    let mut options = SandboxOptions::for_dir(crate::support::hostile_dir());
    options.only = Some(["residue".to_string()].into());
    options.max_concurrent_calls = 1;
    let sandbox = Sandbox::open(options).await.unwrap();
    for i in 0..20 {
        let out = call(&sandbox, "residue", r#"{"plant":"secret-residue"}"#)
            .await
            .unwrap();
        assert_eq!(
            out.output,
            json!({"static_nonzero": 0, "grown_nonzero": 0, "grew": true}),
            "call {i} found what an earlier call left"
        );
    }
    assert_eq!(sandbox.runs(), 20);
}

//! The example tools through the whole host: schema checks, outputs, the
//! call context, parallelism, and an executor that is never blocked.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use toolhost::sandbox::{CallError, ErrorKind, Overrides, Sandbox, SandboxOptions};

use crate::support::{call, call_with, examples, hostile_dir};

#[tokio::test]
async fn calc_evaluates() {
    let out = call(examples(), "calc", r#"{"expr":"2*(3+4)"}"#)
        .await
        .unwrap();
    assert_eq!(out.output, json!({"value": 14}));
    assert!(out.fuel_used > 0);
}

#[tokio::test]
async fn jq_runs_filters() {
    let input = json!({"filter": ".a[1]", "input": {"a": [1, {"b": true}]}}).to_string();
    let out = call(examples(), "jq", &input).await.unwrap();
    assert_eq!(out.output, json!({"results": [{"b": true}]}));
}

#[tokio::test]
async fn markdown_renders() {
    let out = call(examples(), "markdown", r##"{"markdown":"# hi"}"##)
        .await
        .unwrap();
    assert_eq!(out.output, json!({"html": "<h1>hi</h1>\n"}));
}

#[tokio::test]
async fn slow_sleeps_by_the_clock() {
    let start = Instant::now();
    let out = call(examples(), "slow", r#"{"ms":50}"#).await.unwrap();
    assert_eq!(out.output, json!({"slept_ms": 50}));
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn schema_violations_name_the_path_before_the_tool_runs() {
    let err = call(examples(), "calc", r#"{"expr":5}"#).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("/expr"), "{err}");

    let err = call(examples(), "calc", r#"{}"#).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("expr"), "{err}");

    let input = json!({"filter": ".", "input": 1, "extra": 2}).to_string();
    let err = call(examples(), "jq", &input).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn bad_json_is_invalid_input() {
    for bad in ["", "{", "not json", r#"{"expr": "1"} trailing"#] {
        let err = call(examples(), "calc", bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        assert!(err.to_string().contains("not I-JSON"), "{err}");
    }
}

#[tokio::test]
async fn the_tool_can_refuse_input_too() {
    let err = call(examples(), "calc", r#"{"expr":"2*("}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = call(examples(), "calc", r#"{"expr":"1/0"}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ToolFailed);
}

#[tokio::test]
async fn unknown_tools_list_what_is_loaded() {
    let err = call(examples(), "nope", "{}").await.unwrap_err();
    let CallError::UnknownTool { known, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(known.contains(&"calc".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_parallel_calls_all_return_correct_results() {
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        tasks.push(tokio::spawn(async move {
            let (tool, input, expected) = match i % 4 {
                0 => (
                    "calc",
                    json!({"expr": format!("{i}*{i}")}),
                    json!({"value": i * i}),
                ),
                1 => (
                    "echo",
                    json!({"message": format!("m{i}")}),
                    json!({"message": format!("m{i}")}),
                ),
                2 => (
                    "jq",
                    json!({"filter": ".n + 1", "input": {"n": i}}),
                    json!({"results": [i + 1]}),
                ),
                _ => ("slow", json!({"ms": 20}), json!({"slept_ms": 20})),
            };
            let out = call(examples(), tool, &input.to_string()).await;
            (tool, out.map(|o| o.output), expected)
        }));
    }
    for task in tasks {
        let (tool, got, expected) = task.await.unwrap();
        assert_eq!(got.unwrap(), expected, "{tool}");
    }
}

/// A spinning guest yields to tokio every epoch tick, so even on a
/// single-threaded runtime other tasks keep running while it spins.
///
/// No wall-clock bound: this task's turns are counted while the guest is
/// known to be running. The sandbox is this test's own, so its epoch ticker
/// (which ticks only while a call runs) counts this call alone. A guest
/// that never yielded would hold the thread until its timeout, and the
/// spin would be finished by this task's next turn. (A yield lets this
/// task run only when tokio next polls its driver, every 61 polls of the
/// spinning task, one epoch each: a turn can take a second on a loaded
/// machine, hence the long timeout.)
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_tool_does_not_block_the_executor() {
    let mut options = SandboxOptions::for_dir(hostile_dir());
    options.only = Some(["spin".to_string()].into());
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    options.key_dir = Some(cache.with_extension("key"));
    options.cache_dir = Some(cache);
    let sandbox: &'static Sandbox = Box::leak(Box::new(Sandbox::open(options).await.unwrap()));
    let spin = tokio::spawn(call_with(
        sandbox,
        "spin",
        "{}",
        Overrides {
            fuel: Some(u64::MAX / 2),
            timeout_ms: Some(60_000),
            ..Overrides::default()
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while sandbox.ticks() < 3 {
        assert!(!spin.is_finished(), "the spin ended before it ran");
        assert!(Instant::now() < deadline, "the spin never started");
        tokio::task::yield_now().await;
    }
    // The guest is spinning; each of these turns comes after it yielded.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert!(
        !spin.is_finished(),
        "the spin held the thread until it ended"
    );
    // Dropping the call stops the guest at its next yield.
    spin.abort();
    assert!(spin.await.unwrap_err().is_cancelled());
}

//! The rmcp client over streamable HTTP: listing, calling, failures, the
//! cache in `/metrics`, many clients at once, cancellation and back-pressure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::ProtocolVersion;
use serde_json::json;
use tokio::sync::Barrier;

use super::harness::{
    Harness, Options, Raw, WAIT, assert_samples, call, error_kind, idempotency_meta, meta, output,
    params, sample, start_call, text,
};

#[tokio::test]
async fn lists_every_tool_with_hints_from_its_effect() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("toolhost")
    );
    assert_eq!(
        info.protocol_version,
        ProtocolVersion::LATEST_WITH_INITIALIZE
    );
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names.len(), super::harness::TOOLS.len(), "{names:?}");
    let find = |n: &str| tools.iter().find(|t| t.name == n).unwrap().clone();
    let hints = |n: &str| {
        let a = find(n).annotations.expect("annotations");
        (
            a.read_only_hint,
            a.idempotent_hint,
            a.destructive_hint,
            a.open_world_hint,
        )
    };
    let (t, f) = (Some(true), Some(false));
    assert_eq!(hints("calc"), (t, t, f, f), "pure");
    assert_eq!(
        hints("http_fetch"),
        (t, t, f, t),
        "read-only, with allow_hosts"
    );
    assert_eq!(hints("notes"), (f, f, t, f), "side-effecting");
    assert_eq!(hints("append"), (f, f, t, f), "side-effecting");
    let calc = find("calc");
    assert_eq!(calc.input_schema["type"], "object");
    assert!(calc.input_schema["properties"]["expr"].is_object());
    let out = calc.output_schema.expect("calc declares its output");
    assert!(out["properties"]["value"].is_object());
    assert!(calc.description.unwrap().len() > 3);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn calls_every_example_tool() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;

    let calc = call(&client, "calc", json!({"expr": "2*(3+4)"})).await;
    assert_eq!(output(&calc), json!({"value": 14}));
    assert_eq!(calc.structured_content, Some(json!({"value": 14})));
    assert_eq!(meta(&calc, "toolhost/cached"), json!(false));

    let jq = call(
        &client,
        "jq",
        json!({"filter": ".a[1]", "input": {"a": [1, 2]}}),
    )
    .await;
    assert_eq!(output(&jq), json!({"results": [2]}));
    let md = call(&client, "markdown", json!({"markdown": "# hi"})).await;
    assert_eq!(output(&md), json!({"html": "<h1>hi</h1>\n"}));
    let slow = call(&client, "slow", json!({"ms": 5})).await;
    assert_eq!(output(&slow), json!({"slept_ms": 5}));
    let echo = call(&client, "echo", json!({"message": "hello"})).await;
    assert_eq!(output(&echo), json!({"message": "hello"}));

    let notes = call(
        &client,
        "notes",
        json!({"file": "log.txt", "text": "over mcp"}),
    )
    .await;
    output(&notes);
    let key = meta(&notes, "toolhost/key");
    let log = std::fs::read_to_string(h.data.path().join("log.txt")).unwrap();
    assert_eq!(log, format!("{} over mcp\n", key.as_str().unwrap()));

    let url = h.site.url("/hello");
    let fetched = call(&client, "http_fetch", json!({"url": url})).await;
    assert_eq!(
        output(&fetched),
        json!({"status": 200, "body": "hello from loopback"})
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn failures_are_tool_results_with_their_kind() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let cases = [
        ("spin", json!({}), "out_of_fuel"),
        ("membomb", json!({}), "memory_limit"),
        ("panic", json!({}), "trap"),
        ("flood", json!({}), "output_too_large"),
        ("calc", json!({"expr": 7}), "invalid_input"),
        (
            "http_fetch",
            json!({"url": "http://example.com/"}),
            "capability_denied",
        ),
    ];
    for (tool, input, kind) in cases {
        let result = call(&client, tool, input).await;
        assert_eq!(error_kind(&result), kind, "{tool}: {}", text(&result));
    }
    // An unknown tool cannot be routed: a JSON-RPC error, not a result.
    let unknown = client.call_tool(params("nope", json!({}))).await;
    let Err(rmcp::ServiceError::McpError(e)) = unknown else {
        panic!("expected a protocol error, got {unknown:?}");
    };
    assert_eq!(e.code.0, -32602);
    assert!(
        e.message.contains("no tool named `nope` is loaded"),
        "{e:?}"
    );
    // The same kind name as `toolhost call` and agent runs (issue 12).
    assert_eq!(
        e.data.as_ref().map(|d| d["kind"].clone()),
        Some(json!("unknown_tool"))
    );
    // The host outlived them all.
    let echo = call(&client, "echo", json!({"message": "still here"})).await;
    assert_eq!(output(&echo), json!({"message": "still here"}));
    assert_samples(
        &h.metrics().await,
        &[
            (
                r#"toolhost_tool_errors_total{tool="spin",kind="out_of_fuel"}"#,
                1.0,
            ),
            (
                r#"toolhost_tool_errors_total{tool="_unknown",kind="unknown_tool"}"#,
                1.0,
            ),
        ],
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_repeated_pure_call_is_a_cache_hit_in_metrics() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let input = json!({"expr": "6*7"});
    let first = call(&client, "calc", input.clone()).await;
    let second = call(&client, "calc", input).await;
    assert_eq!(meta(&first, "toolhost/cached"), json!(false));
    assert_eq!(meta(&second, "toolhost/cached"), json!(true));
    assert_eq!(output(&second), json!({"value": 42}));
    assert_eq!(meta(&first, "toolhost/key"), meta(&second, "toolhost/key"));

    let page = h.metrics().await;
    let tool = r#"{tool="calc"}"#;
    assert_samples(
        &page,
        &[
            (&format!("toolhost_cache_hits_total{tool}"), 1.0),
            (&format!("toolhost_cache_misses_total{tool}"), 1.0),
            (
                r#"toolhost_tool_calls_total{tool="calc",outcome="ok"}"#,
                2.0,
            ),
            (
                &format!("toolhost_tool_call_duration_seconds_count{tool}"),
                2.0,
            ),
            ("toolhost_calls_in_flight", 0.0),
            ("toolhost_max_concurrent_calls", 64.0),
        ],
    );
    assert!(sample(&page, &format!("toolhost_tool_fuel_used_total{tool}")) > 0.0);
    assert!(page.ends_with("# EOF\n"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_meta_idempotency_key_is_the_explicit_key() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let keyed = |message: &str| {
        let mut p = params("echo", json!({"message": message}));
        p.meta = Some(idempotency_meta("order-7"));
        p
    };
    let first = client.call_tool(keyed("a")).await.unwrap();
    let plain = call(&client, "echo", json!({"message": "a"})).await;
    assert_ne!(
        meta(&first, "toolhost/key"),
        meta(&plain, "toolhost/key"),
        "the explicit key is part of the idempotency key"
    );
    let again = client.call_tool(keyed("a")).await.unwrap();
    assert_eq!(meta(&again, "toolhost/cached"), json!(true));
    let conflict = client.call_tool(keyed("b")).await.unwrap();
    assert_eq!(error_kind(&conflict), "key_conflict");
    client.cancel().await.unwrap();
}

/// Twenty clients, each in its own session, call at the same moment (a
/// barrier), while one more runs a slow call: every client gets its own
/// answer, and none waits for the slow one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_clients_get_their_own_results() {
    const CLIENTS: usize = 20;
    let h = Arc::new(Harness::start(Options::default()).await);
    let slow_client = h.client().await;
    let slow = tokio::spawn(async move {
        let out = call(&slow_client, "slow", json!({"ms": 5000})).await;
        slow_client.cancel().await.unwrap();
        out
    });
    h.wait_in_flight(1).await;

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (h, barrier) = (h.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let client = h.client().await;
            barrier.wait().await;
            let started = Instant::now();
            let message = format!("client {i}");
            let result = call(&client, "echo", json!({"message": message})).await;
            let elapsed = started.elapsed();
            client.cancel().await.unwrap();
            (output(&result), message, elapsed)
        }));
    }
    for task in tasks {
        let (out, message, elapsed) = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!(out, json!({"message": message}));
        assert!(elapsed < Duration::from_secs(4), "waited {elapsed:?}");
    }
    assert!(
        !slow.is_finished(),
        "the slow call outlasted every fast one"
    );
    let slow = tokio::time::timeout(WAIT, slow).await.unwrap().unwrap();
    assert_eq!(output(&slow), json!({"slept_ms": 5000}));
}

/// With one slot, a second call is refused as `overloaded` while the first
/// runs; cancelling the first (`notifications/cancelled`) frees the slot at
/// once, long before the tool would have finished.
#[tokio::test]
async fn a_cancelled_call_frees_its_slot() {
    let h = Harness::start(Options {
        max_calls: 1,
        ..Options::default()
    })
    .await;
    let client = h.client().await;
    let started = Instant::now();
    let handle = start_call(&client, "slow", json!({"ms": 8000})).await;
    h.wait_in_flight(1).await;

    let refused = call(&client, "echo", json!({"message": "busy?"})).await;
    assert_eq!(error_kind(&refused), "overloaded");
    assert!(text(&refused).contains("max_concurrent_calls"));

    handle
        .cancel(Some("the user gave up".into()))
        .await
        .unwrap();
    h.wait_in_flight(0).await;
    let echo = call(&client, "echo", json!({"message": "free again"})).await;
    assert_eq!(output(&echo), json!({"message": "free again"}));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    assert_samples(
        &h.metrics().await,
        &[
            (
                r#"toolhost_tool_calls_total{tool="slow",outcome="cancelled"}"#,
                1.0,
            ),
            (
                r#"toolhost_tool_errors_total{tool="echo",kind="overloaded"}"#,
                1.0,
            ),
        ],
    );
    client.cancel().await.unwrap();
}

/// A side effect cancelled after it happened is `in_doubt`, as the
/// idempotency contract says, and is never run again on its own.
#[tokio::test]
async fn a_cancelled_side_effect_is_in_doubt() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let input = json!({"file": "effects.txt", "text": "pay", "sleep_ms": 8000});
    let handle = start_call(&client, "append", input.clone()).await;
    let effects = h.data.path().join("effects.txt");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&effects).is_ok_and(|s| s.ends_with("pay\n")) {
        assert!(Instant::now() < deadline, "the effect never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.cancel(None).await.unwrap();
    h.wait_in_flight(0).await;

    let again = call(&client, "append", input).await;
    assert_eq!(error_kind(&again), "in_doubt", "{}", text(&again));
    let lines = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(lines.lines().count(), 1, "the effect ran once: {lines}");
    client.cancel().await.unwrap();
}

/// A client that goes away mid-call (its connection dropped, no
/// cancellation sent) costs the server nothing: the call's slot comes back
/// and other clients are served meanwhile.
#[tokio::test]
async fn a_client_that_disconnects_mid_call_does_not_hurt_the_server() {
    let h = Harness::start(Options::default()).await;
    let raw = Raw::initialize(&h.url(), "2025-06-18").await.0;
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 1500}}});
    let response = raw.post(&body.to_string()).await;
    assert!(response.status().is_success(), "{}", response.status());
    h.wait_in_flight(1).await;
    drop(response);
    drop(raw);
    let other = h.client().await;
    let echo = call(&other, "echo", json!({"message": "meanwhile"})).await;
    assert_eq!(output(&echo), json!({"message": "meanwhile"}));
    h.wait_in_flight(0).await;
    let echo = call(&other, "echo", json!({"message": "after"})).await;
    assert_eq!(output(&echo), json!({"message": "after"}));
    other.cancel().await.unwrap();
}

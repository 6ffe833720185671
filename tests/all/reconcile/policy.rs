//! The `in_doubt` policies against the loopback payment API: a `pay` call
//! goes in doubt for real (its guest is cut off by its timeout while the
//! server holds the POST, or stalls it uncommitted), and the next call of
//! the key, or an operator, resolves it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use toolhost::clock::ManualClock;
use toolhost::config::{InDoubtPolicy, ToolPolicy};
use toolhost::idempotency::{ExecOptions, Executor, Scope};
use toolhost::sandbox::Overrides;
use toolhost::store::CallState;

use crate::idempotency::{World, within};
use crate::support::payments::{Fault, PaymentServer};

/// Long enough for the server to take the POST, short against the hold.
const CUT_MS: u64 = 400;
const HOLD: Duration = Duration::from_secs(3);

fn keyed(key: &str, timeout_ms: Option<u64>) -> ExecOptions {
    ExecOptions {
        scope: Scope::Explicit(key.into()),
        overrides: Overrides {
            timeout_ms,
            ..Overrides::default()
        },
    }
}

async fn pay_executor(
    world: &World,
    server: &PaymentServer,
    policy: ToolPolicy,
    clock: Option<Arc<ManualClock>>,
) -> Executor {
    let mut policy = ToolPolicy {
        allow_hosts: vec![server.host_port()],
        ..policy
    };
    policy.allow_hosts.dedup();
    world
        .executor(
            &crate::support::examples_dir(),
            super::policies(vec![("pay", policy)]),
            clock.map(|c| c as Arc<dyn toolhost::clock::Clock>),
        )
        .await
}

/// A `pay` call of `key` that goes in doubt: the server commits (or, with
/// `Stall`, loses) the POST and holds it past the call's timeout, so the
/// call times out mid-effect (`timeout`) and its row is `in_doubt`.
async fn in_doubt(ex: &Executor, server: &PaymentServer, key: &str, fault: Fault) -> String {
    server.fault(key, fault);
    let err = within(
        30,
        "the call that goes in doubt",
        ex.call("pay", &server.pay_input(key), keyed(key, Some(CUT_MS))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    let row_key = err.key().unwrap().to_string();
    let row = ex.store().get(&row_key).await.unwrap().unwrap();
    assert_eq!(row.state, CallState::InDoubt);
    row_key
}

/// The next call of `reference`'s key, with the default limits.
async fn next_call(
    ex: &Executor,
    server: &PaymentServer,
    reference: &str,
) -> Result<toolhost::idempotency::ExecOutput, toolhost::idempotency::ExecError> {
    let input = server.pay_input(reference);
    let call = ex.call("pay", &input, keyed(reference, None));
    within(30, "the next call", call).await
}

fn on_doubt(policy: InDoubtPolicy) -> ToolPolicy {
    ToolPolicy {
        in_doubt: Some(policy),
        ..ToolPolicy::default()
    }
}

fn gets(server: &PaymentServer) -> usize {
    server.log().iter().filter(|l| l.method == "GET").count()
}

#[tokio::test]
async fn the_next_call_reconciles_a_committed_charge() {
    let (world, server) = (World::new(), PaymentServer::start());
    let ex = pay_executor(&world, &server, ToolPolicy::default(), None).await;
    let key = in_doubt(&ex, &server, "order-1", Fault::Hold(HOLD)).await;
    assert_eq!(server.charges_for("order-1"), 1);
    let out = within(30, "the next call", next_call(&ex, &server, "order-1"))
        .await
        .unwrap();
    assert!(out.reconciled && !out.cached, "{out:?}");
    assert_eq!(out.attempt, 1, "the answer is about the attempt in doubt");
    assert_eq!(out.output["charge_id"], server.charges()[0]["id"]);
    assert_eq!(
        server.charges_for("order-1"),
        1,
        "reconciling charges nothing"
    );
    // The evidence is kept, and the outcome replays, still flagged.
    let row = ex.store().get(&key).await.unwrap().unwrap();
    let r = &row.outcome.as_ref().unwrap().resolutions;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].decider.as_str(), r[0].answer.as_str()),
        ("reconcile", "committed")
    );
    let evidence: Value = serde_json::from_str(&r[0].evidence).unwrap();
    assert_eq!(evidence["charge_id"], out.output["charge_id"]);
    let again = next_call(&ex, &server, "order-1").await.unwrap();
    assert!(again.cached && again.reconciled);
    let counters = ex.store().counters().await.unwrap();
    assert!(
        counters.contains(&("resolutions.reconcile.committed".to_string(), 1)),
        "{counters:?}"
    );
}

#[tokio::test]
async fn not_done_runs_the_call_once_more_with_the_next_attempt() {
    let (world, server) = (World::new(), PaymentServer::start());
    let ex = pay_executor(&world, &server, ToolPolicy::default(), None).await;
    let key = in_doubt(&ex, &server, "order-2", Fault::Stall(HOLD)).await;
    assert_eq!(
        server.charges_for("order-2"),
        0,
        "the stalled POST was lost"
    );
    let out = next_call(&ex, &server, "order-2").await.unwrap();
    assert!(!out.reconciled && !out.cached);
    assert_eq!(out.attempt, 2);
    assert_eq!(server.charges_for("order-2"), 1);
    let row = ex.store().get(&key).await.unwrap().unwrap();
    let r = &row.outcome.as_ref().unwrap().resolutions;
    assert_eq!(r[0].answer, "not_done");
    assert_eq!(r[0].attempt, 1);
}

#[tokio::test]
async fn unknown_stays_in_doubt_and_is_asked_again_only_after_the_backoff() {
    let (world, server) = (World::new(), PaymentServer::start());
    let clock = Arc::new(ManualClock::new());
    let ex = pay_executor(&world, &server, ToolPolicy::default(), Some(clock.clone())).await;
    in_doubt(&ex, &server, "order-3", Fault::Hold(HOLD)).await;
    server.lookups_down(true);
    let input = server.pay_input("order-3");
    let next = || ex.call("pay", &input, keyed("order-3", None));
    let err = next().await.unwrap_err();
    assert_eq!(err.kind(), "in_doubt");
    assert!(err.to_string().contains("could not tell"), "{err}");
    assert_eq!(gets(&server), 1);
    // Within the backoff nobody asks again.
    clock.advance(Duration::from_secs(10));
    let err = next().await.unwrap_err();
    assert_eq!(err.kind(), "in_doubt");
    assert!(err.to_string().contains("asked again"), "{err}");
    assert_eq!(gets(&server), 1);
    // After it, the API answers and the call resolves.
    server.lookups_down(false);
    clock.advance(Duration::from_secs(21));
    let out = next().await.unwrap();
    assert!(out.reconciled);
    assert_eq!(gets(&server), 2);
    assert_eq!(server.charges_for("order-3"), 1);
    let row = ex.store().get(&out.key).await.unwrap().unwrap();
    let answers: Vec<_> = row
        .outcome
        .unwrap()
        .resolutions
        .iter()
        .map(|r| r.answer.clone())
        .collect();
    assert_eq!(answers, ["unknown", "committed"]);
}

#[tokio::test]
async fn retry_with_the_forwarded_key_charges_once() {
    let (world, server) = (World::new(), PaymentServer::start());
    let policy = on_doubt(InDoubtPolicy::Retry);
    let ex = pay_executor(&world, &server, policy, None).await;
    in_doubt(&ex, &server, "order-4", Fault::Hold(HOLD)).await;
    let out = next_call(&ex, &server, "order-4").await.unwrap();
    assert_eq!(out.attempt, 2);
    assert!(!out.reconciled);
    assert_eq!(
        server.charges_for("order-4"),
        1,
        "the API deduped the re-run by its key"
    );
    assert_eq!(out.output["charge_id"], server.charges()[0]["id"]);
    let posts: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].idempotency_key, posts[1].idempotency_key);
    assert_eq!(gets(&server), 0, "retry never asks");
}

#[tokio::test]
async fn stop_keeps_the_call_in_doubt_for_an_operator() {
    let (world, server) = (World::new(), PaymentServer::start());
    let policy = on_doubt(InDoubtPolicy::Stop);
    let ex = pay_executor(&world, &server, policy, None).await;
    let key = in_doubt(&ex, &server, "order-5", Fault::Hold(HOLD)).await;
    let err = next_call(&ex, &server, "order-5").await.unwrap_err();
    assert_eq!(err.kind(), "in_doubt");
    assert_eq!(gets(&server), 0);
    // The operator asks the tool instead.
    let out = ex.reconcile_in_doubt(&key).await.unwrap();
    assert!(out.reconciled);
    assert_eq!(server.charges_for("order-5"), 1);
}

#[tokio::test]
async fn mark_done_checks_the_output_against_the_schema() {
    let (world, server) = (World::new(), PaymentServer::start());
    let policy = on_doubt(InDoubtPolicy::Stop);
    let ex = pay_executor(&world, &server, policy, None).await;
    let key = in_doubt(&ex, &server, "order-6", Fault::Hold(HOLD)).await;
    let err = ex
        .mark_done_in_doubt(&key, r#"{"charge_id": 7}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input", "{err}");
    assert_eq!(
        ex.store().get(&key).await.unwrap().unwrap().state,
        CallState::InDoubt
    );
    let charge = &server.charges()[0];
    let output =
        json!({"charge_id": charge["id"], "amount": 500, "currency": "usd", "status": "succeeded"});
    ex.mark_done_in_doubt(&key, &output.to_string())
        .await
        .unwrap();
    let replay = next_call(&ex, &server, "order-6").await.unwrap();
    assert!(replay.cached);
    assert_eq!(replay.output, output);
    let row = ex.store().get(&key).await.unwrap().unwrap();
    let r = &row.outcome.unwrap().resolutions;
    assert_eq!(
        (r[0].decider.as_str(), r[0].answer.as_str()),
        ("operator", "mark_done")
    );
}

#[tokio::test]
async fn a_010_component_still_goes_in_doubt_and_is_resolved_by_an_operator() {
    let world = World::new();
    let mut policy = world.append_policy();
    policy.timeout_ms = Some(300);
    let ex = world
        .executor(
            &super::testkit_dir(),
            super::policies(vec![("legacy_append", policy)]),
            None,
        )
        .await;
    let slow =
        |text: &str| json!({"file": "legacy.txt", "text": text, "sleep_ms": 5_000}).to_string();
    let mut keys = Vec::new();
    for name in ["v1-retry", "v1-abandon"] {
        let err = ex
            .call(
                "legacy_append",
                &slow(name),
                crate::idempotency::keyed(name),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "timeout", "{err}");
        // The next call does not guess: a 0.1.0 tool cannot reconcile.
        let again = ex
            .call(
                "legacy_append",
                &slow(name),
                crate::idempotency::keyed(name),
            )
            .await
            .unwrap_err();
        assert_eq!(again.kind(), "in_doubt");
        keys.push(err.key().unwrap().to_string());
    }
    assert_eq!(
        ex.reconcile_in_doubt(&keys[0]).await.unwrap_err().kind(),
        "invalid_input"
    );
    // --retry runs it again under its recorded limits: in doubt again (the
    // same sleep), attempt 2, executed twice in all.
    let retried = ex.retry_in_doubt(&keys[0]).await.unwrap_err();
    assert_eq!(retried.kind(), "timeout");
    let row = ex.store().get(&keys[0]).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempt), (CallState::InDoubt, 2));
    assert_eq!(world.executions("legacy.txt", &keys[0]), 2);
    ex.abandon_in_doubt(&keys[1]).await.unwrap();
    let err = ex
        .call(
            "legacy_append",
            &slow("v1-abandon"),
            crate::idempotency::keyed("v1-abandon"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "tool_failed");
    let row = ex.store().get(&keys[1]).await.unwrap().unwrap();
    assert_eq!(row.outcome.unwrap().resolutions[0].answer, "abandon");
}

#[test]
fn cache_resolve_reconcile_and_show_from_the_cli() {
    let server = PaymentServer::start();
    let dir = tempfile::tempdir().unwrap();
    super::write_pay_config(dir.path(), &server, "in_doubt = \"stop\"\n");
    server.fault("order-7", Fault::Hold(HOLD));
    let input = server.pay_input("order-7");
    let run = |args: &[&str]| crate::support::toolhost(dir.path(), args);
    let out = run(&[
        "--json",
        "call",
        "pay",
        "--input",
        &input,
        "--idempotency-key",
        "order-7",
        "--timeout-ms",
        &CUT_MS.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = crate::support::stdout_json(&out);
    assert_eq!(err["error"]["kind"], "timeout", "{err}");
    let key = err["key"].as_str().unwrap().to_string();
    let out = run(&["--json", "cache", "resolve", &key, "--reconcile"]);
    assert!(out.status.success(), "{out:?}");
    let v = crate::support::stdout_json(&out);
    assert_eq!(v["resolved"], "reconciled");
    assert_eq!(v["output"]["charge_id"], server.charges()[0]["id"]);
    let show = run(&["cache", "show", &key]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("committed by reconcile, attempt 1"), "{text}");
    let show = crate::support::stdout_json(&run(&["--json", "cache", "show", &key]));
    assert_eq!(show["outcome"]["resolutions"][0]["decider"], "reconcile");
    let stats = crate::support::stdout_json(&run(&["--json", "stats"]));
    assert_eq!(
        stats["in_doubt_resolutions"]["reconcile.committed"], 1,
        "{stats}"
    );
    assert_eq!(server.charges_for("order-7"), 1);
}

#[tokio::test]
async fn pay_sends_again_after_a_dropped_answer_and_the_api_dedups_it() {
    let (world, server) = (World::new(), PaymentServer::start());
    let ex = pay_executor(&world, &server, ToolPolicy::default(), None).await;
    server.fault("order-8", Fault::Drop);
    let out = next_call(&ex, &server, "order-8").await.unwrap();
    assert_eq!(out.attempt, 1);
    assert_eq!(server.charges_for("order-8"), 1);
    assert_eq!(out.output["charge_id"], server.charges()[0]["id"]);
    let posts: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[0].idempotency_key, posts[1].idempotency_key);
}

//! Side-effecting calls inside one process: claimed before they run, run
//! exactly once per key, the key and attempt handed to the tool. Every wait
//! is bounded (`within`): a regression fails in seconds, never hangs.

use std::sync::Arc;

use serde_json::json;
use toolhost::idempotency::{ExecOptions, Scope};
use toolhost::sandbox::Overrides;

use super::on_both_backends;
use super::{keyed, within};

on_both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_callers_one_effect(world) {
    let ex = Arc::new(world.append_executor().await);
    let input = json!({"file": "log.txt", "text": "hello", "sleep_ms": 50}).to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (ex, input, barrier) = (ex.clone(), input.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ex.call("append", &input, keyed("pay-1")).await
        }));
    }
    let mut outputs = Vec::new();
    for t in tasks {
        outputs.push(within(30, "a caller", t).await.unwrap().unwrap());
    }
    let lines = world.lines("log.txt");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let key = &outputs[0].key;
    assert_eq!(
        lines[0],
        format!("{key} hello"),
        "the tool saw the call's key"
    );
    assert!(
        outputs
            .iter()
            .all(|o| &o.key == key && o.output == json!({"appended": true, "attempt": 1}))
    );
    assert_eq!(
        outputs.iter().filter(|o| !o.cached).count(),
        1,
        "exactly one caller ran it"
    );
    assert_eq!(ex.sandbox().runs(), 1);
    assert_eq!(
        ex.flights_in_progress(),
        0,
        "no flight entry is left behind"
    );
}
}

on_both_backends! {
#[tokio::test]
async fn the_empty_scope_replays_within_the_window(world) {
    let ex = world.append_executor().await;
    let input = json!({"file": "w.txt", "text": "once"}).to_string();
    let call = |opts| ex.call("append", &input, opts);
    let a = within(20, "first call", call(ExecOptions::default()))
        .await
        .unwrap();
    let b = within(20, "second call", call(ExecOptions::default()))
        .await
        .unwrap();
    assert!(!a.cached && b.cached);
    assert_eq!(world.lines("w.txt").len(), 1);
    let fresh = ExecOptions {
        scope: Scope::Fresh,
        ..ExecOptions::default()
    };
    within(20, "a fresh call", call(fresh)).await.unwrap();
    assert_eq!(
        world.lines("w.txt").len(),
        2,
        "--no-cache asks for a new call"
    );
}
}

on_both_backends! {
/// A call that went in doubt under `--timeout-ms` is retried under the
/// limits recorded with its claim (it used to be retried under the
/// config's, or refused because the key had changed).
#[tokio::test]
async fn a_timed_out_side_effect_is_in_doubt_and_retried_under_its_recorded_limits(world) {
    let ex = world.append_executor().await;
    let input = json!({"file": "t.txt", "text": "x", "sleep_ms": 1500}).to_string();
    let opts = ExecOptions {
        scope: Scope::Explicit("slow-1".into()),
        overrides: Overrides {
            timeout_ms: Some(100),
            ..Overrides::default()
        },
    };
    let first = within(
        20,
        "the first call",
        ex.call("append", &input, opts.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(first.kind(), "timeout");
    // The line was written before the timeout: the effect happened, so the
    // call must not run again by itself, whatever limits the caller brings.
    let roomy = ExecOptions {
        overrides: Overrides::default(),
        ..opts.clone()
    };
    let second = within(20, "the second call", ex.call("append", &input, roomy))
        .await
        .unwrap_err();
    assert_eq!(second.kind(), "in_doubt", "{second}");
    assert_eq!(second.key(), first.key(), "limits never enter a key");
    assert_eq!(world.lines("t.txt").len(), 1);
    assert_eq!(ex.sandbox().runs(), 1);

    // An operator retries: attempt 2, under the recorded 100 ms, so it times
    // out again and stays in doubt.
    let key = first.key().unwrap().to_string();
    let retried = within(20, "the retry", ex.retry_in_doubt(&key)).await;
    let e = retried.unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    let row = ex.store().get(&key).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempt), ("in_doubt", 2));
    let lines = world.lines("t.txt");
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.starts_with(&key)));
}
}

on_both_backends! {
#[tokio::test]
async fn an_abandoned_call_fails_for_good(world) {
    let ex = world.append_executor().await;
    let input = json!({"file": "a.txt", "text": "x", "sleep_ms": 2000}).to_string();
    let opts = ExecOptions {
        scope: Scope::Explicit("ab-1".into()),
        overrides: Overrides {
            timeout_ms: Some(50),
            ..Overrides::default()
        },
    };
    let key = within(20, "the call", ex.call("append", &input, opts.clone()))
        .await
        .unwrap_err()
        .key()
        .unwrap()
        .to_string();
    ex.abandon_in_doubt(&key).await.unwrap();
    let e = within(20, "the replay", ex.call("append", &input, opts))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "tool_failed");
    assert!(e.to_string().contains("abandoned"), "{e}");
    assert_eq!(world.lines("a.txt").len(), 1);
    assert!(
        ex.abandon_in_doubt(&key).await.is_err(),
        "only in_doubt calls can be abandoned"
    );
}
}

on_both_backends! {
#[tokio::test]
async fn without_a_grant_the_effect_is_denied_and_recorded(world) {
    let ex = world
        .executor(&crate::idempotency::testkit_dir(), Default::default(), None)
        .await;
    let input = json!({"file": "x.txt", "text": "nope"}).to_string();
    let e = within(20, "the call", ex.call("append", &input, keyed("deny-1")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "capability_denied", "{e}");
    let again = within(20, "the replay", ex.call("append", &input, keyed("deny-1")))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), "capability_denied");
    assert_eq!(ex.sandbox().runs(), 1);
}
}

on_both_backends! {
/// A caller that gives up mid-call (its future is dropped) leaves no claim
/// stuck in `running`: the side-effecting call becomes `in_doubt`, and the
/// next caller learns it as soon as the guard has settled it (it wakes on
/// the store's settle signal; no polling, no sleep).
#[tokio::test]
async fn a_cancelled_caller_leaves_the_call_in_doubt_not_stuck(world) {
    let ex = world.append_executor().await;
    let input = json!({"file": "c.txt", "text": "x", "sleep_ms": 2000}).to_string();
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        ex.call("append", &input, keyed("cancel-1")),
    )
    .await;
    assert!(gave_up.is_err(), "the caller should have timed out");
    let e = within(
        20,
        "the next caller",
        ex.call("append", &input, keyed("cancel-1")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "in_doubt", "{e}");
    assert_eq!(ex.sandbox().runs(), 1);
    assert_eq!(ex.flights_in_progress(), 0);
}
}

on_both_backends! {
/// An idempotent call whose caller was cancelled is released, and the next
/// caller runs it again (attempt 1 of a new claim: re-running is allowed).
#[tokio::test]
async fn a_cancelled_idempotent_call_is_released_and_runs_again(world) {
    let ex = world.append_executor().await;
    let input = json!({"file": "i.txt", "text": "x", "sleep_ms": 1000}).to_string();
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        ex.call("tally", &input, keyed("idem-1")),
    )
    .await;
    assert!(gave_up.is_err());
    let out = within(
        20,
        "the next caller",
        ex.call("tally", &input, keyed("idem-1")),
    )
    .await
    .unwrap();
    assert!(!out.cached);
    assert_eq!(
        world.lines("i.txt").len(),
        2,
        "an idempotent effect may repeat"
    );
}
}

on_both_backends! {
/// A waiter whose own limit passes while another caller holds the claim
/// gets `still_running` (not `timeout`: nothing of its own timed out), and
/// its flight entry does not leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_past_its_limit_gets_still_running(world) {
    let ex = Arc::new(world.append_executor().await);
    let input = json!({"file": "s.txt", "text": "x", "sleep_ms": 2500}).to_string();
    let holder = {
        let (ex, input) = (ex.clone(), input.clone());
        tokio::spawn(async move { ex.call("append", &input, keyed("hold-1")).await })
    };
    // Wait (bounded) until the holder's claim is in the store.
    let key = toolhost::idempotency::effect_key("append", &canonical(&input), "key:hold-1");
    within(20, "the holder's claim", async {
        while ex.store().get(&key).await.unwrap().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
    let impatient = ExecOptions {
        overrides: Overrides {
            timeout_ms: Some(100),
            ..Overrides::default()
        },
        ..keyed("hold-1")
    };
    let e = within(20, "the waiter", ex.call("append", &input, impatient))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "still_running", "{e}");
    assert_eq!(e.key(), Some(key.as_str()));
    let out = within(20, "the holder", holder).await.unwrap().unwrap();
    assert!(!out.cached);
    assert_eq!(world.lines("s.txt").len(), 1);
    assert_eq!(ex.flights_in_progress(), 0);
}
}

on_both_backends! {
/// The same across owners (two stores: another process, or another host on
/// PostgreSQL): the waiter polls the row and the claim's liveness with
/// backoff, gets `still_running` past its limit, and a patient waiter gets
/// the outcome once it is recorded, without running the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_of_another_owner_polls_until_its_limit(world) {
    let holder_ex = Arc::new(world.append_executor().await);
    let waiter_ex = world.append_executor().await;
    assert_ne!(holder_ex.store().owner_id(), waiter_ex.store().owner_id());
    let input = json!({"file": "s.txt", "text": "x", "sleep_ms": 2500}).to_string();
    let holder = {
        let (ex, input) = (holder_ex.clone(), input.clone());
        tokio::spawn(async move { ex.call("append", &input, keyed("hold-2")).await })
    };
    let key = toolhost::idempotency::effect_key("append", &canonical(&input), "key:hold-2");
    within(20, "the holder's claim", async {
        while waiter_ex.store().get(&key).await.unwrap().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
    let impatient = ExecOptions {
        overrides: Overrides {
            timeout_ms: Some(100),
            ..Overrides::default()
        },
        ..keyed("hold-2")
    };
    let e = within(20, "the impatient waiter", waiter_ex.call("append", &input, impatient))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "still_running", "{e}");
    let patient = within(20, "the patient waiter", waiter_ex.call("append", &input, keyed("hold-2")))
        .await
        .unwrap();
    assert!(patient.cached, "answered from the holder's record");
    let out = within(20, "the holder", holder).await.unwrap().unwrap();
    assert!(!out.cached);
    assert_eq!(patient.output, out.output);
    assert_eq!(world.lines("s.txt").len(), 1);
}
}

fn canonical(input: &str) -> String {
    toolhost::idempotency::canonical_json(&serde_json::from_str(input).unwrap())
}

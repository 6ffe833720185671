//! Side-effecting calls inside one process: claimed before they run, run
//! exactly once per key, the key and attempt handed to the tool.

use serde_json::json;
use toolhost::idempotency::{ExecOptions, Scope};
use toolhost::sandbox::Overrides;

use super::World;

fn keyed(key: &str) -> ExecOptions {
    ExecOptions {
        scope: Scope::Explicit(key.into()),
        ..ExecOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_callers_one_effect() {
    let world = World::new();
    let ex = std::sync::Arc::new(world.append_executor().await);
    let input = json!({"file": "log.txt", "text": "hello"}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (ex, input) = (ex.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            ex.call("append", &input, keyed("pay-1")).await
        }));
    }
    let mut outputs = Vec::new();
    for t in tasks {
        outputs.push(t.await.unwrap().unwrap());
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
}

#[tokio::test]
async fn the_empty_scope_replays_within_the_window() {
    let world = World::new();
    let ex = world.append_executor().await;
    let input = json!({"file": "w.txt", "text": "once"}).to_string();
    let a = ex
        .call("append", &input, ExecOptions::default())
        .await
        .unwrap();
    let b = ex
        .call("append", &input, ExecOptions::default())
        .await
        .unwrap();
    assert!(!a.cached && b.cached);
    assert_eq!(world.lines("w.txt").len(), 1);
    let fresh = ExecOptions {
        scope: Scope::Fresh,
        ..ExecOptions::default()
    };
    ex.call("append", &input, fresh).await.unwrap();
    assert_eq!(
        world.lines("w.txt").len(),
        2,
        "--no-cache asks for a new call"
    );
}

#[tokio::test]
async fn a_side_effecting_call_that_times_out_is_in_doubt() {
    let world = World::new();
    let ex = world.append_executor().await;
    let input = json!({"file": "t.txt", "text": "x", "sleep_ms": 3000}).to_string();
    let opts = ExecOptions {
        scope: Scope::Explicit("slow-1".into()),
        overrides: Overrides {
            timeout_ms: Some(100),
            ..Overrides::default()
        },
    };
    let first = ex.call("append", &input, opts.clone()).await.unwrap_err();
    assert_eq!(first.kind(), "timeout");
    // The line was written before the timeout: the effect happened, so the
    // call must not run again by itself.
    let second = ex.call("append", &input, opts).await.unwrap_err();
    assert_eq!(second.kind(), "in_doubt", "{second}");
    assert_eq!(world.lines("t.txt").len(), 1);
    assert_eq!(ex.sandbox().runs(), 1);

    // An operator decides: retry runs it once more, with attempt 2.
    let key = first.key().unwrap().to_string();
    let out = ex.retry_in_doubt(&key).await;
    // The stored input still sleeps 3 s and the policy allows 20 s.
    let out = out.unwrap();
    assert_eq!(out.attempt, 2);
    assert_eq!(out.output["attempt"], 2);
    let lines = world.lines("t.txt");
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.starts_with(&key)));
}

#[tokio::test]
async fn an_abandoned_call_fails_for_good() {
    let world = World::new();
    let ex = world.append_executor().await;
    let input = json!({"file": "a.txt", "text": "x", "sleep_ms": 2000}).to_string();
    let opts = ExecOptions {
        scope: Scope::Explicit("ab-1".into()),
        overrides: Overrides {
            timeout_ms: Some(50),
            ..Overrides::default()
        },
    };
    let key = ex
        .call("append", &input, opts.clone())
        .await
        .unwrap_err()
        .key()
        .unwrap()
        .to_string();
    ex.abandon_in_doubt(&key).await.unwrap();
    let e = ex.call("append", &input, opts).await.unwrap_err();
    assert_eq!(e.kind(), "tool_failed");
    assert!(e.to_string().contains("abandoned"), "{e}");
    assert_eq!(world.lines("a.txt").len(), 1);
    assert!(
        ex.abandon_in_doubt(&key).await.is_err(),
        "only in_doubt calls can be abandoned"
    );
}

#[tokio::test]
async fn without_a_grant_the_effect_is_denied_and_recorded() {
    let world = World::new();
    let ex = world
        .executor(&super::testkit_dir(), Default::default(), None)
        .await;
    let input = json!({"file": "x.txt", "text": "nope"}).to_string();
    let e = ex
        .call("append", &input, keyed("deny-1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "capability_denied", "{e}");
    let again = ex
        .call("append", &input, keyed("deny-1"))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), "capability_denied");
    assert_eq!(ex.sandbox().runs(), 1);
}

/// A caller that gives up mid-call (its future is dropped) leaves no claim
/// stuck in `running`: the side-effecting call becomes `in_doubt`.
#[tokio::test]
async fn a_cancelled_caller_leaves_the_call_in_doubt_not_stuck() {
    let world = World::new();
    let ex = world.append_executor().await;
    let input = json!({"file": "c.txt", "text": "x", "sleep_ms": 2000}).to_string();
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        ex.call("append", &input, keyed("cancel-1")),
    )
    .await;
    assert!(gave_up.is_err(), "the caller should have timed out");
    // The guard settles the claim on a spawned task; give it a moment.
    let mut kind = String::new();
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let e = ex
            .call("append", &input, keyed("cancel-1"))
            .await
            .unwrap_err();
        kind = e.kind().to_string();
        if kind == "in_doubt" {
            break;
        }
    }
    assert_eq!(kind, "in_doubt");
    assert_eq!(ex.sandbox().runs(), 1);
}

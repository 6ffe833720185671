//! Pure and read-only calls: replays without instantiating, TTLs, what is
//! never recorded, key conflicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use toolhost::config::{EffectName, ToolPolicy};
use toolhost::idempotency::{ExecError, ExecOptions, ManualClock, Scope};
use toolhost::sandbox::Overrides;

use super::effect_policy;
use super::on_both_backends;
use crate::support::{examples_dir, hostile_dir};

on_both_backends! {
#[tokio::test]
async fn a_pure_call_replays_without_instantiating_the_tool(world) {
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    let first = ex
        .call("calc", r#"{"expr":"6*7"}"#, ExecOptions::default())
        .await
        .unwrap();
    assert!(!first.cached);
    assert_eq!(ex.sandbox().runs(), 1);

    // Another spelling of the same input is the same call.
    let second = ex
        .call("calc", r#"{ "expr" : "6*7" }"#, ExecOptions::default())
        .await
        .unwrap();
    assert!(second.cached);
    assert_eq!(second.output, json!({"value": 42}));
    assert_eq!(second.key, first.key);
    assert_eq!(
        second.duration_us, first.duration_us,
        "the original duration is replayed"
    );
    assert_eq!(second.stored_at, first.stored_at);
    assert_eq!(
        ex.sandbox().runs(),
        1,
        "a hit must not instantiate the tool"
    );

    let other = ex
        .call("calc", r#"{"expr":"6*8"}"#, ExecOptions::default())
        .await
        .unwrap();
    assert!(!other.cached);
    assert_ne!(other.key, first.key);
    assert_eq!(ex.sandbox().runs(), 2);
    assert_eq!(ex.stats().hits, 1);
}
}

on_both_backends! {
#[tokio::test]
async fn tool_failures_replay_but_limits_and_transients_do_not(world) {
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    // A tool-reported failure is the tool's answer: replayed.
    let e1 = ex
        .call("calc", r#"{"expr":"1/0"}"#, ExecOptions::default())
        .await
        .unwrap_err();
    let e2 = ex
        .call("calc", r#"{"expr":"1/0"}"#, ExecOptions::default())
        .await
        .unwrap_err();
    assert_eq!((e1.kind(), e2.kind()), ("tool_failed", "tool_failed"));
    assert!(matches!(e2, ExecError::Call { cached: true, .. }));
    assert_eq!(ex.sandbox().runs(), 1);

    // A timeout depends on the moment: never recorded, runs again.
    let slow = ExecOptions {
        overrides: Overrides {
            timeout_ms: Some(50),
            ..Overrides::default()
        },
        ..ExecOptions::default()
    };
    for _ in 0..2 {
        let e = ex
            .call("slow", r#"{"ms":2000}"#, slow.clone())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "timeout");
        assert!(matches!(e, ExecError::Call { cached: false, .. }));
    }
    assert_eq!(ex.sandbox().runs(), 3);
}
}

on_both_backends! {
#[tokio::test]
async fn limit_errors_of_pure_tools_are_not_recorded(world) {
    let ex = world.executor(&hostile_dir(), BTreeMap::new(), None).await;
    let fuel = ExecOptions {
        overrides: Overrides {
            fuel: Some(1_000_000),
            ..Overrides::default()
        },
        ..ExecOptions::default()
    };
    for _ in 0..2 {
        let e = ex.call("spin", "{}", fuel.clone()).await.unwrap_err();
        assert_eq!(e.kind(), "out_of_fuel");
    }
    assert_eq!(ex.sandbox().runs(), 2);
    assert!(ex.store().list(10).await.unwrap().is_empty());
}
}

on_both_backends! {
#[tokio::test]
async fn read_only_results_expire_after_their_ttl(world) {
    let clock = ManualClock::at(1_000_000);
    let policy = ToolPolicy {
        ttl_s: Some(60),
        ..effect_policy(EffectName::ReadOnly)
    };
    let policies = BTreeMap::from([("calc".to_string(), policy)]);
    let ex = world
        .executor(&examples_dir(), policies, Some(Arc::new(clock.clone())))
        .await;
    let input = r#"{"expr":"2+2"}"#;

    assert!(
        !ex.call("calc", input, ExecOptions::default())
            .await
            .unwrap()
            .cached
    );
    clock.advance(Duration::from_millis(59_000));
    assert!(
        ex.call("calc", input, ExecOptions::default())
            .await
            .unwrap()
            .cached
    );
    clock.advance(Duration::from_millis(2_000));
    let fresh = ex
        .call("calc", input, ExecOptions::default())
        .await
        .unwrap();
    assert!(!fresh.cached, "61 s later the result is stale");
    assert_eq!(ex.sandbox().runs(), 2);
}
}

on_both_backends! {
#[tokio::test]
async fn an_explicit_key_reused_with_another_input_is_a_conflict_and_nothing_runs(world) {
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    let keyed = ExecOptions {
        scope: Scope::Explicit("order-17".into()),
        ..ExecOptions::default()
    };
    ex.call("calc", r#"{"expr":"1+1"}"#, keyed.clone())
        .await
        .unwrap();
    // The same input in another spelling is the same call: replayed.
    let again = ex
        .call("calc", "{ \"expr\" : \"1+1\" }", keyed.clone())
        .await
        .unwrap();
    assert!(again.cached);
    let runs = ex.sandbox().runs();
    let err = ex
        .call("calc", r#"{"expr":"9+9"}"#, keyed.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "key_conflict");
    assert!(err.to_string().contains("order-17"), "{err}");
    assert_eq!(ex.sandbox().runs(), runs, "nothing ran");
}
}

on_both_backends! {
#[tokio::test]
async fn no_cache_runs_every_time(world) {
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    let fresh = ExecOptions {
        scope: Scope::Fresh,
        ..ExecOptions::default()
    };
    let a = ex
        .call("echo", r#"{"message":"x"}"#, fresh.clone())
        .await
        .unwrap();
    let b = ex.call("echo", r#"{"message":"x"}"#, fresh).await.unwrap();
    assert!(!a.cached && !b.cached);
    assert_ne!(a.key, b.key);
    assert_eq!(ex.sandbox().runs(), 2);
}
}

on_both_backends! {
/// Every row gets the expiry the README documents (see `retention`).
#[tokio::test]
async fn recorded_rows_expire_by_the_documented_policy(world) {
    let clock = ManualClock::at(1_000_000);
    let ex = world
        .executor(
            &examples_dir(),
            BTreeMap::new(),
            Some(Arc::new(clock.clone())),
        )
        .await;
    let day = 86_400_000;
    let pure = ex
        .call("calc", r#"{"expr":"1+2"}"#, ExecOptions::default())
        .await
        .unwrap();
    let row = ex.store().get(&pure.key).await.unwrap().unwrap();
    assert_eq!(row.expires_at, Some(1_000_000 + 30 * day));
    let effects = world
        .executor(
            &crate::idempotency::testkit_dir(),
            world.testkit_policies(),
            Some(Arc::new(clock.clone())),
        )
        .await;
    let input = r#"{"file":"x.txt","text":"x"}"#;
    for (scope, kept) in [
        (Scope::Fresh, day),
        (Scope::Explicit("exp-1".into()), 30 * day),
        (Scope::Empty, day),
    ] {
        let opts = ExecOptions {
            scope: scope.clone(),
            ..ExecOptions::default()
        };
        let out = effects.call("append", input, opts).await.unwrap();
        let row = ex.store().get(&out.key).await.unwrap().unwrap();
        assert_eq!(row.expires_at, Some(1_000_000 + kept), "{scope:?}");
    }
    // Past its expiry a pure row is a miss, and runs again.
    clock.advance(Duration::from_millis((30 * day + 1) as u64));
    let again = ex
        .call("calc", r#"{"expr":"1+2"}"#, ExecOptions::default())
        .await
        .unwrap();
    assert!(!again.cached, "an expired pure row is a miss");
}
}

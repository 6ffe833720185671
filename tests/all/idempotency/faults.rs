//! Injected faults on the paths where a wrong guess repeats an effect:
//! a liveness probe that fails, and a store write that fails after a run.

use serde_json::json;
use toolhost::idempotency::{ExecOptions, RECORD_ATTEMPTS, canonical_json, effect_key};
use toolhost::sandbox::Overrides;
use toolhost::store::{CallState, ClaimRequest};

use super::on_both_backends;
use super::{World, keyed, within};

/// A claim whose owner cannot be probed (here the lock file is a symlink
/// loop, so opening it fails with ELOOP; EACCES, EMFILE and EIO are covered
/// by `store::liveness`'s unit tests) is a live owner's: the caller waits and
/// gets `still_running`, and the claim is not handed to anyone. Once the
/// probe can tell (a lock file nobody holds), the owner is dead and the
/// call is `in_doubt`.
#[tokio::test]
async fn an_unprobeable_owner_counts_as_alive() {
    let world = World::new();
    let ex = world.append_executor().await;
    let input = json!({"file": "p.txt", "text": "x"}).to_string();
    let canonical = canonical_json(&serde_json::from_str(&input).unwrap());
    let key = effect_key("append", &canonical, "key:probe-1");
    let ghost = "4242-0000abcd";
    ex.store()
        .claim(ClaimRequest {
            key: key.clone(),
            tool: "append".into(),
            effect: "side-effecting".into(),
            scope: "key:probe-1".into(),
            input: canonical,
            owner: ghost.into(),
            now_ms: 1,
            component_digest: "c".into(),
            policy_digest: "p".into(),
            limits: "{}".into(),
        })
        .await
        .unwrap();
    let lock = world
        .path()
        .join("toolhost.db.owners")
        .join(format!("{ghost}.lock"));
    std::os::unix::fs::symlink(&lock, &lock).unwrap();

    let impatient = ExecOptions {
        overrides: Overrides {
            timeout_ms: Some(100),
            ..Overrides::default()
        },
        ..keyed("probe-1")
    };
    let e = within(
        20,
        "the waiter",
        ex.call("append", &input, impatient.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "still_running", "{e}");
    let row = ex.store().get(&key).await.unwrap().unwrap();
    assert_eq!(row.state, CallState::Running);
    assert_eq!(
        row.owner.as_deref(),
        Some(ghost),
        "the claim stayed its owner's"
    );
    assert!(world.lines("p.txt").is_empty());

    // Now the probe can tell: a lock file nobody holds means a dead owner.
    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, b"").unwrap();
    let e = within(20, "the caller", ex.call("append", &input, impatient))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "in_doubt", "{e}");
    assert!(
        world.lines("p.txt").is_empty(),
        "in_doubt never re-runs on its own"
    );
}

on_both_backends! {
/// A store write that fails after the run is retried; one failure costs
/// nothing.
#[tokio::test]
async fn a_failed_outcome_write_is_retried(world) {
    let ex = world.append_executor().await;
    let input = json!({"file": "r.txt", "text": "x"}).to_string();
    ex.store().inject_write_failures(1);
    let out = within(
        20,
        "the call",
        ex.call("append", &input, keyed("retry-write")),
    )
    .await
    .unwrap();
    let row = ex.store().get(&out.key).await.unwrap().unwrap();
    assert_eq!(row.state, CallState::Done);
    let again = within(
        20,
        "the replay",
        ex.call("append", &input, keyed("retry-write")),
    )
    .await
    .unwrap();
    assert!(again.cached);
    assert_eq!(world.lines("r.txt").len(), 1);
}
}

on_both_backends! {
/// A store write that keeps failing after the run leaves the key
/// `in_doubt` (marked through a fresh connection), never `running` under
/// this live owner, where every later caller would wait and then fail.
#[tokio::test]
async fn an_outcome_that_cannot_be_recorded_is_in_doubt_not_running(world) {
    let ex = world.append_executor().await;
    let input = json!({"file": "f.txt", "text": "x"}).to_string();
    ex.store().inject_write_failures(RECORD_ATTEMPTS);
    let e = within(
        20,
        "the call",
        ex.call("append", &input, keyed("lost-write")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "in_doubt", "{e}");
    assert!(e.to_string().contains("could not be recorded"), "{e}");
    let key = e.key().unwrap().to_string();
    let row = ex.store().get(&key).await.unwrap().unwrap();
    assert_eq!(row.state, CallState::InDoubt);
    assert_eq!(world.lines("f.txt").len(), 1, "it ran once");
    // The next caller is told at once, and nothing runs again.
    let e = within(
        20,
        "the next caller",
        ex.call("append", &input, keyed("lost-write")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "in_doubt");
    assert_eq!(world.lines("f.txt").len(), 1);
    assert_eq!(ex.sandbox().runs(), 1);
}
}

//! The store itself: the SQLite file corrupt, locked, old; and, on both
//! backends, owned writes, fencing and garbage collection.

use std::time::Duration;

use toolhost::store::{
    CallState, ClaimOutcome, ClaimRequest, SCHEMA_VERSION, Store, StoreError, StoreOptions,
    StoredOutcome, migration_sql,
};

use super::{World, on_both_backends};
use crate::support::{stdout_json, toolhost};

/// A claim request for `key` by this store's owner.
pub fn claim_request(store: &Store, key: &str, effect: &str, now_ms: i64) -> ClaimRequest {
    ClaimRequest {
        key: key.into(),
        tool: "t".into(),
        effect: effect.into(),
        scope: String::new(),
        input: "{}".into(),
        owner: store.owner_id().into(),
        now_ms,
        component_digest: "c".into(),
        policy_digest: "p".into(),
        limits: "{}".into(),
    }
}

fn outcome() -> StoredOutcome {
    StoredOutcome {
        ok: true,
        output: Some(serde_json::json!(1)),
        error: None,
        fuel_used: 1,
        duration_us: 1,
        resolutions: Vec::new(),
    }
}

#[test]
fn a_corrupt_file_is_a_clear_error() {
    let world = World::new();
    std::fs::write(world.db(), vec![0x42u8; 8192]).unwrap();
    let err = Store::open(&world.db(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("corrupt or not a SQLite database"),
        "{err}"
    );

    // Through the CLI: exit 1, a named kind, no panic.
    let db = world.db();
    let out = toolhost(
        world.path(),
        &[
            "--db",
            db.to_str().unwrap(),
            "--json",
            "call",
            "calc",
            "--input",
            r#"{"expr":"1"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "store_unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("toolhost.db")
    );
}

#[tokio::test]
async fn a_locked_database_times_out_clearly_and_recovers() {
    let world = World::new();
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let store = Store::open(&world.db(), options).unwrap();
    let blocker = rusqlite::Connection::open(world.db()).unwrap();
    blocker
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO counters VALUES ('x', 1);")
        .unwrap();

    let request = claim_request(&store, "k", "side-effecting", 1);
    let err = store.claim(request.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked"), "{err}");

    blocker.execute_batch("COMMIT").unwrap();
    assert!(matches!(
        store.claim(request).await.unwrap(),
        ClaimOutcome::Acquired { attempt: 1, .. }
    ));
}

/// A v1 database: its side-effecting rows get today's keys (an upgrade
/// never re-runs a recorded effect); its pure rows, a cache keyed by the old
/// rule, are dropped and re-computed.
#[tokio::test]
async fn an_old_schema_is_migrated_and_its_effects_rekeyed() {
    let world = World::new();
    let input = r#"{"file":"f","text":"t"}"#;
    {
        let old = rusqlite::Connection::open(world.db()).unwrap();
        old.execute_batch(migration_sql(0).unwrap()).unwrap();
        old.execute_batch("PRAGMA user_version = 1").unwrap();
        let done =
            r#"{"ok":true,"output":{"appended":true,"attempt":1},"fuel_used":1,"duration_us":1}"#;
        old.execute(
            "INSERT INTO calls (key, tool, effect, scope, input, state, attempt, outcome, created_at, completed_at)
             VALUES ('old-effect', 'append', 'side-effecting', 'key:pay-1', ?1, 'done', 1, ?2, 5, 5),
                    ('old-pure', 'calc', 'pure', '', '{}', 'done', 1, ?2, 5, 5)",
            [input, done],
        )
        .unwrap();
    }
    let options = StoreOptions {
        rekey: Some(toolhost::idempotency::effect_key),
        ..StoreOptions::default()
    };
    let store = Store::open(&world.db(), options).unwrap();
    let version: i64 = store
        .run(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert!(store.get("old-effect").await.unwrap().is_none());
    assert!(store.get("old-pure").await.unwrap().is_none());
    let key = toolhost::idempotency::effect_key("append", input, "key:pay-1");
    let row = store.get(&key).await.unwrap().expect("re-keyed");
    assert_eq!(row.state, CallState::Done);
    assert_eq!(row.outcome.unwrap().output.unwrap()["appended"], true);
    store.bump(vec![("cache_hits", 2)]).await.unwrap();
    assert_eq!(
        store.counters().await.unwrap(),
        vec![("cache_hits".to_string(), 2)]
    );
}

/// The fencing token of a fresh claim on `key`.
async fn claim_fence(store: &Store, key: &str) -> i64 {
    match store
        .claim(claim_request(store, key, "side-effecting", 1))
        .await
        .unwrap()
    {
        ClaimOutcome::Acquired { attempt: 1, fence } => fence,
        other => panic!("{key} was not acquired: {other:?}"),
    }
}

on_both_backends! {
/// `complete` and `release` used to update zero rows and return `Ok` when
/// the claim was no longer theirs; now the caller hears about it.
#[tokio::test]
async fn writes_to_a_claim_this_owner_no_longer_holds_fail(world) {
    let store = world.store().await;
    let own = store.owner_id().to_string();
    let gone = claim_fence(&store, "gone").await;
    let moved = claim_fence(&store, "moved").await;
    // An operator's sweep (or another process) settled them meanwhile.
    assert!(store.mark_in_doubt("gone", &own, gone).await.unwrap());
    assert!(store.mark_in_doubt("moved", &own, moved).await.unwrap());
    let err = store
        .complete("gone", gone, CallState::Done, outcome(), 2, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotOwner { ref found, .. } if found.starts_with("in_doubt")),
        "{err:?}"
    );
    let err = store.release("moved", moved).await.unwrap_err();
    assert!(matches!(err, StoreError::NotOwner { .. }), "{err:?}");
    let err = store
        .complete("never-claimed", 1, CallState::Done, outcome(), 2, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no row"), "{err}");
    assert_eq!(
        store.get("gone").await.unwrap().unwrap().state,
        CallState::InDoubt
    );
}
}

on_both_backends! {
/// A take-over moves the fencing token on; the old holder's `complete`
/// and `release` are then refused as fenced, and the new holder's outcome
/// stands. Another store (another owner) cannot write under a token it
/// does not hold either.
#[tokio::test]
async fn a_taken_over_claim_fences_off_its_old_holder(world) {
    let store = world.store().await;
    let other = world.store().await;
    assert_ne!(store.owner_id(), other.owner_id());
    let own = store.owner_id().to_string();
    let first = claim_fence(&store, "pay").await;
    // The claim goes in doubt (its owner was declared dead) and is retried.
    assert!(store.mark_in_doubt("pay", &own, first).await.unwrap());
    let taken = store
        .take_over("pay", None, 2, ("c".into(), "p".into()))
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(taken.attempt, 2);
    assert!(taken.fence > first, "{taken:?} after {first}");
    let err = store
        .complete("pay", first, CallState::Done, outcome(), 3, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { fence, current, .. } if fence == first && current == taken.fence),
        "{err:?}"
    );
    assert!(err.to_string().contains("taken over"), "{err}");
    let err = store.release("pay", first).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    // Another owner presenting the right token is still not the owner.
    let err = other
        .complete("pay", taken.fence, CallState::Done, outcome(), 3, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotOwner { .. }), "{err:?}");
    // A second take-over of a claim already taken finds nothing to take.
    assert!(
        other
            .take_over("pay", None, 3, ("c".into(), "p".into()))
            .await
            .unwrap()
            .is_none()
    );
    store
        .complete("pay", taken.fence, CallState::Done, outcome(), 4, None)
        .await
        .unwrap();
    let row = store.get("pay").await.unwrap().unwrap();
    assert_eq!((row.state, row.attempt, row.fence), (CallState::Done, 2, taken.fence));
}
}

/// A `running` row whose owner died becomes `in_doubt` when a store opens
/// and on `cache gc`, and the dead owner's lock file goes.
#[tokio::test]
async fn dead_owners_claims_are_swept_on_open_and_by_gc() {
    let world = World::new();
    let ghost_claim = |store: &Store, key: &str| ClaimRequest {
        owner: "1-0000dead".into(),
        ..claim_request(store, key, "side-effecting", 1)
    };
    {
        let store = Store::open(&world.db(), StoreOptions::default()).unwrap();
        store
            .claim(ghost_claim(&store, "before-open"))
            .await
            .unwrap();
    }
    let store = Store::open(&world.db(), StoreOptions::default()).unwrap();
    assert_eq!(
        store.get("before-open").await.unwrap().unwrap().state,
        CallState::InDoubt,
        "swept when the store opened"
    );

    store
        .claim(ghost_claim(&store, "while-open"))
        .await
        .unwrap();
    let owners = world.path().join("toolhost.db.owners");
    std::fs::write(owners.join("2-0000dead.lock"), b"").unwrap();
    let report = store.gc(10, None).await.unwrap();
    assert_eq!(report.swept_in_doubt, 1, "{report:?}");
    assert_eq!(report.locks_removed, 1, "{report:?}");
    assert!(!owners.join("2-0000dead.lock").exists());
    assert!(owners.join(format!("{}.lock", store.owner_id())).exists());
    assert_eq!(
        store.get("while-open").await.unwrap().unwrap().state,
        CallState::InDoubt
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let world = World::new();
    let c = rusqlite::Connection::open(world.db()).unwrap();
    c.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(c);
    let err = Store::open(&world.db(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 99, .. }),
        "{err:?}"
    );
}

on_both_backends! {
#[tokio::test]
async fn gc_removes_what_expired_and_keeps_claims_in_flight(world) {
    let store = world.store().await;
    let req = |key: &str, now_ms| claim_request(&store, key, "read-only", now_ms);
    let outcome = outcome();
    store
        .put(req("expired", 1_000), outcome.clone(), Some(2_000))
        .await
        .unwrap();
    store
        .put(req("fresh", 1_000), outcome.clone(), Some(100_000))
        .await
        .unwrap();
    store
        .put(req("forever", 1_000), outcome, None)
        .await
        .unwrap();
    assert!(matches!(
        store.claim(req("running", 1_000)).await.unwrap(),
        ClaimOutcome::Acquired { attempt: 1, .. }
    ));

    let report = store.gc(50_000, None).await.unwrap();
    assert_eq!((report.removed, report.kept_in_flight), (1, 1));
    assert_eq!(report.swept_in_doubt, 0, "this store's own claim is alive");
    assert!(store.get("expired").await.unwrap().is_none());
    assert!(store.get("fresh").await.unwrap().is_some());
    assert!(store.get("running").await.unwrap().is_some());

    // --older-than: finished before 1_001 goes, expiry or not; the claim stays.
    let report = store.gc(50_000, Some(1_001)).await.unwrap();
    assert_eq!((report.removed, report.kept_in_flight), (2, 1));
    assert!(store.get("running").await.unwrap().is_some());
}
}

/// `toolhost cache gc --json` reports what the sweep did.
#[test]
fn cache_gc_on_the_cli_sweeps_dead_owners() {
    let world = World::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::open(&world.db(), StoreOptions::default()).unwrap();
        let ghost = ClaimRequest {
            owner: "7-0000dead".into(),
            ..claim_request(&store, "ghost", "side-effecting", 1)
        };
        store.claim(ghost).await.unwrap();
        std::fs::write(world.path().join("toolhost.db.owners/8-0000dead.lock"), b"").unwrap();
        let db = world.db();
        let out = toolhost(
            world.path(),
            &["--db", db.to_str().unwrap(), "--json", "cache", "gc"],
        );
        assert!(out.status.success(), "{out:?}");
        let v = stdout_json(&out);
        // Opening the store already sweeps; the report counts what was left.
        assert!(
            !world
                .path()
                .join("toolhost.db.owners/8-0000dead.lock")
                .exists(),
            "{v}"
        );
        assert_eq!(
            store.get("ghost").await.unwrap().unwrap().state,
            CallState::InDoubt
        );
        // Swept by the CLI's store as it opened, or by its gc: either way
        // the report counts the row as kept for an operator.
        assert_eq!(v["kept_in_flight"], 1, "{v}");
    });
}

/// PostgreSQL's counterpart of the sweep above: a claim whose lease
/// expired (its owner stopped renewing it) becomes `in_doubt` on `cache gc`
/// (and when a store opens), and an owner row long past its lease with no
/// claims left is removed. A live owner's claim and row are kept.
#[tokio::test]
async fn expired_leases_are_swept_by_gc_on_postgres() {
    let world = World::postgres();
    let store = world.store().await;
    let ghost = ClaimRequest {
        owner: "ghost-1-0000dead".into(),
        ..claim_request(&store, "ghost", "side-effecting", 1)
    };
    store.claim(ghost).await.unwrap();
    let (client, conn) = tokio_postgres::connect(world.pg_url().unwrap(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO owners (id, lease_until, host, pid, started_at) VALUES ('gone-2-0000dead', 0, 'h', 2, 0)",
            &[],
        )
        .await
        .unwrap();
    assert!(claim_fence(&store, "mine").await > 0);
    // The ghost's lease runs out (nobody renews it); gc sweeps it then.
    let mut swept = 0;
    super::within(10, "the ghost's lease expires", async {
        while swept == 0 {
            let report = store.gc(10, None).await.unwrap();
            swept += report.swept_in_doubt;
            if swept == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    assert_eq!(swept, 1);
    assert_eq!(
        store.get("ghost").await.unwrap().unwrap().state,
        CallState::InDoubt
    );
    assert_eq!(
        store.get("mine").await.unwrap().unwrap().state,
        CallState::Running,
        "a live owner's claim is renewed, not swept"
    );
    let owners: Vec<String> = client
        .query("SELECT id FROM owners ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        owners,
        vec![store.owner_id().to_string()],
        "the dead owner's row went"
    );
}

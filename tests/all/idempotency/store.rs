//! The SQLite file itself: corrupt, locked, old, and garbage-collected.

use std::time::Duration;

use toolhost::store::{
    ClaimOutcome, ClaimRequest, SCHEMA_VERSION, Store, StoreError, StoreOptions, migration_sql,
};

use super::World;
use crate::support::{stdout_json, toolhost};

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

    let request = ClaimRequest {
        key: "k".into(),
        tool: "t".into(),
        effect: "side-effecting".into(),
        scope: String::new(),
        input: "{}".into(),
        owner: store.owner_id().into(),
        now_ms: 1,
    };
    let err = store.claim(request.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked"), "{err}");

    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(
        store.claim(request).await.unwrap(),
        ClaimOutcome::Acquired { attempt: 1 }
    );
}

#[tokio::test]
async fn an_old_schema_is_migrated_with_its_rows() {
    let world = World::new();
    {
        let old = rusqlite::Connection::open(world.db()).unwrap();
        old.execute_batch(migration_sql(0).unwrap()).unwrap();
        old.execute_batch("PRAGMA user_version = 1").unwrap();
        old.execute(
            "INSERT INTO calls (key, tool, effect, scope, input, state, attempt, outcome, created_at, completed_at)
             VALUES ('k1', 'calc', 'pure', '', '{}', 'done', 1, '{\"ok\":true,\"output\":1,\"fuel_used\":1,\"duration_us\":1}', 5, 5)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&world.db(), StoreOptions::default()).unwrap();
    let version: i64 = store
        .run(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let row = store.get("k1").await.unwrap().unwrap();
    assert_eq!(row.outcome.unwrap().output, Some(serde_json::json!(1)));
    store.bump(vec![("cache_hits", 2)]).await.unwrap();
    assert_eq!(
        store.counters().await.unwrap(),
        vec![("cache_hits".to_string(), 2)]
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

#[tokio::test]
async fn gc_removes_what_expired_and_keeps_claims_in_flight() {
    let world = World::new();
    let store = Store::open(&world.db(), StoreOptions::default()).unwrap();
    let req = |key: &str, now_ms| ClaimRequest {
        key: key.into(),
        tool: "t".into(),
        effect: "read-only".into(),
        scope: String::new(),
        input: "{}".into(),
        owner: store.owner_id().into(),
        now_ms,
    };
    let outcome = toolhost::store::StoredOutcome {
        ok: true,
        output: Some(serde_json::json!(1)),
        error: None,
        fuel_used: 1,
        duration_us: 1,
    };
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
    assert_eq!(
        store.claim(req("running", 1_000)).await.unwrap(),
        ClaimOutcome::Acquired { attempt: 1 }
    );

    let report = store.gc(50_000, None).await.unwrap();
    assert_eq!((report.removed, report.kept_in_flight), (1, 1));
    assert!(store.get("expired").await.unwrap().is_none());
    assert!(store.get("fresh").await.unwrap().is_some());
    assert!(store.get("running").await.unwrap().is_some());

    // --older-than: finished before 1_001 goes, expiry or not; the claim stays.
    let report = store.gc(50_000, Some(1_001)).await.unwrap();
    assert_eq!((report.removed, report.kept_in_flight), (2, 1));
    assert!(store.get("running").await.unwrap().is_some());
}

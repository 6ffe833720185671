//! The PostgreSQL store under faults: connections killed mid-call, the
//! server restarted mid-call or down, the pool exhausted.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use toolhost::idempotency::ExecError;
use toolhost::store::{CallState, ClaimOutcome, Store, StoreError, StoreOptions};

use super::{HostDir, wait_until};
use crate::idempotency::store::claim_request;
use crate::idempotency::{World, keyed, within};
use crate::support::output_within;
use crate::support::pg::{Cluster, db_name};
use crate::support::stdout_json;

/// `pg_terminate_backend` on every connection of the store while a
/// side-effecting call runs (its claim's heartbeat included), with a second
/// owner waiting on the same key: the store reconnects, the call records
/// its outcome under its own claim (no take-over, the same fencing token),
/// and the waiter gets that outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_call_is_reconnected_and_the_claim_stays_correct() {
    let world = World::postgres();
    let url = world.pg_url().unwrap().to_string();
    let a = Arc::new(world.append_executor().await);
    let b = Arc::new(world.append_executor().await);
    let input = json!({"file": "log.txt", "text": "once", "sleep_ms": 1_500}).to_string();
    let running = {
        let (a, input) = (a.clone(), input.clone());
        tokio::spawn(async move { a.call("append", &input, keyed("kill-1")).await })
    };
    super::running(&world).await;
    let key = a.store().list(1).await.unwrap()[0].key.clone();
    let fence = a.store().get(&key).await.unwrap().unwrap().fence;
    let waiter = {
        let (b, input) = (b.clone(), input.clone());
        tokio::spawn(async move { b.call("append", &input, keyed("kill-1")).await })
    };
    let killed = crate::support::pg::shared().terminate_backends(db_name(&url));
    assert!(
        killed >= 2,
        "both stores' connections were killed ({killed})"
    );

    let out = within(30, "the running call", running)
        .await
        .unwrap()
        .unwrap();
    assert!(!out.cached);
    assert_eq!(out.output, json!({"appended": true, "attempt": 1}));
    let waited = within(30, "the waiter", waiter).await.unwrap().unwrap();
    assert!(waited.cached, "the waiter got the recorded outcome");
    assert_eq!(waited.output, out.output);
    assert_eq!(world.lines("log.txt").len(), 1, "it ran once");
    let row = b.store().get(&key).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.attempt, row.fence),
        (CallState::Done, 1, fence)
    );
}

/// A pool of one connection whose connection is stuck (a statement waits
/// on a table lock someone else holds): the next caller does not hang, it
/// gets `PoolExhausted` (reported as `store_unavailable`) naming the pool
/// size, after the wait it was given. Once the lock goes, the stuck
/// statement finishes and the store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_a_clear_error_not_a_hang() {
    let url = crate::support::pg::fresh_db();
    let options = StoreOptions {
        pool_size: 1,
        busy_timeout: Duration::from_millis(300),
        // No heartbeat during the test: the only statement waiting on the
        // lock is then the pool's.
        lease: Duration::from_secs(120),
        ..StoreOptions::default()
    };
    let store = Store::open_postgres(&url, options).await.unwrap();
    let (locker, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let stuck = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(claim_request(&store, "stuck", "side-effecting", 1))
                .await
        })
    };
    // The stuck claim holds the pool's only connection, waiting on the lock
    // (bounded wait).
    within(10, "the claim takes the connection", async {
        loop {
            let waiting = locker
                .query(
                    "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                     WHERE NOT l.granted AND a.datname = current_database()",
                    &[],
                )
                .await
                .unwrap();
            if !waiting.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let started = std::time::Instant::now();
    let err = within(5, "a caller on an exhausted pool", store.get("other"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::PoolExhausted { size: 1, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(err.to_string().contains("pool_size"), "{err}");
    assert_eq!(ExecError::from(err).kind(), "store_unavailable");

    locker.batch_execute("ROLLBACK").await.unwrap();
    let claimed = within(10, "the stuck claim", stuck).await.unwrap().unwrap();
    assert!(matches!(claimed, ClaimOutcome::Acquired { attempt: 1, .. }));
    assert!(store.get("stuck").await.unwrap().is_some());
}

/// On a cluster of its own: a restart while a side-effecting call runs
/// loses nothing (the outcome is recorded once the server is back, within
/// the reconnect window); while the server is down, callers get
/// `store_unavailable` (the CLI too, exit 1, naming the store without its
/// password); once it is back, the same store serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_call_loses_nothing_and_down_is_store_unavailable() {
    let cluster = Arc::new(Cluster::start());
    let url = cluster.fresh_db();
    let world = World::postgres_at(url.clone());
    let ex = Arc::new(world.append_executor().await);
    let input = json!({"file": "log.txt", "text": "restart", "sleep_ms": 1_000}).to_string();
    let running = {
        let (ex, input) = (ex.clone(), input.clone());
        tokio::spawn(async move { ex.call("append", &input, keyed("restart-1")).await })
    };
    super::running(&world).await;
    tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.restart()
    })
    .await
    .unwrap();
    let out = within(30, "the call across the restart", running)
        .await
        .unwrap()
        .unwrap();
    assert!(!out.cached);
    let again = ex.call("append", &input, keyed("restart-1")).await.unwrap();
    assert!(again.cached, "the outcome was recorded");
    assert_eq!(world.lines("log.txt").len(), 1);
}

/// While the server is down: the CLI's call fails as `store_unavailable`
/// (exit 1) within its busy timeout, naming the store with its password
/// hidden, and an open store's callers get the same kind; after the server
/// is back, the open store serves again without being reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_store_unavailable_until_it_is_back() {
    let cluster = Arc::new(Cluster::start());
    let url = cluster.fresh_db();
    let world = World::postgres_at(url.clone());
    let ex = world.append_executor().await;
    let input = json!({"file": "log.txt", "text": "down"}).to_string();
    ex.call("append", &input, keyed("before")).await.unwrap();

    tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.stop()
    })
    .await
    .unwrap();
    let err = within(
        30,
        "a call while down",
        ex.call("append", &input, keyed("down-1")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "store_unavailable", "{err}");

    let host = HostDir::new(&url.replace("postgres@", "postgres:s3cret@"), false);
    let mut cmd = host.command(&["--json", "call", "append", "--input", &input]);
    cmd.args(["--idempotency-key", "cli-down"]);
    let out = tokio::task::spawn_blocking(move || output_within(cmd, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "store_unavailable", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("postgres:***@127.0.0.1"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");

    tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.resume()
    })
    .await
    .unwrap();
    let out = within(
        30,
        "a call after the restart",
        ex.call("append", &input, keyed("down-1")),
    )
    .await
    .unwrap();
    assert!(!out.cached);
    let replay = ex.call("append", &input, keyed("before")).await.unwrap();
    assert!(replay.cached, "nothing recorded before the outage was lost");
    wait_until(Duration::from_secs(1), "the lines", || {
        world.lines("log.txt").len() == 2
    });
}

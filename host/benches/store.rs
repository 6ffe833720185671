//! The two store backends side by side, in one run:
//!
//! - `store/{sqlite,postgres}/claim_complete`: side-effecting bookkeeping,
//!   a claim and its completion, 64 callers at once. Reported per pair;
//!   pairs/s = 1 / time. SQLite: WAL, `synchronous=FULL`, group commit.
//!   PostgreSQL: a throwaway local cluster that syncs every commit (fsync
//!   on, `synchronous_commit = on`), the default pool of 16 connections.
//! - `store/{sqlite,postgres}/hit`: looking up a recorded pure outcome,
//!   what a host pays for a hit it does not hold in memory yet (the
//!   executor's in-memory memo answers repeats in microseconds on both).
//!
//! `TOOLHOST_BENCH_PG_URL=postgres://...` benches an existing database
//! instead of starting a cluster (its tables are created if missing).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use toolhost::store::{ClaimOutcome, ClaimRequest, Store, StoredOutcome};

#[path = "support/mod.rs"]
mod support;

use support::{pairs, runtime, stores};

fn recorded(store: &Store, key: &str) -> ClaimRequest {
    ClaimRequest {
        key: key.into(),
        tool: "echo".into(),
        effect: "pure".into(),
        scope: String::new(),
        input: r#"{"message":"hello"}"#.into(),
        owner: store.owner_id().into(),
        now_ms: 1,
        component_digest: "bench".into(),
        policy_digest: "bench".into(),
        limits: "{}".into(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let stores = stores::open(&rt);
    let (sqlite, postgres) = (stores.sqlite.clone(), stores.postgres.clone());

    let mut group = c.benchmark_group("store");
    // Short: the build machine is shared; criterion still reports spread.
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, store) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        let hit = recorded(store, "hit");
        let outcome = StoredOutcome {
            ok: true,
            output: Some(serde_json::json!({"message": "hello"})),
            error: None,
            fuel_used: 1,
            duration_us: 1,
            resolutions: Vec::new(),
        };
        rt.block_on(store.put(hit.clone(), outcome, None))
            .expect("record the hit");
        group.bench_function(format!("{name}/hit"), |b| {
            b.iter(|| {
                let found = rt.block_on(store.lookup(hit.clone())).expect("a lookup");
                assert!(matches!(found, ClaimOutcome::Existing(_)));
            })
        });
        let seq = Arc::new(AtomicU64::new(0));
        group.bench_function(format!("{name}/claim_complete"), |b| {
            b.iter_custom(|iters| rt.block_on(pairs::claim_complete(store, &seq, iters, 64)))
        });
    }
    group.finish();
}

criterion_group!(store, benches);
criterion_main!(store);

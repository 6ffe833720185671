//! Idempotency-cache benchmarks, each beside its baseline in the same run:
//!
//! - `cache/hit`: a pure call replayed from SQLite (key derivation, canonical
//!   JSON, one store round trip), against `cache/uncached_call`, the same
//!   trivial tool run in the sandbox with no store at all;
//! - `cache/miss_and_store`: a pure call that misses, runs and is recorded;
//! - `cache/claim_complete`: side-effecting bookkeeping under
//!   `synchronous=FULL`: a claim and its completion, 64 callers at once, so
//!   group commit can batch them. Reported per pair; pairs/s = 1 / time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use toolhost::idempotency::{ExecOptions, Executor};
use toolhost::sandbox::{CallRequest, EXAMPLES_DIR, Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};

#[path = "support/mod.rs"]
mod support;

use support::{pairs, runtime};

const INPUT: &str = r#"{"message":"hello"}"#;

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let tools = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(
        Path::new(EXAMPLES_DIR).join("echo.wasm"),
        tools.path().join("echo.wasm"),
    )
    .expect("copy echo");
    let db_dir = tempfile::tempdir().expect("a temp dir");
    let sandbox = rt
        .block_on(Sandbox::open(SandboxOptions::for_dir(tools.path())))
        .expect("open the sandbox");
    let store = Store::open(&db_dir.path().join("bench.db"), StoreOptions::default())
        .expect("open the store");
    let executor = Arc::new(Executor::new(sandbox.clone(), store.clone()));
    let first = rt.block_on(executor.call("echo", INPUT, ExecOptions::default()));
    assert!(!first.expect("echo works").cached);

    let mut group = c.benchmark_group("cache");
    // Short: the build machine is shared; criterion still reports spread.
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("hit", |b| {
        b.iter(|| {
            let out = rt
                .block_on(executor.call("echo", INPUT, ExecOptions::default()))
                .expect("a hit");
            assert!(out.cached);
        })
    });
    group.bench_function("uncached_call", |b| {
        b.iter(|| {
            rt.block_on(sandbox.call("echo", INPUT, CallRequest::default()))
                .expect("echo works")
        })
    });
    let n = AtomicU64::new(0);
    group.bench_function("miss_and_store", |b| {
        b.iter(|| {
            let input = format!(r#"{{"message":"m{}"}}"#, n.fetch_add(1, Ordering::Relaxed));
            let out = rt
                .block_on(executor.call("echo", &input, ExecOptions::default()))
                .expect("echo works");
            assert!(!out.cached);
        })
    });

    let seq = Arc::new(AtomicU64::new(0));
    group.bench_function("claim_complete", |b| {
        b.iter_custom(|iters| rt.block_on(pairs::claim_complete(&store, &seq, iters, 64)))
    });
    group.finish();
}

criterion_group!(cache, benches);
criterion_main!(cache);

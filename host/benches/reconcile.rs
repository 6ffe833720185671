//! What reconcile-on-next-call costs, beside a plain replay, in one run
//! (issue 19), against the loopback payment API the test suite uses as
//! `pay`'s reference (`tests/all/support/payments.rs`, included here):
//!
//! - `reconcile/replay`: a completed key of `pay` called again: the claim
//!   finds the outcome and replays it; no wasm runs, no request goes out.
//! - `reconcile/reconcile_on_next_call`: an in-doubt key of `pay` whose
//!   charge the API committed, called again: the row is taken over, `pay`
//!   is instantiated and its `reconcile` asks the API (one GET), the
//!   answer (`committed`) is recorded as the outcome with its resolution
//!   and counted, and the output served.
//! - `reconcile/fresh_call`: for scale, a new key: claim, `pay` runs its
//!   POST, the outcome is recorded.
//!
//! The in-doubt rows are made before each measured batch, untimed, the way
//! the crash loop's "held" window leaves them: a real `pay` call cut off by
//! its timeout while the API holds its committed POST unanswered; the
//! clock starts once the API has let go of every held request.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use toolhost::config::ToolPolicy;
use toolhost::idempotency::{ExecOptions, Executor, Scope};
use toolhost::sandbox::{EXAMPLES_DIR, Sandbox, SandboxOptions};
use toolhost::store::{Store, StoreOptions};

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../../tests/all/support/payments.rs"]
mod payments;

use payments::{Fault, PaymentServer};
use support::runtime;

/// The cut of a call left in doubt: long past `pay`'s POST reaching the
/// API, short against the hold.
const CUT_MS: u64 = 150;
const HOLD: Duration = Duration::from_millis(400);
/// In-doubt rows made at once.
const BATCH: usize = 32;

/// A call of `key`.
fn keyed(key: &str) -> ExecOptions {
    ExecOptions {
        scope: Scope::Explicit(key.into()),
        ..ExecOptions::default()
    }
}

/// A call of `key` cut off at [`CUT_MS`].
fn cut(key: &str) -> ExecOptions {
    let mut options = keyed(key);
    options.overrides.timeout_ms = Some(CUT_MS);
    options
}

/// Leaves `n` fresh keys of `pay` in doubt with their charges committed,
/// and returns their references.
async fn in_doubt(
    ex: &Arc<Executor>,
    server: &Arc<PaymentServer>,
    seq: &AtomicU64,
    n: u64,
) -> Vec<String> {
    let refs: Vec<String> = (0..n)
        .map(|_| format!("doubt-{}", seq.fetch_add(1, Ordering::Relaxed)))
        .collect();
    for chunk in refs.chunks(BATCH) {
        let mut calls = Vec::new();
        for r in chunk {
            server.fault(r, Fault::Hold(HOLD));
            let (ex, text, r) = (ex.clone(), server.pay_input(r), r.clone());
            calls.push(tokio::spawn(
                async move { ex.call("pay", &text, cut(&r)).await },
            ));
        }
        for call in calls {
            let err = call.await.expect("the call's task").unwrap_err();
            assert_eq!(err.kind(), "timeout", "{err}");
        }
    }
    for r in &refs {
        assert_eq!(server.charges_for(r), 1, "{r}: the POST was committed");
    }
    refs
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let server = Arc::new(PaymentServer::start());
    let tools = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(
        Path::new(EXAMPLES_DIR).join("pay.wasm"),
        tools.path().join("pay.wasm"),
    )
    .expect("copy pay");
    let mut options = SandboxOptions::for_dir(tools.path());
    options.policies.insert(
        "pay".into(),
        ToolPolicy {
            allow_hosts: vec![server.host_port()],
            ..ToolPolicy::default()
        },
    );
    let sandbox = rt
        .block_on(Sandbox::open(options))
        .expect("open the sandbox");
    let db_dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&db_dir.path().join("bench.db"), StoreOptions::default())
        .expect("open the store");
    let ex = Arc::new(Executor::new(sandbox, store));
    let done = rt
        .block_on(ex.call("pay", &server.pay_input("done"), keyed("done")))
        .expect("a charge");
    assert!(!done.cached);

    let mut group = c.benchmark_group("reconcile");
    // Short: the build machine is shared; criterion still reports spread.
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("replay", |b| {
        b.iter(|| {
            let out = rt
                .block_on(ex.call("pay", &server.pay_input("done"), keyed("done")))
                .expect("a replay");
            assert!(out.cached);
        })
    });
    // Each measured batch first makes its in-doubt rows: fewer, larger
    // samples, so a sample is more than one call.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    let seq = AtomicU64::new(0);
    group.bench_function("reconcile_on_next_call", |b| {
        b.iter_custom(|iters| {
            let refs = rt.block_on(in_doubt(&ex, &server, &seq, iters));
            // The held POSTs are answered (to nobody) before the clock
            // starts, so their late answers do not land inside the
            // measured calls.
            assert!(server.wait_idle(HOLD * 4), "the held requests end");
            rt.block_on(async {
                let start = Instant::now();
                for r in &refs {
                    let out = ex
                        .call("pay", &server.pay_input(r), keyed(r))
                        .await
                        .expect("reconciled");
                    assert!(out.reconciled && !out.cached, "{out:?}");
                }
                let took = start.elapsed();
                for r in &refs {
                    assert_eq!(server.charges_for(r), 1, "reconciling charges nothing");
                }
                took
            })
        })
    });
    let fresh = AtomicU64::new(0);
    group.bench_function("fresh_call", |b| {
        b.iter(|| {
            let r = format!("fresh-{}", fresh.fetch_add(1, Ordering::Relaxed));
            let out = rt
                .block_on(ex.call("pay", &server.pay_input(&r), keyed(&r)))
                .expect("a charge");
            assert!(!out.cached && !out.reconciled);
        })
    });
    group.finish();
}

criterion_group!(reconcile, benches);
criterion_main!(reconcile);

//! The claim + complete driver shared by the `cache` and `store` benches:
//! `callers` tasks each claim fresh keys and record them, together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use toolhost::store::{CallState, ClaimOutcome, ClaimRequest, Store, StoredOutcome};

/// Runs `iters` claim + complete pairs over `callers` concurrent callers on
/// `store` (keys `k<n>` from `seq`) and returns the time `iters` pairs took.
pub async fn claim_complete(
    store: &Store,
    seq: &Arc<AtomicU64>,
    iters: u64,
    callers: u64,
) -> Duration {
    let start = Instant::now();
    let per = iters.div_ceil(callers);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (store, seq) = (store.clone(), seq.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let key = format!("k{}", seq.fetch_add(1, Ordering::Relaxed));
                let claim = ClaimRequest {
                    key: key.clone(),
                    tool: "bench".into(),
                    effect: "side-effecting".into(),
                    scope: String::new(),
                    input: "{}".into(),
                    owner: store.owner_id().into(),
                    now_ms: 1,
                    component_digest: "bench".into(),
                    policy_digest: "bench".into(),
                    limits: "{}".into(),
                };
                let ClaimOutcome::Acquired { fence, .. } = store.claim(claim).await.expect("claim")
                else {
                    panic!("a fresh key is acquired");
                };
                let outcome = StoredOutcome {
                    ok: true,
                    output: Some(serde_json::json!({"ok": true})),
                    error: None,
                    fuel_used: 1,
                    duration_us: 1,
                    resolutions: Vec::new(),
                };
                store
                    .complete(&key, fence, CallState::Done, outcome, 2, None)
                    .await
                    .expect("complete");
            }
        }));
    }
    for t in tasks {
        t.await.expect("a caller");
    }
    // Scale to exactly `iters` pairs (the callers ran a few more).
    let executed = per * callers;
    Duration::from_secs_f64(start.elapsed().as_secs_f64() * iters as f64 / executed as f64)
}

//! 200 requests in a row with 30 % transient faults injected on the primary
//! and a healthy fallback: every request succeeds, and the measured retry and
//! fallback rates agree with what the server injected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toolhost::model::{ChatRequest, ErrorKind};

use super::{Setup, Wire};
use crate::support::model_server::{ModelServer, Step};

const REQUESTS: usize = 200;
const FAULT_RATE: f64 = 0.3;

#[tokio::test]
async fn two_hundred_requests_through_30_percent_faults_all_succeed() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    // Each primary request fails with probability 0.3, with one of six
    // transient faults; what was injected is logged by kind.
    let injected: Arc<Mutex<BTreeMap<ErrorKind, u64>>> = Arc::default();
    let log = injected.clone();
    let mut rng = StdRng::seed_from_u64(2026);
    primary.otherwise(move |_| {
        if !rng.random_bool(FAULT_RATE) {
            return Step::text("primary ok");
        }
        let (step, kind) = match rng.random_range(0..6) {
            0 => (Step::Status(500), ErrorKind::ServerError),
            1 => (Step::Status(502), ErrorKind::ServerError),
            2 => (Step::Status(503), ErrorKind::Overloaded),
            3 => (Step::Status(504), ErrorKind::ServerError),
            4 => (Step::Status(529), ErrorKind::Overloaded),
            _ => (Step::Drop, ErrorKind::Connection),
        };
        *log.lock().unwrap().entry(kind).or_default() += 1;
        step
    });
    let (chain, clock) = Setup::new()
        .model(Wire::Anthropic, &primary, "primary", None)
        .model(Wire::OpenAi, &backup, "backup", None)
        .build();

    let mut served_by_backup = 0;
    let mut fallbacks_after_a_fault = 0;
    for i in 0..REQUESTS {
        let served = chain
            .call(&ChatRequest::user(format!("request {i}")))
            .await
            .unwrap_or_else(|u| {
                panic!("request {i} failed: {} ({:?})", u.error, u.report);
            });
        let r = &served.report;
        if r.served_by.as_deref() == Some("backup") {
            served_by_backup += 1;
            assert_eq!(r.fallbacks.len(), 1, "{r:?}");
            if r.fallbacks[0].reason != ErrorKind::CircuitOpen {
                fallbacks_after_a_fault += 1;
            }
        } else {
            assert!(r.fallbacks.is_empty());
        }
        // Requests arrive a second apart, so an open breaker closes again.
        clock.advance(Duration::from_secs(1));
    }

    let m = chain.metrics();
    let injected = injected.lock().unwrap().clone();
    let faults: u64 = injected.values().sum();
    let primary_attempts = primary.requests() as u64;
    assert_eq!(m.requests as usize, REQUESTS);
    assert_eq!(m.failed, 0);
    assert_eq!(primary.violations(), Vec::<String>::new());
    assert_eq!(backup.violations(), Vec::<String>::new());

    // The client saw exactly what the server injected, kind by kind.
    let mut seen = m.attempt_errors.clone();
    seen.remove(&ErrorKind::CircuitOpen);
    assert_eq!(seen, injected);
    assert_eq!(m.attempts, primary_attempts + backup.requests() as u64);

    // Every fault was retried, or ended the primary's turn with a fallback.
    assert_eq!(faults, m.retries + fallbacks_after_a_fault);
    let fault_rate = faults as f64 / primary_attempts as f64;
    assert!(
        (fault_rate - FAULT_RATE).abs() < 0.06,
        "injected rate {fault_rate}"
    );
    let retries_per_primary_attempt = m.retries as f64 / primary_attempts as f64;
    assert!(
        (retries_per_primary_attempt - FAULT_RATE).abs() < 0.06,
        "retry rate {retries_per_primary_attempt}"
    );

    // The metric itself: retries per attempt (the backup's attempts
    // included) is the injected faults per attempt, less the few faults
    // that ended in a fallback instead of a retry.
    let injected_per_attempt = faults as f64 / m.attempts as f64;
    assert!(m.retry_rate <= injected_per_attempt);
    assert!(
        injected_per_attempt - m.retry_rate <= 3.0 / m.attempts as f64,
        "{m:?}"
    );

    // Fallbacks are the requests the backup served, no more, no fewer.
    assert_eq!(m.fell_back, served_by_backup);
    assert_eq!(backup.requests() as u64, served_by_backup);
    assert!((m.fallback_rate - served_by_backup as f64 / REQUESTS as f64).abs() < 1e-9);
    // Retries absorb 30 % faults (five in a row is 0.3^5 = 0.24 %), so a
    // fallback after exhausted retries is rare; the rest are the breaker's:
    // per attempt, 30 % faults reach 50 % in a small window now and then
    // (min_calls = 5), and then the backup serves until a probe succeeds.
    assert!(
        fallbacks_after_a_fault <= 3,
        "{fallbacks_after_a_fault} exhausted retries"
    );
    let breaker_fallbacks = served_by_backup - fallbacks_after_a_fault;
    assert_eq!(breaker_fallbacks > 0, m.breaker_opens > 0, "{m:?}");
    eprintln!(
        "soak: {faults} faults in {primary_attempts} primary attempts ({fault_rate:.3}), {} retries, \
         {served_by_backup} fallbacks ({fallbacks_after_a_fault} after exhausted retries), {} breaker opens",
        m.retries, m.breaker_opens
    );
}

//! Counters over every request a chain served: the retry rate, the fallback
//! rate and errors by kind, for `toolhost stats`, `/metrics` and alerts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::model::ErrorKind;
use crate::model::report::Report;

/// Live counters; [`Metrics::snapshot`] reads them.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    failed: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    fell_back: AtomicU64,
    primary_alerts: AtomicU64,
    attempt_errors: Mutex<BTreeMap<ErrorKind, u64>>,
    request_errors: Mutex<BTreeMap<ErrorKind, u64>>,
}

/// The counters at one moment, with the rates derived from them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub requests: u64,
    pub failed: u64,
    /// Attempts that reached a provider.
    pub attempts: u64,
    pub retries: u64,
    /// Requests that moved down the chain at least once.
    pub fell_back: u64,
    /// Retries per attempt.
    pub retry_rate: f64,
    /// Requests that fell back, per request.
    pub fallback_rate: f64,
    /// Times any breaker opened.
    pub breaker_opens: u64,
    /// `rate_limited` answers, which breakers track as quota, not health.
    pub quota_hits: u64,
    /// Outages of the primary longer than the alert window.
    pub primary_alerts: u64,
    /// Failed attempts by kind (`circuit_open` rejections included).
    pub attempt_errors: BTreeMap<ErrorKind, u64>,
    /// Failed requests by the kind returned.
    pub request_errors: BTreeMap<ErrorKind, u64>,
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe(&self, report: &Report, error: Option<ErrorKind>) {
        self.requests.fetch_add(1, Relaxed);
        self.attempts
            .fetch_add(report.network_attempts() as u64, Relaxed);
        self.retries.fetch_add(report.retries.len() as u64, Relaxed);
        if !report.fallbacks.is_empty() {
            self.fell_back.fetch_add(1, Relaxed);
        }
        let mut by_kind = lock(&self.attempt_errors);
        for kind in report.attempts.iter().filter_map(|a| a.error) {
            *by_kind.entry(kind).or_default() += 1;
        }
        drop(by_kind);
        if let Some(kind) = error {
            self.failed.fetch_add(1, Relaxed);
            *lock(&self.request_errors).entry(kind).or_default() += 1;
        }
    }

    pub(crate) fn primary_alert(&self) {
        self.primary_alerts.fetch_add(1, Relaxed);
    }

    /// The counters now; `breaker_opens` and `quota_hits` come from the
    /// breakers.
    pub fn snapshot(&self, breaker_opens: u64, quota_hits: u64) -> Snapshot {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let (requests, attempts, retries, fell_back) = (
            self.requests.load(Relaxed),
            self.attempts.load(Relaxed),
            self.retries.load(Relaxed),
            self.fell_back.load(Relaxed),
        );
        Snapshot {
            requests,
            failed: self.failed.load(Relaxed),
            attempts,
            retries,
            fell_back,
            retry_rate: ratio(retries, attempts),
            fallback_rate: ratio(fell_back, requests),
            breaker_opens,
            quota_hits,
            primary_alerts: self.primary_alerts.load(Relaxed),
            attempt_errors: lock(&self.attempt_errors).clone(),
            request_errors: lock(&self.request_errors).clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counter maps stay consistent across a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

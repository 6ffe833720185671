//! Retry: the [`RetryPolicy`] decides (is this error worth another try, and
//! after how long); the [`Retry`] wrapper loops, sleeps on the injected clock
//! and records every attempt and retry in the request's report.
//!
//! Why full jitter: many clients that failed together must not retry
//! together; a uniform sleep in `[0, min(max, base x 2^n)]` spreads them best
//! for the least total wait. `Retry-After` is a floor, never a ceiling: the
//! provider knows when its quota refills. Why a budget as well as a cap: a
//! cap bounds attempts, but five 60 s timeouts are five minutes; the
//! request's budget (in [`CallContext`]) bounds the time: an attempt is cut
//! off when it runs out, and a retry whose sleep would overrun it is not
//! started.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::CallContext;
use crate::clock::Clock;
use crate::config::RetryConfig;
use crate::model::report::{Attempt, Retried, ms};
use crate::model::{BoxFuture, ChatRequest, ChatResponse, ErrorKind, Model, ModelError};

/// When and how long to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per model, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub fn from_config(c: &RetryConfig) -> Self {
        RetryPolicy {
            max_attempts: c.max_attempts,
            base_delay: Duration::from_millis(c.base_delay_ms),
            max_delay: Duration::from_millis(c.max_delay_ms),
        }
    }

    /// Transient kinds are retried; the provider's `x-should-retry` overrides.
    pub fn is_retryable(&self, e: &ModelError) -> bool {
        e.should_retry.unwrap_or_else(|| is_transient(e.kind))
    }

    /// The sleep before retry number `retry` (0 after the first attempt):
    /// uniform in `[0, min(max, base x 2^retry)]`, raised to `retry_after`.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>, rng: &mut StdRng) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(31)));
        let ceiling = ms(exp.min(self.max_delay));
        let jitter = Duration::from_millis(rng.random_range(0..=ceiling));
        jitter.max(retry_after.unwrap_or_default())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::from_config(&RetryConfig::default())
    }
}

/// The kinds worth another try, as the design lists them.
pub fn is_transient(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::RateLimited
            | ErrorKind::Overloaded
            | ErrorKind::ServerError
            | ErrorKind::Timeout
            | ErrorKind::Connection
    )
}

/// Retries `inner` under a policy.
#[derive(Debug)]
pub struct Retry<M> {
    inner: M,
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    rng: Mutex<StdRng>,
}

impl<M: Model> Retry<M> {
    pub fn new(inner: M, policy: RetryPolicy, clock: Arc<dyn Clock>, seed: u64) -> Self {
        Retry {
            inner,
            policy,
            clock,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        // The RNG has no invariant a panic could break.
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        self.policy.backoff(retry, retry_after, &mut rng)
    }
}

impl<M: Model> Model for Retry<M> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let name = self.inner.name();
            let mut n = 1;
            loop {
                let start = cx.now();
                cx.begin_attempt(name, n);
                let result = within_budget(cx, self.inner.chat(req, cx)).await;
                let err = result.as_ref().err();
                let marks = cx.end_attempt(name, err.map(|e| e.kind));
                cx.attempt(Attempt {
                    model: name.to_string(),
                    n,
                    error: err.map(|e| e.kind),
                    status: err.and_then(|e| e.status),
                    elapsed_ms: ms(cx.now().saturating_sub(start)),
                    first_token_ms: marks.first_token_ms(),
                    // A completed stream's output is the turn; a broken
                    // one's is thrown away, and counted.
                    tokens_discarded: if err.is_some() { marks.tokens() } else { 0 },
                });
                let e = match result {
                    Ok(r) => return Ok(r),
                    Err(e) => e,
                };
                tracing::debug!(target: "toolhost::model", model = name, attempt = n, kind = %e.kind, "attempt failed");
                if !self.policy.is_retryable(&e) || n >= self.policy.max_attempts {
                    return Err(e);
                }
                let delay = self.delay(n - 1, e.retry_after);
                if delay >= cx.remaining() {
                    tracing::info!(target: "toolhost::model", model = name, kind = %e.kind, delay_ms = ms(delay),
                        "not retrying: the wait would overrun the request budget");
                    return Err(e);
                }
                tracing::info!(target: "toolhost::model", model = name, attempt = n, kind = %e.kind,
                    delay_ms = ms(delay), "retrying");
                cx.retried(Retried {
                    model: name.to_string(),
                    after_attempt: n,
                    reason: e.kind,
                    delay_ms: ms(delay),
                    retry_after_ms: e.retry_after.map(ms),
                });
                self.clock.sleep(delay).await;
                n += 1;
            }
        })
    }
}

/// `attempt`, cut off when the request's budget runs out. Cutting it here,
/// outside the breaker, drops the breaker's permit unsettled: a spent budget
/// is not the dependency's fault.
async fn within_budget(
    cx: &CallContext,
    attempt: impl Future<Output = Result<ChatResponse, ModelError>>,
) -> Result<ChatResponse, ModelError> {
    let left = cx.remaining();
    let spent = || ModelError::new(ErrorKind::Timeout, "the request budget is spent");
    if left.is_zero() {
        return Err(spent());
    }
    tokio::time::timeout(left, attempt)
        .await
        .unwrap_or_else(|_| Err(spent()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::Scripted;

    #[test]
    fn backoff_is_full_jitter_under_a_growing_capped_ceiling() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 0..10 {
            let ceiling = Duration::from_secs(1 << retry.min(6)).min(Duration::from_secs(60));
            for _ in 0..50 {
                assert!(p.backoff(retry, None, &mut rng) <= ceiling);
            }
        }
        let floor = Duration::from_secs(90);
        assert_eq!(
            p.backoff(0, Some(floor), &mut rng),
            floor,
            "Retry-After raises the floor"
        );
    }

    #[test]
    fn only_transient_kinds_retry_unless_the_provider_says() {
        let p = RetryPolicy::default();
        for kind in ErrorKind::ALL {
            assert_eq!(
                p.is_retryable(&ModelError::new(kind, "")),
                is_transient(kind)
            );
        }
        let mut e = ModelError::new(ErrorKind::ServerError, "");
        e.should_retry = Some(false);
        assert!(!p.is_retryable(&e));
    }

    #[tokio::test]
    async fn the_loop_sleeps_on_the_injected_clock() {
        let turns = serde_json::from_str(
            r#"[{"fault": "overloaded"}, {"fault": "rate_limited", "retry_after_ms": 5000}, {"text": "ok"}]"#,
        )
        .unwrap();
        let manual = ManualClock::new();
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        let retry = Retry::new(
            Scripted::new("s", turns),
            RetryPolicy::default(),
            clock.clone(),
            3,
        );
        let cx = CallContext::new(clock, Duration::from_secs(120));
        let r = retry.chat(&ChatRequest::user("x"), &cx).await.unwrap();
        assert_eq!(r.text, "ok");
        let report = cx.report();
        // Every backoff went through the injected clock, one sleep a
        // retry, each exactly the delay the report names.
        let slept: Vec<u64> = manual.sleeps().iter().map(|d| ms(*d)).collect();
        let reported: Vec<u64> = report.retries.iter().map(|r| r.delay_ms).collect();
        assert_eq!(slept, reported);
        assert_eq!(ms(manual.now()), reported.iter().sum::<u64>());
        assert!(
            report.retries[1].delay_ms >= 5_000,
            "Retry-After is a floor"
        );
        assert_eq!(report.attempts.len(), 3);
    }
}

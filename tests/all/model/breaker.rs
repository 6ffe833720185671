//! Circuit breakers over HTTP, on a manual clock: they open at their
//! thresholds, reject without a network call while open, admit one probe
//! half-open, close on success, re-open for longer on failure, and ignore
//! rate limits and caller errors.

use std::time::Duration;

use toolhost::model::{ChatRequest, ErrorKind};
use toolhost::resilience::breaker::State;
use toolhost::resilience::{Chain, ManualClock};

use super::{Setup, Wire};
use crate::support::model_server::{ModelServer, Step};

/// One model, one attempt per request: each request is one breaker verdict.
async fn single(wire: Wire) -> (ModelServer, Chain, std::sync::Arc<ManualClock>) {
    let server = ModelServer::start().await;
    let mut setup = Setup::new().model(wire, &server, "m", None);
    setup.retry.max_attempts = 1;
    let (chain, clock) = setup.build();
    (server, chain, clock)
}

async fn call(chain: &Chain) -> Result<(), ErrorKind> {
    chain
        .call(&ChatRequest::user("hi"))
        .await
        .map(|_| ())
        .map_err(|u| {
            // A one-model chain wraps the cause; the attempt says what it was.
            u.report
                .attempts
                .last()
                .and_then(|a| a.error)
                .unwrap_or(u.error.kind)
        })
}

fn state(chain: &Chain) -> (State, Option<u64>) {
    let s = &chain.list()[0].breaker;
    (s.state, s.open_remaining_ms)
}

#[tokio::test]
async fn opens_after_consecutive_failures_and_rejects_without_calling() {
    let (server, chain, _) = single(Wire::Anthropic).await;
    server.otherwise(|_| Step::Status(500));
    for _ in 0..4 {
        assert_eq!(call(&chain).await, Err(ErrorKind::ServerError));
        assert_eq!(state(&chain).0, State::Closed);
    }
    assert_eq!(call(&chain).await, Err(ErrorKind::ServerError));
    assert_eq!(state(&chain), (State::Open, Some(30_000)));
    for _ in 0..10 {
        assert_eq!(call(&chain).await, Err(ErrorKind::CircuitOpen));
    }
    assert_eq!(server.requests(), 5, "no network call while open");
    assert_eq!(chain.metrics().breaker_opens, 1);
}

#[tokio::test]
async fn opens_at_the_failure_rate_once_the_window_has_min_calls() {
    let (server, chain, _) = single(Wire::OpenAi).await;
    // 50 % over 10 calls, never 5 in a row: opens when the rate is reached
    // with at least min_calls (5) calls.
    let ok = || Step::text("ok");
    server.push([ok(), ok(), ok(), Step::Status(503), Step::Status(503)]); // 2/5 = 40 %
    for _ in 0..5 {
        let _ = call(&chain).await;
    }
    assert_eq!(state(&chain).0, State::Closed);
    server.push([Step::Status(502)]); // 3/6 = 50 %
    let _ = call(&chain).await;
    assert_eq!(state(&chain).0, State::Open);
}

#[tokio::test]
async fn half_open_admits_one_probe_and_closes_on_success() {
    let (server, chain, clock) = single(Wire::Anthropic).await;
    server.push((0..5).map(|_| Step::Status(529)));
    for _ in 0..5 {
        let _ = call(&chain).await;
    }
    clock.advance(Duration::from_millis(29_999));
    assert_eq!(call(&chain).await, Err(ErrorKind::CircuitOpen));
    clock.advance(Duration::from_millis(1));
    assert_eq!(state(&chain).0, State::HalfOpen);
    // Two requests at once: the probe is slow, the other is turned away.
    server.push([Step::Delay(
        Duration::from_millis(200),
        Box::new(Step::text("probe ok")),
    )]);
    let (a, b) = tokio::join!(call(&chain), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        call(&chain).await
    });
    assert_eq!((a, b), (Ok(()), Err(ErrorKind::CircuitOpen)));
    assert_eq!(server.requests(), 6);
    assert_eq!(state(&chain), (State::Closed, None));
    assert_eq!(call(&chain).await, Ok(()));
}

#[tokio::test]
async fn a_failed_probe_reopens_for_longer_and_recovery_resets_the_growth() {
    let (server, chain, clock) = single(Wire::OpenAi).await;
    server.otherwise(|_| Step::Status(504));
    for _ in 0..5 {
        let _ = call(&chain).await;
    }
    let mut open_for = Vec::new();
    for _ in 0..5 {
        let (_, remaining) = state(&chain);
        let remaining = remaining.expect("open");
        open_for.push(remaining);
        clock.advance(Duration::from_millis(remaining));
        assert_eq!(
            call(&chain).await,
            Err(ErrorKind::ServerError),
            "the probe fails"
        );
    }
    assert_eq!(open_for, [30_000, 60_000, 120_000, 240_000, 300_000]);
    // Recovery closes it and resets the growth.
    clock.advance(Duration::from_secs(300));
    server.otherwise(|_| Step::text("ok"));
    assert_eq!(call(&chain).await, Ok(()));
    server.otherwise(|_| Step::Status(500));
    for _ in 0..5 {
        let _ = call(&chain).await;
    }
    assert_eq!(state(&chain), (State::Open, Some(30_000)));
}

#[tokio::test]
async fn retry_after_lengthens_the_open_time() {
    let (server, chain, _) = single(Wire::Anthropic).await;
    server.otherwise(|_| Step::Status(503).with_header("retry-after", "45"));
    for _ in 0..5 {
        let _ = call(&chain).await;
    }
    assert_eq!(state(&chain), (State::Open, Some(45_000)));
}

#[tokio::test]
async fn rate_limits_and_caller_errors_never_trip_it() {
    for wire in super::BOTH {
        let (server, chain, _) = single(wire).await;
        server.push((0..20).map(|_| Step::RateLimited { retry_after_s: 1 }));
        server.push((0..20).map(|i| {
            [
                Step::Status(400),
                Step::Status(401),
                Step::Status(404),
                Step::ContextLength,
            ][i % 4]
                .clone()
        }));
        for _ in 0..40 {
            assert_ne!(call(&chain).await, Err(ErrorKind::CircuitOpen));
        }
        let s = &chain.list()[0].breaker;
        assert_eq!(
            (s.state, s.opens, s.window_calls, s.quota_hits),
            (State::Closed, 0, 0, 20)
        );
        assert_eq!(server.requests(), 40);
        assert_eq!(
            (chain.metrics().quota_hits, chain.metrics().breaker_opens),
            (20, 0)
        );
    }
}

#[tokio::test]
async fn a_budget_cut_is_not_charged_to_the_breaker_but_a_slow_dependency_is() {
    let server = ModelServer::start().await;
    server.otherwise(|_| Step::Stall);
    // The budget (200 ms) runs out before the attempt timeout (5 s).
    let mut setup = Setup::new().model(Wire::OpenAi, &server, "m", None);
    setup.retry.budget_ms = 200;
    setup.retry.max_attempts = 1;
    let (chain, _) = setup.build();
    let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
    assert_eq!(failed.report.attempts[0].error, Some(ErrorKind::Timeout));
    assert_eq!(chain.list()[0].breaker.window_calls, 0);

    // The attempt timeout (150 ms) runs out first: a health failure.
    let mut setup = Setup::new().model(Wire::OpenAi, &server, "m", None);
    setup.retry.attempt_timeout_ms = 150;
    setup.retry.max_attempts = 1;
    let (chain, _) = setup.build();
    chain.call(&ChatRequest::user("hi")).await.unwrap_err();
    assert_eq!(chain.list()[0].breaker.window_failures, 1);
}

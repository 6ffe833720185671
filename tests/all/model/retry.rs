//! Retry over HTTP: caller errors once, transient errors up to the cap,
//! `Retry-After` honoured, the request budget never exceeded.

use std::time::Duration;

use toolhost::model::{ChatRequest, ErrorKind};

use super::{Setup, Wire};
use crate::support::model_server::{ModelServer, Step};

#[tokio::test]
async fn a_non_retryable_error_is_attempted_once() {
    for step in [
        Step::Status(400),
        Step::Status(401),
        Step::Status(404),
        Step::ContentPolicy,
        Step::MalformedJson,
    ] {
        let server = ModelServer::start().await;
        server.otherwise(move |_| step.clone());
        let (chain, clock) = Setup::new()
            .model(Wire::OpenAi, &server, "only", None)
            .build();
        let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
        assert_eq!(server.requests(), 1, "{failed}");
        assert_eq!(failed.report.attempts.len(), 1);
        assert!(failed.report.retries.is_empty() && clock.sleeps().is_empty());
    }
}

#[tokio::test]
async fn a_retryable_error_is_attempted_up_to_the_cap() {
    let server = ModelServer::start().await;
    server.otherwise(|_| Step::Status(529));
    let (chain, clock) = Setup::new()
        .model(Wire::Anthropic, &server, "only", None)
        .build();
    let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
    assert_eq!(server.requests(), 5);
    assert_eq!(failed.error.kind, ErrorKind::AllModelsUnavailable);
    let r = &failed.report;
    assert_eq!(
        r.attempts.iter().map(|a| a.n).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(r.retries.iter().all(|x| x.reason == ErrorKind::Overloaded));
    // Full jitter: retry n sleeps at most 1 s x 2^n.
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 4);
    for (n, s) in sleeps.iter().enumerate() {
        assert!(*s <= Duration::from_secs(1 << n), "retry {n} slept {s:?}");
        assert_eq!(r.retries[n].delay_ms, s.as_millis() as u64);
    }
}

#[tokio::test]
async fn recovery_after_transient_faults_is_served_by_the_same_model() {
    let server = ModelServer::start().await;
    server.push([
        Step::Status(500),
        Step::Drop,
        Step::Status(503),
        Step::text("third time lucky"),
    ]);
    let (chain, _) = Setup::new()
        .model(Wire::OpenAi, &server, "only", None)
        .build();
    let served = chain.call(&ChatRequest::user("hi")).await.unwrap();
    assert_eq!(served.response.text, "third time lucky");
    assert_eq!(served.report.served_by.as_deref(), Some("only"));
    let reasons: Vec<_> = served.report.retries.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [
            ErrorKind::ServerError,
            ErrorKind::Connection,
            ErrorKind::Overloaded
        ]
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    for (step, floor) in [
        (
            Step::RateLimited { retry_after_s: 7 },
            Duration::from_secs(7),
        ),
        (Step::RateLimitedMs(2_500), Duration::from_millis(2_500)),
        (
            Step::Status(503).with_header("retry-after", "3"),
            Duration::from_secs(3),
        ),
    ] {
        let server = ModelServer::start().await;
        server.push([step]);
        let (chain, clock) = Setup::new()
            .model(Wire::Anthropic, &server, "only", None)
            .build();
        let served = chain.call(&ChatRequest::user("hi")).await.unwrap();
        assert!(
            clock.sleeps()[0] >= floor,
            "slept {:?}, asked {floor:?}",
            clock.sleeps()
        );
        assert_eq!(
            served.report.retries[0].retry_after_ms,
            Some(floor.as_millis() as u64)
        );
    }
}

#[tokio::test]
async fn x_should_retry_false_stops_a_retry() {
    let server = ModelServer::start().await;
    server.otherwise(|_| Step::Status(503).with_header("x-should-retry", "false"));
    let (chain, _) = Setup::new()
        .model(Wire::OpenAi, &server, "only", None)
        .build();
    chain.call(&ChatRequest::user("hi")).await.unwrap_err();
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn the_total_budget_is_never_exceeded() {
    // Retry-After of 4 s against a 10 s budget: attempts at 0, 4 and 8 s;
    // a third wait would end at 12 s, so it is not started.
    let server = ModelServer::start().await;
    server.otherwise(|_| Step::RateLimited { retry_after_s: 4 });
    let mut setup = Setup::new().model(Wire::OpenAi, &server, "only", None);
    setup.retry.budget_ms = 10_000;
    let (chain, clock) = setup.build();
    let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
    assert_eq!(server.requests(), 3);
    assert!(failed.report.elapsed_ms <= 10_000);
    assert_eq!(
        clock.sleeps().iter().sum::<Duration>(),
        Duration::from_secs(8)
    );

    // And with plain jitter, across seeds and a tight budget.
    for seed in 0..20u64 {
        let server = ModelServer::start().await;
        server.otherwise(|_| Step::Status(500));
        let mut setup = Setup::new().model(Wire::OpenAi, &server, "only", None);
        setup.retry.budget_ms = 3_000;
        setup.retry.max_attempts = 10;
        setup.seed = seed;
        let (chain, clock) = setup.build();
        let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
        let slept: Duration = clock.sleeps().iter().sum();
        assert!(slept < Duration::from_secs(3), "slept {slept:?}");
        assert!(failed.report.elapsed_ms < 3_000);
    }
}

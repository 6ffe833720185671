//! The chain moves on after exhausted retries, on an open breaker and on
//! `context_length` (to a larger window), reports the serving model, and
//! returns caller errors instead of falling back.

use std::time::Duration;

use toolhost::model::{ChatRequest, ErrorKind};
use toolhost::resilience::FellBack;

use super::{Setup, Wire};
use crate::support::model_server::{ModelServer, Step};
use toolhost::resilience::breaker::State;

fn fell(from: &str, to: &str, reason: ErrorKind) -> FellBack {
    FellBack {
        from: from.into(),
        to: to.into(),
        reason,
    }
}

#[tokio::test]
async fn exhausted_retries_move_on_and_the_report_names_the_server() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Status(502));
    backup.push([Step::text("from the backup")]);
    let (chain, _) = Setup::new()
        .model(Wire::Anthropic, &primary, "primary", None)
        .model(Wire::OpenAi, &backup, "backup", None)
        .build();
    let served = chain.call(&ChatRequest::user("hi")).await.unwrap();
    assert_eq!(served.response.text, "from the backup");
    assert_eq!(served.report.served_by.as_deref(), Some("backup"));
    assert_eq!(
        served.report.fallbacks,
        [fell("primary", "backup", ErrorKind::ServerError)]
    );
    assert_eq!((primary.requests(), backup.requests()), (5, 1));
}

#[tokio::test]
async fn an_open_breaker_moves_on_without_calling_the_primary() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Status(500));
    let (chain, _) = Setup::new()
        .model(Wire::OpenAi, &primary, "primary", None)
        .model(Wire::OpenAi, &backup, "backup", None)
        .build();
    // Five failures in a row open the primary's breaker.
    chain.call(&ChatRequest::user("one")).await.unwrap();
    assert_eq!(primary.requests(), 5);
    let served = chain.call(&ChatRequest::user("two")).await.unwrap();
    assert_eq!(
        primary.requests(),
        5,
        "an open breaker makes no network call"
    );
    assert_eq!(
        served.report.fallbacks,
        [fell("primary", "backup", ErrorKind::CircuitOpen)]
    );
    assert_eq!(served.report.served_by.as_deref(), Some("backup"));
}

#[tokio::test]
async fn context_length_moves_to_a_larger_window() {
    let (small, smaller, large) = (
        ModelServer::start().await,
        ModelServer::start().await,
        ModelServer::start().await,
    );
    small.push([Step::ContextLength]);
    let (chain, _) = Setup::new()
        .model(Wire::OpenAi, &small, "small", Some(128_000))
        .model(Wire::Anthropic, &smaller, "smaller", Some(32_000))
        .model(Wire::Anthropic, &large, "large", Some(200_000))
        .build();
    let served = chain
        .call(&ChatRequest::user("a long prompt"))
        .await
        .unwrap();
    assert_eq!(served.report.served_by.as_deref(), Some("large"));
    assert_eq!(
        served.report.fallbacks,
        [fell("small", "large", ErrorKind::ContextLength)]
    );
    assert_eq!(
        (small.requests(), smaller.requests(), large.requests()),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn invalid_request_is_returned_not_fallen_back() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.push([Step::Status(400)]);
    let (chain, _) = Setup::new()
        .model(Wire::Anthropic, &primary, "primary", None)
        .model(Wire::OpenAi, &backup, "backup", None)
        .build();
    let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
    assert_eq!(failed.error.kind, ErrorKind::InvalidRequest);
    assert_eq!(failed.report.served_by, None);
    assert_eq!(backup.requests(), 0);
}

#[tokio::test]
async fn when_every_model_fails_the_error_is_all_models_unavailable() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Status(503));
    backup.otherwise(|_| Step::Drop);
    let (chain, _) = Setup::new()
        .model(Wire::Anthropic, &primary, "primary", None)
        .model(Wire::OpenAi, &backup, "backup", None)
        .build();
    let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
    assert_eq!(failed.error.kind, ErrorKind::AllModelsUnavailable);
    assert!(
        failed.error.message.contains("primary: overloaded")
            && failed.error.message.contains("backup: connection")
    );
    assert_eq!(
        chain
            .metrics()
            .request_errors
            .get(&ErrorKind::AllModelsUnavailable),
        Some(&1)
    );
}

#[tokio::test]
async fn a_primary_down_longer_than_the_window_raises_one_alert() {
    let (logs, _guard) = super::Captured::install();
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Status(529));
    let (chain, clock) = Setup::new()
        .model(Wire::Anthropic, &primary, "primary", None)
        .model(Wire::OpenAi, &backup, "backup", None)
        .alert_after(Duration::from_secs(300))
        .build();
    let mut alerts = Vec::new();
    for _ in 0..8 {
        chain.call(&ChatRequest::user("hi")).await.unwrap();
        alerts.push(chain.metrics().primary_alerts);
        clock.advance(Duration::from_secs(60));
    }
    // Down since the first request; alerted once it has been > 5 min, once.
    let first = alerts.iter().position(|a| *a == 1).expect("an alert");
    assert!((4..=6).contains(&first), "{alerts:?}");
    assert_eq!(*alerts.last().unwrap(), 1);
    let alert_lines: Vec<_> = logs
        .text()
        .lines()
        .filter(|l| l.contains("toolhost::alert"))
        .map(String::from)
        .collect();
    assert_eq!(alert_lines.len(), 1, "{alert_lines:?}");
    assert!(
        alert_lines[0].contains("primary model unavailable")
            && alert_lines[0].contains("model=primary")
    );
    // Recovery ends the outage.
    primary.otherwise(|_| Step::text("back"));
    clock.advance(Duration::from_secs(600));
    let served = chain.call(&ChatRequest::user("hi")).await.unwrap();
    assert_eq!(served.report.served_by.as_deref(), Some("primary"));
}

#[tokio::test]
async fn a_stalled_primary_times_out_per_attempt_counts_against_its_breaker_and_falls_back() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Stall);
    let mut setup = Setup::new()
        .model(Wire::OpenAi, &primary, "primary", None)
        .model(Wire::Anthropic, &backup, "backup", None);
    setup.retry.attempt_timeout_ms = 150;
    setup.retry.max_attempts = 2;
    let (chain, _) = setup.build();
    let served = chain.call(&ChatRequest::user("hi")).await.unwrap();
    assert_eq!(served.report.served_by.as_deref(), Some("backup"));
    assert_eq!(
        served.report.fallbacks,
        [fell("primary", "backup", ErrorKind::Timeout)]
    );
    let primary_breaker = &chain.list()[0].breaker;
    assert_eq!(
        (primary_breaker.state, primary_breaker.window_failures),
        (State::Closed, 2)
    );
}

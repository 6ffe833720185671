//! Every status and fault the server can inject is classified as the design
//! says, for both providers, over real HTTP.

use std::time::Duration;

use toolhost::model::Model;
use toolhost::model::{ChatRequest, ErrorKind, ModelError};
use toolhost::resilience::{AttemptTimeout, CallContext};

use super::{BOTH, Wire, provider};
use crate::support::model_server::{ModelServer, Step};

async fn outcome(wire: Wire, step: Step) -> Result<toolhost::model::ChatResponse, ModelError> {
    // Steps that never answer in time get a short deadline; every other step
    // a generous one, so a loaded machine cannot turn an answer into a timeout.
    let deadline = match &step {
        Step::Stall => Duration::from_millis(300),
        Step::Delay(d, _) if *d >= Duration::from_secs(1) => Duration::from_millis(300),
        _ => Duration::from_secs(10),
    };
    let server = ModelServer::start().await;
    server.push([step]);
    let model = AttemptTimeout::new(provider(wire, &server, "m", Some("sk-test-key")), deadline);
    let result = model
        .chat(&ChatRequest::user("hi"), &CallContext::unbounded())
        .await;
    assert_eq!(server.violations(), Vec::<String>::new(), "{wire:?}");
    result
}

#[tokio::test]
async fn statuses_and_faults_are_classified_for_both_providers() {
    let cases = [
        (Step::Status(400), ErrorKind::InvalidRequest),
        (Step::Status(401), ErrorKind::Auth),
        (Step::Status(403), ErrorKind::Auth),
        (Step::Status(404), ErrorKind::NotFound),
        (Step::Status(413), ErrorKind::ContextLength),
        (
            Step::RateLimited { retry_after_s: 7 },
            ErrorKind::RateLimited,
        ),
        (Step::Status(500), ErrorKind::ServerError),
        (Step::Status(502), ErrorKind::ServerError),
        (Step::Status(503), ErrorKind::Overloaded),
        (Step::Status(504), ErrorKind::ServerError),
        (Step::Status(529), ErrorKind::Overloaded),
        (Step::ContextLength, ErrorKind::ContextLength),
        (Step::ContentPolicy, ErrorKind::ContentPolicy),
        (Step::Stall, ErrorKind::Timeout),
        (
            Step::Delay(Duration::from_secs(5), Box::new(Step::text("late"))),
            ErrorKind::Timeout,
        ),
        (Step::Drop, ErrorKind::Connection),
        (Step::MalformedJson, ErrorKind::MalformedResponse),
        (Step::BrokenToolArgs, ErrorKind::MalformedResponse),
    ];
    for wire in BOTH {
        for (step, kind) in cases.clone() {
            let e = outcome(wire, step.clone())
                .await
                .expect_err(&format!("{wire:?} {step:?} should fail"));
            assert_eq!(e.kind, kind, "{wire:?} {step:?}: {e}");
        }
    }
}

#[tokio::test]
async fn retry_hints_come_from_the_headers() {
    for wire in BOTH {
        let e = outcome(wire, Step::RateLimited { retry_after_s: 7 })
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.retry_after),
            (Some(429), Some(Duration::from_secs(7)))
        );
        let e = outcome(wire, Step::RateLimitedMs(1_250)).await.unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_millis(1_250)));
        let e = outcome(
            wire,
            Step::Status(503).with_header("x-should-retry", "false"),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (e.kind, e.should_retry),
            (ErrorKind::Overloaded, Some(false))
        );
    }
}

#[tokio::test]
async fn a_short_delay_is_just_slow() {
    for wire in BOTH {
        let r = outcome(
            wire,
            Step::Delay(Duration::from_millis(20), Box::new(Step::text("fine"))),
        )
        .await
        .unwrap();
        assert_eq!(r.text, "fine");
    }
}

#[tokio::test]
async fn a_refused_connection_is_connection() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = toolhost::model::Endpoint::new(
        "m",
        "gpt-4o",
        Some(format!("http://127.0.0.1:{port}/v1")),
        None,
    )
    .unwrap();
    let err = toolhost::model::OpenAi::new(e)
        .chat(&ChatRequest::user("hi"), &CallContext::unbounded())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connection, "{err}");
}

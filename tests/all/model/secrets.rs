//! API keys never appear in error text, `Debug` output or log lines, even
//! when a provider echoes the key back (OpenAI's 401 body does).

use std::sync::Arc;

use toolhost::model::{ChatRequest, ErrorKind};
use toolhost::resilience::{ChainBuilder, EntrySpec, ManualClock};

use super::{Captured, Wire, provider};
use crate::support::model_server::{ModelServer, Step};

const KEY: &str = "sk-proj-SECRET-0123456789abcdefghijklmnop";

#[tokio::test]
async fn keys_stay_out_of_errors_debug_output_and_logs() {
    let (logs, _guard) = Captured::install();

    for wire in super::BOTH {
        let server = ModelServer::start().await;
        server.push([Step::Status(503), Step::Status(500), Step::Status(401)]);
        let model = provider(wire, &server, "primary", Some(KEY));
        let chain = ChainBuilder::new(Default::default(), Default::default())
            .clock(Arc::new(ManualClock::new()))
            .seed(1)
            .entry(
                EntrySpec {
                    name: "primary".into(),
                    provider: "x".into(),
                    model: "m".into(),
                    context_window: None,
                },
                model.clone(),
            )
            .build();
        let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
        assert_eq!(failed.error.kind, ErrorKind::Auth, "{wire:?}");
        // The key was sent...
        let seen = server.seen();
        let sent = seen[0]
            .header("x-api-key")
            .or(seen[0].header("authorization"))
            .unwrap();
        assert!(sent.ends_with(KEY));
        // ...and the server echoed it back in the 401 body, scrubbed here.
        if wire == Wire::OpenAi {
            assert!(
                failed.error.message.contains("[redacted]"),
                "{}",
                failed.error
            );
        }
        for text in [
            failed.error.to_string(),
            format!("{:?}", failed.error),
            format!("{failed:?}"),
            serde_json::to_string(&failed.report).unwrap(),
        ] {
            assert!(
                !text.contains(KEY) && !text.contains("SECRET"),
                "leaked: {text}"
            );
        }
    }
    let logs = logs.text();
    assert!(logs.contains("retrying"), "the logs were captured: {logs}");
    assert!(!logs.contains("SECRET"), "leaked into logs: {logs}");
}

#[test]
fn endpoint_debug_hides_the_key() {
    let e = toolhost::model::Endpoint::new(
        "m",
        "gpt-4o",
        None,
        Some(toolhost::model::ApiKey::new(KEY)),
    )
    .unwrap();
    let shown = format!("{e:?}");
    assert!(
        shown.contains("redacted") && !shown.contains("SECRET"),
        "{shown}"
    );
}

//! API keys never appear in error text, `Debug` output or log lines, even
//! when a provider echoes the key back (OpenAI's 401 body does).

use std::io::Write;
use std::sync::{Arc, Mutex};

use toolhost::model::{ChatRequest, ErrorKind};
use toolhost::resilience::{ChainBuilder, EntrySpec, ManualClock};
use tracing_subscriber::fmt::MakeWriter;

use super::{Wire, provider};
use crate::support::model_server::{ModelServer, Step};

const KEY: &str = "sk-proj-SECRET-0123456789abcdefghijklmnop";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn keys_stay_out_of_errors_debug_output_and_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // The test runs on one thread, so a thread-local default sees everything.
    let _guard = tracing::subscriber::set_default(subscriber);

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
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
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

//! Credentials never follow a redirect: a `base_url` answering 3xx to
//! another origin (here a second loopback port that records what reaches
//! it) gets an `invalid_request` error naming the status and the scrubbed
//! `Location`; nothing reaches the redirect's target, nothing is retried and
//! the chain does not fall back. Both providers: Anthropic's `x-api-key` is
//! the header an HTTP client's own cross-origin stripping misses.

use toolhost::model::{ChatRequest, ErrorKind};

use super::{BOTH, Setup, Wire};
use crate::support::model_server::{ModelServer, Step};

#[tokio::test]
async fn a_redirect_is_never_followed_retried_or_fallen_back() {
    for wire in BOTH {
        for status in [301, 302, 303, 307, 308] {
            let (primary, recorder, backup) = (
                ModelServer::start().await,
                ModelServer::start().await,
                ModelServer::start().await,
            );
            let target = format!(
                "http://user:pw@{}/latest/meta-data/iam?token=sk-test-key",
                recorder.addr
            );
            primary.otherwise(move |_| {
                Step::Redirect(status, target.clone()).with_header("x-should-retry", "true")
            });
            let (chain, _) = Setup::new()
                .model(wire, &primary, "primary", None)
                .model(wire, &backup, "backup", None)
                .build();
            let failed = chain.call(&ChatRequest::user("hi")).await.unwrap_err();
            let e = &failed.error;
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{wire:?} {status}: {e}");
            assert_eq!(e.status, Some(status));
            let shown = format!("Location: http://{}/latest/meta-data/iam)", recorder.addr);
            assert!(
                e.message.contains(&format!("HTTP {status} redirect"))
                    && e.message.contains(&shown),
                "{wire:?} {status}: {e}"
            );
            for leaked in ["sk-test-key", "pw@", "token"] {
                assert!(!e.message.contains(leaked), "{wire:?} {status}: {e}");
            }
            assert_eq!(primary.requests(), 1, "{wire:?} {status}: no retry");
            assert_eq!(
                (recorder.connections(), recorder.requests()),
                (0, 0),
                "{wire:?} {status}: nothing reached the redirect's target"
            );
            assert_eq!(backup.connections(), 0, "{wire:?} {status}: no fallback");
            assert!(failed.report.fallbacks.is_empty(), "{wire:?} {status}");
            // The one request that was made carried the key, to the
            // configured address only.
            let sent = primary.seen();
            let header = match wire {
                Wire::Anthropic => "x-api-key",
                Wire::OpenAi => "authorization",
            };
            assert!(
                sent[0]
                    .header(header)
                    .is_some_and(|v| v.ends_with("sk-test-key"))
            );
        }
    }
}

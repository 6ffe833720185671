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

/// The echoing key of the tests below: no prefix a real text would share.
const ECHOED: &str = "sk-echo-Qz7Vw3Lp9Xk2Rt8Mn4Bc6Hd1Jf5Gs0Ay";

/// Every 8-character piece of [`ECHOED`] found in `text`.
fn pieces_in(text: &str) -> Vec<&'static str> {
    let mut found: Vec<&'static str> = (0..=ECHOED.len() - 8)
        .map(|i| &ECHOED[i..i + 8])
        .filter(|p| text.contains(p))
        .collect();
    found.dedup();
    found
}

/// Runs the binary in `dir` with the echoed key in its environment and
/// JSON logs at debug level.
async fn binary(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args(args)
        .current_dir(dir)
        .envs(crate::support::state_env(dir))
        .env("TOOLHOST_ECHO_KEY", ECHOED)
        .env("TOOLHOST_LOG", "debug")
        .env("TOOLHOST_LOG_FORMAT", "json");
    tokio::task::spawn_blocking(move || cmd.output().expect("run toolhost"))
        .await
        .unwrap()
}

/// A provider that echoes the key, in a 200 answer and in a long HTML error
/// page (where the key straddles the point error messages are cut), never
/// gets it into `model call --json`, `agent run --json`, `runs show --json`,
/// the logs, or any byte of the SQLite files (journal rows and blobs, WAL
/// included): not whole, and not as any 8-character piece.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_key_never_leaves_in_output_logs_or_the_journal() {
    for (wire, provider) in [(Wire::Anthropic, "anthropic"), (Wire::OpenAi, "openai")] {
        let server = ModelServer::start().await;
        let world = crate::agent::World::new();
        let url = match wire {
            Wire::Anthropic => server.anthropic_url(),
            Wire::OpenAi => server.openai_url(),
        };
        let config = world.write_config(&format!(
            "[[models]]\nname = \"echo\"\nprovider = \"{provider}\"\nmodel = \"m\"\nbase_url = \"{url}\"\napi_key_env = \"TOOLHOST_ECHO_KEY\"\n"
        ));
        let config = config.to_str().unwrap();
        let dir = world.path();
        let mut texts = Vec::new();

        // A 200 that echoes the key, and an HTML page that does.
        server.push([Step::EchoKey, Step::EchoKeyHtml(400)]);
        let args = [
            "--config",
            config,
            "--json",
            "model",
            "call",
            "--message",
            "hi",
        ];
        for expect_ok in [true, false] {
            let out = binary(dir, &args).await;
            assert_eq!(out.status.success(), expect_ok, "{wire:?}: {out:?}");
            texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
            texts.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        assert!(
            texts[0].contains("Your key is [redacted]"),
            "{wire:?}: {}",
            texts[0]
        );
        let failed = format!("{}{}", texts[2], texts[3]);
        assert!(failed.contains("[redacted]"), "{wire:?}: {failed}");

        // An agent run whose answer echoes the key, shown afterwards.
        server.push([Step::EchoKey]);
        let run = [
            "--config", config, "--json", "agent", "run", "hi", "--run-id", "echo",
        ];
        let out = binary(dir, &run).await;
        assert!(out.status.success(), "{wire:?}: {out:?}");
        texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
        texts.push(String::from_utf8_lossy(&out.stderr).into_owned());
        let show = ["--config", config, "--json", "runs", "show", "echo"];
        let out = binary(dir, &show).await;
        assert!(out.status.success(), "{wire:?}: {out:?}");
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(shown.contains("[redacted]"), "{wire:?}: {shown}");
        texts.push(shown);
        texts.push(String::from_utf8_lossy(&out.stderr).into_owned());

        // The server did get the key (so there was something to echo).
        assert_eq!(server.requests(), 3, "{wire:?}");
        for text in &texts {
            assert_eq!(
                pieces_in(text),
                Vec::<&str>::new(),
                "{wire:?}: leaked in {text}"
            );
        }
        // Every file of the database, byte for byte.
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("toolhost.db") || !path.is_file() {
                continue;
            }
            let bytes = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert_eq!(
                pieces_in(&bytes),
                Vec::<&str>::new(),
                "{wire:?}: leaked into {name}"
            );
        }
    }
}

//! The real binary: `toolhost model call` and `toolhost model list` against
//! the fault-injecting server, their `--json` shapes and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::model_server::{ModelServer, Step};
use crate::support::stdout_json;

const KEY: &str = "sk-cli-SECRET-abcdef0123456789";

/// A config with an Anthropic primary and an OpenAI backup on the servers,
/// fast retries (the binary runs on the real clock).
fn config(dir: &Path, primary: &ModelServer, backup: &ModelServer) {
    let text = format!(
        r#"
[[models]]
name = "primary"
provider = "anthropic"
model = "claude-sonnet-4-5"
base_url = "{}"
api_key_env = "TOOLHOST_TEST_KEY"
context_window = 200_000

[[models]]
name = "backup"
provider = "openai"
model = "gpt-4o"
base_url = "{}"
api_key_env = "TOOLHOST_TEST_KEY"

[retry]
base_delay_ms = 1
max_delay_ms = 4
"#,
        primary.anthropic_url(),
        backup.openai_url()
    );
    std::fs::write(dir.join("toolhost.toml"), text).unwrap();
}

async fn toolhost(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args(args)
        .current_dir(dir)
        .envs(crate::support::state_env(dir))
        .env("TOOLHOST_TEST_KEY", KEY)
        .env("TOOLHOST_LOG", "info");
    // Named through TOOLHOST_CONFIG, as a deployment would: trusted by
    // being named, and re-read (changed or not) on every run.
    let config = dir.join("toolhost.toml");
    if config.is_file() {
        cmd.env("TOOLHOST_CONFIG", config);
    }
    // The servers run on this test's runtime; the binary blocks elsewhere.
    tokio::task::spawn_blocking(move || cmd.output().expect("run toolhost"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_call_reports_the_serving_model_retries_and_fallbacks() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Status(529));
    backup.otherwise(|_| Step::text("hello from the backup"));
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);

    let out = toolhost(dir.path(), &["model", "call", "--message", "hi"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.starts_with("hello from the backup\n"), "{stdout}");
    for line in [
        "served_by: backup",
        "attempts: 6",
        "primary #5: overloaded (HTTP 529)",
        "retry: primary after attempt 1 (overloaded)",
        "fallback: primary -> backup (overloaded)",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }

    // Breakers are shared through the store: the first call left the
    // primary's open in this database, so the JSON call uses a fresh one
    // to see the same six attempts.
    let out = toolhost(
        dir.path(),
        &[
            "--db",
            "fresh.db",
            "model",
            "call",
            "--json",
            "--message",
            "hi",
        ],
    )
    .await;
    let v = stdout_json(&out);
    assert_eq!(
        (v["ok"].as_bool(), v["served_by"].as_str()),
        (Some(true), Some("backup"))
    );
    assert_eq!(v["text"], "hello from the backup");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 6);
    assert_eq!(v["retries"].as_array().unwrap().len(), 4);
    assert_eq!(
        v["fallbacks"][0],
        serde_json::json!({"from": "primary", "to": "backup", "reason": "overloaded"})
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("falling back"), "info logs are on: {all}");
    assert!(!all.contains("SECRET"), "the key leaked: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_model_call_exits_1_with_its_kind_and_no_key() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Status(503));
    backup.otherwise(|_| Step::Status(401)); // echoes the key in its body
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);
    let out = toolhost(dir.path(), &["--json", "model", "call", "--message", "hi"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "auth");
    assert_eq!(v["served_by"], Value::Null);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("[redacted]") && !all.contains("SECRET"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_list_shows_the_chain_in_order_with_breakers() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);
    let out = toolhost(dir.path(), &["model", "list", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = stdout_json(&out);
    let models = v["models"].as_array().unwrap();
    let names: Vec<_> = models
        .iter()
        .map(|m| (m["name"].as_str(), m["provider"].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (Some("primary"), Some("anthropic")),
            (Some("backup"), Some("openai"))
        ]
    );
    assert!(models.iter().all(|m| m["breaker"]["state"] == "closed"));
    let out = toolhost(dir.path(), &["model", "list"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("primary") && text.contains("claude-sonnet-4-5") && text.contains("closed"),
        "{text}"
    );
    assert_eq!(
        primary.requests() + backup.requests(),
        0,
        "listing calls nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_call_without_models_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolhost(dir.path(), &["model", "call", "--message", "hi"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no models are configured"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_provider_replays_its_file_offline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("turns.json"),
        r#"{"turns": [{"fault": "server_error"}, {"tool_calls": [{"name": "calc", "arguments": {"expr": "6*7"}}]}, {"text": "42"}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("toolhost.toml"),
        "[[models]]\nname = \"demo\"\nprovider = \"scripted\"\nscript = \"turns.json\"\n[retry]\nbase_delay_ms = 1\nmax_delay_ms = 2\n",
    )
    .unwrap();
    let out = toolhost(
        dir.path(),
        &["--json", "model", "call", "--message", "what is 6*7?"],
    )
    .await;
    let v = stdout_json(&out);
    assert_eq!(v["served_by"], "demo");
    assert_eq!(v["retries"][0]["reason"], "server_error");
    assert_eq!(v["tool_calls"][0]["name"], "calc");
    assert_eq!(v["tool_calls"][0]["arguments"]["expr"], "6*7");
    assert_eq!(v["stop"], "tool_use");
}

/// A model whose key variable is unset is skipped with a warning and the
/// chain goes on; `model list` says `no key`; only when every model is
/// skipped is it an error (issue 12, item 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_its_key_is_skipped_and_the_chain_goes_on() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    backup.otherwise(|_| Step::text("hello from the backup"));
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);
    let text = std::fs::read_to_string(dir.path().join("toolhost.toml")).unwrap();
    // The primary's variable is one the test never sets.
    let text = text.replacen("TOOLHOST_TEST_KEY", "TOOLHOST_TEST_UNSET_KEY", 1);
    std::fs::write(dir.path().join("toolhost.toml"), &text).unwrap();
    let out = toolhost(dir.path(), &["--json", "model", "call", "--message", "hi"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["served_by"], "backup");
    assert_eq!(v["text"], "hello from the backup");
    assert_eq!(primary.requests(), 0, "a skipped model is not called");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: model `primary` is skipped: its API key variable TOOLHOST_TEST_UNSET_KEY is not set"),
        "{stderr}"
    );
    let list = toolhost(dir.path(), &["model", "list"]).await;
    let listed = String::from_utf8_lossy(&list.stdout);
    let row = listed.lines().find(|l| l.contains("primary")).unwrap();
    assert!(row.contains("no key"), "{listed}");

    // Every model skipped: an error naming each variable.
    let text = text.replace("TOOLHOST_TEST_KEY", "TOOLHOST_TEST_UNSET_KEY");
    std::fs::write(dir.path().join("toolhost.toml"), &text).unwrap();
    let out = toolhost(dir.path(), &["--json", "model", "call", "--message", "hi"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "auth");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "`primary` needs TOOLHOST_TEST_UNSET_KEY, `backup` needs TOOLHOST_TEST_UNSET_KEY"
        ),
        "{message}"
    );
    assert_eq!(
        primary.requests() + backup.requests(),
        1,
        "only the first call reached a server"
    );
}

/// Regression (issue 12): a proxy's HTML error page became the message,
/// markup and all. Now it is one readable line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_error_page_is_cut_to_a_readable_line() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::HtmlPage(502));
    backup.otherwise(|_| Step::HtmlPage(502));
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);
    let out = toolhost(dir.path(), &["--json", "model", "call", "--message", "hi"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    let attempt = v["attempts"][0]["error_message"]
        .as_str()
        .or_else(|| v["error"]["message"].as_str())
        .unwrap()
        .to_string();
    let message = v["error"]["message"].as_str().unwrap();
    for text in [message, attempt.as_str()] {
        assert!(
            text.contains("HTTP 502: 502 Bad Gateway 502 Bad Gateway nginx"),
            "{text}"
        );
        assert!(!text.contains('<') && !text.contains("color"), "{text}");
    }
    assert!(message.len() < 2_000, "{message}");
}

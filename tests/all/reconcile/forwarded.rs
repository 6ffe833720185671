//! The forwarded key: what the host adds to an `idempotent` or
//! `side-effecting` call's mutating requests, as a real loopback server
//! received them.

use serde_json::{Value, json};
use toolhost::config::{EffectName, ToolPolicy};
use toolhost::sandbox::{CallRequest, EgressOptions};

use super::reach;
use crate::support::payments::PaymentServer;
use crate::support::{stdout_json, toolhost};
use crate::support_http::sandbox_with;

/// `send`'s input: each (method, path, headers) against `server`.
fn requests(server: &PaymentServer, list: &[(&str, &str, Value)]) -> String {
    let requests: Vec<Value> = list
        .iter()
        .map(|(method, path, headers)| {
            json!({
                "method": method,
                "url": format!("{}{path}", server.api()),
                "headers": headers,
                "body": r#"{"amount":1,"currency":"usd","reference":"r"}"#,
            })
        })
        .collect();
    json!({ "requests": requests }).to_string()
}

async fn send_under(policy: ToolPolicy, input: &str, key: &str, attempt: u32) -> Value {
    let sandbox = sandbox_with(&["send"], &[("send", policy)], EgressOptions::default()).await;
    let request = CallRequest {
        idempotency_key: key.into(),
        attempt,
        ..CallRequest::default()
    };
    sandbox.call("send", input, request).await.unwrap().output
}

#[tokio::test]
async fn every_mutating_request_carries_a_key_per_endpoint_stable_across_attempts() {
    let server = PaymentServer::start();
    let input = requests(
        &server,
        &[
            ("POST", "/v1/charges", json!({})),
            ("POST", "/v1/refunds", json!({})),
            ("PUT", "/v1/customers/7", json!({})),
            ("PATCH", "/v1/customers/7", json!({})),
            ("DELETE", "/v1/customers/7", json!({})),
            ("GET", "/v1/charges?idempotency_key=x", json!({})),
        ],
    );
    let policy = reach(&server.host_port(), Some(EffectName::SideEffecting));
    let first = send_under(policy.clone(), &input, "k-one", 1).await;
    let log = server.log();
    assert_eq!(log.len(), 6, "{log:?}");
    let sent: Vec<Option<String>> = log.iter().map(|l| l.idempotency_key.clone()).collect();
    // Every mutating request got one, the GET none.
    assert!(sent[..5].iter().all(Option::is_some), "{sent:?}");
    assert_eq!(sent[5], None);
    // Per endpoint (method and path): all five differ.
    let distinct: std::collections::BTreeSet<_> = sent[..5].iter().collect();
    assert_eq!(distinct.len(), 5, "{sent:?}");
    // Each is what the SDK tells the tool it was.
    for (i, l) in log.iter().enumerate().take(5) {
        assert_eq!(
            first["sent"][i]["forwarded_key"].as_str(),
            l.idempotency_key.as_deref(),
            "{l:?}"
        );
        assert_eq!(l.idempotency_key.as_ref().unwrap().len(), 32);
    }
    // Another attempt of the same key sends the same values; another key
    // sends others.
    send_under(policy.clone(), &input, "k-one", 2).await;
    let again: Vec<Option<String>> = server.log()[6..]
        .iter()
        .map(|l| l.idempotency_key.clone())
        .collect();
    assert_eq!(again, sent);
    send_under(policy, &input, "k-two", 1).await;
    let other = &server.log()[12];
    assert_ne!(other.idempotency_key, sent[0]);
    assert!(other.idempotency_key.is_some());
}

#[tokio::test]
async fn a_guest_set_header_is_left_alone() {
    let server = PaymentServer::start();
    let input = requests(
        &server,
        &[(
            "POST",
            "/v1/charges",
            json!({"Idempotency-Key": "the-tool-s-own"}),
        )],
    );
    let policy = reach(&server.host_port(), Some(EffectName::Idempotent));
    send_under(policy, &input, "k", 1).await;
    let log = server.log();
    assert_eq!(log[0].idempotency_key.as_deref(), Some("the-tool-s-own"));
}

#[tokio::test]
async fn pure_and_read_only_tools_send_none() {
    let server = PaymentServer::start();
    let input = requests(&server, &[("POST", "/v1/charges", json!({}))]);
    for effect in [None, Some(EffectName::ReadOnly)] {
        send_under(reach(&server.host_port(), effect), &input, "k", 1).await;
    }
    let log = server.log();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|l| l.idempotency_key.is_none()), "{log:?}");
}

#[tokio::test]
async fn the_header_name_is_per_tool_and_empty_sends_none() {
    let server = PaymentServer::start();
    let input = requests(&server, &[("POST", "/v1/charges", json!({}))]);
    let mut renamed = reach(&server.host_port(), Some(EffectName::SideEffecting));
    renamed.idempotency_header = Some("X-Request-Key".into());
    let mut off = renamed.clone();
    off.idempotency_header = Some(String::new());
    send_under(renamed, &input, "k", 1).await;
    send_under(off, &input, "k", 1).await;
    let log = server.log();
    assert_eq!(log[0].idempotency_key, None);
    assert_eq!(
        log[0].headers.get("x-request-key").map(String::len),
        Some(32)
    );
    assert!(!log[1].headers.contains_key("x-request-key"));
    assert_eq!(log[1].idempotency_key, None);
}

#[test]
fn the_value_never_reaches_output_logs_or_storage() {
    let server = PaymentServer::start();
    let dir = tempfile::tempdir().unwrap();
    super::write_pay_config(dir.path(), &server, "");
    let input =
        json!({"api": server.api(), "amount": 1250, "currency": "eur", "reference": "order-1"})
            .to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args([
        "--json",
        "call",
        "pay",
        "--input",
        &input,
        "--idempotency-key",
        "order-1",
    ])
    .current_dir(dir.path())
    .envs(crate::support::state_env(dir.path()))
    .env("TOOLHOST_LOG", "trace")
    .env("TOOLHOST_LOG_FORMAT", "json")
    .stdin(std::process::Stdio::null());
    let out = crate::support::output_within(cmd, crate::support::BINARY_DEADLINE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["output"]["amount"], 1250);
    let log = server.log();
    assert_eq!(log.len(), 1, "{log:?}");
    let value = log[0]
        .idempotency_key
        .clone()
        .expect("pay's POST carried the key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.len() > 100, "trace logs were written: {stderr}");
    for (what, text) in [
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", stderr.into_owned()),
        (
            "cache list",
            String::from_utf8_lossy(&toolhost(dir.path(), &["--json", "cache", "list"]).stdout)
                .into_owned(),
        ),
        (
            "stats",
            String::from_utf8_lossy(&toolhost(dir.path(), &["--json", "stats"]).stdout)
                .into_owned(),
        ),
    ] {
        assert!(
            !text.contains(&value),
            "the forwarded key reached {what}: {text}"
        );
    }
    // Nor the store: every file of the database.
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("calls.db") && entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "the forwarded key reached {name}"
            );
        }
    }
}

//! HTTP hygiene, driven by hand: origins, hosts, tokens, body limits,
//! malformed JSON-RPC, protocol versions, `/healthz`.

use serde_json::{Value, json};
use toolhost::config::ServeConfig;
use toolhost::mcp::{HttpOptions, HttpServer, ServeError};

use super::harness::{Harness, Options, Raw, call, connect, messages, output};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

async fn post_with(h: &Harness, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(h.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The JSON-RPC error of a refused body.
async fn rpc_error(response: reqwest::Response) -> (i64, Value) {
    assert_eq!(response.status(), 400);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    (body["error"]["code"].as_i64().unwrap(), body["id"].clone())
}

#[tokio::test]
async fn a_bad_origin_or_host_is_refused() {
    let h = Harness::start(Options::default()).await;
    let evil = post_with(&h, &[("origin", "http://evil.example")], INIT).await;
    assert_eq!(evil.status(), 403);
    let rebound = post_with(&h, &[("host", "evil.example")], INIT).await;
    assert_eq!(rebound.status(), 403, "DNS rebinding: a foreign Host");
    let local = post_with(&h, &[("origin", "http://localhost:6274")], INIT).await;
    assert_eq!(local.status(), 200, "a page on this machine may connect");
    for path in ["/metrics", "/healthz"] {
        let response = reqwest::Client::new()
            .get(h.at(path))
            .header("origin", "http://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
}

#[tokio::test]
async fn configured_origins_are_allowed() {
    let serve = ServeConfig {
        allowed_origins: vec!["https://agent.example.com".into()],
        ..ServeConfig::default()
    };
    let h = Harness::start(Options {
        serve,
        ..Options::default()
    })
    .await;
    let ok = post_with(&h, &[("origin", "https://agent.example.com")], INIT).await;
    assert_eq!(ok.status(), 200);
    let other = post_with(&h, &[("origin", "https://other.example.com")], INIT).await;
    assert_eq!(other.status(), 403);
}

#[tokio::test]
async fn malformed_json_rpc_gets_a_json_rpc_error() {
    let h = Harness::start(Options::default()).await;
    let (code, id) = rpc_error(post_with(&h, &[], "{not json").await).await;
    assert_eq!((code, id), (-32700, Value::Null));
    let (code, _) = rpc_error(post_with(&h, &[], r#"{"id":3,"hello":1}"#).await).await;
    assert_eq!(code, -32600);
    let (code, _) = rpc_error(post_with(&h, &[], "[]").await).await;
    assert_eq!(code, -32600);
    let bad_params =
        r#"{"jsonrpc":"2.0","id":9,"method":"initialize","params":{"capabilities":7}}"#;
    let (code, id) = rpc_error(post_with(&h, &[], bad_params).await).await;
    assert_eq!((code, id), (-32602, json!(9)));

    // Inside a session too, and the session survives.
    let (raw, _) = Raw::initialize(&h.url(), "2025-06-18").await;
    let (code, _) = rpc_error(raw.post("{\"jsonrpc\":").await).await;
    assert_eq!(code, -32700);
    let list = raw
        .post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .await;
    assert_eq!(list.status(), 200);
    let reply = messages(&list.text().await.unwrap()).remove(0);
    assert!(reply["result"]["tools"].as_array().unwrap().len() > 5);
    // Unusable params of a served method, and an unknown method, are
    // JSON-RPC errors inside the session too.
    let bad = raw
        .post(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":7}}"#)
        .await;
    let reply = messages(&bad.text().await.unwrap()).remove(0);
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(3), json!(-32602))
    );
    let unknown = raw
        .post(r#"{"jsonrpc":"2.0","id":4,"method":"no/such"}"#)
        .await;
    let reply = messages(&unknown.text().await.unwrap()).remove(0);
    assert_eq!(reply["error"]["code"], -32601);
    // A request outside any session is refused by rmcp, as JSON-RPC.
    let (code, id) =
        rpc_error(post_with(&h, &[], r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#).await)
            .await;
    assert_eq!((code, id), (-32600, json!(8)));
}

#[tokio::test]
async fn the_body_size_is_bounded() {
    let serve = ServeConfig {
        max_body_bytes: 4096,
        ..ServeConfig::default()
    };
    let h = Harness::start(Options {
        serve,
        ..Options::default()
    })
    .await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x".repeat(5000)}}});
    let response = post_with(&h, &[], &big.to_string()).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"));
    // Under the limit, the same server answers.
    assert_eq!(post_with(&h, &[], INIT).await.status(), 200);
}

#[tokio::test]
async fn a_token_guards_mcp_and_metrics_but_not_health() {
    const TOKEN: &str = "s3cret-token-of-32-characters-xx";
    let h = Harness::start(Options {
        token: Some(TOKEN),
        ..Options::default()
    })
    .await;
    let http = reqwest::Client::new();
    let missing = post_with(&h, &[], INIT).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = post_with(
        &h,
        &[("authorization", "Bearer s3cret-token-of-32-characters-xy")],
        INIT,
    )
    .await;
    assert_eq!(wrong.status(), 401);
    let metrics = http.get(h.at("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 401);
    let metrics = http
        .get(h.at("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let health = http.get(h.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["tools"], super::harness::TOOLS.len());

    let client = connect(&h.url(), Some(TOKEN)).await;
    let echo = call(&client, "echo", json!({"message": "authorised"})).await;
    assert_eq!(output(&echo), json!({"message": "authorised"}));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn beyond_loopback_a_token_is_required() {
    let h = Harness::start(Options::default()).await;
    // Refused before any socket is bound: nothing listens on 0.0.0.0.
    let options = HttpOptions::new("0.0.0.0:0".parse().unwrap(), None, ServeConfig::default());
    let refused = HttpServer::bind(h.server.clone(), options).await;
    assert!(
        matches!(refused, Err(ServeError::TokenRequired { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn older_protocol_versions_are_negotiated() {
    let h = Harness::start(Options::default()).await;
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let (raw, result) = Raw::initialize(&h.url(), version).await;
        assert_eq!(result["protocolVersion"], version);
        assert_eq!(result["serverInfo"]["name"], "toolhost");
        let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "calc", "arguments": {"expr": "1+2"}}});
        let reply = messages(&raw.post(&body.to_string()).await.text().await.unwrap()).remove(0);
        assert_eq!(
            reply["result"]["structuredContent"],
            json!({"value": 3}),
            "{version}"
        );
    }
    // A version from the future is answered with the latest the server has.
    let (_, result) = Raw::initialize(&h.url(), "2099-01-01").await;
    assert_eq!(
        result["protocolVersion"],
        rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE.as_str()
    );
}

/// Regression (issue 24, item 11): `DELETE /mcp` answered 202 whether the
/// session existed or not. A known session ends with 204 (the SDKs accept
/// 200 or 204) and frees its slot; an unknown or ended one is 404, as the
/// specification says.
#[tokio::test]
async fn delete_ends_a_known_session_and_404s_an_unknown_one() {
    let h = Harness::start(Options::default()).await;
    let health = async || -> Value {
        reqwest::get(h.at("/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let (raw, _) = Raw::initialize(&h.url(), "2025-06-18").await;
    let session = raw.session.clone().expect("a session id");
    assert_eq!(health().await["sessions"], 1);

    let ended = raw.delete(&session).await;
    assert_eq!(ended.status(), 204);
    assert!(ended.text().await.unwrap().is_empty());
    assert_eq!(health().await["sessions"], 0, "the slot is freed");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(raw.post(&list.to_string()).await.status(), 404);

    for unknown in [session.as_str(), "no-such-session"] {
        let response = raw.delete(unknown).await;
        assert_eq!(response.status(), 404, "{unknown}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32600, "{body}");
    }
}

/// The current version (2026-07-28) has no handshake: `server/discover`
/// lists the versions, and each request carries its own version and
/// capabilities, served without a session.
#[tokio::test]
async fn the_current_protocol_version_is_served_without_a_session() {
    let h = Harness::start(Options::default()).await;
    let current = rmcp::model::ProtocolVersion::LATEST;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": current.as_str(),
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let version = ("mcp-protocol-version", current.as_str());
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": meta}});
    let response = post_with(
        &h,
        &[version, ("mcp-method", "server/discover")],
        &discover.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let reply = messages(&response.text().await.unwrap()).remove(0);
    let versions = reply["result"]["supportedVersions"].as_array().unwrap();
    for v in ["2024-11-05", "2025-11-25", current.as_str()] {
        assert!(versions.contains(&json!(v)), "{versions:?}");
    }
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "calc", "arguments": {"expr": "1+2"}, "_meta": meta}});
    let response = post_with(
        &h,
        &[version, ("mcp-method", "tools/call"), ("mcp-name", "calc")],
        &call.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());
    let reply = messages(&response.text().await.unwrap()).remove(0);
    assert_eq!(reply["result"]["structuredContent"], json!({"value": 3}));
}

/// Whether an SSE body holds an event with an empty `data:` line (a
/// priming event).
fn primed(body: &str) -> bool {
    body.lines().any(|line| {
        line.strip_prefix("data:")
            .is_some_and(|d| d.trim().is_empty())
    })
}

/// Regression (issue 24, item 10): every response stream began with an
/// empty `data:` event, which clients older than 2025-11-25 (the MCP
/// Python SDK 1.8) fail to parse. Only 2025-11-25 and later get it: on the
/// `initialize` response and on each request's stream, read as raw bytes.
#[tokio::test]
async fn sse_priming_events_go_only_to_2025_11_25_and_later() {
    let h = Harness::start(Options::default()).await;
    for (version, expected) in [
        ("2024-11-05", false),
        ("2025-03-26", false),
        ("2025-06-18", false),
        ("2025-11-25", true),
    ] {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}});
        let response = post_with(&h, &[], &init.to_string()).await;
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let body = String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap();
        assert_eq!(primed(&body), expected, "{version} initialize: {body:?}");
        assert_eq!(messages(&body)[0]["result"]["protocolVersion"], version);

        let raw = Raw {
            http: reqwest::Client::new(),
            url: h.url(),
            session: Some(session),
            version: version.to_string(),
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(raw.post(&note.to_string()).await.status().is_success());
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "calc", "arguments": {"expr": "1+2"}}});
        let response = raw.post(&call.to_string()).await;
        assert_eq!(response.status(), 200);
        let body = String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap();
        assert_eq!(primed(&body), expected, "{version} tools/call: {body:?}");
        let reply = messages(&body).remove(0);
        assert_eq!(
            reply["result"]["structuredContent"],
            json!({"value": 3}),
            "{version}"
        );
    }
}

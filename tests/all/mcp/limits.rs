//! What a hostile or careless client cannot do to the HTTP server: hold
//! sessions without bound, keep connections open with slow headers, read
//! `/metrics` through DNS rebinding, slip inputs past the strict parse the
//! CLI applies, or keep a call running after it went away.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use toolhost::config::ServeConfig;
use toolhost::idempotency::parse_ijson;

use super::harness::{
    Harness, Options, Raw, WAIT, call, error_kind, messages, output, sample, start_call, text,
};
use super::stdio::Workdir;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// POSTs an `initialize` to `url`, as a client opening a session does.
async fn initialize(http: &reqwest::Client, url: &str) -> reqwest::Response {
    tokio::time::timeout(
        WAIT,
        http.post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INIT)
            .send(),
    )
    .await
    .expect("the server answers in time")
    .expect("the request is sent")
}

/// `/healthz`, which must answer within a second whatever else is going on.
async fn health(http: &reqwest::Client, base: &str) -> Value {
    let response = tokio::time::timeout(
        Duration::from_secs(1),
        http.get(format!("{base}/healthz")).send(),
    )
    .await
    .expect("/healthz answers within a second")
    .expect("/healthz is reachable");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls `check` every 20 ms until it holds, failing after [`WAIT`].
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sessions_past_the_cap_get_503_and_idle_ones_expire() {
    let serve = ServeConfig {
        max_sessions: 3,
        session_idle_s: 1,
        ..ServeConfig::default()
    };
    let h = Harness::start(Options {
        serve,
        ..Options::default()
    })
    .await;
    let http = reqwest::Client::new();
    let base = h.at("");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Raw::initialize(&h.url(), "2025-06-18").await.0);
    }
    assert_eq!(health(&http, &base).await["sessions"], 3);

    let refused = initialize(&http, &h.url()).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_eq!(refused.headers()["content-type"], "application/json");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["data"]["config_key"], "serve.max_sessions");
    assert_eq!(body["error"]["data"]["limit"], 3);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 MCP sessions"), "{message}");
    // An open session is still served meanwhile.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let listed = open[0].post(&list.to_string()).await;
    assert_eq!(listed.status(), 200);

    // Idle for a second, every session is closed and its slot comes back.
    eventually("idle sessions expire", async || {
        health(&http, &base).await["sessions"] == 0
    })
    .await;
    let gone = open[0].post(&list.to_string()).await;
    assert_eq!(gone.status(), 404, "an expired session is gone");
    let fresh = initialize(&http, &h.url()).await;
    assert_eq!(fresh.status(), 200);
}

/// Many clients opening sessions as fast as they can against a small cap:
/// every attempt past it is refused at once, `/healthz` keeps answering,
/// idle sessions expire, and the server process (the real binary) stays
/// small. `TOOLHOST_SOAK=1` makes it the 20,000-attempt soak on the default
/// cap (1,000 sessions, 300 s idle), printing the resident set size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_flood_keeps_the_server_bounded() {
    let soak = std::env::var_os("TOOLHOST_SOAK").is_some_and(|v| v == "1");
    let (attempts, serve) = if soak {
        (20_000, "")
    } else {
        (2_000, "[serve]\nmax_sessions = 50\nsession_idle_s = 2\n")
    };
    let work = Workdir::new();
    let config = work.path().join("toolhost.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(serve);
    std::fs::write(&config, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .current_dir(work.path())
        .envs(crate::support::state_env(work.path()))
        .args(["--config", "toolhost.toml", "--db", "mcp.db"])
        .args(["serve", "--http", "127.0.0.1:0"])
        .env_remove("TOOLHOST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("toolhost: serving MCP at ") {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("the server exited before serving");
    })
    .await
    .expect("the server prints its URL");
    // Drain the rest of stderr so the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let base = url.trim_end_matches("/mcp").to_string();
    let http = reqwest::Client::new();
    let rss_before = rss_kb(pid);

    let (mut opened, mut refused) = (0, 0);
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..attempts {
        let (client, target) = (http.clone(), url.clone());
        burst.spawn(async move { initialize(&client, &target).await.status().as_u16() });
        if burst.len() == 32 || i + 1 == attempts {
            while let Some(status) = burst.join_next().await {
                match status.unwrap() {
                    200 => opened += 1,
                    503 => refused += 1,
                    other => panic!("an initialize got {other}"),
                }
            }
            if (i + 1) % 256 == 0 {
                health(&http, &base).await;
            }
        }
    }
    let rss_after = rss_kb(pid);
    eprintln!(
        "session flood: {attempts} attempts, {opened} opened, {refused} refused; \
         server RSS {rss_before} kB before, {rss_after} kB after"
    );
    assert_eq!(opened + refused, attempts);
    assert!(refused > 0, "the cap refused nothing");
    assert!(
        rss_after < 150 * 1024,
        "the server grew to {rss_after} kB (from {rss_before} kB)"
    );
    if !soak {
        // Idle sessions expire (2 s), so the server admits again.
        eventually("idle sessions expire", async || {
            health(&http, &base).await["sessions"] == 0
        })
        .await;
        assert_eq!(initialize(&http, &url).await.status(), 200);
    }
    child.kill().await.unwrap();
}

/// The resident set size of process `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Reads until the server closes the connection; returns how long that took.
async fn closed_within(stream: &mut TcpStream, started: Instant) -> Duration {
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server never closed the connection"),
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let serve = ServeConfig {
        header_timeout_s: 1,
        ..ServeConfig::default()
    };
    let h = Harness::start(Options {
        serve,
        ..Options::default()
    })
    .await;
    let addr = h.http.local_addr();
    // Slowloris: 50 connections that trickle one header byte every 100 ms.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..50 {
        slow.spawn(async move {
            let started = Instant::now();
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut read, mut write) = stream.into_split();
            let trickle = tokio::spawn(async move {
                for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                    .iter()
                    .cycle()
                {
                    if write.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let mut sink = [0u8; 256];
            let closed = loop {
                match tokio::time::timeout(WAIT, read.read(&mut sink)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
                    Ok(Ok(_)) => {}
                    Err(_) => panic!("a slow connection was never closed"),
                }
            };
            trickle.abort();
            closed
        });
    }
    // The server keeps answering meanwhile.
    let http = reqwest::Client::new();
    health(&http, &h.at("")).await;
    while let Some(closed) = slow.join_next().await {
        let closed = closed.unwrap();
        assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
    }

    // A keep-alive connection left idle after its response is closed too.
    let started = Instant::now();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let closed = closed_within(&mut idle, started).await;
    assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
}

#[tokio::test]
async fn metrics_and_health_refuse_a_foreign_host() {
    let h = Harness::start(Options::default()).await;
    let http = reqwest::Client::new();
    let port = h.http.local_addr().port();
    for path in ["/metrics", "/healthz"] {
        let get = |host: String| http.get(h.at(path)).header("host", host).send();
        let rebound = get("evil.example".into()).await.unwrap();
        assert_eq!(rebound.status(), 403, "{path}: DNS rebinding");
        let rebound = get(format!("evil.example:{port}")).await.unwrap();
        assert_eq!(rebound.status(), 403, "{path}: DNS rebinding with a port");
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
            let local = get(host.clone()).await.unwrap();
            assert_eq!(local.status(), 200, "{path} as {host}");
        }
        let origin = http
            .get(h.at(path))
            .header("origin", "http://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(origin.status(), 403, "{path}: a browser origin");
    }
}

/// Inputs the CLI refuses, and the pointer each is refused at.
const NOT_I_JSON: [(&str, &str); 4] = [
    (r#"{"message":"a","message":"b"}"#, "/message"),
    (r#"{"message":"x","n":0.1000000000000000001}"#, "/n"),
    (r#"{"message":"x","n":9007199254740993}"#, "/n"),
    (r#"{"message":"\ud800"}"#, "/message"),
];

/// Asserts a `tools/call` result is the CLI's refusal of `arguments`.
fn assert_refused_as_the_cli_does(result: &Value, arguments: &str, path: &str) {
    let cli = parse_ijson(arguments).expect_err(arguments);
    assert_eq!(cli.path, path);
    assert_eq!(result["isError"], true, "{arguments}: {result}");
    assert_eq!(result["_meta"]["toolhost/error"]["kind"], "invalid_input");
    assert_eq!(
        result["content"][0]["text"],
        format!("invalid_input: {cli}"),
        "{arguments}"
    );
}

fn tool_call(id: u64, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{arguments}}}}}"#
    )
}

#[tokio::test]
async fn mcp_over_http_is_as_strict_as_the_cli() {
    let h = Harness::start(Options::default()).await;
    let raw = Raw::initialize(&h.url(), "2025-06-18").await.0;
    for (id, (arguments, path)) in (10..).zip(NOT_I_JSON) {
        let response = raw.post(&tool_call(id, arguments)).await;
        assert_eq!(response.status(), 200);
        let reply = messages(&response.text().await.unwrap()).remove(0);
        assert_eq!(reply["id"], id);
        assert_refused_as_the_cli_does(&reply["result"], arguments, path);
    }
    // Nothing refused ran: the echo tool was never called.
    let page = h.metrics().await;
    assert_eq!(
        sample(
            &page,
            r#"toolhost_tool_errors_total{tool="echo",kind="invalid_input"}"#
        ),
        4.0
    );
    // Exact I-JSON still goes through, and the tool sees the strict value.
    let fine = raw.post(&tool_call(20, r#"{"message":"ok"}"#)).await;
    let reply = messages(&fine.text().await.unwrap()).remove(0);
    assert_eq!(
        reply["result"]["structuredContent"],
        json!({"message": "ok"})
    );
}

#[tokio::test]
async fn mcp_over_stdio_is_as_strict_as_the_cli() {
    let work = Workdir::new();
    let mut child = work
        .command(&["--stdio"])
        .env_remove("TOOLHOST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = vec![
        INIT.to_string(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string(),
    ];
    for (id, (arguments, _)) in (10..).zip(NOT_I_JSON) {
        lines.push(tool_call(id, arguments));
    }
    lines.push(tool_call(20, r#"{"message":"ok"}"#));
    for line in lines {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
    let mut replies = std::collections::BTreeMap::new();
    while replies.len() < 6 {
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("the server answers in time")
            .unwrap()
            .expect("stdout stays open");
        let message: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = message["id"].as_u64() {
            replies.insert(id, message);
        }
    }
    for (id, (arguments, path)) in (10..).zip(NOT_I_JSON) {
        assert_refused_as_the_cli_does(&replies[&id]["result"], arguments, path);
    }
    assert_eq!(
        replies[&20]["result"]["structuredContent"],
        json!({"message": "ok"})
    );
    drop(stdin);
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
}

/// Waits (bounded) until `/metrics` shows `series` at `value`.
async fn wait_sample(h: &Harness, series: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = h.metrics().await;
        if sample(&page, series) == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `body` (a `tools/call` of `tool`) in a new session, waits until
/// `in_flight` calls run, drops the connection, and waits until the call is
/// counted as cancelled.
async fn disconnect_mid_call(h: &Harness, body: &Value, in_flight: i64, tool: &str) {
    let raw = Raw::initialize(&h.url(), "2025-06-18").await.0;
    let response = raw.post(&body.to_string()).await;
    assert!(response.status().is_success(), "{}", response.status());
    h.wait_in_flight(in_flight).await;
    drop(response);
    drop(raw);
    let cancelled = format!(r#"toolhost_tool_calls_total{{tool="{tool}",outcome="cancelled"}}"#);
    wait_sample(h, &cancelled, 1.0).await;
}

/// A client that drops its connection mid-call cancels the call, as
/// `notifications/cancelled` would: counted as cancelled, its slot free at
/// once (the only slot: the next call is admitted), long before the tool
/// would have finished.
#[tokio::test]
async fn a_client_that_disconnects_cancels_its_call() {
    let h = Harness::start(Options {
        max_calls: 1,
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 8000}}});
    disconnect_mid_call(&h, &body, 1, "slow").await;
    h.wait_in_flight(0).await;
    let client = h.client().await;
    let echo = call(&client, "echo", json!({"message": "the slot is free"})).await;
    assert_eq!(output(&echo), json!({"message": "the slot is free"}));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    client.cancel().await.unwrap();
}

/// A side-effecting call that has not started (it waits on another call's
/// claim of the same key) and whose client disconnects is cancelled and
/// never runs: the effect happens once, by the call that held the claim.
#[tokio::test]
async fn a_disconnected_side_effect_that_had_not_started_never_runs() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let input = json!({"file": "effects.txt", "text": "pay", "sleep_ms": 4000});
    let key = super::harness::idempotency_meta("order-1");
    let mut first = super::harness::params("append", input.clone());
    first.meta = Some(key.clone());
    let request =
        rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(first));
    let holder = client
        .send_cancellable_request(request, rmcp::service::PeerRequestOptions::no_options())
        .await
        .unwrap();
    let effects = h.data.path().join("effects.txt");
    eventually("the first call's effect", async || {
        std::fs::read_to_string(&effects).is_ok_and(|s| s.ends_with("pay\n"))
    })
    .await;

    // The same operation from a second client waits for the first's outcome.
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "append", "arguments": input,
            "_meta": {"toolhost/idempotencyKey": "order-1"}}});
    disconnect_mid_call(&h, &body, 2, "append").await;
    h.wait_in_flight(1).await;

    let first = tokio::time::timeout(WAIT, holder.await_response())
        .await
        .unwrap()
        .unwrap();
    let rmcp::model::ServerResult::CallToolResult(first) = first else {
        panic!("not a tool result: {first:?}");
    };
    assert_ne!(first.is_error, Some(true), "{}", text(&first));
    let lines = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(lines.lines().count(), 1, "the effect ran once: {lines}");
    client.cancel().await.unwrap();
}

/// The strict parse's refusal reaches an rmcp client as a tool result.
#[tokio::test]
async fn a_refused_input_is_an_invalid_input_result_for_rmcp_clients() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    // rmcp's own client can only send exact JSON: an integer above 2^53 is
    // the one non-I-JSON value it serialises as given.
    let handle = start_call(
        &client,
        "echo",
        json!({"message": "x", "n": 9_007_199_254_740_993u64}),
    )
    .await;
    let result = tokio::time::timeout(WAIT, handle.await_response())
        .await
        .unwrap()
        .unwrap();
    let rmcp::model::ServerResult::CallToolResult(result) = result else {
        panic!("not a tool result: {result:?}");
    };
    assert_eq!(error_kind(&result), "invalid_input");
    assert!(text(&result).contains("at /n"), "{}", text(&result));
    client.cancel().await.unwrap();
}

/// Regression (issue 24, item 14): a client that ended its session while a
/// call was in flight made the server log `ERROR rmcp::service: failed to
/// send pending response during drain error=channel closed` (and the call
/// ran on for nobody). Ending a session cancels its calls, as a disconnect
/// does, and neither is logged as an error by the real binary at its
/// default log level.
#[tokio::test]
async fn a_client_that_leaves_mid_call_logs_no_error() {
    let work = Workdir::new();
    std::fs::copy(
        crate::support::examples_dir().join("slow.wasm"),
        work.path().join("tools/slow.wasm"),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .current_dir(work.path())
        .envs(crate::support::state_env(work.path()))
        .args(["--db", "mcp.db", "serve", "--http", "127.0.0.1:0"])
        .env_remove("TOOLHOST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("toolhost: serving MCP at ") {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("the server exited before serving");
    })
    .await
    .expect("the server prints its URL");
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let base = url.trim_end_matches("/mcp").to_string();
    let http = reqwest::Client::new();
    let metrics = async || {
        let page = http.get(format!("{base}/metrics")).send().await.unwrap();
        page.text().await.unwrap()
    };
    let cancelled = r#"toolhost_tool_calls_total{tool="slow",outcome="cancelled"}"#;
    let slow = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 8000}}});

    // Ends its session (DELETE) mid-call, then drops the call's stream;
    // then one that only drops its connection mid-call.
    for (round, ends_session) in [(1.0, true), (2.0, false)] {
        let raw = Raw::initialize(&url, "2025-06-18").await.0;
        let response = raw.post(&slow.to_string()).await;
        assert_eq!(response.status(), 200);
        eventually("the call is in flight", async || {
            health(&http, &base).await["calls_in_flight"] == 1
        })
        .await;
        if ends_session {
            let session = raw.session.clone().unwrap();
            assert_eq!(raw.delete(&session).await.status(), 204);
        }
        drop(response);
        eventually("the call is cancelled", async || {
            sample(&metrics().await, cancelled) == round
        })
        .await;
        assert_eq!(health(&http, &base).await["calls_in_flight"], 0);
    }

    // A clean stop (SIGTERM), so every line the server logs is read.
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.unwrap().success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let logs = tokio::time::timeout(WAIT, logs).await.unwrap().unwrap();
    assert!(
        !logs.lines().any(|line| line.contains("ERROR")),
        "an expected cancellation was logged as an error:\n{logs}"
    );
}

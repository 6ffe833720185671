//! `toolhost serve --stdio` as a child process: the rmcp client, a raw
//! session whose stdout must hold nothing but protocol, and the CLI's refusals.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::harness::{WAIT, call, error_kind, idempotency_meta, output, params, text};
use crate::support::{examples_dir, hostile_dir, toolhost};

/// A working directory with a config that shares the suite's compiled
/// components, a tools directory (`calc`, `echo`, `flood`) and a database.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        let tools = dir.path().join("tools");
        std::fs::create_dir(&tools).unwrap();
        for (from, name) in [
            (examples_dir(), "calc"),
            (examples_dir(), "echo"),
            (hostile_dir(), "flood"),
        ] {
            let file = format!("{name}.wasm");
            std::fs::copy(from.join(&file), tools.join(&file)).unwrap();
        }
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
        let config = format!(
            "[sandbox]\nbuiltin_tools = false\ntools_dir = \"tools\"\ncache_dir = \"{}\"\nkey_dir = \"{}\"\n",
            cache.display(),
            cache.with_extension("key").display()
        );
        crate::support::write_trusted_config(dir.path(), &config);
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The arguments of `toolhost serve` here, after `serve_args`.
    pub fn command(&self, serve_args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
        command
            .current_dir(self.path())
            .envs(crate::support::state_env(self.path()))
            .args(["--db", "mcp.db", "serve"])
            .args(serve_args)
            .kill_on_drop(true);
        command
    }
}

#[tokio::test]
async fn the_rmcp_client_lists_and_calls_over_stdio() {
    let work = Workdir::new();
    let mut command = work.command(&["--stdio"]);
    command.env_remove("TOOLHOST_LOG");
    let transport = TokioChildProcess::new(command).unwrap();
    let client = tokio::time::timeout(WAIT, ().serve(transport))
        .await
        .unwrap()
        .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["calc", "echo", "flood"]);
    let calc = call(&client, "calc", json!({"expr": "2*(3+4)"})).await;
    assert_eq!(output(&calc), json!({"value": 14}));
    let flood = call(&client, "flood", json!({})).await;
    assert_eq!(error_kind(&flood), "output_too_large");
    client.cancel().await.unwrap();
}

/// Every line the server writes to stdout must be a JSON-RPC message, even
/// while tools flood their own stdout and the server logs at `debug`.
#[tokio::test]
async fn stdout_stays_clean_under_tool_log_floods() {
    let work = Workdir::new();
    let mut child = work
        .command(&["--stdio"])
        .env("TOOLHOST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let mut send = async |message: Value| {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    };
    send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}),
    )
    .await;
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    for id in 1..=3 {
        send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "flood", "arguments": {}}}))
        .await;
    }
    // A message of the wrong shape gets an error and the session goes on.
    send(json!({"jsonrpc": "2.0", "id": 4, "params": 7})).await;
    send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "clean"}}}))
    .await;

    let mut replies = std::collections::BTreeMap::new();
    let mut malformed_answered = false;
    while replies.len() < 5 || !malformed_answered {
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("the server answers in time")
            .unwrap()
            .expect("stdout stays open");
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line:.200}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line:.200}");
        match message["id"].as_i64() {
            Some(4) => {
                assert_eq!(message["error"]["code"], -32600);
                malformed_answered = true;
            }
            Some(id) => {
                replies.insert(id, message);
            }
            None if message["error"].is_object() => malformed_answered = true,
            None => {}
        }
    }
    for id in 1..=3 {
        let result = &replies[&id]["result"];
        assert_eq!(result["isError"], true);
        assert_eq!(
            result["_meta"]["toolhost/error"]["kind"],
            "output_too_large"
        );
    }
    assert_eq!(
        replies[&5]["result"]["structuredContent"],
        json!({"message": "clean"})
    );

    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let logs = tokio::time::timeout(WAIT, stderr).await.unwrap().unwrap();
    assert!(
        logs.contains("DEBUG"),
        "debug logs went to stderr:\n{logs:.500}"
    );
}

#[test]
fn serve_needs_one_transport_and_a_token_beyond_loopback() {
    let work = Workdir::new();
    let out = toolhost(work.path(), &["serve"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = toolhost(work.path(), &["serve", "--stdio", "--http", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Refused before binding: nothing ever listens on 0.0.0.0.
    let out = toolhost(work.path(), &["serve", "--http", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--token-env"), "{stderr}");
    let out = toolhost(
        work.path(),
        &[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--token-env",
            "TOOLHOST_TEST_NO_SUCH_VAR",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not set"));
}

/// The `in_doubt` hint `serve` prints names `toolhost cache resolve` with
/// the server's own `--config`, `--tools-dir` and `--db` (absolute, as the
/// CLI's hint does), so pasted as given, from any directory, it resolves
/// the call in the server's store, not in the default one.
#[tokio::test]
async fn the_in_doubt_hint_of_serve_repeats_the_servers_flags() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    let tools = root.path().join("tools");
    let data = root.path().join("data");
    for d in [&work, &tools, &data] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(examples_dir().join("echo.wasm"), tools.join("echo.wasm")).unwrap();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::write(
        work.join("server.toml"),
        format!(
            "[sandbox]\ncache_dir = {:?}\nkey_dir = {:?}\n\n[tools.notes]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\n",
            cache.display().to_string(),
            cache.with_extension("key").display().to_string(),
            data.display().to_string(),
        ),
    )
    .unwrap();
    // Relative flags, as typed in `work/`.
    let flags = [
        "--config",
        "server.toml",
        "--tools-dir",
        "../tools",
        "--db",
        "server.db",
    ];
    let input = json!({"file": "log.txt", "text": "charge"});
    // A limit cuts the side effect short: the call is in doubt.
    let mut args = flags.to_vec();
    let input_text = input.to_string();
    args.extend([
        "call",
        "notes",
        "--input",
        &input_text,
        "--idempotency-key",
        "order-9",
        "--fuel",
        "1",
    ]);
    let out = toolhost(&work, &args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
    command
        .current_dir(&work)
        .envs(crate::support::state_env(&work))
        .env_remove("TOOLHOST_LOG")
        .args(flags)
        .args(["serve", "--stdio"])
        .kill_on_drop(true);
    let client = tokio::time::timeout(WAIT, ().serve(TokioChildProcess::new(command).unwrap()))
        .await
        .unwrap()
        .unwrap();
    let mut request = params("notes", input);
    request.meta = Some(idempotency_meta("order-9"));
    let again = tokio::time::timeout(WAIT, client.call_tool(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_kind(&again), "in_doubt", "{}", text(&again));
    client.cancel().await.unwrap();
    let message = text(&again);
    let start = message.find("`toolhost ").expect("a command") + 1;
    let end = start + message[start..].find('`').unwrap();
    let command = &message[start..end];
    let real = |p: &Path| std::path::absolute(p).unwrap().display().to_string();
    assert!(
        command.starts_with(&format!(
            "toolhost --config {} --tools-dir {} --db {} cache resolve ",
            real(&work.join("server.toml")),
            real(&work.join("../tools")),
            real(&work.join("server.db")),
        )),
        "{command}"
    );
    // Pasted as printed (choosing --abandon) from another directory, it
    // finds the call in the server's store.
    let abandon = command.replace("--retry|--abandon", "--abandon");
    let args: Vec<&str> = abandon.split(' ').skip(1).collect();
    let out = toolhost(root.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("abandoned "),
        "{out:?}"
    );
}

/// What `serve --stdio` did with one whole input: its exit, the messages
/// it wrote to stdout, and its stderr.
struct Session {
    status: std::process::ExitStatus,
    replies: Vec<Value>,
    stderr: String,
}

/// Runs `serve --stdio` on `input` (stdin closed after it, or never opened
/// when `None`), with `TOOLHOST_LOG` at its default.
async fn serve_stdio_on(input: Option<&str>) -> Session {
    let work = Workdir::new();
    let mut command = work.command(&["--stdio"]);
    command
        .env_remove("TOOLHOST_LOG")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        // Dropped: the client closes its end.
    }
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the server exits in time")
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    Session {
        status: out.status,
        replies,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Regression (issue 24, item 9): a client that closed stdin before
/// `initialize` (one that only discovered, or no input at all) made
/// `serve --stdio` exit 1 with `internal: the MCP handshake on stdio
/// failed: connection closed`. A client that leaves is a clean exit.
#[tokio::test]
async fn a_client_that_closes_before_initialize_is_a_clean_exit() {
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
    "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }}});
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let cases = [
        ("no stdin at all", None, 0),
        ("discover", Some(format!("{discover}\n")), 1),
        (
            "discover, then ping",
            Some(format!("{discover}\n{ping}\n")),
            2,
        ),
    ];
    for (case, input, answers) in cases {
        let session = serve_stdio_on(input.as_deref()).await;
        assert!(
            session.status.success(),
            "{case}: {:?}\n{}",
            session.status,
            session.stderr
        );
        assert!(
            !session.stderr.contains("internal"),
            "{case}: {}",
            session.stderr
        );
        assert_eq!(
            session.replies.len(),
            answers,
            "{case}: {:?}",
            session.replies
        );
        if answers > 0 {
            let versions = &session.replies[0]["result"]["supportedVersions"];
            assert!(
                versions
                    .as_array()
                    .is_some_and(|v| v.contains(&json!("2026-07-28")))
            );
        }
        if answers > 1 {
            assert_eq!(
                session.replies[1],
                json!({"jsonrpc": "2.0", "id": 2, "result": {}})
            );
        }
    }
}

/// Regression (issue 24, item 2): misuse on stdio before `initialize` (a
/// line that is not JSON, a request, an early notification) gets a
/// JSON-RPC error where there is a request to answer and a warning on
/// stderr, never `internal`; a proper `initialize` after it is served.
#[tokio::test]
async fn misuse_before_initialize_is_answered_and_the_server_stays_up() {
    let list = |id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"});
    let init = json!({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let input = format!(
        "this is not json\n{}\n{initialized}\n{init}\n{initialized}\n{}\n",
        list(1),
        list(4)
    );
    let session = serve_stdio_on(Some(&input)).await;
    assert!(
        session.status.success(),
        "{:?}\n{}",
        session.status,
        session.stderr
    );
    assert!(!session.stderr.contains("internal"), "{}", session.stderr);

    let by_id = |id: Value| {
        session
            .replies
            .iter()
            .find(|r| r.get("id") == Some(&id) || (id.is_null() && r.get("id").is_none()))
            .unwrap_or_else(|| panic!("no reply {id} in {:?}", session.replies))
            .clone()
    };
    let parse = by_id(Value::Null);
    assert_eq!(parse["error"]["code"], -32700, "{parse}");
    let early = by_id(json!(1));
    let message = early["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("`tools/list` before `initialize`: send `initialize` first"),
        "{message}"
    );
    assert_eq!(by_id(json!(3))["result"]["protocolVersion"], "2025-06-18");
    let tools = by_id(json!(4))["result"]["tools"].as_array().unwrap().len();
    assert_eq!(tools, 3);
    assert_eq!(session.replies.len(), 4, "the notification gets no reply");
    for warning in [
        "is not JSON",
        "a request before `initialize`",
        "a notification before `initialize`",
    ] {
        assert!(
            session
                .stderr
                .lines()
                .any(|l| l.contains("WARN") && l.contains(warning)),
            "{warning}: {}",
            session.stderr
        );
    }
}

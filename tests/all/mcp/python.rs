//! The official Python MCP client (pip package `mcp`, installed by
//! `.ci/run`) against the real binary, over stdio and streamable HTTP.
//!
//! Without Python or the package these tests fail under `CI=true`; on a
//! developer's machine they say so on stderr and pass without running.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::harness::WAIT;
use super::stdio::Workdir;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/all/mcp/client.py");

/// Whether `import mcp` works; panics under CI when it does not.
fn python_mcp_available() -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import mcp"])
        .output();
    let ok = probe.as_ref().is_ok_and(|o| o.status.success());
    if !ok {
        let why = match &probe {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Python MCP client must be installed in CI (pip install mcp): {why}"
        );
        eprintln!("SKIPPED: python3 with the `mcp` package is not installed: {why}");
    }
    ok
}

/// Runs the script; returns the JSON line it printed.
async fn run_script(cwd: &Path, args: &[&str]) -> Value {
    let run = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .current_dir(cwd)
        .envs(crate::support::state_env(cwd))
        .env_remove("TOOLHOST_LOG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT * 3, run)
        .await
        .expect("the Python client finishes in time")
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the client printed no JSON ({e}): {stdout}"))
}

fn check(seen: &Value) {
    assert_eq!(seen["value"], 14);
    assert_eq!(seen["tools"], serde_json::json!(["calc", "echo", "flood"]));
}

#[tokio::test]
async fn the_python_client_over_stdio() {
    if !python_mcp_available() {
        return;
    }
    let work = Workdir::new();
    let seen = run_script(
        work.path(),
        &[
            "stdio",
            env!("CARGO_BIN_EXE_toolhost"),
            work.path().to_str().unwrap(),
        ],
    )
    .await;
    check(&seen);
}

#[tokio::test]
async fn the_python_client_over_streamable_http() {
    if !python_mcp_available() {
        return;
    }
    let work = Workdir::new();
    let mut server = work
        .command(&["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(rest) = line.split("serving MCP at ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("the server exited without serving");
    })
    .await
    .expect("the server starts in time");
    let seen = run_script(work.path(), &["http", &url]).await;
    check(&seen);
    assert_eq!(seen["protocol"], "2025-11-25");

    // The binary's /metrics counted the Python client's calls.
    let metrics_url = url.replace("/mcp", "/metrics");
    let page = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        super::harness::sample(&page, r#"toolhost_cache_hits_total{tool="calc"}"#),
        1.0,
        "{page}"
    );
    server.start_kill().unwrap();
    tokio::time::timeout(WAIT, server.wait())
        .await
        .unwrap()
        .unwrap();
}

//! Python tools (componentize-py) under the host's contracts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::idempotency::World;
use crate::idempotency::child::{self, Role};
use crate::mcp::harness::{WAIT, call, error_kind, output};
use crate::support::python::{built, sdk_dir, source_dir};
use crate::support::{output_within, stdout_json, toolhost, write_trusted_config};

/// Runs `python3 -m unittest` in `dir` with `path` importable.
fn unittest(dir: &Path, args: &[&str], path: &Path) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "unittest"])
        .args(args)
        .current_dir(dir)
        .env("PYTHONPATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "python3 -m unittest in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_sdk_and_example_unit_tests_pass_natively() {
    unittest(&sdk_dir(), &["discover", "-s", "tests"], &sdk_dir());
    unittest(&source_dir("csv_stats"), &[], &sdk_dir());
}

/// A test directory whose config grants `data/` to `pykit` as `/data`.
struct Kit {
    world: World,
    config: PathBuf,
    tools: PathBuf,
}

impl Kit {
    fn new(extra: &str) -> Kit {
        let world = World::new();
        let tools = built("pykit");
        let text = format!(
            "[sandbox]\nbuiltin_tools = false\n\n[tools.pykit]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\n{extra}\n\n[store]\n{}\n",
            world.data(),
            world.store_toml()
        );
        let config = world.path().join("toolhost.toml");
        std::fs::write(&config, text).unwrap();
        Kit {
            world,
            config,
            tools,
        }
    }

    /// `toolhost --json call pykit --input INPUT [--idempotency-key KEY]`.
    fn call(&self, input: Value, key: Option<&str>) -> (Option<i32>, Value) {
        let input = input.to_string();
        let mut args = vec![
            "--config",
            self.config.to_str().unwrap(),
            "--tools-dir",
            self.tools.to_str().unwrap(),
            "--json",
            "call",
            "pykit",
            "--input",
            &input,
        ];
        if let Some(key) = key {
            args.extend(["--idempotency-key", key]);
        }
        let out = toolhost(self.world.path(), &args);
        (out.status.code(), stdout_json(&out))
    }
}

#[test]
fn a_side_effect_runs_once_per_key_and_the_context_is_the_hosts() {
    let kit = Kit::new("");
    let append = json!({"mode": "append", "line": "charged"});
    let (code, first) = kit.call(append.clone(), Some("order-1"));
    assert_eq!(code, Some(0), "{first}");
    assert_eq!(first["output"]["done"], "appended", "{first}");
    let (code, again) = kit.call(append, Some("order-1"));
    assert_eq!(code, Some(0), "{again}");
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(kit.world.lines("lines.txt"), ["charged"]);

    // The key and attempt the guest sees are the host's, and its forwarded
    // key is the host's derivation (computed here with the blake3 crate).
    let (_, ctx) = kit.call(json!({"mode": "context"}), Some("ctx-1"));
    let key = ctx["key"].as_str().unwrap();
    assert_eq!(ctx["output"]["key"], key, "{ctx}");
    assert_eq!(ctx["output"]["attempt"], 1);
    let mut hasher = blake3::Hasher::new_derive_key("toolhost idempotency-key header v1");
    for part in [key, "POST", "https://api.example.com", "/v1/charges"] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let expected = &hasher.finalize().to_hex()[..32];
    assert_eq!(ctx["output"]["text"], expected, "{ctx}");
}

#[test]
fn limits_errors_and_grants_have_their_kinds() {
    let kit = Kit::new("timeout_ms = 3_000\nmemory_mb = 96\n");
    let kind = |input: Value| {
        let (code, v) = kit.call(input, None);
        assert_eq!(code, Some(1), "{v}");
        (
            v["error"]["kind"].as_str().unwrap_or_default().to_string(),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let (spin, _) = kind(json!({"mode": "spin"}));
    assert!(spin == "timeout" || spin == "out_of_fuel", "{spin}");
    let (alloc, message) = kind(json!({"mode": "alloc"}));
    assert_eq!(alloc, "memory_limit", "{message}");
    let (flood, message) = kind(json!({"mode": "flood"}));
    assert_eq!(flood, "output_too_large", "{message}");
    let (raised, message) = kind(json!({"mode": "raise"}));
    assert_eq!(raised, "tool_failed");
    assert!(message.contains("ValueError: boom in python"), "{message}");
    let (schema, message) = kind(json!({"mode": "fly"}));
    assert_eq!(schema, "invalid_input", "{message}");
    assert!(message.contains("mode"), "{message}");
    let (denied, message) = kind(json!({"mode": "read", "path": "/etc/passwd"}));
    assert_eq!(denied, "capability_denied", "{message}");

    // Inside the grant, files work.
    std::fs::write(kit.world.data().join("note.txt"), "inside").unwrap();
    let (code, v) = kit.call(json!({"mode": "read", "path": "/data/note.txt"}), None);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["output"]["text"], "inside");
}

/// HTTP from Python goes through the host: a granted host is reached with
/// the forwarded key the SDK computes, an ungranted one is refused.
#[test]
fn http_reaches_granted_hosts_only_and_carries_the_forwarded_key() {
    let payments = crate::support::payments::PaymentServer::start();
    let kit = Kit::new(&format!("allow_hosts = [{:?}]\n", payments.host_port()));
    let charge = json!({"amount": 250, "currency": "eur", "reference": "py-1"}).to_string();
    let url = format!("{}/v1/charges", payments.api());
    let (code, v) = kit.call(
        json!({"mode": "post", "path": url, "line": charge}),
        Some("http-1"),
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["output"]["done"], "200", "{v}");
    assert_eq!(payments.charges_for("py-1"), 1);
    let sent = payments.log();
    let post = sent
        .iter()
        .find(|l| l.method == "POST")
        .expect("the POST arrived");
    assert_eq!(
        post.idempotency_key.as_deref(),
        v["output"]["key"].as_str(),
        "the header the host added is the key the SDK derives: {v}"
    );

    let (code, v) = kit.call(
        json!({"mode": "post", "path": "http://127.0.0.1:9/v1/charges", "line": charge}),
        None,
    );
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["error"]["kind"], "capability_denied", "{v}");
}

#[test]
fn a_call_killed_mid_effect_is_in_doubt_and_never_repeats() {
    let kit = Kit::new("timeout_ms = 60_000\nfuel = 1_000_000_000_000\n");
    let input = json!({"mode": "append_then_spin", "line": "once"}).to_string();
    let config = kit.config.to_str().unwrap().to_string();
    let tools = kit.tools.to_str().unwrap().to_string();
    let args = [
        "--config",
        &config,
        "--tools-dir",
        &tools,
        "--json",
        "call",
        "pykit",
        "--input",
        &input,
        "--idempotency-key",
        "kill-1",
    ];
    let mut victim = Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args(args)
        .current_dir(kit.world.path())
        .envs(crate::support::state_env(kit.world.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while kit.world.lines("lines.txt").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the effect never happened"
        );
        assert!(
            victim.try_wait().unwrap().is_none(),
            "the victim exited early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let out = toolhost(kit.world.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stdout_json(&out)["error"]["kind"], "in_doubt");
    assert_eq!(kit.world.lines("lines.txt"), ["once"]);
}

/// Four processes released together by a file barrier race for one key of
/// the Python tool: one execution, every caller gets its outcome.
#[test]
fn racing_processes_share_one_execution_of_a_python_tool() {
    child::act_if_child();
    const PARTIES: usize = 4;
    let world = World::new();
    let tools = built("pykit");
    // Compile it into the children's artifact cache first, so they race
    // for the key, not for the compiler.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let policies =
            std::collections::BTreeMap::from([("pykit".to_string(), world.append_policy())]);
        let ex = world.executor(&tools, policies, None).await;
        ex.sandbox().load("pykit").await.unwrap();
    });
    let barrier = world.path().join("barrier");
    std::fs::create_dir(&barrier).unwrap();
    let test = child::test_path(
        module_path!(),
        "racing_processes_share_one_execution_of_a_python_tool",
    );
    let role = Role {
        world: world.path().to_path_buf(),
        tool: "pykit".into(),
        input: json!({"mode": "append", "line": "raced", "sleep_ms": 1500}).to_string(),
        key: "race-1".into(),
        barrier: Some((barrier, PARTIES)),
        tools_dir: Some(tools),
    };
    let done = child::race(&test, &role, PARTIES, Duration::from_secs(120));
    assert_eq!(world.lines("lines.txt"), ["raced"], "{done:?}");
    child::assert_one_execution(&done);
}

#[test]
fn csv_stats_answers_checks_its_input_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let tools = built("csv_stats");
    let tools = tools.to_str().unwrap();
    let call = |input: &str| {
        let out = toolhost(
            dir.path(),
            &[
                "--tools-dir",
                tools,
                "--json",
                "call",
                "csv_stats",
                "--input",
                input,
            ],
        );
        (out.status.code(), stdout_json(&out))
    };
    let input = json!({"csv": "city,temp\nOslo,3\nRome,18\nOslo,6\n"}).to_string();
    let (code, v) = call(&input);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["output"]["rows"], 3);
    assert_eq!(v["output"]["columns"][1]["mean"], 9.0);
    assert_eq!(v["output"]["columns"][0]["most_common"], "Oslo");
    let (_, again) = call(&input);
    assert_eq!(again["cached"], true, "a pure call replays: {again}");
    // The host checks the schema the SDK derived; the tool names the rest.
    let (code, v) = call(r#"{"csv": 3}"#);
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (Some(1), Some("invalid_input"))
    );
    let (code, v) = call(&json!({"csv": "a,b\n1,2\n", "columns": ["z"]}).to_string());
    assert_eq!(code, Some(1));
    assert_eq!(v["error"]["kind"], "invalid_input");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no column 'z' (columns: a, b)"),
        "{v}"
    );
}

#[tokio::test]
async fn mcp_lists_and_calls_a_python_tool() {
    let tools = built("csv_stats");
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
    command
        .current_dir(dir.path())
        .envs(crate::support::state_env(dir.path()))
        .env_remove("TOOLHOST_LOG")
        .args(["--tools-dir"])
        .arg(&tools)
        .args(["--db", "mcp.db", "serve", "--stdio"])
        .kill_on_drop(true);
    let transport = TokioChildProcess::new(command).unwrap();
    let client = tokio::time::timeout(WAIT, ().serve(transport))
        .await
        .unwrap()
        .unwrap();
    let listed = client.list_all_tools().await.unwrap();
    let tool = listed
        .iter()
        .find(|t| t.name == "csv_stats")
        .expect("csv_stats is listed");
    assert_eq!(
        tool.input_schema.get("required"),
        Some(&json!(["csv"])),
        "{:?}",
        tool.input_schema
    );
    let answer = call(&client, "csv_stats", json!({"csv": "n\n1\n2\n"})).await;
    assert_eq!(output(&answer)["columns"][0]["median"], 1.5);
    let refused = call(
        &client,
        "csv_stats",
        json!({"csv": "n\n1\n", "delimiter": ";;"}),
    )
    .await;
    assert_eq!(error_kind(&refused), "invalid_input");
    client.cancel().await.unwrap();
}

#[test]
fn an_agent_run_calls_a_python_tool() {
    let tools = built("csv_stats");
    let dir = crate::people::workdir();
    std::fs::write(
        dir.path().join("turns.json"),
        json!({"mode": "conversation", "turns": [
            {"tool_calls": [{"name": "csv_stats", "arguments": {"csv": "x\n2\n4\n"}}]},
            {"text": "the mean is 3"}
        ]})
        .to_string(),
    )
    .unwrap();
    write_trusted_config(
        dir.path(),
        &format!(
            "[sandbox]\ntools_dir = {:?}\n\n[[models]]\nname = \"s\"\nprovider = \"scripted\"\nscript = \"turns.json\"\n",
            tools
        ),
    );
    let run = toolhost(
        dir.path(),
        &["--json", "agent", "run", "average x", "--run-id", "py1"],
    );
    assert!(run.status.success(), "{run:?}");
    let show = stdout_json(&toolhost(dir.path(), &["--json", "runs", "show", "py1"]));
    assert_eq!(show["run"]["status"], "completed", "{show}");
    let steps = show["steps"].as_array().unwrap();
    let tool = steps
        .iter()
        .find(|s| s["kind"] == "tool")
        .unwrap_or_else(|| panic!("a tool step: {show}"));
    assert_eq!(tool["ok"], true, "{tool}");
    assert_eq!(tool["body"]["columns"][0]["mean"], 3.0, "{tool}");
}

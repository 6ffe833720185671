//! Tools written in JavaScript and TypeScript (guest-sdk/js, built with
//! ComponentizeJS; TypeScript type-checked and compiled first) keep every
//! host contract: schemas, keys and effects, limits, errors by kind,
//! grants, the forwarded key, MCP. The SDK's and the tools' own unit tests
//! run here too, in Node. The components are built once per process
//! (`support::js`); every command runs the real binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::mcp::harness::{WAIT, call as mcp_call, error_kind, output};
use crate::support::js::{JsTools, js, succeed};
use crate::support::payments::PaymentServer;
use crate::support::{stdout_json, toolhost, write_trusted_config};

/// `node --test` of a suite: seconds, unless the machine is very busy.
const NODE_TESTS: Duration = Duration::from_secs(300);

/// A working directory whose trusted config serves the JS tools (and no
/// built-in ones) from the shared compiled cache, with `policies` added.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new(tools: &JsTools, policies: &str) -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let config = format!(
            "{}\n[store]\npath = {:?}\n\n{policies}",
            tools.sandbox_config(),
            dir.path().join("calls.db")
        );
        write_trusted_config(dir.path(), &config);
        Workdir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `toolhost --json call TOOL --input INPUT [extra...]`: its JSON.
    fn call(&self, tool: &str, input: Value, extra: &[&str]) -> Value {
        let input = input.to_string();
        let mut args = vec!["--json", "call", tool, "--input", input.as_str()];
        args.extend_from_slice(extra);
        let out = toolhost(self.path(), &args);
        let v = stdout_json(&out);
        let code = out.status.code();
        assert_eq!(code, Some(if v["ok"] == true { 0 } else { 1 }), "{v}");
        v
    }
}

/// The kind of a failed call; a failure is never `internal`.
fn kind(v: &Value) -> &str {
    assert_eq!(v["ok"], false, "{v}");
    let kind = v["error"]["kind"].as_str().unwrap();
    assert_ne!(kind, "internal", "{v}");
    kind
}

fn node_test(dir: &Path, args: &[&str], what: &str) {
    let mut cmd = Command::new("node");
    cmd.arg("--test").args(args).current_dir(dir);
    let out = succeed(cmd, what, NODE_TESTS);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("# fail 0"), "{what}: {report}");
}

/// A TypeScript project's unit tests, as its `npm test` runs them: compiled
/// (and type-checked) with `build.mjs --emit`, then run by `node --test`.
/// The JavaScript goes to a directory of this test's own, so the staged
/// project (shared by every run of these sources) is only read.
fn ts_node_test(project: &Path, what: &str) {
    let out = tempfile::tempdir().unwrap();
    let emitted = out.path().join("emitted");
    let mut cmd = Command::new("node");
    cmd.args(["build.mjs", "--emit"])
        .arg(&emitted)
        .arg("tool.test.ts")
        .current_dir(project);
    succeed(cmd, &format!("compiling {what}"), NODE_TESTS);
    node_test(project, &[emitted.to_str().unwrap()], what);
}

#[test]
fn the_node_unit_tests_pass() {
    let tools = js();
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/js");
    // The SDK's own, with the TypeScript declarations' (test/types.test.mjs).
    node_test(&sdk, &["test/"], "the JS SDK's unit tests");
    node_test(&tools.project("js_hello"), &[], "the template's unit test");
    node_test(
        &tools.project("template_text"),
        &[],
        "template_text's unit tests",
    );
    ts_node_test(&tools.project("word_stats"), "word_stats's unit tests");
}

/// The TypeScript example: counts as its unit tests say, in the sandbox;
/// pure, so the same text replays; the schema its `t` declarations make
/// is the one the host publishes and checks.
#[test]
fn word_stats_in_typescript_counts_replays_and_publishes_its_schema() {
    let work = Workdir::new(js(), "");
    let text = "The cat sat.  The cat ran!\nDon't stop: well-known cats\u{2026}\n\nA new paragraph, 3.14 long? \u{dc}n\u{ef}c\u{f6}d\u{e9} \u{3a9}\u{3bc}\u{3ad}\u{3b3}\u{3b1}\n";
    let input = json!({"text": text, "top": 3, "ignore": ["THE"]});
    let first = work.call("word_stats", input.clone(), &[]);
    assert_eq!(
        first["output"],
        json!({
            "characters": text.chars().count(), "words": 17, "unique_words": 15,
            "lines": 4, "sentences": 5, "paragraphs": 2, "reading_minutes": 0.1,
            "top": [{"word": "cat", "count": 2}, {"word": "3.14", "count": 1}, {"word": "a", "count": 1}],
        }),
        "{first}"
    );
    assert_eq!(first["cached"], false);
    let again = work.call("word_stats", input, &[]);
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["output"], first["output"]);

    let out = toolhost(work.path(), &["--json", "tools", "inspect", "word_stats"]);
    let inspect = stdout_json(&out);
    assert_eq!(inspect["effect"], "pure", "{inspect}");
    let optional_integer = |min: u32, max: u32, description: &str| json!({"anyOf": [{"type": "integer", "minimum": min, "maximum": max}, {"type": "null"}], "description": description});
    assert_eq!(
        inspect["input_schema"],
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "The text to measure."},
                "top": optional_integer(0, 100, "How many of the most frequent words to list (default 10; 0 for none)."),
                "ignore": {
                    "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                    "description": "Words left out of `top`, compared case-insensitively (such as stop words).",
                },
                "words_per_minute": optional_integer(1, 2000, "Reading speed for `reading_minutes` (default 230)."),
            },
            "required": ["text"],
        }),
        "{inspect}"
    );
    let output = &inspect["output_schema"];
    assert_eq!(
        output["required"],
        json!([
            "characters",
            "words",
            "unique_words",
            "lines",
            "sentences",
            "paragraphs",
            "reading_minutes",
            "top"
        ]),
        "{inspect}"
    );
    assert_eq!(
        output["properties"]["top"]["items"]["required"],
        json!(["word", "count"])
    );
    // The host holds calls to that schema before the tool runs.
    let wrong = work.call("word_stats", json!({"text": "x", "top": 101}), &[]);
    assert_eq!(kind(&wrong), "invalid_input", "{wrong}");
    assert!(
        wrong["error"]["message"].as_str().unwrap().contains("/top"),
        "{wrong}"
    );
}

#[test]
fn the_template_greets_and_template_text_renders_and_replays() {
    let work = Workdir::new(js(), "");
    let hello = work.call("js_hello", json!({"name": "Ada"}), &[]);
    assert_eq!(
        hello["output"],
        json!({"greeting": "Hello, Ada!"}),
        "{hello}"
    );
    let input = json!({
        "template": "<p>{{ user.name | upper }}</p>{{ gone }}",
        "vars": {"user": {"name": "<ada>"}},
        "escape": "html",
    });
    let first = work.call("template_text", input.clone(), &[]);
    assert_eq!(
        first["output"],
        json!({"text": "<p>&lt;ADA&gt;</p>{{ gone }}", "used": ["user.name"], "missing": ["gone"]}),
        "{first}"
    );
    assert_eq!(first["cached"], false);
    // Pure: the same input replays.
    let again = work.call("template_text", input, &[]);
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["output"], first["output"]);
}

#[test]
fn the_host_checks_inputs_against_the_published_schemas() {
    let work = Workdir::new(js(), "");
    let out = toolhost(
        work.path(),
        &["--json", "tools", "inspect", "template_text"],
    );
    let inspect = stdout_json(&out);
    let schema = &inspect["input_schema"];
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["required"], json!(["template", "vars"]));
    for (name, prop) in schema["properties"].as_object().unwrap() {
        assert!(
            ["type", "anyOf", "enum"]
                .iter()
                .any(|k| prop.get(k).is_some()),
            "{name} is untyped: {prop}"
        );
    }
    assert_eq!(inspect["effect"], "pure");
    let wrong = work.call("template_text", json!({"template": 3, "vars": {}}), &[]);
    assert_eq!(kind(&wrong), "invalid_input");
    assert!(
        wrong["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/template"),
        "{wrong}"
    );
    let missing = work.call("js_hello", json!({}), &[]);
    assert_eq!(kind(&missing), "invalid_input");
    // What only the tool can judge is the tool's own invalid_input.
    let refused = work.call(
        "template_text",
        json!({"template": "{{x}}", "vars": {}, "missing": "error"}),
        &[],
    );
    assert_eq!(kind(&refused), "invalid_input");
    assert_eq!(
        refused["error"]["message"],
        "the template needs variables it was not given: x"
    );
}

#[test]
fn a_side_effecting_js_tool_run_twice_under_one_key_appends_once() {
    let policy =
        "[tools.js_effects]\ndirs = [{ host = \"./data\", guest = \"/data\", mode = \"rw\" }]\n";
    let work = Workdir::new(js(), policy);
    let input = json!({"mode": "append", "path": "/data/log.txt", "line": "paid"});
    let first = work.call(
        "js_effects",
        input.clone(),
        &["--idempotency-key", "order-7"],
    );
    assert_eq!(
        first["output"],
        json!({"appended": "paid", "attempt": 1, "lines": 1}),
        "{first}"
    );
    let second = work.call(
        "js_effects",
        input.clone(),
        &["--idempotency-key", "order-7"],
    );
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(second["output"], first["output"]);
    let other = work.call("js_effects", input, &["--idempotency-key", "order-8"]);
    assert_eq!(other["output"]["lines"], 2, "{other}");
    let log = std::fs::read_to_string(work.path().join("data/log.txt")).unwrap();
    assert_eq!(log, "paid\npaid\n");
}

/// Killed with SIGKILL after its effect, a JS call is `in_doubt` for the
/// next caller of its key, and the effect is not repeated.
#[test]
fn a_js_call_killed_mid_effect_is_in_doubt_and_never_repeats() {
    let policy = "[tools.js_effects]\ndirs = [{ host = \"./data\", guest = \"/data\", mode = \"rw\" }]\ntimeout_ms = 120_000\n";
    let work = Workdir::new(js(), policy);
    let input =
        json!({"mode": "append", "path": "/data/log.txt", "line": "once", "wait_ms": 60_000})
            .to_string();
    let args = [
        "--json",
        "call",
        "js_effects",
        "--input",
        &input,
        "--idempotency-key",
        "kill-js",
    ];
    let mut victim = std::process::Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args(args)
        .current_dir(work.path())
        .envs(crate::support::state_env(work.path()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = work.path().join("data/log.txt");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|t| t == "once\n") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
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
    let out = toolhost(work.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["error"]["kind"], "in_doubt");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "once\n");
}

/// Four processes released together by a file barrier race for one key of
/// the JS tool: one execution, every caller gets its outcome.
#[test]
fn racing_processes_share_one_execution_of_a_js_tool() {
    use crate::idempotency::child::{self, Role};
    child::act_if_child();
    const PARTIES: usize = 4;
    let world = crate::idempotency::World::new();
    let tools = js().tools.clone();
    // Compiled into the children's artifact cache first, so they race for
    // the key, not for the compiler.
    let policies =
        std::collections::BTreeMap::from([("js_effects".to_string(), world.append_policy())]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ex = world.executor(&tools, policies, None).await;
        ex.sandbox().load("js_effects").await.unwrap();
    });
    let barrier = world.path().join("barrier");
    std::fs::create_dir(&barrier).unwrap();
    let test = child::test_path(
        module_path!(),
        "racing_processes_share_one_execution_of_a_js_tool",
    );
    let role = Role {
        world: world.path().to_path_buf(),
        tool: "js_effects".into(),
        input:
            json!({"mode": "append", "path": "/data/lines.txt", "line": "raced", "wait_ms": 1500})
                .to_string(),
        key: "race-js".into(),
        barrier: Some((barrier, PARTIES)),
        tools_dir: Some(tools),
    };
    let done = child::race(&test, &role, PARTIES, Duration::from_secs(120));
    assert_eq!(world.lines("lines.txt"), ["raced"], "{done:?}");
    child::assert_one_execution(&done);
}

#[test]
fn limits_stop_js_guests_and_the_host_goes_on() {
    // A 16 KiB output cap, under the 64 KiB `flood` answers: a JavaScript
    // answer near the default 1 MiB cap would run out of fuel first (see
    // js_hostile).
    let work = Workdir::new(
        js(),
        "[tools.js_hostile]\ntimeout_ms = 5000\nmax_output_bytes = 16384\n",
    );
    let spin = work.call("js_hostile", json!({"mode": "spin"}), &[]);
    assert!(["out_of_fuel", "timeout"].contains(&kind(&spin)), "{spin}");
    let bomb = work.call("js_hostile", json!({"mode": "alloc"}), &[]);
    assert_eq!(kind(&bomb), "memory_limit", "{bomb}");
    let flood = work.call("js_hostile", json!({"mode": "flood"}), &[]);
    assert_eq!(kind(&flood), "output_too_large", "{flood}");
    let echo = work.call(
        "js_hostile",
        json!({"mode": "echo", "text": "still here"}),
        &[],
    );
    assert_eq!(echo["output"], json!({"text": "still here"}), "{echo}");
}

#[test]
fn a_thrown_error_is_tool_failed_with_its_message() {
    let work = Workdir::new(js(), "");
    let thrown = work.call("js_hostile", json!({"mode": "throw", "text": "boom"}), &[]);
    assert_eq!(kind(&thrown), "tool_failed");
    assert_eq!(thrown["error"]["message"], "Error: deliberate: boom");
}

#[test]
fn an_ungranted_file_or_host_is_capability_denied() {
    let policy = "[tools.js_hostile]\ndirs = [{ host = \"./data\", guest = \"/data\" }]\n";
    let work = Workdir::new(js(), policy);
    std::fs::write(work.path().join("data/note.txt"), "granted").unwrap();
    let read = work.call(
        "js_hostile",
        json!({"mode": "read", "path": "/data/note.txt"}),
        &[],
    );
    assert_eq!(read["output"], json!({"text": "granted"}), "{read}");
    let outside = work.call(
        "js_hostile",
        json!({"mode": "read", "path": "/etc/passwd"}),
        &[],
    );
    assert_eq!(kind(&outside), "capability_denied", "{outside}");
    let escape = work.call(
        "js_hostile",
        json!({"mode": "read", "path": "/data/../../etc/passwd"}),
        &[],
    );
    assert_eq!(kind(&escape), "capability_denied", "{escape}");
    let host = work.call(
        "js_effects",
        json!({"mode": "get", "url": "http://example.com/"}),
        &["--idempotency-key", "denied"],
    );
    assert_eq!(kind(&host), "capability_denied", "{host}");
    assert!(
        host["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_hosts"),
        "{host}"
    );
}

#[test]
fn the_forwarded_key_a_js_tool_computes_is_the_header_the_host_sent() {
    let server = PaymentServer::start();
    let policy = format!(
        "[tools.js_effects]\nallow_hosts = [{:?}]\n",
        server.host_port()
    );
    let work = Workdir::new(js(), &policy);
    // A route the API does not serve: it logs the request and answers 404,
    // which js_effects returns as it is (a charge's body is not what it sends).
    let url = format!("{}/v1/refunds", server.api());
    let sent = work.call(
        "js_effects",
        json!({"mode": "post", "url": url}),
        &["--idempotency-key", "charge-1"],
    );
    assert_eq!(sent["output"]["status"], 404, "{sent}");
    let log = server.log();
    assert_eq!(log.len(), 1, "{log:?}");
    let header = log[0]
        .idempotency_key
        .clone()
        .expect("the POST carried a key");
    assert_eq!(header.len(), 32);
    assert_eq!(sent["output"]["forwarded"], header.as_str(), "{sent}");
}

#[tokio::test]
async fn mcp_lists_and_calls_js_tools() {
    let tools = js();
    let work = Workdir::new(tools, "");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
    command
        .current_dir(work.path())
        .envs(crate::support::state_env(work.path()))
        .env_remove("TOOLHOST_LOG")
        .args(["serve", "--stdio"])
        .kill_on_drop(true);
    let transport = TokioChildProcess::new(command).unwrap();
    let client = tokio::time::timeout(WAIT, ().serve(transport))
        .await
        .unwrap()
        .unwrap();
    let listed = tokio::time::timeout(WAIT, client.list_all_tools())
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<_> = listed.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "js_effects",
            "js_hello",
            "js_hostile",
            "template_text",
            "word_stats"
        ]
    );
    let hello = listed.iter().find(|t| t.name == "js_hello").unwrap();
    assert_eq!(hello.input_schema["required"], json!(["name"]));
    let greeted = mcp_call(&client, "js_hello", json!({"name": "Ada"})).await;
    assert_eq!(output(&greeted), json!({"greeting": "Hello, Ada!"}));
    let thrown = mcp_call(&client, "js_hostile", json!({"mode": "throw"})).await;
    assert_eq!(error_kind(&thrown), "tool_failed");
    client.cancel().await.unwrap();
}

#[test]
fn an_agent_run_calls_js_tools() {
    let policy = "[tools.js_effects]\ndirs = [{ host = \"./data\", guest = \"/data\", mode = \"rw\" }]\n\n\
        [[models]]\nname = \"offline\"\nprovider = \"scripted\"\nscript = \"turns.json\"\n";
    let work = Workdir::new(js(), policy);
    let turns = json!({"mode": "conversation", "turns": [
        {"tool_calls": [
            {"name": "template_text", "arguments": {"template": "Hi {{n}}", "vars": {"n": "Ada"}}},
            {"name": "js_effects", "arguments": {"mode": "append", "path": "/data/agent.txt", "line": "ran"}},
        ]},
        {"text": "Greeted and noted."},
    ]});
    std::fs::write(work.path().join("turns.json"), turns.to_string()).unwrap();
    let run = toolhost(work.path(), &["agent", "run", "Greet Ada and note it."]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("Greeted and noted."),
        "{run:?}"
    );
    let noted = std::fs::read_to_string(work.path().join("data/agent.txt")).unwrap();
    assert_eq!(noted, "ran\n");
}

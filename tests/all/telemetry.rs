//! Traces and logs of real `toolhost` processes: spans exported over
//! OTLP/HTTP to a loopback receiver (`support/otlp.rs`) and decoded from
//! their protobuf, and the log lines on a piped stderr.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::otlp::{Receiver, Span};
use crate::support::serve::Serve;
use crate::support::{BINARY_DEADLINE, output_within, state_env, write_trusted_config};

const INPUT: &str = r#"{"expr":"6*(3+4)"}"#;

/// `toolhost ARGS` in `cwd` with `vars` set (and nothing of the caller's
/// `OTEL_*` or `TOOLHOST_LOG*`).
fn run(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args(args)
        .current_dir(cwd)
        .envs(state_env(cwd))
        .stdin(Stdio::null());
    for var in [
        "TOOLHOST_LOG",
        "TOOLHOST_LOG_FORMAT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(vars.iter().copied());
    output_within(cmd, BINARY_DEADLINE)
}

fn call(cwd: &Path, vars: &[(&str, &str)]) -> Output {
    run(cwd, &["--json", "call", "calc", "--input", INPUT], vars)
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// No attribute of any span carries `needle`.
fn nowhere(spans: &[Span], needle: &str) {
    for s in spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains(needle),
                "{}: {k} = {v} holds `{needle}`",
                s.name
            );
        }
    }
}

#[test]
fn a_cli_call_is_one_execute_tool_span_and_its_replay_is_marked_replayed_not_executed() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = Receiver::start(false);
    let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.base.as_str())];
    let first = call(dir.path(), &vars);
    assert!(first.status.success(), "{first:?}");
    let spans = otlp.wait_for("execute_tool calc");
    let ran = named(&spans, "execute_tool calc");
    assert_eq!(ran.len(), 1, "{spans:#?}");
    let s = ran[0];
    assert_eq!(s.service, "toolhost");
    assert_eq!(s.parent_span_id, "", "a CLI call is a root span");
    for (k, v) in [
        ("gen_ai.operation.name", "execute_tool"),
        ("gen_ai.tool.name", "calc"),
        ("toolhost.cache", "executed"),
        ("toolhost.effect", "pure"),
    ] {
        assert_eq!(s.attr(k), Some(v), "{k} of {s:#?}");
    }
    assert!(s.attr("toolhost.fuel").is_some_and(|f| f != "0"), "{s:#?}");

    let second = call(dir.path(), &vars);
    assert!(second.status.success(), "{second:?}");
    let spans = otlp.wait_until("two `execute_tool calc` spans", |spans| {
        named(spans, "execute_tool calc").len() == 2
    });
    let replay = named(&spans, "execute_tool calc")
        .into_iter()
        .find(|s| s.span_id != ran[0].span_id)
        .unwrap()
        .clone();
    assert_eq!(
        replay.attr("toolhost.cache"),
        Some("replayed"),
        "{replay:#?}"
    );
    assert_ne!(
        replay.trace_id, ran[0].trace_id,
        "each command is its own trace"
    );
    // Never the key, never (by default) the input.
    let out: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    let key = out["key"].as_str().expect("the call's key");
    nowhere(&spans, key);
    nowhere(&spans, "6*(3+4)");
}

#[test]
fn capture_content_exports_the_tool_input_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = Receiver::start(false);
    write_trusted_config(
        dir.path(),
        &format!(
            "[telemetry]\notlp_endpoint = {:?}\ncapture_content = true\n",
            otlp.base
        ),
    );
    let out = call(dir.path(), &[]);
    assert!(out.status.success(), "{out:?}");
    let spans = otlp.wait_for("execute_tool calc");
    let s = named(&spans, "execute_tool calc")[0];
    assert_eq!(
        s.attr("gen_ai.tool.call.arguments"),
        Some(r#"{"expr":"6*(3+4)"}"#)
    );
    assert!(
        s.attr("gen_ai.tool.call.result")
            .is_some_and(|r| r.contains("42")),
        "{s:#?}"
    );
}

#[test]
fn a_collector_that_is_down_or_stuck_changes_nothing_for_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let plain = call(dir.path(), &[]);
    assert!(plain.status.success(), "{plain:?}");
    // A port nothing listens on, and a collector that reads and never answers.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let stuck = Receiver::start(true);
    for endpoint in [down.as_str(), stuck.base.as_str()] {
        let started = Instant::now();
        let out = call(dir.path(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)]);
        let took = started.elapsed();
        assert_eq!(
            out.status.code(),
            plain.status.code(),
            "{endpoint}: {out:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let p: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
        assert_eq!(v["output"], p["output"], "{endpoint}");
        assert_eq!(
            out.stderr, plain.stderr,
            "{endpoint}: nothing more on stderr"
        );
        // The exit waits at most the 2 s shutdown bound for the exporter.
        assert!(took < Duration::from_secs(8), "{endpoint}: took {took:?}");
    }
}

#[test]
fn piped_stderr_has_no_escape_codes_and_json_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let text = call(dir.path(), &[("TOOLHOST_LOG", "debug")]);
    assert!(text.status.success(), "{text:?}");
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(!stderr.is_empty(), "debug logs were written");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes on a pipe: {stderr}"
    );

    // A store of its own, so this call runs (and logs) rather than replays.
    let fresh = tempfile::tempdir().unwrap();
    let json = call(
        fresh.path(),
        &[("TOOLHOST_LOG", "debug"), ("TOOLHOST_LOG_FORMAT", "json")],
    );
    assert!(json.status.success(), "{json:?}");
    let stderr = String::from_utf8_lossy(&json.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
    }
}

#[test]
fn an_unknown_log_format_warns_once_and_writes_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = call(dir.path(), &[("TOOLHOST_LOG_FORMAT", "yaml")]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("TOOLHOST_LOG_FORMAT=`yaml`").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_call_joins_the_clients_trace_and_serve_logs_one_line_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = Receiver::start(false);
    let server = Serve::start(
        dir.path(),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.base.as_str())],
    );
    let client = crate::mcp::harness::connect(&server.url, None).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let mut p = crate::mcp::harness::params("calc", serde_json::json!({"expr": "6*(3+4)"}));
    p.meta = Some(
        serde_json::from_value(serde_json::json!({
            "traceparent": format!("00-{trace}-{parent}-01"),
            "toolhost/idempotencyKey": "order-secret-7",
        }))
        .unwrap(),
    );
    let result = client.call_tool(p).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let spans = tokio::task::spawn_blocking(move || {
        let spans = otlp.wait_for("tools/call calc");
        // The child ends first, so it is in the same or an earlier batch.
        let _ = otlp.wait_for("execute_tool calc");
        let _ = spans;
        otlp.spans()
    })
    .await
    .unwrap();
    let call = named(&spans, "tools/call calc")[0];
    assert_eq!(call.trace_id, trace, "the client's trace: {call:#?}");
    assert_eq!(
        call.parent_span_id, parent,
        "the client's span is the parent"
    );
    assert_eq!(call.attr("mcp.method.name"), Some("tools/call"));
    let exec = named(&spans, "execute_tool calc")[0];
    assert_eq!(exec.trace_id, trace);
    assert_eq!(exec.parent_span_id, call.span_id, "{exec:#?}");
    nowhere(&spans, "order-secret-7");
    nowhere(&spans, "6*(3+4)");
    // One info line for the call, with its tool, outcome, cache and time.
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let lines = server.lines();
        if let Some(l) = lines.iter().find(|l| l.contains("tool call")) {
            break l.clone();
        }
        assert!(Instant::now() < deadline, "no call line in {lines:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for part in [
        "INFO",
        "toolhost::serve",
        "tool=\"calc\"",
        "outcome=\"ok\"",
        "cache=\"miss\"",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!line.contains('\u{1b}'), "{line}");
    let _ = client.cancel().await;
}

/// The spans of one trace, and the one named `name` in it whose parent is
/// `parent` (exactly one).
fn child<'a>(spans: &'a [Span], parent: &Span, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == name && s.parent_span_id == parent.span_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{name}` under `{}`: {spans:#?}",
        parent.name
    );
    found[0]
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
        .collect()
}

/// An agent run whose first turn retries the primary four times and falls
/// back to the backup, which asks for `calc`; stopped by `--max-steps 1`,
/// then resumed. The first session's spans show every attempt under one
/// `turn`; the resume's show step 1 and its tool call served from the
/// journal (never `executed`), and step 2 live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_shows_its_retries_and_fallback_under_one_turn_and_a_resume_marks_journal_served_steps()
 {
    use crate::support::model_server::{ModelServer, Step};
    const KEY: &str = "sk-trace-SECRET-0123456789abcdef";
    const TASK: &str = "work out the private-task-91";
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| Step::Status(529));
    backup.push([
        Step::ToolCall {
            name: "calc".into(),
            arguments: serde_json::json!({"expr": "6*(3+4)"}),
        },
        Step::text("the answer is 42"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let otlp = Receiver::start(false);
    write_trusted_config(
        dir.path(),
        &format!(
            "{}{}[retry]\nbase_delay_ms = 1\nmax_delay_ms = 4\n\n[telemetry]\notlp_endpoint = {:?}\n",
            primary.model_entry("primary", "anthropic"),
            backup.model_entry("backup", "openai"),
            otlp.base
        ),
    );
    let cwd = dir.path().to_path_buf();
    let agent = move |args: &'static [&'static str]| {
        let cwd = cwd.clone();
        tokio::task::spawn_blocking(move || run(&cwd, args, &[("TOOLHOST_TEST_KEY", KEY)]))
    };
    let first = agent(&[
        "--json",
        "agent",
        "run",
        TASK,
        "--run-id",
        "traced",
        "--max-steps",
        "1",
    ])
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap_or_default();
    assert_ne!(
        v["status"], "completed",
        "stopped by --max-steps: {first:?}"
    );
    let second = agent(&["--json", "agent", "resume", "traced", "--max-steps", "3"])
        .await
        .unwrap();
    assert!(second.status.success(), "{second:?}");
    let v: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["steps_resumed"].as_u64()),
        (Some("completed"), Some(1))
    );

    let spans = tokio::task::spawn_blocking(move || {
        otlp.wait_until("two `invoke_agent` sessions, each ended", |spans| {
            named(spans, "invoke_agent toolhost").len() == 2 && named(spans, "step 2").len() == 2
        })
    })
    .await
    .unwrap();
    let sessions = named(&spans, "invoke_agent toolhost");
    for s in &sessions {
        assert_eq!(s.parent_span_id, "", "a session is a root: {s:#?}");
        assert_eq!(s.attr("gen_ai.conversation.id"), Some("traced"));
        assert_eq!(s.attr("gen_ai.agent.name"), Some("toolhost"));
    }
    let (one, two) = match sessions[0].attr("toolhost.steps_resumed") {
        Some("0") => (sessions[0], sessions[1]),
        _ => (sessions[1], sessions[0]),
    };
    assert_ne!(one.trace_id, two.trace_id, "each session is its own trace");
    assert_eq!(two.attr("toolhost.steps_resumed"), Some("1"), "{two:#?}");
    assert_eq!(two.attr("toolhost.run.status"), Some("completed"));

    // The first session: step 1 ran live; its one turn holds every attempt.
    let step = child(&spans, one, "step 1");
    assert_eq!(step.attr("toolhost.cache"), Some("executed"));
    let turn = child(&spans, step, "turn");
    assert_eq!(turn.attr("toolhost.retries"), Some("4"), "{turn:#?}");
    assert_eq!(turn.attr("toolhost.fallbacks"), Some("1"), "{turn:#?}");
    assert_eq!(turn.attr("toolhost.model"), Some("backup"));
    let attempts = children(&spans, turn);
    assert_eq!(
        attempts.len(),
        6,
        "five to the primary, one to the backup: {attempts:#?}"
    );
    let mut primary_attempts: Vec<&str> = attempts
        .iter()
        .filter(|a| a.name == "chat claude-sonnet-4-5")
        .map(|a| {
            assert_eq!(a.attr("gen_ai.provider.name"), Some("anthropic"), "{a:#?}");
            assert_eq!(a.attr("error.type"), Some("overloaded"), "{a:#?}");
            a.attr("toolhost.attempt").unwrap()
        })
        .collect();
    primary_attempts.sort();
    assert_eq!(primary_attempts, ["1", "2", "3", "4", "5"]);
    let served = attempts
        .iter()
        .find(|a| a.name == "chat gpt-4o")
        .expect("the backup's attempt");
    assert_eq!(served.attr("toolhost.model"), Some("backup"));
    assert_eq!(served.attr("toolhost.fallback.reason"), Some("overloaded"));
    assert_eq!(served.attr("error.type"), None, "{served:#?}");
    let tool = child(&spans, step, "execute_tool calc");
    assert_eq!(tool.attr("toolhost.cache"), Some("executed"), "{tool:#?}");
    // `--max-steps 1` stopped the run before step 2's turn: its span says
    // nothing ran.
    let stopped = child(&spans, one, "step 2");
    assert_eq!(stopped.attr("toolhost.cache"), None, "{stopped:#?}");
    assert!(children(&spans, stopped).is_empty(), "{spans:#?}");

    // The resume: step 1 and its tool call came from the journal, with no
    // model attempt; step 2 ran live.
    let step = child(&spans, two, "step 1");
    assert_eq!(step.attr("toolhost.cache"), Some("served_from_journal"));
    let under: Vec<&str> = children(&spans, step)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        under,
        ["execute_tool calc"],
        "no turn for a journal-served step"
    );
    let tool = child(&spans, step, "execute_tool calc");
    assert_eq!(
        tool.attr("toolhost.cache"),
        Some("served_from_journal"),
        "{tool:#?}"
    );
    let step = child(&spans, two, "step 2");
    assert_eq!(step.attr("toolhost.cache"), Some("executed"));
    let turn = child(&spans, step, "turn");
    assert_eq!(turn.attr("toolhost.model"), Some("backup"), "{turn:#?}");
    let backup_attempts = children(&spans, turn)
        .iter()
        .filter(|s| s.name == "chat gpt-4o")
        .count();
    assert_eq!(backup_attempts, 1, "{spans:#?}");
    // Neither the task, the tool input nor the key is exported.
    nowhere(&spans, "private-task-91");
    nowhere(&spans, "6*(3+4)");
    nowhere(&spans, "SECRET");
}

//! A run has one owner at a time; an `in_doubt` call stops a run `failed`,
//! names its key, and resume goes on once an operator resolves it. Both
//! with real child processes killed with SIGKILL, on both stores (on
//! PostgreSQL a killed owner's run is free once its lease has passed).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use toolhost::agent::{AgentError, ResumeOptions};
use toolhost::store::RunStatus;

use super::{Backend, World, call, in_doubt_key, scripted, scripted_entry};
use crate::support::{stdout_json, toolhost};

/// How long a test waits for a dead owner's lease to pass: the lease, and
/// then some for a loaded machine.
const LEASE_WAIT: Duration = Duration::from_secs(15);

/// Runs `toolhost ARGS` until it answers something other than `run_busy`
/// (a killed owner's lease has not passed yet), for at most [`LEASE_WAIT`].
pub fn until_free(world: &World, args: &[&str]) -> std::process::Output {
    let start = Instant::now();
    loop {
        let out = toolhost(world.path(), args);
        let busy = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["error"]["kind"] == "run_busy");
        if !busy {
            return out;
        }
        assert!(
            start.elapsed() < LEASE_WAIT,
            "the run stayed busy for {LEASE_WAIT:?}: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(world: &World, config: &std::path::Path, id: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "agent",
            "run",
            "go",
            "--run-id",
            id,
        ])
        .current_dir(world.path())
        .envs(crate::support::state_env(world.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `ready` every 10 ms for at most 30 s, failing if the child exits.
fn wait_until(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited before {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether run `id` exists with an owner (the database may not exist yet).
pub fn run_owned(world: &World, id: &str) -> bool {
    world.rows(&format!(
        "SELECT 1 FROM runs WHERE id = '{id}' AND owner IS NOT NULL"
    )) > 0
}

#[test]
fn a_second_resume_of_a_live_run_is_refused_on_sqlite() {
    a_second_resume_of_a_live_run_is_refused(Backend::Sqlite);
}

#[test]
fn a_second_resume_of_a_live_run_is_refused_on_postgres() {
    a_second_resume_of_a_live_run_is_refused(Backend::Postgres);
}

fn a_second_resume_of_a_live_run_is_refused(backend: Backend) {
    let world = World::on(backend);
    // The child's first model turn takes 30 s: it is alive and owns the run.
    let script = world.script(
        "slow.json",
        &json!({"mode": "conversation", "turns": [{"text": "late", "delay_ms": 30_000}]}),
    );
    let config_path = world.write_config(&scripted_entry("m", &script));
    let mut child = spawn(&world, &config_path, "owned");
    wait_until(&mut child, "the run to start", || {
        run_owned(&world, "owned")
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let config = toolhost::config::Config::load(Some(&config_path)).unwrap();
        let (model, m) = scripted("m", json!([{"text": "resumed"}]));
        let agent = world.agent(&config, vec![m]).await;
        let err = agent
            .resume("owned", &ResumeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::Busy { .. }), "{err:?}");
        assert_eq!(model.requests(), 0);

        child.kill().unwrap();
        child.wait().unwrap();
        // SQLite: the owner's lock died with it. PostgreSQL: its lease
        // passes within `TEST_LEASE`.
        let start = Instant::now();
        let out = loop {
            match agent.resume("owned", &ResumeOptions::default()).await {
                Err(AgentError::Busy { .. }) if start.elapsed() < LEASE_WAIT => {
                    assert_eq!(backend, Backend::Postgres, "a dead owner's run stayed busy");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(out.status, RunStatus::Completed, "{out:?}");
        assert_eq!(out.answer.as_deref(), Some("resumed"));
    });
}

#[test]
fn an_in_doubt_call_fails_the_run_with_its_key_and_resume_goes_on_after_resolve_on_sqlite() {
    an_in_doubt_call_fails_the_run_with_its_key_and_resume_goes_on_after_resolve(Backend::Sqlite);
}

#[test]
fn an_in_doubt_call_fails_the_run_with_its_key_and_resume_goes_on_after_resolve_on_postgres() {
    an_in_doubt_call_fails_the_run_with_its_key_and_resume_goes_on_after_resolve(Backend::Postgres);
}

fn an_in_doubt_call_fails_the_run_with_its_key_and_resume_goes_on_after_resolve(backend: Backend) {
    let mut world = World::on(backend);
    let tools = world.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let testkit = std::path::PathBuf::from(toolhost::sandbox::TESTKIT_DIR);
    std::fs::copy(testkit.join("append.wasm"), tools.join("append.wasm")).unwrap();
    world.tools = tools;
    world.extra = format!(
        "[tools.append]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\ntimeout_ms = 20_000\n",
        world.data()
    );
    let script = world.script(
        "pay.json",
        &json!({"mode": "conversation", "turns": [
            {"tool_calls": [call("append", json!({"file": "pay.txt", "text": "charge", "sleep_ms": 20_000}))]},
            {"text": "paid"}
        ]}),
    );
    let config = world.write_config(&scripted_entry("m", &script));
    let config = config.to_str().unwrap();

    // Kill the child once the effect has happened (the tool then sleeps).
    let mut child = spawn(&world, std::path::Path::new(config), "pay");
    wait_until(&mut child, "the effect", || {
        !world.lines("pay.txt").is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let resume = ["--config", config, "--json", "agent", "resume", "pay"];
    let out = until_free(&world, &resume);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["status"], "failed", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        // The hint repeats this invocation's flags (issue 12).
        reason.contains("in doubt")
            && reason.contains(&format!("toolhost --config {config} cache resolve"))
            && reason.contains(&format!("toolhost --config {config} agent resume pay")),
        "{reason}"
    );
    let key = in_doubt_key(reason);
    assert_eq!(world.lines("pay.txt").len(), 1, "the effect did not repeat");

    // Resuming again without a decision stops again, still without a repeat.
    let out = toolhost(world.path(), &resume);
    assert_eq!(stdout_json(&out)["status"], "failed");
    assert_eq!(world.lines("pay.txt").len(), 1);

    // The operator sees the line (it carries the key) and abandons the
    // retry: the effect happened. The run then goes on and completes.
    assert!(world.lines("pay.txt")[0].starts_with(&key));
    let out = toolhost(
        world.path(),
        &[
            "--config",
            config,
            "--json",
            "cache",
            "resolve",
            &key,
            "--abandon",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = toolhost(world.path(), &resume);
    let v = stdout_json(&out);
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["answer"], "paid");
    assert_eq!(world.lines("pay.txt").len(), 1);
}

#[test]
fn ctrl_c_stops_a_run_cleanly_as_partial_and_resumable_on_sqlite() {
    ctrl_c_stops_a_run_cleanly_as_partial_and_resumable(Backend::Sqlite);
}

#[test]
fn ctrl_c_stops_a_run_cleanly_as_partial_and_resumable_on_postgres() {
    ctrl_c_stops_a_run_cleanly_as_partial_and_resumable(Backend::Postgres);
}

fn ctrl_c_stops_a_run_cleanly_as_partial_and_resumable(backend: Backend) {
    let world = World::on(backend);
    // A first turn that asks for a tool, then a slow one: Ctrl-C lands
    // while the model is thinking about step 2.
    let script = world.script(
        "two.json",
        &json!({"mode": "conversation", "turns": [
            {"tool_calls": [call("calc", json!({"expr": "1+1"}))]},
            {"text": "2", "delay_ms": 30_000}
        ]}),
    );
    let config = world.write_config(&scripted_entry("m", &script));
    let mut child = spawn(&world, &config, "int");
    wait_until(&mut child, "step 1's tool call", || {
        world.rows("SELECT 1 FROM steps WHERE run_id = 'int' AND kind = 'tool'") == 1
    });
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // The child stops on its own, promptly, as partial (exit 1).
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Ctrl-C did not stop the run"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1));
    let config = config.to_str().unwrap();
    let out = toolhost(
        world.path(),
        &["--config", config, "--json", "runs", "show", "int"],
    );
    let v = stdout_json(&out);
    assert_eq!(v["run"]["status"], "partial", "{v}");
    assert!(
        v["run"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("interrupted during step 2"),
        "{v}"
    );

    // Resumable: step 1 from the journal, step 2 live (the slow turn again,
    // so the resume gets a script whose step 2 is quick).
    std::fs::write(
        &script,
        json!({"mode": "conversation", "turns": [
            {"tool_calls": [call("calc", json!({"expr": "1+1"}))]},
            {"text": "2"}
        ]})
        .to_string(),
    )
    .unwrap();
    let out = toolhost(
        world.path(),
        &["--config", config, "--json", "agent", "resume", "int"],
    );
    let v = stdout_json(&out);
    assert_eq!(
        (v["status"].clone(), v["steps_resumed"].clone()),
        (json!("completed"), json!(1)),
        "{v}"
    );
}

//! Several hosts on one PostgreSQL store: run ownership fenced across a
//! pause, breakers shared within one call, and a database restart in the
//! middle of a run. Real processes, a real (throwaway) PostgreSQL cluster.
//!
//! (Runs killed on one host and resumed on another are the crash loop's
//! PostgreSQL case, `crash.rs`.)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ownership::until_free;
use super::{Backend, World, call, scripted_entry};
use crate::support::pg::Cluster;
use crate::support::{stdout_json, toolhost};

/// Polls `ready` every 10 ms for at most 30 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `toolhost --config CONFIG --json ARGS` in the background, its
/// stdout captured.
fn spawn_json(world: &World, config: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args(["--config", config.to_str().unwrap(), "--json"])
        .args(args)
        .current_dir(world.path())
        .env_remove("TOOLHOST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 60 s) for `child` to exit; its exit code and stdout JSON.
fn finished(mut child: Child) -> (Option<i32>, Value) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the child did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}\nstderr: {err}"));
    (status.code(), v)
}

fn signal(child: &Child, sig: &str) {
    let sent = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {sig}");
}

/// A second host: the same config in a directory of its own.
fn host_b(world: &World, config: &Path) -> PathBuf {
    let dir = world.path().join("host-b");
    std::fs::create_dir_all(&dir).unwrap();
    let to = dir.join("toolhost.toml");
    std::fs::copy(config, &to).unwrap();
    to
}

/// Resumes run `id` under `config` (once its owner's lease has passed):
/// step 1 from the journal, the rest live, answering "done".
fn resume_completes(world: &World, config: &str, id: &str) {
    let out = until_free(
        world,
        &["--config", config, "--json", "agent", "resume", id],
    );
    let v = stdout_json(&out);
    assert_eq!(
        (
            v["status"].clone(),
            v["answer"].clone(),
            v["steps_resumed"].clone()
        ),
        (json!("completed"), json!("done"), json!(1)),
        "{v}"
    );
}

fn model_requests(world: &World, log: &str) -> Vec<String> {
    std::fs::read_to_string(world.path().join(log))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_paused_run_owner_past_its_lease_cannot_write_after_another_host_took_over() {
    let world = World::on(Backend::Postgres);
    // Step 1 writes a note; step 2's answer takes the model 2 s, long enough
    // for host A to be paused while it waits, and for host B to take over.
    let script = world.script(
        "fence.json",
        &json!({"mode": "conversation", "log": "fence.log", "turns": [
            {"tool_calls": [call("notes", json!({"file": "fence.txt", "text": "once"}))]},
            {"text": "done", "delay_ms": 2_000}
        ]}),
    );
    let config = world.write_config(&scripted_entry("m", &script));
    let a = spawn_json(
        &world,
        &config,
        &["agent", "run", "go", "--run-id", "fence"],
    );
    wait_for("step 1's tool row", || {
        world.rows("SELECT 1 FROM steps WHERE run_id = 'fence' AND kind = 'tool'") == 1
    });
    // A is paused in step 2's model call; its lease runs out.
    signal(&a, "-STOP");
    wait_for("host A's lease to pass", || {
        world.rows("SELECT 1 FROM runs WHERE id = 'fence' AND lease_until < toolhost_now_ms()") == 1
    });

    // Host B resumes: step 1 from the journal, step 2 live.
    let b = host_b(&world, &config);
    let b = b.to_str().unwrap();
    resume_completes(&world, b, "fence");

    // A wakes, its model answers step 2, and its write is refused.
    signal(&a, "-CONT");
    let (code, v) = finished(a);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["error"]["kind"], "run_fenced", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("took it over") && message.contains("fence 2"),
        "{message}"
    );

    // The run is B's, as B left it: one final row per step part, the note
    // once, and A's late answer nowhere.
    let out = toolhost(
        world.path(),
        &["--config", b, "--json", "runs", "show", "fence"],
    );
    let show = stdout_json(&out);
    assert_eq!(show["run"]["status"], "completed", "{show}");
    assert_eq!(show["run"]["sessions"], 2, "{show}");
    assert_eq!(
        world.rows("SELECT 1 FROM steps WHERE run_id = 'fence' AND final = true"),
        3,
        "turn 1, its call, turn 2"
    );
    assert_eq!(
        world.rows("SELECT 1 FROM runs WHERE id = 'fence' AND owner IS NULL AND fence = 2"),
        1
    );
    assert_eq!(world.lines("fence.txt").len(), 1);
    // Step 2 was asked twice (A's answer was refused), step 1 once.
    let asked = model_requests(&world, "fence.log");
    assert_eq!(asked.len(), 3, "{asked:?}");
}

#[test]
fn a_breaker_opened_by_one_host_is_open_on_another_hosts_next_call() {
    let mut world = World::on(Backend::Postgres);
    world.extra = "[breaker]\nconsecutive_failures = 2\nopen_ms = 120000\n".into();
    let turns = |delay: u64| {
        json!([
            {"tool_calls": [call("calc", json!({"expr": "2+2"}))], "delay_ms": delay},
            {"text": "4"}
        ])
    };
    // Host B's primary answers its first turn slowly (3 s): B is mid-run,
    // its chain built and its breakers read, when host A opens the primary.
    let slow = world.script(
        "b-primary.json",
        &json!({"mode": "conversation", "turns": turns(3_000), "log": "b-primary.log"}),
    );
    let down = world.script(
        "a-primary.json",
        &json!({"mode": "conversation", "turns": turns(0), "log": "a-primary.log",
                "faults": [{"at": 1, "count": 1000, "kind": "server_error"}]}),
    );
    let backup = world.script(
        "backup.json",
        &json!({"mode": "conversation", "turns": turns(0)}),
    );
    let chain = |primary: &Path| {
        format!(
            "{}\n{}",
            scripted_entry("primary", primary),
            scripted_entry("backup", &backup)
        )
    };
    let config_b = host_b(&world, &world.write_config(&chain(&slow)));
    let config_a = world.write_config(&chain(&down));

    let b = spawn_json(&world, &config_b, &["agent", "run", "add", "--run-id", "b"]);
    wait_for("host B's first request", || {
        !model_requests(&world, "b-primary.log").is_empty()
    });
    let out = toolhost(
        world.path(),
        &[
            "--config",
            config_a.to_str().unwrap(),
            "--json",
            "agent",
            "run",
            "add",
            "--run-id",
            "a",
        ],
    );
    assert_eq!(stdout_json(&out)["status"], "completed", "{out:?}");
    assert_eq!(
        model_requests(&world, "a-primary.log").len(),
        2,
        "two failures open the breaker"
    );
    assert_eq!(
        world.rows("SELECT 1 FROM breakers WHERE name = 'model:primary' AND state = 'open'"),
        1
    );
    // The proof needs B still inside its slow first turn now; on a machine
    // so loaded that it is not, the test says so rather than passing.
    assert_eq!(
        world.rows("SELECT 1 FROM steps WHERE run_id = 'b'"),
        0,
        "host B finished its first turn before host A opened the breaker; the machine is too slow for this test"
    );

    let (code, v) = finished(b);
    assert_eq!(
        (code, v["status"].clone()),
        (Some(0), json!("completed")),
        "{v}"
    );
    // B's second turn went straight to the backup: the primary heard from
    // B once (the slow first turn), never after A opened it.
    assert_eq!(model_requests(&world, "b-primary.log").len(), 1);
    let out = toolhost(
        world.path(),
        &[
            "--config",
            config_b.to_str().unwrap(),
            "--json",
            "stats",
            "--run",
            "b",
        ],
    );
    let s = stdout_json(&out);
    assert_eq!(s["errors_by_kind"]["circuit_open"], 1, "{s}");
    assert_eq!(s["fell_back"], 1, "{s}");
}

#[test]
fn a_database_restart_mid_run_loses_nothing_and_the_run_resumes_after_it() {
    // A cluster of our own: this test stops the server.
    let cluster = Cluster::start();
    let world = World::on_cluster(&cluster);
    let script = world.script(
        "restart.json",
        &json!({"mode": "conversation", "log": "restart.log", "turns": [
            {"tool_calls": [call("notes", json!({"file": "restart.txt", "text": "one"}))]},
            {"tool_calls": [call("notes", json!({"file": "restart.txt", "text": "two"}))],
             "delay_ms": 3_000},
            {"text": "done"}
        ]}),
    );
    let config = world.write_config(&scripted_entry("m", &script));
    // Give up on an absent database within a second or two.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[store]\n", "[store]\nbusy_timeout_ms = 1000\n");
    std::fs::write(&config, text).unwrap();
    let config_s = config.to_str().unwrap();

    let a = spawn_json(
        &world,
        &config,
        &["agent", "run", "go", "--run-id", "restart"],
    );
    wait_for("step 1's tool row", || {
        world.rows("SELECT 1 FROM steps WHERE run_id = 'restart' AND kind = 'tool'") == 1
    });
    // Down while the model thinks about step 2.
    cluster.stop();

    // Callers see store_unavailable while it is down: the run, whose
    // next write fails, and any other command.
    let out = toolhost(
        world.path(),
        &["--config", config_s, "--json", "runs", "show", "restart"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stdout_json(&out)["error"]["kind"], "store_unavailable");
    let (code, v) = finished(a);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["error"]["kind"], "store_unavailable", "{v}");

    cluster.resume();
    // Nothing committed was lost: the run and step 1 are there.
    let out = toolhost(
        world.path(),
        &["--config", config_s, "--json", "runs", "show", "restart"],
    );
    let show = stdout_json(&out);
    // Its owner exited: the run reads interrupted (resumable).
    assert_eq!(show["run"]["status"], "interrupted", "{show}");
    assert_eq!(world.lines("restart.txt").len(), 1);

    resume_completes(&world, config_s, "restart");
    let mut lines: Vec<String> = world
        .lines("restart.txt")
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect();
    lines.sort();
    assert_eq!(lines, ["one", "two"], "each effect exactly once");
    // Step 1 was never asked again; step 2 twice (the answer the restart
    // lost), step 3 once.
    let asked = model_requests(&world, "restart.log");
    assert_eq!(asked.len(), 4, "{asked:?}");
}

fn new_run(id: &str) -> toolhost::store::NewRun {
    toolhost::store::NewRun {
        id: id.into(),
        task: "race".into(),
        config_digest: "c".into(),
        config_parts: Default::default(),
        chain: vec!["m".into()],
        chain_digest: "c".into(),
        tools_digest: "t".into(),
        max_steps: 5,
        time_budget_ms: 60_000,
        token_budget: None,
        now_ms: 1,
    }
}

fn model_row(step: u32) -> toolhost::store::StepRecord {
    let body = json!({"text": format!("turn {step}")}).to_string();
    toolhost::store::StepRecord {
        step,
        part: 0,
        kind: toolhost::store::StepKind::Model,
        is_final: true,
        name: "m".into(),
        request_digest: None,
        body_digest: toolhost::store::blob_digest(&body),
        body,
        ok: true,
        error_kind: None,
        cached: false,
        attempts: 1,
        retries: 0,
        fallbacks: 0,
        breaker_opens: 0,
        tokens: 0,
        fuel: 0,
        duration_us: 1,
        report: None,
        tool_digest: None,
        policy_digest: None,
        config_digest: "c".into(),
        chain_digest: "c".into(),
        tools_digest: "t".into(),
        created_at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_resuming_one_dead_owners_run_at_once_one_wins_and_the_other_cannot_write() {
    use toolhost::store::{Claim, StoreError};
    let world = World::on(Backend::Postgres);
    // Host A starts the run, journals a step, and dies (its store, with
    // its heartbeat, is gone); its lease then runs out.
    let a = world.store().await;
    assert!(a.create_run(new_run("race")).await.unwrap());
    a.record_step("race", model_row(1), 5).await.unwrap();
    drop(a);
    let (b, c) = (world.store().await, world.store().await);
    wait_for("host A's lease to pass", || {
        world.rows("SELECT 1 FROM runs WHERE id = 'race' AND lease_until < toolhost_now_ms()") == 1
    });
    // B and C resume it at the same instant.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let race = |store: toolhost::store::Store| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            store.claim_run("race", 5, 60_000, 2).await.unwrap()
        })
    };
    let (rb, rc) = (race(b.clone()), race(c.clone()));
    let (rb, rc) = (rb.await.unwrap(), rc.await.unwrap());
    let (winner, loser, busy) = match (rb, rc) {
        (Claim::Taken(run), Claim::Busy { owner }) => ((b, run), c, owner),
        (Claim::Busy { owner }, Claim::Taken(run)) => ((c, run), b, owner),
        other => panic!("exactly one resumer must win: {other:?}"),
    };
    let (winner, run) = winner;
    assert_eq!(busy, winner.owner_id(), "the loser names the winner");
    assert_eq!(run.sessions, 2);
    // The winner writes; the loser's write is refused and says why.
    winner.record_step("race", model_row(2), 6).await.unwrap();
    let refused = loser
        .record_step("race", model_row(2), 6)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::RunFenced { .. }),
        "{refused:?}"
    );
    let steps = winner.steps("race").await.unwrap();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(
        world.rows("SELECT 1 FROM runs WHERE id = 'race' AND fence = 2"),
        1,
        "one takeover, one fence raise"
    );
}

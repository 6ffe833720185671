//! Runs recover without an operator: `toolhost agent run` processes are
//! SIGKILLed at seeded instants while a `toolhost serve` runs, and the
//! server adopts each run and drives it to the end. Every effect (a `notes`
//! line, carrying its idempotency key) happens exactly once, and no
//! journaled step is asked of the model again beyond the one request a kill
//! interrupted.
//!
//! A kill that lands inside a `notes` call leaves that call in doubt: the
//! adopted run stops `failed` naming the key, as the contract says, and the
//! test resolves it as an operator would (the line's presence says whether
//! the effect happened) and resumes it. Those are counted apart.
//!
//! `TOOLHOST_RECOVERY_RUNS` (default 6) and `TOOLHOST_RECOVERY_SEED` size
//! and seed the loop.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::ownership::run_owned;
use super::{Backend, World, call, in_doubt_key, scripted_entry};
use crate::support::serve::Serve;
use crate::support::{stdout_json, toolhost};

const STEPS: usize = 4;
const CALLS: usize = 2;
/// Each model turn takes this long, so a kill lands mid-run.
const TURN_MS: u64 = 120;
/// How long a test waits for an adopted run to finish.
const FINISH_WAIT: Duration = Duration::from_secs(60);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One script for every run: STEPS steps of CALLS `notes` calls, then an
/// answer. The lines differ between runs by their keys (run id, step, call).
fn script() -> Value {
    let mut turns: Vec<Value> = (1..=STEPS)
        .map(|s| {
            let calls: Vec<Value> = (0..CALLS)
                .map(|c| {
                    call(
                        "notes",
                        json!({"file": "notes.txt", "text": format!("step{s} call{c}")}),
                    )
                })
                .collect();
            json!({"tool_calls": calls, "delay_ms": TURN_MS})
        })
        .collect();
    turns.push(json!({"text": "done", "delay_ms": TURN_MS}));
    json!({"mode": "conversation", "log": "requests.log", "turns": turns})
}

fn show(world: &World, config: &str, id: &str) -> Value {
    let out = toolhost(
        world.path(),
        &["--config", config, "--json", "runs", "show", id],
    );
    assert!(out.status.success(), "{out:?}");
    stdout_json(&out)["run"].clone()
}

/// The killed CLI process of `id`, at `after` past the moment it owns its run.
fn run_and_kill(world: &World, config: &str, id: &str, after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args(["--config", config, "agent", "run", "task", "--run-id", id])
        .current_dir(world.path())
        .envs(crate::support::state_env(world.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !run_owned(world, id) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "run {id} never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "run {id} exited early");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The kill instant itself is the experiment, not a synchronisation.
    std::thread::sleep(after);
    let exited = child.try_wait().unwrap().is_some();
    child.kill().ok(); // SIGKILL
    child.wait().unwrap();
    !exited
}

#[test]
fn a_server_adopts_every_run_whose_cli_owner_was_sigkilled_on_sqlite() {
    adopts_every_run(Backend::Sqlite, 1, false);
}

/// Three servers on one PostgreSQL, one of them SIGKILLed (and a fresh one
/// started) after every second run: the runs it drove are adopted by the
/// others once its lease passes, each by one server at a time (the fence:
/// a step row is written once, and no turn is asked of the model twice
/// beyond what each kill interrupted).
#[test]
fn three_servers_on_one_postgres_share_the_runs_of_dead_owners_servers_included() {
    adopts_every_run(Backend::Postgres, 3, true);
}

fn adopts_every_run(backend: Backend, servers: usize, kill_servers: bool) {
    let runs = env_or("TOOLHOST_RECOVERY_RUNS", 6) as usize;
    let seed = env_or("TOOLHOST_RECOVERY_SEED", 0x5eed_0023);
    let mut world = World::on(backend);
    world.own_tools(&["notes"]);
    let script_path = world.script("script.json", &script());
    let config = world.write_config(&scripted_entry("m", &script_path));
    let config = config.to_str().unwrap().to_string();
    let out = toolhost(
        world.path(),
        &["--config", &config, "--json", "runs", "list"],
    );
    assert!(out.status.success(), "{out:?}");
    let start_server = || Serve::start(world.path(), &["--config", &config], &[]);
    let mut fleet: Vec<Serve> = (0..servers).map(|_| start_server()).collect();
    let mut logs: Vec<String> = Vec::new();

    let mut rng = StdRng::seed_from_u64(seed);
    let run_ms = TURN_MS * (STEPS as u64 + 1);
    let (mut killed, mut servers_killed, mut in_doubt) = (0, 0, 0);
    let mut adoption = Vec::new();
    for i in 1..=runs {
        let id = format!("r{i}");
        let after = Duration::from_millis(rng.random_range(0..run_ms));
        let was_running = run_and_kill(&world, &config, &id, after);
        let died = Instant::now();
        killed += usize::from(was_running);
        // Adopted (a second session) or finished by itself, then completed.
        let mut adopted_after = None;
        let mut server_kill_at = (kill_servers && i % 2 == 0)
            .then(|| died + Duration::from_millis(rng.random_range(0..run_ms)));
        let v = loop {
            if let Some(at) = server_kill_at
                && Instant::now() >= at
            {
                // SIGKILL one server (maybe the one driving this run), and
                // start a fresh one in its place.
                let victim = rng.random_range(0..fleet.len());
                let mut dead = fleet.swap_remove(victim);
                dead.kill();
                logs.extend(dead.lines());
                fleet.push(start_server());
                servers_killed += 1;
                server_kill_at = None;
            }
            let v = show(&world, &config, &id);
            if adopted_after.is_none() && v["sessions"].as_u64() >= Some(2) {
                adopted_after = Some(died.elapsed());
            }
            match v["status"].as_str() {
                Some("completed") if server_kill_at.is_none() => break v,
                Some("completed") => {}
                Some("failed") => {
                    // In doubt: resolve as an operator, then resume.
                    let reason = v["reason"].as_str().unwrap();
                    assert!(reason.contains("in doubt"), "run {id}: {v}");
                    let key = in_doubt_key(reason);
                    let done = world.lines("notes.txt").iter().any(|l| l.starts_with(&key));
                    let decision = if done { "--abandon" } else { "--retry" };
                    let out = toolhost(
                        world.path(),
                        &["--config", &config, "cache", "resolve", &key, decision],
                    );
                    assert!(out.status.success(), "{out:?}");
                    let out = super::ownership::until_free(
                        &world,
                        &["--config", &config, "--json", "agent", "resume", &id],
                    );
                    let resumed = stdout_json(&out);
                    assert!(
                        out.status.success() || resumed["error"]["kind"] == "run_completed",
                        "{out:?}"
                    );
                    in_doubt += 1;
                }
                Some("running" | "interrupted") => {}
                other => panic!("run {id}: unexpected status {other:?}: {v}"),
            }
            assert!(
                died.elapsed() < FINISH_WAIT,
                "run {id} was not finished within {FINISH_WAIT:?}: {v}\n{:#?}",
                fleet.iter().map(Serve::lines).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(v["answer"], "done", "run {id}: {v}");
        if was_running {
            let after = adopted_after.unwrap_or_else(|| {
                panic!("run {id} was killed mid-run but completed without a second session: {v}")
            });
            adoption.push(after);
        }
    }
    for server in &fleet {
        logs.extend(server.lines());
    }

    // Every effect exactly once: one line per (run, step, call) key.
    let lines = world.lines("notes.txt");
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        *by_key
            .entry(line.split_once(' ').unwrap().0.to_string())
            .or_default() += 1;
    }
    assert_eq!(by_key.len(), runs * STEPS * CALLS, "{lines:#?}");
    assert!(
        by_key.values().all(|n| *n == 1),
        "a line twice: {by_key:#?}"
    );
    // Each step journaled once: one final model row per (run, step).
    assert_eq!(
        world.rows("SELECT 1 FROM steps WHERE kind = 'model' AND final = true"),
        runs * (STEPS + 1)
    );
    // No journaled step asked again: every run's STEPS + 1 turns, plus at
    // most the one request each kill (of a CLI or of a server) interrupted.
    let requests = std::fs::read_to_string(world.path().join("requests.log"))
        .unwrap_or_default()
        .lines()
        .count();
    let kills = killed + servers_killed;
    assert!(
        requests >= runs * (STEPS + 1) && requests <= runs * (STEPS + 1) + kills,
        "{requests} model requests for {runs} runs of {} turns and {kills} kills",
        STEPS + 1
    );
    let adopted_by_servers = logs
        .iter()
        .filter(|l| l.contains("adopting an interrupted run"))
        .count();
    assert!(
        adopted_by_servers >= adoption.len(),
        "the servers logged {adopted_by_servers} adoptions for {} runs killed mid-run",
        adoption.len()
    );
    adoption.sort();
    eprintln!(
        "recovery ({backend:?}, {servers} server(s)): {runs} runs (seed {seed:#x}), {killed} killed \
         mid-run, {servers_killed} servers killed, {in_doubt} in-doubt calls resolved; owner death \
         to adoption: {adoption:?}"
    );
    assert!(
        killed * 2 >= runs,
        "too few kills landed mid-run ({killed} of {runs}) to prove anything"
    );
}

#[test]
fn an_interrupted_run_reads_interrupted_and_names_who_picks_it_up() {
    let mut world = World::on(Backend::Sqlite);
    world.own_tools(&["notes"]);
    let script_path = world.script("script.json", &script());
    let config = world.write_config(&scripted_entry("m", &script_path));
    let config = config.to_str().unwrap().to_string();
    // Killed during its first model turn: no live owner, no server.
    assert!(run_and_kill(
        &world,
        &config,
        "lost",
        Duration::from_millis(10)
    ));
    let v = show(&world, &config, "lost");
    assert_eq!(v["status"], "interrupted", "{v}");
    assert_eq!(
        v["picked_up_by"], "resume it with `toolhost agent resume lost`",
        "{v}"
    );
    let out = toolhost(world.path(), &["--config", &config, "runs", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("interrupted"), "{text}");
    assert!(
        !text.contains(" running "),
        "a dead owner's run reads running: {text}"
    );
    let out = toolhost(world.path(), &["--config", &config, "--json", "stats"]);
    let stats = stdout_json(&out);
    assert_eq!(stats["interrupted"], 1, "{stats}");
    assert_eq!(stats["running"], 0, "{stats}");
}

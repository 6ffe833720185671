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
    adopts_every_run(Backend::Sqlite);
}

/// Three servers on one PostgreSQL take 12 runs submitted over the run
/// API, and are SIGKILLed (each replaced by a fresh one) at seeded
/// instants: the runs a dead server drove are adopted by the others once
/// its lease passes, each by one server at a time (the fence: a step row is
/// written once, and no turn is asked of the model twice beyond what each
/// kill interrupted), and every effect happens once.
#[test]
fn three_servers_on_one_postgres_share_the_runs_submitted_to_them_and_adopt_the_dead_ones() {
    submitted_runs_survive_server_kills(Backend::Postgres, 3);
}

fn seed() -> u64 {
    env_or("TOOLHOST_RECOVERY_SEED", 0x5eed_0023)
}

/// A world on `backend` with `notes` and the one script; its config's path.
fn world_of(backend: Backend) -> (World, String) {
    let mut world = World::on(backend);
    world.own_tools(&["notes"]);
    let script_path = world.script("script.json", &script());
    let config = world.write_config(&scripted_entry("m", &script_path));
    let config = config.to_str().unwrap().to_string();
    (world, config)
}

fn adopts_every_run(backend: Backend) {
    let (runs, seed) = (env_or("TOOLHOST_RECOVERY_RUNS", 6) as usize, seed());
    let (world, config) = world_of(backend);
    let out = toolhost(
        world.path(),
        &["--config", &config, "--json", "runs", "list"],
    );
    assert!(out.status.success(), "{out:?}");
    let server = Serve::start(world.path(), &["--config", &config], &[]);

    let mut rng = StdRng::seed_from_u64(seed);
    let run_ms = TURN_MS * (STEPS as u64 + 1);
    let (mut killed, mut in_doubt) = (0, 0);
    let mut adoption = Vec::new();
    for i in 1..=runs {
        let id = format!("r{i}");
        let after = Duration::from_millis(rng.random_range(0..run_ms));
        let was_running = run_and_kill(&world, &config, &id, after);
        let died = Instant::now();
        killed += usize::from(was_running);
        // Adopted (a second session) or finished by itself, then completed.
        let mut adopted_after = None;
        let v = loop {
            let (v, completed) = poll(&world, &config, &id, &mut in_doubt);
            if adopted_after.is_none() && v["sessions"].as_u64() >= Some(2) {
                adopted_after = Some(died.elapsed());
            }
            if completed {
                break v;
            }
            assert!(
                died.elapsed() < FINISH_WAIT,
                "run {id} was not finished within {FINISH_WAIT:?}: {v}\n{:#?}",
                server.lines()
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
    // No journaled step asked again: at most the one request each kill
    // interrupted.
    exactly_once(&world, runs, killed);
    let adopted_by_server = server
        .lines()
        .iter()
        .filter(|l| l.contains("adopting an interrupted run"))
        .count();
    assert!(
        adopted_by_server >= adoption.len(),
        "the server logged {adopted_by_server} adoptions for {} runs killed mid-run",
        adoption.len()
    );
    adoption.sort();
    eprintln!(
        "recovery ({backend:?}): {runs} runs (seed {seed:#x}), {killed} killed mid-run, \
         {in_doubt} in-doubt calls resolved; owner death to adoption: {adoption:?}"
    );
    assert!(
        killed * 2 >= runs,
        "too few kills landed mid-run ({killed} of {runs}) to prove anything"
    );
}

#[test]
fn an_interrupted_run_reads_interrupted_and_names_who_picks_it_up() {
    let (world, config) = world_of(Backend::Sqlite);
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

/// Every effect once (one `notes` line per key), every step journaled once
/// (one final model row per step), and no journaled turn asked again
/// beyond `extra` interrupted requests. `runs` runs of the one script.
fn exactly_once(world: &World, runs: usize, extra: usize) {
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
    assert_eq!(
        world.rows("SELECT 1 FROM steps WHERE kind = 'model' AND final = true"),
        runs * (STEPS + 1)
    );
    let requests = std::fs::read_to_string(world.path().join("requests.log"))
        .unwrap_or_default()
        .lines()
        .count();
    assert!(
        requests >= runs * (STEPS + 1) && requests <= runs * (STEPS + 1) + extra,
        "{requests} model requests for {runs} runs of {} turns and at most {extra} interrupted",
        STEPS + 1
    );
}

/// Run `id` as it is, and whether it completed; one that stopped on an
/// in-doubt call is resolved and resumed (counted in `in_doubt`).
fn poll(world: &World, config: &str, id: &str, in_doubt: &mut usize) -> (Value, bool) {
    let v = show(world, config, id);
    match v["status"].as_str() {
        Some("completed") => return (v, true),
        Some("failed") => {
            resolve_and_resume(world, config, id, &v);
            *in_doubt += 1;
        }
        Some("running" | "interrupted") => {}
        other => panic!("run {id}: unexpected status {other:?}: {v}"),
    }
    (v, false)
}

/// Resolves run `id`'s in-doubt call as an operator would (the line's
/// presence says whether the effect happened) and resumes it.
fn resolve_and_resume(world: &World, config: &str, id: &str, v: &Value) {
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("in doubt"), "run {id}: {v}");
    let key = in_doubt_key(reason);
    let done = world.lines("notes.txt").iter().any(|l| l.starts_with(&key));
    let decision = if done { "--abandon" } else { "--retry" };
    let out = toolhost(
        world.path(),
        &["--config", config, "cache", "resolve", &key, decision],
    );
    assert!(out.status.success(), "{out:?}");
    let out = super::ownership::until_free(
        world,
        &["--config", config, "--json", "agent", "resume", id],
    );
    let resumed = stdout_json(&out);
    assert!(
        out.status.success() || resumed["error"]["kind"] == "run_completed",
        "{out:?}"
    );
}

fn submitted_runs_survive_server_kills(backend: Backend, servers: usize) {
    let (runs, seed) = (env_or("TOOLHOST_RECOVERY_RUNS", 12) as usize, seed());
    let (world, config) = world_of(backend);
    let start_server = || Serve::start(world.path(), &["--config", &config], &[]);
    let mut fleet: Vec<Serve> = (0..servers).map(|_| start_server()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Each run to a server picked by the seed.
    for i in 1..=runs {
        let server = &fleet[rng.random_range(0..fleet.len())];
        let body = json!({"task": "task", "run_id": format!("r{i}")});
        let status = rt.block_on(async {
            client
                .post(server.at("/v1/runs"))
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, 202, "submitting r{i}");
    }
    // Kill a server at seeded instants while runs remain, replacing it.
    let run_ms = TURN_MS * (STEPS as u64 + 1);
    let kills_planned = env_or("TOOLHOST_RECOVERY_KILLS", 4) as usize;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(0..run_ms));
    let (mut servers_killed, mut in_doubt) = (0, 0);
    let started = Instant::now();
    let mut logs: Vec<String> = Vec::new();
    let mut finished: BTreeMap<String, Value> = BTreeMap::new();
    while finished.len() < runs {
        if servers_killed < kills_planned && Instant::now() >= next_kill {
            let victim = rng.random_range(0..fleet.len());
            let mut dead = fleet.swap_remove(victim);
            dead.kill();
            logs.extend(dead.lines());
            fleet.push(start_server());
            servers_killed += 1;
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(0..run_ms));
        }
        for i in 1..=runs {
            let id = format!("r{i}");
            if finished.contains_key(&id) {
                continue;
            }
            let (v, completed) = poll(&world, &config, &id, &mut in_doubt);
            if completed {
                finished.insert(id, v);
            }
        }
        assert!(
            started.elapsed() < FINISH_WAIT * 2,
            "runs not finished within {:?}: {} of {runs} done\n{:#?}",
            FINISH_WAIT * 2,
            finished.len(),
            fleet.iter().map(Serve::lines).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for server in &fleet {
        logs.extend(server.lines());
    }
    for (id, v) in &finished {
        assert_eq!(v["answer"], "done", "run {id}: {v}");
    }
    // A killed server had at most `max_concurrent_runs` requests in flight.
    let per_kill = toolhost::config::ServeConfig::default().max_concurrent_runs as usize;
    exactly_once(&world, runs, servers_killed * per_kill);
    let adopted: usize = finished
        .values()
        .filter(|v| v["sessions"].as_u64() >= Some(2))
        .count();
    let adoptions_logged = logs
        .iter()
        .filter(|l| l.contains("adopting an interrupted run"))
        .count();
    eprintln!(
        "recovery ({backend:?}, {servers} servers): {runs} runs submitted over the API (seed {seed:#x}), \
         {servers_killed} servers killed, {adopted} runs adopted ({adoptions_logged} adoptions logged), \
         {in_doubt} in-doubt calls resolved"
    );
    assert!(servers_killed > 0, "the runs ended before the first kill");
    assert!(adopted > 0, "no run was adopted: the kills proved nothing");
}

//! Crash and resume: an agent run in a child process (scripted model, zero
//! latency, parallel `notes` calls) is SIGKILLed at a seeded random instant,
//! then resumed (and, when the kill left a call in doubt, resolved the way
//! an operator would: the line carries its key, so its presence says whether
//! the effect happened). Every run completes, every intended line is in the
//! notes file exactly once, and no journaled step ran twice: the model's
//! request log shows at most the one request the kill interrupted, and the
//! notes file (one line per execution) shows every tool ran once.
//!
//! On PostgreSQL every resume runs as another host: its own config file
//! and owner id, the same database (the notes directory stands for the
//! outside world both hosts act on); it takes the run once the killed
//! owner's lease has passed.
//!
//! `TOOLHOST_AGENT_CRASH_ITERS` (default 50 on SQLite, 12 on PostgreSQL,
//! where each resume first waits out a lease) and
//! `TOOLHOST_AGENT_CRASH_SEED` size and seed the loop.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::ownership::{run_owned, until_free};
use super::{Backend, World, call, in_doubt_key, scripted_entry};
use crate::support::{stdout_json, toolhost};

const STEPS: usize = 6;
const CALLS: usize = 2;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The intended lines of iteration `i`.
fn intended(i: usize) -> Vec<String> {
    (1..=STEPS)
        .flat_map(|s| (0..CALLS).map(move |c| format!("it{i} step{s} call{c}")))
        .collect()
}

fn script(i: usize) -> Value {
    let mut turns: Vec<Value> = (1..=STEPS)
        .map(|s| {
            let calls: Vec<Value> = (0..CALLS)
                .map(|c| call("notes", json!({"file": format!("notes-{i}.txt"), "text": format!("it{i} step{s} call{c}")})))
                .collect();
            json!({"tool_calls": calls})
        })
        .collect();
    turns.push(json!({"text": format!("iteration {i} done")}));
    json!({"mode": "conversation", "log": format!("requests-{i}.log"), "turns": turns})
}

/// Model requests by step, from the scripted model's log.
fn requests_by_step(world: &World, i: usize) -> BTreeMap<usize, usize> {
    let text =
        std::fs::read_to_string(world.path().join(format!("requests-{i}.log"))).unwrap_or_default();
    let mut by = BTreeMap::new();
    for line in text.lines() {
        let step: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
        *by.entry(step).or_default() += 1;
    }
    by
}

fn journaled_turns(world: &World, id: &str) -> usize {
    world.rows(&format!(
        "SELECT 1 FROM steps WHERE run_id = '{id}' AND kind = 'model' AND final = true"
    ))
}

/// Resumes (or starts, if the kill came before the run existed) until it
/// completes, resolving an in-doubt call as an operator would.
fn finish(world: &World, config: &str, i: usize) -> (Value, usize) {
    let id = format!("it{i}");
    let mut resolutions = 0;
    for _ in 0..(STEPS * CALLS + 2) {
        let out = until_free(
            world,
            &["--config", config, "--json", "agent", "resume", &id],
        );
        let mut v = stdout_json(&out);
        if v["error"]["kind"] == "not_found" {
            let out = toolhost(
                world.path(),
                &[
                    "--config", config, "--json", "agent", "run", "task", "--run-id", &id,
                ],
            );
            v = stdout_json(&out);
        }
        if v["error"]["kind"] == "run_completed" {
            // The kill came after the run completed: read it back.
            let out = toolhost(
                world.path(),
                &["--config", config, "--json", "runs", "show", &id],
            );
            v = stdout_json(&out)["run"].clone();
        }
        match v["status"].as_str() {
            Some("completed") => return (v, resolutions),
            Some("failed") => {
                let reason = v["reason"].as_str().unwrap();
                assert!(reason.contains("in doubt"), "iteration {i}: {v}");
                let key = &in_doubt_key(reason);
                let done = world
                    .lines(&format!("notes-{i}.txt"))
                    .iter()
                    .any(|l| l.starts_with(key));
                let decision = if done { "--abandon" } else { "--retry" };
                let out = toolhost(
                    world.path(),
                    &[
                        "--config", config, "--json", "cache", "resolve", key, decision,
                    ],
                );
                assert!(
                    out.status.success(),
                    "iteration {i}: resolve {decision}: {out:?}"
                );
                resolutions += 1;
            }
            _ => panic!("iteration {i}: unexpected outcome {v}"),
        }
    }
    panic!("iteration {i} never completed");
}

#[test]
fn sigkill_at_seeded_random_instants_never_repeats_a_step_or_an_effect_on_sqlite() {
    sigkill_at_seeded_random_instants_never_repeats_a_step_or_an_effect(Backend::Sqlite, 50);
}

#[test]
fn sigkill_on_one_host_then_resume_on_another_never_repeats_a_step_or_an_effect_on_postgres() {
    sigkill_at_seeded_random_instants_never_repeats_a_step_or_an_effect(Backend::Postgres, 12);
}

fn sigkill_at_seeded_random_instants_never_repeats_a_step_or_an_effect(
    backend: Backend,
    default_iterations: u64,
) {
    let iterations = env_or("TOOLHOST_AGENT_CRASH_ITERS", default_iterations) as usize;
    let seed = env_or("TOOLHOST_AGENT_CRASH_SEED", 0x5eed_0010);
    let mut world = World::on(backend);
    world.own_tools(&["notes"]);
    let script_path = world.path().join("script.json");
    let config = world.write_config(&scripted_entry("m", &script_path));
    let config = config.to_str().unwrap().to_string();
    // Host B: the same config in a directory of its own. On SQLite it is
    // the same host (the file is local); on PostgreSQL another machine.
    let other = world.path().join("host-b");
    std::fs::create_dir_all(&other).unwrap();
    let resume_config = other.join("toolhost.toml");
    std::fs::copy(&config, &resume_config).unwrap();
    let resume_config = resume_config.to_str().unwrap().to_string();

    // The store is made (and migrated) once, before the calibration, so
    // that one-time cost does not stretch the window the kills aim at.
    let out = toolhost(
        world.path(),
        &["--config", &config, "--json", "runs", "list"],
    );
    assert!(out.status.success(), "{out:?}");

    // Calibration (iteration 0, not killed): when the run starts and ends.
    std::fs::write(&script_path, script(0).to_string()).unwrap();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args([
            "--config", &config, "agent", "run", "task", "--run-id", "it0",
        ])
        .current_dir(world.path())
        .envs(crate::support::state_env(world.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut started = None;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "calibration run hung"
        );
        if started.is_none() && run_owned(&world, "it0") {
            started = Some(start.elapsed());
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "calibration run failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let total = start.elapsed();
    let started = started.unwrap_or(total / 2);
    assert_eq!(world.lines("notes-0.txt").len(), STEPS * CALLS);

    let mut rng = StdRng::seed_from_u64(seed);
    let (mut before_run, mut mid_run, mut after_run, mut in_doubt) = (0, 0, 0, 0);
    // Kill instants span the whole run, with a little of the start-up. The
    // window follows what the kills find (a run already over: aim earlier;
    // not yet begun: aim later), so a machine whose speed changes under
    // other load still gets its kills mid-run.
    let (mut lo, mut hi) = (started.as_micros() as u64 / 2, total.as_micros() as u64);
    for i in 1..=iterations {
        std::fs::write(&script_path, script(i).to_string()).unwrap();
        hi = hi.max(lo + 1);
        let kill_at = Duration::from_micros(rng.random_range(lo..hi));
        let mut child = Command::new(env!("CARGO_BIN_EXE_toolhost"))
            .args([
                "--config",
                &config,
                "agent",
                "run",
                "task",
                "--run-id",
                &format!("it{i}"),
            ])
            .current_dir(world.path())
            .envs(crate::support::state_env(world.path()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The kill instant itself is the experiment, not a synchronisation.
        std::thread::sleep(kill_at);
        let exited = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let turns = journaled_turns(&world, &format!("it{i}"));
        match (exited, turns) {
            (true, _) => {
                after_run += 1;
                hi = kill_at.as_micros() as u64;
                lo = lo.min(hi / 2);
            }
            (false, 0) => {
                before_run += 1;
                lo = kill_at.as_micros() as u64;
                hi = hi.max(lo * 2);
            }
            (false, _) => mid_run += 1,
        }

        let (v, resolutions) = finish(&world, &resume_config, i);
        in_doubt += resolutions;
        assert_eq!(v["answer"], format!("iteration {i} done"));
        let lines = world.lines(&format!("notes-{i}.txt"));
        let mut texts: Vec<String> = lines
            .iter()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect();
        texts.sort();
        let mut want = intended(i);
        want.sort();
        assert_eq!(
            texts, want,
            "iteration {i} (killed at {kill_at:?}): each line exactly once"
        );

        // Model requests: every step asked, and at most one asked twice
        // (the request the kill interrupted before it was journaled).
        let by_step = requests_by_step(&world, i);
        assert_eq!(by_step.len(), STEPS + 1, "iteration {i}: {by_step:?}");
        let repeats: usize = by_step.values().map(|n| n - 1).sum();
        assert!(
            repeats <= 1,
            "iteration {i}: a journaled step was asked again: {by_step:?}"
        );
        assert_eq!(journaled_turns(&world, &format!("it{i}")), STEPS + 1);
    }
    eprintln!(
        "crash loop ({backend:?}): {iterations} iterations (seed {seed:#x}, run {started:?}..{total:?}): \
         {before_run} killed before the run started, {mid_run} mid-run, {after_run} after it ended; \
         {in_doubt} in-doubt calls resolved"
    );
    assert!(
        mid_run * 4 >= iterations,
        "too few kills landed mid-run ({mid_run} of {iterations}) to prove anything"
    );
}

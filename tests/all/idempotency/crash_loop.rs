//! A seeded crash loop: a child process is SIGKILLed at a random instant
//! while it claims, runs or records a call, over a mix of `idempotent`
//! (`tally`) and `side-effecting` (`append`) keys. After each kill the next
//! caller must get the recorded outcome, `in_doubt`, or (idempotent only) a
//! re-run; across all iterations no side-effecting key executes twice.
//!
//! `TOOLHOST_CRASH_ITERS` (default 200) and `TOOLHOST_CRASH_SEED` size and
//! seed it; a failure prints the seed to replay it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::child::{self, Reports, Role};
use super::{World, keyed, within};

const DEFAULT_ITERS: usize = 200;
const DEFAULT_SEED: u64 = 0x7001_4057_2026;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_seeded_crash_loop_never_repeats_a_side_effect() {
    child::act_if_child();
    let iters: usize = env_or("TOOLHOST_CRASH_ITERS", DEFAULT_ITERS);
    let seed: u64 = env_or("TOOLHOST_CRASH_SEED", DEFAULT_SEED);
    let world = World::new();
    let test = child::test_path(
        module_path!(),
        "a_seeded_crash_loop_never_repeats_a_side_effect",
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ex = runtime.block_on(world.append_executor());
    let mut rng = StdRng::seed_from_u64(seed);
    let role = |tool: &str, key: String, sleep_ms: u64| Role {
        world: world.path().to_path_buf(),
        tool: tool.into(),
        input: json!({"file": format!("{tool}.txt"), "text": "x", "sleep_ms": sleep_ms})
            .to_string(),
        key,
        barrier: None,
        tools_dir: None,
    };

    // Calibrate: how long a child takes from "ready" to its outcome, so the
    // kills spread over the claim, the run and the record.
    let mut window = Duration::ZERO;
    for i in 0..3 {
        let mut c = child::spawn(&test, &role("tally", format!("calibrate-{i}"), 1));
        let reports = Reports::of(c.stdout.take().unwrap());
        reports.next(Duration::from_secs(60), "ready");
        let t = Instant::now();
        let done = reports.next(Duration::from_secs(60), "done");
        window = window.max(t.elapsed());
        assert_eq!(done["ok"], true, "{done}");
        c.wait().unwrap();
    }
    let window_us = (window.as_micros() as u64 * 13 / 10).max(2_000);

    let mut outcomes: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for i in 0..iters {
        let side = rng.random_bool(0.5);
        let tool = if side { "append" } else { "tally" };
        let key = format!("crash-{i}");
        let r = role(tool, key.clone(), rng.random_range(0..3));
        let delay = Duration::from_micros(rng.random_range(0..window_us));
        let mut c = child::spawn(&test, &r);
        let reports = Reports::of(c.stdout.take().unwrap());
        reports.next(Duration::from_secs(60), "ready");
        // The random instant of the crash (not a synchronisation).
        std::thread::sleep(delay);
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();

        let next = runtime.block_on(within(
            30,
            "the next caller",
            ex.call(tool, &r.input, keyed(&key)),
        ));
        let file = format!("{tool}.txt");
        let out_key = match &next {
            Ok(o) => o.key.clone(),
            Err(e) => e.key().unwrap_or_default().to_string(),
        };
        let runs = world.executions(&file, &out_key);
        let outcome = match &next {
            Ok(o) if o.cached => "recorded",
            Ok(o) if o.attempt == 1 => "ran (no claim had landed)",
            Ok(_) => "re-ran (idempotent)",
            Err(e) if e.kind() == "in_doubt" => "in_doubt",
            Err(e) => panic!(
                "seed {seed:#x}, iteration {i}: unexpected {} ({e})",
                e.kind()
            ),
        };
        let ctx = format!(
            "seed {seed:#x}, iteration {i}, {tool}, killed after {delay:?}: {outcome}, {runs} executions"
        );
        if side {
            assert!(outcome != "re-ran (idempotent)", "{ctx}");
            assert!(runs <= 1, "a side effect ran twice: {ctx}");
            if outcome != "in_doubt" {
                assert_eq!(runs, 1, "{ctx}");
            }
        } else {
            assert!(
                outcome != "in_doubt",
                "an idempotent call must re-run, not stop: {ctx}"
            );
            assert!(runs >= 1, "{ctx}");
        }
        *outcomes
            .entry(tool)
            .or_default()
            .entry(outcome)
            .or_default() += 1;
    }
    println!(
        "crash loop: {iters} iterations, seed {seed:#x}, kills within {window_us} us: {outcomes:?}"
    );
    // Across everything: every side-effecting key ran at most once.
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for line in world.lines("append.txt") {
        *per_key
            .entry(line.split(' ').next().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    // The kills landed in different windows, not all after the record.
    let side = &outcomes["append"];
    assert!(
        side.get("in_doubt").is_some() && side.get("recorded").is_some(),
        "{outcomes:?}"
    );
}

//! A `toolhost` process killed with SIGKILL in the middle of a side-effecting
//! call: the claim becomes `in_doubt`, the effect does not repeat, and an
//! operator's `cache resolve --retry` runs it exactly once more.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::World;
use crate::support::{stdout_json, toolhost};

#[test]
fn a_killed_claimant_leaves_the_call_in_doubt_until_resolved() {
    let world = World::new();
    let config = world.write_testkit_config();
    let config = config.to_str().unwrap();
    let input = json!({"file": "crash.txt", "text": "charge", "sleep_ms": 3000}).to_string();
    let args = [
        "--config",
        config,
        "--json",
        "call",
        "append",
        "--input",
        &input,
        "--idempotency-key",
        "crash-1",
    ];

    let mut victim = Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args(args)
        .current_dir(world.path())
        .envs(crate::support::state_env(world.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the effect has happened (the tool then sleeps), then kill.
    let start = Instant::now();
    while world.lines("crash.txt").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the tool never ran"
        );
        assert!(
            victim.try_wait().unwrap().is_none(),
            "the victim exited early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    victim.kill().unwrap(); // SIGKILL on Unix
    victim.wait().unwrap();

    // The next caller with the key: in_doubt, and nothing runs again.
    let out = toolhost(world.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "in_doubt", "{v}");
    let key = v["key"].as_str().unwrap().to_string();
    assert_eq!(world.lines("crash.txt").len(), 1);

    // It stays in doubt; `cache show` says so.
    let out = toolhost(
        world.path(),
        &["--config", config, "--json", "cache", "show", &key],
    );
    assert_eq!(stdout_json(&out)["state"], "in_doubt");
    let out = toolhost(world.path(), &args);
    assert_eq!(stdout_json(&out)["error"]["kind"], "in_doubt");
    assert_eq!(world.lines("crash.txt").len(), 1);

    // The operator retries: it runs once, as attempt 2, with the same key.
    let out = toolhost(
        world.path(),
        &[
            "--config", config, "--json", "cache", "resolve", &key, "--retry",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["attempt"], 2);
    let lines = world.lines("crash.txt");
    assert_eq!(
        lines,
        vec![format!("{key} charge"), format!("{key} charge")]
    );

    // From now on the key replays the recorded outcome.
    let out = toolhost(world.path(), &args);
    let v = stdout_json(&out);
    assert_eq!(
        (v["ok"].clone(), v["cached"].clone()),
        (json!(true), json!(true)),
        "{v}"
    );
    assert_eq!(world.lines("crash.txt").len(), 2);
}

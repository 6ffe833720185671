//! Breakers outlive a process: one opened by a run is open for the next
//! process (which never calls the dead model) and in `model list`. And the
//! demo tells its story end to end.

use serde_json::json;

use super::{Backend, World, call, scripted_entry};
use crate::support::{stdout_json, toolhost};

#[test]
fn a_breaker_opened_in_one_process_is_open_in_the_next_and_in_model_list_on_sqlite() {
    a_breaker_opened_in_one_process_is_open_in_the_next_and_in_model_list(Backend::Sqlite);
}

#[test]
fn a_breaker_opened_in_one_process_is_open_in_the_next_and_in_model_list_on_postgres() {
    a_breaker_opened_in_one_process_is_open_in_the_next_and_in_model_list(Backend::Postgres);
}

fn a_breaker_opened_in_one_process_is_open_in_the_next_and_in_model_list(backend: Backend) {
    let mut world = World::on(backend);
    world.extra = "[breaker]\nconsecutive_failures = 2\nopen_ms = 120000\n".into();
    let turns = json!([
        {"tool_calls": [call("calc", json!({"expr": "2+2"}))]},
        {"text": "4"}
    ]);
    let primary = world.script(
        "primary.json",
        &json!({"mode": "conversation", "turns": turns, "log": "primary.log",
                "faults": [{"at": 1, "count": 1000, "kind": "server_error"}]}),
    );
    let backup = world.script(
        "backup.json",
        &json!({"mode": "conversation", "turns": turns}),
    );
    let config = world.write_config(&format!(
        "{}\n{}",
        scripted_entry("primary", &primary),
        scripted_entry("backup", &backup)
    ));
    let config = config.to_str().unwrap();
    let primary_requests = || {
        std::fs::read_to_string(world.path().join("primary.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    let out = toolhost(
        world.path(),
        &[
            "--config", config, "--json", "agent", "run", "add", "--run-id", "one",
        ],
    );
    assert_eq!(stdout_json(&out)["status"], "completed", "{out:?}");
    assert_eq!(primary_requests(), 2, "two failures open the breaker");

    let out = toolhost(
        world.path(),
        &["--config", config, "--json", "model", "list"],
    );
    let v = stdout_json(&out);
    assert_eq!(v["models"][0]["breaker"]["state"], "open", "{v}");
    assert_eq!(v["models"][1]["breaker"]["state"], "closed", "{v}");

    // Another process adopts the open breaker: the primary is not called.
    let out = toolhost(
        world.path(),
        &[
            "--config", config, "--json", "agent", "run", "add", "--run-id", "two",
        ],
    );
    assert_eq!(stdout_json(&out)["status"], "completed", "{out:?}");
    assert_eq!(
        primary_requests(),
        2,
        "the second process never called the open primary"
    );
    let out = toolhost(
        world.path(),
        &["--config", config, "--json", "stats", "--run", "two"],
    );
    let s = stdout_json(&out);
    assert_eq!(s["errors_by_kind"]["circuit_open"], 2, "{s}");
    assert_eq!(s["fell_back"], 2, "{s}");
}

#[test]
fn the_demo_shows_fallback_a_crash_and_a_resume_with_exactly_once_effects() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let start = std::time::Instant::now();
    let out = toolhost(dir.path(), &["demo", "--dir", demo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "the demo took {:?}",
        start.elapsed()
    );
    for needle in [
        "1 fallback",
        "killed with SIGKILL",
        "from the journal",
        "effects executed exactly once: yes",
        "model:primary: open",
        "0 to the primary",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(text.contains("fallbacks        4 of 6"), "{text}");
    let packing = std::fs::read_to_string(demo.join("data/packing.txt")).unwrap();
    assert_eq!(packing.lines().count(), 6);
    // Issue 24, item 4: the compiled tools go to the user's own cache
    // directory, not a fixed directory under /tmp shared by every user.
    let (_, cache_home) = crate::support::state_env(dir.path())
        .into_iter()
        .find(|(k, _)| *k == "XDG_CACHE_HOME")
        .unwrap();
    let artifacts = cache_home.join("toolhost").join("artifacts");
    let config: toml::Table = std::fs::read_to_string(demo.join("toolhost.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        config["sandbox"]["cache_dir"].as_str(),
        Some(artifacts.to_str().unwrap()),
        "{config}"
    );
    assert!(std::fs::read_dir(&artifacts).unwrap().next().is_some());
    assert!(!text.contains("toolhost-demo-artifacts"), "{text}");
}

//! After a scripted mix of runs (in separate processes, through the CLI),
//! `stats --json` reports exactly the completion, retry and fallback rates
//! that were scripted.

use serde_json::json;

use super::{Backend, World, call, scripted_entry};
use crate::support::{stdout_json, toolhost};

fn two_turns() -> serde_json::Value {
    json!([
        {"tool_calls": [call("calc", json!({"expr": "1+1"}))]},
        {"text": "2"}
    ])
}

fn run(world: &World, config: &std::path::Path, id: &str) -> std::process::Output {
    let config = config.to_str().unwrap();
    toolhost(
        world.path(),
        &[
            "--config", config, "--json", "agent", "run", "add", "--run-id", id,
        ],
    )
}

#[test]
fn stats_json_reports_exactly_the_scripted_rates_on_sqlite() {
    stats_json_reports_exactly_the_scripted_rates(Backend::Sqlite);
}

#[test]
fn stats_json_reports_exactly_the_scripted_rates_on_postgres() {
    stats_json_reports_exactly_the_scripted_rates(Backend::Postgres);
}

fn stats_json_reports_exactly_the_scripted_rates(backend: Backend) {
    let mut world = World::on(backend);
    // Two attempts per model; breakers that never open in this test.
    world.extra = "[breaker]\nconsecutive_failures = 100\nmin_calls = 100\nwindow = 100\n".into();
    let healthy = world.script(
        "healthy.json",
        &json!({"mode": "conversation", "turns": two_turns()}),
    );
    let limited = world.script(
        "limited.json",
        &json!({"mode": "conversation", "turns": two_turns(),
                "faults": [{"at": 1, "kind": "rate_limited", "retry_after_ms": 1}]}),
    );
    let down = world.script(
        "down.json",
        &json!({"mode": "conversation", "turns": two_turns(),
                "faults": [{"at": 1, "count": 1000, "kind": "server_error"}]}),
    );
    let chain = |primary: &std::path::Path, backup: &std::path::Path| {
        format!(
            "{}\n{}",
            scripted_entry("primary", primary),
            scripted_entry("backup", backup)
        )
    };
    let configs = [
        ("a", chain(&healthy, &healthy)), // 2 turns, 2 attempts
        ("b", chain(&limited, &healthy)), // 2 turns, 3 attempts, 1 retry
        ("c", chain(&down, &healthy)),    // 2 turns, each 2 + 1 attempts, 1 retry, 1 fallback
        ("d", chain(&down, &down)),       // 1 turn, 2 + 2 attempts, 2 retries, 1 fallback; failed
    ];
    for (id, models) in configs {
        let path = world.write_config(&models);
        // max_attempts = 2 for every model.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[retry]\n", "[retry]\nmax_attempts = 2\n");
        std::fs::write(&path, text).unwrap();
        let out = run(&world, &path, id);
        let v = stdout_json(&out);
        let expected = if id == "d" { "failed" } else { "completed" };
        assert_eq!(v["status"], expected, "run {id}: {v}");
    }
    let config = world.path().join("toolhost.toml");
    let out = toolhost(
        world.path(),
        &["--config", config.to_str().unwrap(), "--json", "stats"],
    );
    assert!(out.status.success(), "{out:?}");
    let s = stdout_json(&out);
    assert_eq!(
        (
            s["runs"].clone(),
            s["completed"].clone(),
            s["failed"].clone()
        ),
        (json!(4), json!(3), json!(1)),
        "{s}"
    );
    let close = |k: &str, want: f64| {
        let got = s[k].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{k}: {got} != {want}: {s}");
    };
    close("completion_rate", 0.75);
    // Model turns: 2 + 2 + 2 + 1 = 7; fell back: c twice, d once.
    assert_eq!(s["model_turns"], 7);
    assert_eq!(s["fell_back"], 3);
    close("fallback_rate", 3.0 / 7.0);
    // Provider attempts: 2 + 3 + 6 + 4 = 15; retries: 0 + 1 + 2 + 2 = 5.
    assert_eq!(s["model_attempts"], 15);
    assert_eq!(s["retries"], 5);
    close("retry_rate", 5.0 / 15.0);
    assert_eq!(s["errors_by_kind"]["rate_limited"], 1);
    assert_eq!(s["errors_by_kind"]["server_error"], 4 + 4);
    assert_eq!(s["tool_calls"], 3);

    // Per run: only that run's numbers.
    let out = toolhost(
        world.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--json",
            "stats",
            "--run",
            "c",
        ],
    );
    let c = stdout_json(&out);
    assert_eq!(
        (
            c["runs"].clone(),
            c["fell_back"].clone(),
            c["retries"].clone()
        ),
        (json!(1), json!(2), json!(2)),
        "{c}"
    );
}

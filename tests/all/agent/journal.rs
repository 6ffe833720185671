//! Checkpoints stay small: each step stores what it produced, once, and
//! never the whole conversation, so a long run's journal grows linearly.

use serde_json::json;
use toolhost::store::RunStatus;

use super::{Backend, World, call, options, scripted};

#[tokio::test]
async fn a_50_step_journal_grows_linearly_not_quadratically_on_sqlite() {
    a_50_step_journal_grows_linearly_not_quadratically(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_50_step_journal_grows_linearly_not_quadratically_on_postgres() {
    a_50_step_journal_grows_linearly_not_quadratically(Backend::Postgres).await;
}

async fn a_50_step_journal_grows_linearly_not_quadratically(backend: Backend) {
    let world = World::on(backend);
    let config = world.config("");
    // 49 echo turns with a 1 KiB message each, then the answer. A
    // checkpoint holding the conversation would store step n's n KiB.
    let payload = "x".repeat(1024);
    let mut t: Vec<_> = (1..50)
        .map(|k| json!({"text": format!("step {k}"), "tool_calls": [call("echo", json!({"message": format!("{k} {payload}")}))]}))
        .collect();
    t.push(json!({"text": "done"}));
    let (_, m) = scripted("m", serde_json::Value::Array(t));
    let agent = world.agent(&config, vec![m]).await;
    let mut opts = options();
    opts.max_steps = 50;
    let out = agent
        .start(Some("long".into()), "echo a lot", &opts)
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.steps),
        (RunStatus::Completed, 50),
        "{out:?}"
    );

    let bytes = agent.store().journal_bytes_by_step("long").await.unwrap();
    assert_eq!(bytes.len(), 50);
    let per_step: Vec<u64> = bytes.iter().map(|(_, b)| *b).collect();
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let (early, late) = (mean(&per_step[1..11]), mean(&per_step[38..48]));
    // Each step holds its response and its echo (about 2 KiB plus digests),
    // whatever its position in the conversation.
    assert!(
        late < early * 1.2,
        "per-step bytes grew: early {early}, late {late}: {per_step:?}"
    );
    assert!(
        late < 4096.0,
        "a step stores more than its own output: {late}"
    );
    let total: u64 = per_step.iter().sum();
    let stats = agent.store().stats(Some("long")).await.unwrap();
    assert_eq!(stats.journal_bytes, total);
    assert!((stats.journal_bytes_per_step - total as f64 / 50.0).abs() < 1e-6);
}

/// Issue 24, item 5: `runs show --json` gave `body` and `report` as JSON
/// text inside strings; a program had to parse them a second time.
#[test]
fn runs_show_json_gives_body_and_report_as_json_values() {
    let dir = crate::people::workdir();
    std::fs::write(
        dir.path().join("turns.json"),
        json!({"mode": "conversation", "turns": [
            {"tool_calls": [
                {"name": "calc", "arguments": {"expr": "6*7"}},
                {"name": "frobnicate", "arguments": {}}
            ]},
            {"text": "42"}
        ]})
        .to_string(),
    )
    .unwrap();
    crate::support::write_trusted_config(
        dir.path(),
        "[[models]]\nname = \"s\"\nprovider = \"scripted\"\nscript = \"turns.json\"\n",
    );
    let run = crate::support::toolhost(
        dir.path(),
        &["--json", "agent", "run", "t", "--run-id", "r1"],
    );
    assert!(run.status.success(), "{run:?}");
    let show = crate::support::toolhost(dir.path(), &["--json", "runs", "show", "r1"]);
    let v = crate::support::stdout_json(&show);
    let steps = v["steps"].as_array().unwrap();
    let model = steps.iter().find(|s| s["kind"] == "model").unwrap();
    assert!(model["body"].is_object(), "the response, as JSON: {model}");
    assert!(model["report"]["attempts"].is_array(), "{model}");
    let calc = steps.iter().find(|s| s["name"] == "calc").unwrap();
    assert_eq!(calc["body"], json!({"value": 42}), "{calc}");
    assert_eq!(calc["report"], serde_json::Value::Null, "{calc}");
    // A failed call's body is the error text the model was shown.
    let unknown = steps.iter().find(|s| s["name"] == "frobnicate").unwrap();
    assert_eq!(unknown["ok"], false, "{unknown}");
    assert!(
        unknown["body"]
            .as_str()
            .unwrap()
            .starts_with("error: unknown_tool: no tool named `frobnicate`"),
        "{unknown}"
    );
}

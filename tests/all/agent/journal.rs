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

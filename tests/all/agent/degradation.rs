//! Graceful degradation: a failing tool, invalid arguments, an open tool
//! breaker, an outage of the primary model, and a chain with nothing left.

use serde_json::json;
use toolhost::model::{Part, Scripted};
use toolhost::store::RunStatus;

use super::{Backend, Counting, World, call, options, scripted, turns};

/// The tool results the model received in its `n`th request.
fn results(model: &Counting, n: usize) -> Vec<(String, bool)> {
    let req = &model.seen()[n];
    req.messages
        .last()
        .unwrap()
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolResult {
                content, is_error, ..
            } => Some((content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_failing_tool_becomes_an_error_result_and_the_run_completes() {
    let mut world = World::new();
    world.extra = "[tools.slow]\ntimeout_ms = 100\n".into();
    let config = world.config("");
    let (model, m) = scripted(
        "m",
        json!([
            {"tool_calls": [call("slow", json!({"ms": 5000})), call("calc", json!({"expr": "1+1"}))]},
            {"text": "slow failed, but 1+1 = 2"}
        ]),
    );
    let agent = world.agent(&config, vec![m]).await;
    let out = agent.start(None, "try both", &options()).await.unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{out:?}");
    let r = results(&model, 1);
    assert_eq!(r.len(), 2);
    assert!(r[0].1, "the failed call is an error result: {r:?}");
    assert!(r[0].0.starts_with("error: timeout:"), "{r:?}");
    assert!(r[0].0.contains("caveat"), "{r:?}");
    assert_eq!(r[1], ("{\"value\":2}".to_string(), false));
}

#[tokio::test]
async fn invalid_tool_arguments_are_corrected_on_the_next_turn() {
    let world = World::new();
    let config = world.config("");
    let (model, m) = scripted(
        "m",
        json!([
            {"tool_calls": [call("calc", json!({"expr": 6}))]},
            {"tool_calls": [call("calc", json!({"expr": "6*7"}))]},
            {"text": "42"}
        ]),
    );
    let agent = world.agent(&config, vec![m]).await;
    let out = agent
        .start(None, "six times seven", &options())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{out:?}");
    let first = results(&model, 1);
    assert!(
        first[0].1 && first[0].0.contains("invalid_input"),
        "{first:?}"
    );
    assert!(first[0].0.contains("/expr"), "names the path: {first:?}");
    assert_eq!(
        results(&model, 2),
        vec![("{\"value\":42}".to_string(), false)]
    );
    let steps = agent.store().steps(&out.run_id).await.unwrap();
    let kinds: Vec<_> = steps.iter().map(|s| s.error_kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![None, Some("invalid_input".into()), None, None, None]
    );
}

#[tokio::test]
async fn a_tool_whose_breaker_is_open_is_reported_unavailable_and_not_run_on_sqlite() {
    a_tool_whose_breaker_is_open_is_reported_unavailable_and_not_run(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_tool_whose_breaker_is_open_is_reported_unavailable_and_not_run_on_postgres() {
    a_tool_whose_breaker_is_open_is_reported_unavailable_and_not_run(Backend::Postgres).await;
}

async fn a_tool_whose_breaker_is_open_is_reported_unavailable_and_not_run(backend: Backend) {
    let mut world = World::on(backend);
    world.extra = "[tools.slow]\ntimeout_ms = 50\n\n[breaker]\nconsecutive_failures = 2\n".into();
    let config = world.config("");
    let slow = || call("slow", json!({"ms": 2000}));
    let (model, m) = scripted(
        "m",
        json!([
            {"tool_calls": [slow()]},
            {"tool_calls": [slow()]},
            {"tool_calls": [slow()]},
            {"text": "slow is down"}
        ]),
    );
    let agent = world.agent(&config, vec![m]).await;
    let out = agent.start(None, "keep trying", &options()).await.unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{out:?}");
    assert!(results(&model, 1)[0].0.contains("error: timeout"));
    assert!(results(&model, 2)[0].0.contains("error: timeout"));
    let third = results(&model, 3);
    assert!(
        third[0]
            .0
            .starts_with("error: circuit_open: tool `slow` is unavailable"),
        "{third:?}"
    );
    // Two executions only: the third call never reached the sandbox.
    let steps = agent.store().steps(&out.run_id).await.unwrap();
    let timed_out = steps
        .iter()
        .filter(|s| s.error_kind.as_deref() == Some("timeout"))
        .count();
    assert_eq!(timed_out, 2);
    // The open breaker is in the store for every process.
    let states = agent.store().breaker_states("tool:").await.unwrap();
    let slow = states.iter().find(|b| b.name == "tool:slow").unwrap();
    assert_eq!(slow.state.state.as_str(), "open");
    assert_eq!(slow.state.opens, 1);
}

#[tokio::test]
async fn an_outage_of_the_primary_mid_run_completes_on_the_fallback_and_stats_shows_it_on_sqlite() {
    an_outage_of_the_primary_mid_run_completes_on_the_fallback_and_stats_shows_it(Backend::Sqlite)
        .await;
}

#[tokio::test]
async fn an_outage_of_the_primary_mid_run_completes_on_the_fallback_and_stats_shows_it_on_postgres()
{
    an_outage_of_the_primary_mid_run_completes_on_the_fallback_and_stats_shows_it(
        Backend::Postgres,
    )
    .await;
}

async fn an_outage_of_the_primary_mid_run_completes_on_the_fallback_and_stats_shows_it(
    backend: Backend,
) {
    let world = World::on(backend);
    let config = world.config("");
    let script = json!([
        {"tool_calls": [call("calc", json!({"expr": "1+2"}))]},
        {"tool_calls": [call("calc", json!({"expr": "3+4"}))]},
        {"text": "3 and 7"}
    ]);
    // The primary answers its first request, then is down (server_error).
    let primary = Scripted::new("primary", turns(script.clone()))
        .by_conversation()
        .with_faults(
            serde_json::from_value(json!([{"at": 2, "count": 1000, "kind": "server_error"}]))
                .unwrap(),
        );
    let primary = std::sync::Arc::new(Counting::new(primary));
    let (backup, b) = scripted("backup", script);
    let agent = world.agent(&config, vec![primary.clone(), b]).await;
    let out = agent
        .start(Some("outage".into()), "add", &options())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{out:?}");
    assert_eq!(out.answer.as_deref(), Some("3 and 7"));
    assert_eq!(backup.requests(), 2, "steps 2 and 3 served by the backup");
    let steps = agent.store().steps("outage").await.unwrap();
    let served: Vec<_> = steps
        .iter()
        .filter(|s| s.part == 0)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(served, ["primary", "backup", "backup"]);

    let stats = agent.store().stats(Some("outage")).await.unwrap();
    assert_eq!(stats.fell_back, 2);
    assert!((stats.fallback_rate - 2.0 / 3.0).abs() < 1e-9, "{stats:?}");
    assert!(stats.errors_by_kind["server_error"] >= 2, "{stats:?}");
}

#[tokio::test]
async fn a_chain_with_nothing_left_fails_the_run_with_the_reason() {
    let world = World::new();
    let config = world.config("");
    let down = |name: &str| -> std::sync::Arc<dyn toolhost::model::Model> {
        std::sync::Arc::new(
            Scripted::new(name, turns(json!([{"text": "unused"}]))).with_faults(
                serde_json::from_value(json!([{"at": 1, "count": 1000, "kind": "overloaded"}]))
                    .unwrap(),
            ),
        )
    };
    let agent = world.agent(&config, vec![down("a"), down("b")]).await;
    let out = agent
        .start(Some("dead".into()), "anything", &options())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Failed, "{out:?}");
    let reason = out.reason.unwrap();
    assert!(
        reason.starts_with("no model could answer step 1: all_models_unavailable")
            || reason.contains("overloaded"),
        "{reason}"
    );
    let run = agent.store().get_run("dead").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.reason.as_deref(), Some(reason.as_str()));
}

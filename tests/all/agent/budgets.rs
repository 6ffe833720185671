//! Budgets end a run `partial`, with what was done, and are replay-safe:
//! what a run spent before a stop is counted once, never again on resume.

use std::time::Duration;

use serde_json::json;
use toolhost::agent::{AgentOptions, ResumeOptions};
use toolhost::store::RunStatus;

use super::{Backend, World, call, options, scripted};

/// Six calc turns, then an answer.
fn six_steps() -> serde_json::Value {
    let mut t: Vec<_> = (1..=6)
        .map(|k| json!({"text": format!("working on {k}"), "tool_calls": [call("calc", json!({"expr": format!("{k}*{k}")}))]}))
        .collect();
    t.push(json!({"text": "done: 91"}));
    serde_json::Value::Array(t)
}

#[tokio::test]
async fn max_steps_gives_partial_with_the_steps_done_and_resume_spends_only_the_rest_on_sqlite() {
    max_steps_gives_partial_with_the_steps_done_and_resume_spends_only_the_rest(Backend::Sqlite)
        .await;
}

#[tokio::test]
async fn max_steps_gives_partial_with_the_steps_done_and_resume_spends_only_the_rest_on_postgres() {
    max_steps_gives_partial_with_the_steps_done_and_resume_spends_only_the_rest(Backend::Postgres)
        .await;
}

async fn max_steps_gives_partial_with_the_steps_done_and_resume_spends_only_the_rest(
    backend: Backend,
) {
    let world = World::on(backend);
    let config = world.config("");
    let (model, m) = scripted("m", six_steps());
    let agent = world.agent(&config, vec![m]).await;
    let limited = AgentOptions {
        max_steps: 3,
        ..options()
    };
    let out = agent
        .start(Some("r1".into()), "sum squares", &limited)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Partial, "{out:?}");
    assert_eq!(out.steps, 3);
    assert!(
        out.reason
            .as_deref()
            .unwrap()
            .contains("max_steps (3) reached after 3 steps"),
        "{out:?}"
    );
    // The last answer-like text is kept.
    assert_eq!(out.answer.as_deref(), Some("working on 3"));
    assert_eq!(model.requests(), 3);
    let record = agent.store().get_run("r1").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Partial);

    // Steps already taken count against the limit: with max_steps 5 the
    // resume takes exactly two more, from the journal for the first three.
    let resume = ResumeOptions {
        max_steps: Some(5),
        ..ResumeOptions::default()
    };
    let out = agent.resume("r1", &resume).await.unwrap();
    assert_eq!(
        (out.status, out.steps, out.steps_resumed),
        (RunStatus::Partial, 5, 3),
        "{out:?}"
    );
    assert_eq!(model.requests(), 5, "journaled steps were not asked again");

    let out = agent
        .resume(
            "r1",
            &ResumeOptions {
                max_steps: Some(20),
                ..ResumeOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{out:?}");
    assert_eq!(out.answer.as_deref(), Some("done: 91"));
    assert_eq!((out.steps, out.steps_resumed), (7, 5));
    assert_eq!(model.requests(), 7);
}

#[tokio::test]
async fn a_spent_time_budget_gives_partial_and_the_time_is_not_spent_again() {
    let world = World::new();
    let config = world.config("");
    // Each model turn takes 60 ms; the budget is 150 ms.
    let mut slow = six_steps();
    for t in slow.as_array_mut().unwrap() {
        t["delay_ms"] = json!(60);
    }
    let (model, m) = scripted("m", slow);
    let agent = world.agent(&config, vec![m]).await;
    let budget = AgentOptions {
        time_budget: Duration::from_millis(150),
        ..options()
    };
    let out = agent
        .start(Some("t1".into()), "slowly", &budget)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Partial, "{out:?}");
    let reason = out.reason.clone().unwrap();
    assert!(reason.contains("time budget (150 ms) spent"), "{reason}");
    assert!((1..=3).contains(&out.steps), "{out:?}");
    let spent = out.spent_ms;
    assert!(spent >= 150, "{out:?}");
    let asked = model.requests();

    // Resuming under the same budget: it is already spent, so nothing runs
    // live and the spent time stays what it was (plus a few ms of replay).
    let out = agent.resume("t1", &ResumeOptions::default()).await.unwrap();
    assert_eq!(out.status, RunStatus::Partial);
    assert_eq!(model.requests(), asked, "no live step on a spent budget");
    assert!(out.spent_ms < spent + 50, "{} then {}", spent, out.spent_ms);

    // A larger budget continues from the time already spent.
    let more = ResumeOptions {
        time_budget: Some(Duration::from_secs(30)),
        ..ResumeOptions::default()
    };
    let out = agent.resume("t1", &more).await.unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{out:?}");
    // Every step asked once over all sessions, plus the request the budget
    // cut short (it was never answered, so never journaled).
    let cut = usize::from(reason.contains("during the model call"));
    assert_eq!(model.requests(), 7 + cut, "{reason}");
}

#[tokio::test]
async fn a_spent_token_budget_gives_partial_and_journaled_tokens_count_once() {
    let world = World::new();
    let config = world.config("");
    // Every turn reports 100 tokens; the budget is 250.
    let mut script = six_steps();
    for t in script.as_array_mut().unwrap() {
        t["usage"] = json!({"input_tokens": 80, "output_tokens": 20});
    }
    let (model, m) = scripted("m", script);
    let agent = world.agent(&config, vec![m]).await;
    let budget = AgentOptions {
        token_budget: Some(250),
        ..options()
    };
    let out = agent
        .start(Some("k".into()), "count", &budget)
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.steps, out.tokens),
        (RunStatus::Partial, 3, 300),
        "{out:?}"
    );
    assert!(
        out.reason
            .unwrap()
            .contains("token budget (250) spent after 3 steps")
    );
    // Resuming: the 300 journaled tokens count once, so the budget is still
    // spent and nothing runs live.
    let out = agent.resume("k", &ResumeOptions::default()).await.unwrap();
    assert_eq!(
        (out.status, out.tokens, out.steps_resumed),
        (RunStatus::Partial, 300, 3)
    );
    assert_eq!(model.requests(), 3);
}

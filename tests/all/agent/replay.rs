//! Replay makes no model or tool call and reproduces the answer; a rebuilt
//! tool is reported as a divergence, and resume refuses it unless allowed.

use serde_json::json;
use toolhost::agent::{AgentError, AgentOptions, ResumeOptions};
use toolhost::store::RunStatus;

use super::{Backend, World, call, options, scripted};

fn script() -> serde_json::Value {
    json!([
        {"tool_calls": [call("calc", json!({"expr": "2*21"})), call("echo", json!({"message": "hi"}))]},
        {"tool_calls": [call("calc", json!({"expr": "42+1"}))]},
        {"text": "43"}
    ])
}

/// Appends a custom section to a component: a different build (digest) of
/// the same tool, still loadable.
fn rebuild(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"rebuilt";
    // Custom section: id 0, size, name length, name, payload.
    let payload = b"v2";
    bytes.push(0);
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn replay_makes_no_live_call_gives_the_same_answer_and_reports_a_rebuilt_tool_on_sqlite() {
    replay_makes_no_live_call_gives_the_same_answer_and_reports_a_rebuilt_tool(Backend::Sqlite)
        .await;
}

#[tokio::test]
async fn replay_makes_no_live_call_gives_the_same_answer_and_reports_a_rebuilt_tool_on_postgres() {
    replay_makes_no_live_call_gives_the_same_answer_and_reports_a_rebuilt_tool(Backend::Postgres)
        .await;
}

async fn replay_makes_no_live_call_gives_the_same_answer_and_reports_a_rebuilt_tool(
    backend: Backend,
) {
    let mut world = World::on(backend);
    world.own_tools(&["calc", "echo"]);
    let config = world.config("");
    let (model, m) = scripted("m", script());
    let agent = world.agent(&config, vec![m]).await;
    let out = agent
        .start(Some("r".into()), "compute", &options())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    let (asked, ran) = (model.requests(), agent_runs(&agent));

    let report = agent.replay("r").await.unwrap();
    assert_eq!(model.requests(), asked, "no model call");
    assert_eq!(agent_runs(&agent), ran, "no tool call");
    assert!(report.same_answer, "{report:?}");
    assert_eq!(report.answer.as_deref(), Some("43"));
    assert_eq!((report.steps, report.tool_results), (3, 3));
    assert!(report.divergences.is_empty(), "{report:?}");

    // Rebuild calc; a fresh process (agent) sees a different digest.
    rebuild(&world.tools.join("calc.wasm"));
    let (model2, m2) = scripted("m", script());
    let agent2 = world.agent(&config, vec![m2]).await;
    let report = agent2.replay("r").await.unwrap();
    assert_eq!(model2.requests(), 0);
    assert!(report.same_answer);
    let steps: Vec<u32> = report.divergences.iter().map(|d| d.step).collect();
    assert_eq!(steps, [1, 2, 3], "{report:?}");
    assert!(
        report.divergences[0]
            .reasons
            .iter()
            .any(|r| r == "tool `calc` was rebuilt"),
        "{report:?}"
    );
    assert!(
        report.divergences[0]
            .reasons
            .iter()
            .any(|r| r.contains("tool list")),
        "{report:?}"
    );
}

/// Wasm executions in this agent's sandbox.
fn agent_runs(agent: &toolhost::agent::Agent) -> u64 {
    agent.executor().sandbox().runs()
}

#[tokio::test]
async fn resume_refuses_a_rebuilt_tool_unless_allowed_on_sqlite() {
    resume_refuses_a_rebuilt_tool_unless_allowed(Backend::Sqlite).await;
}

#[tokio::test]
async fn resume_refuses_a_rebuilt_tool_unless_allowed_on_postgres() {
    resume_refuses_a_rebuilt_tool_unless_allowed(Backend::Postgres).await;
}

async fn resume_refuses_a_rebuilt_tool_unless_allowed(backend: Backend) {
    let mut world = World::on(backend);
    world.own_tools(&["calc", "echo"]);
    let config = world.config("");
    let (_, m) = scripted("m", script());
    let agent = world.agent(&config, vec![m]).await;
    let one = AgentOptions {
        max_steps: 1,
        ..options()
    };
    let out = agent
        .start(Some("c".into()), "compute", &one)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Partial);
    drop(agent);

    rebuild(&world.tools.join("calc.wasm"));
    let (model, m) = scripted("m", script());
    let agent = world.agent(&config, vec![m]).await;
    let err = agent
        .resume("c", &ResumeOptions::default())
        .await
        .unwrap_err();
    match &err {
        AgentError::Changed { changes, .. } => {
            assert!(
                changes
                    .iter()
                    .any(|c| c.starts_with("tool `calc` was rebuilt")),
                "{changes:?}"
            );
        }
        other => panic!("expected Changed, got {other:?}"),
    }
    assert!(err.to_string().contains("--allow-changed"), "{err}");
    assert_eq!(model.requests(), 0);

    let allow = ResumeOptions {
        allow_changed: true,
        max_steps: Some(10),
        ..ResumeOptions::default()
    };
    let out = agent.resume("c", &allow).await.unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{out:?}");
    assert_eq!(out.steps_resumed, 1);
    assert!(!out.changes.is_empty());
}

//! The real binary, streaming: `model call --stream` prints text as it
//! arrives and marks a retracted partial; `agent run --events` prints one
//! JSON event per line; a run whose primary's stream dies mid-answer on
//! every turn completes on the backup, and `runs show` and `stats` report
//! each attempt's time to first token and the tokens thrown away.
//!
//! The live view holds back the last characters that could begin the API
//! key (its longest form here is 40 characters), so the partials are long.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::model_server::{ModelServer, Step, StreamFault};
use crate::support::{BINARY_DEADLINE, output_within};

const KEY: &str = "sk-cli-SECRET-abcdef0123456789";

/// A streamed Anthropic primary and a streamed OpenAI backup (`stream` is
/// on by default), fast retries, two attempts each.
fn config(dir: &Path, primary: &ModelServer, backup: &ModelServer) {
    let text = format!(
        "{}{}[retry]\nbase_delay_ms = 1\nmax_delay_ms = 4\nmax_attempts = 2\nidle_timeout_ms = 2_000\n",
        primary.model_entry("primary", "anthropic"),
        backup.model_entry("backup", "openai"),
    );
    std::fs::write(dir.join("toolhost.toml"), text).unwrap();
}

async fn toolhost(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args(args)
        .current_dir(dir)
        .envs(crate::support::state_env(dir))
        .env("TOOLHOST_TEST_KEY", KEY)
        .env("TOOLHOST_CONFIG", dir.join("toolhost.toml"))
        .env_remove("TOOLHOST_LOG");
    // The servers run on this test's runtime; the binary blocks elsewhere.
    tokio::task::spawn_blocking(move || output_within(cmd, BINARY_DEADLINE))
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_call_stream_prints_text_as_it_arrives_and_marks_a_retracted_partial() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.push([
        Step::text(
            "Half an answer, and then the stream breaks before the rest of it arrives here.",
        )
        .streamed(StreamFault::ErrorAfter(15)),
        Step::text("The whole answer."),
    ]);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);
    let out = toolhost(
        dir.path(),
        &["model", "call", "--message", "hi", "--stream"],
    )
    .await;
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let partial = text.find("Half an ").expect("the partial was printed live");
    let mark = text
        .find("[retracted: the stream from primary broke (overloaded); the text above is discarded (15 tokens)]")
        .unwrap_or_else(|| panic!("the partial is marked retracted: {text}"));
    let whole = text.find("The whole answer.").expect("the answer");
    assert!(partial < mark && mark < whole, "{text}");
    assert_eq!(
        text.matches("The whole answer.").count(),
        1,
        "printed once: {text}"
    );
    assert!(text.contains("first token after"), "{text}");
    assert!(text.contains("15 tokens discarded"), "{text}");
    assert!(!text.contains(KEY));
    assert!(
        primary.violations().is_empty(),
        "{:?}",
        primary.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_whose_primary_stream_dies_on_every_turn_completes_on_the_backup() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| {
        Step::text("I will compute six times seven with the calculator, then answer.")
            .streamed(StreamFault::DropAfter(15))
    });
    backup.push([
        Step::ToolCall {
            name: "calc".into(),
            arguments: json!({"expr": "6*7"}),
        }
        .streamed(StreamFault::Pieces(2)),
        Step::text("It is 42.").streamed(StreamFault::Pings),
    ]);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);
    let out = toolhost(
        dir.path(),
        &[
            "agent",
            "run",
            "What is 6*7?",
            "--run-id",
            "streamed",
            "--events",
        ],
    )
    .await;
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let named = |name: &str| {
        events
            .iter()
            .filter(|e| e["event"] == name)
            .collect::<Vec<_>>()
    };
    // Two turns, each: two broken attempts on the primary, then the backup.
    assert_eq!(named("model_calling").len(), 2, "{text}");
    let retracted = named("retracted");
    assert_eq!(retracted.len(), 4, "{text}");
    assert!(retracted.iter().all(|e| e["model"] == "primary"
        && e["kind"] == "connection"
        && e["tokens_discarded"] == 15));
    assert_eq!(named("retry").len(), 2);
    let fallbacks = named("fallback");
    assert_eq!(fallbacks.len(), 2);
    assert_eq!(fallbacks[0]["to"], "backup");
    assert_eq!(named("tool_call")[0]["name"], "calc");
    assert_eq!(named("tool_done")[0]["tool"], "calc");
    let last_text: String = events
        .iter()
        .rev()
        .take_while(|e| e["event"] != "retracted" && e["event"] != "fallback")
        .filter_map(|e| e["text"].as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(last_text, "It is 42.");
    let finished = events.last().unwrap();
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["status"], "completed");
    assert!(backup.violations().is_empty(), "{:?}", backup.violations());

    // The journal has the turns whole, exactly as a non-streamed run
    // would: the partials are nowhere in it.
    let show = stdout(&toolhost(dir.path(), &["runs", "show", "streamed"]).await);
    assert!(show.contains("first token primary#1"), "{show}");
    assert!(show.contains("backup#1"), "{show}");
    assert!(show.contains("30 tokens discarded"), "{show}");
    assert!(!show.contains("I will"), "{show}");
    let steps = stdout(&toolhost(dir.path(), &["runs", "show", "streamed", "--json"]).await);
    assert!(!steps.contains("I will compute"), "{steps}");

    let stats = stdout(&toolhost(dir.path(), &["stats"]).await);
    assert!(stats.contains("first token         backup: p50"), "{stats}");
    assert!(
        stats.contains("first token         primary: p50"),
        "{stats}"
    );
    assert!(stats.contains("tokens discarded    60"), "{stats}");
    let json: Value =
        serde_json::from_str(&stdout(&toolhost(dir.path(), &["stats", "--json"]).await)).unwrap();
    assert_eq!(json["tokens_discarded"], 60);
    assert_eq!(json["time_to_first_token"]["backup"]["attempts"], 2);
    assert_eq!(json["time_to_first_token"]["primary"]["attempts"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_run_shows_the_streamed_text_and_marks_a_retracted_partial() {
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.push([
        Step::text("A first try at the answer that the stream will break before it ends.")
            .streamed(StreamFault::ErrorAfter(15)),
        Step::text("It is 42."),
    ]);
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &primary, &backup);
    let out = toolhost(dir.path(), &["agent", "run", "What is 6*7?"]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let partial = text.find("A first try").expect("the partial, live");
    let mark = text
        .find("[retracted: the stream from primary broke (overloaded)")
        .unwrap_or_else(|| panic!("{text}"));
    let step = text.find("step 1").expect("the step line");
    assert!(partial < mark && mark < step, "{text}");
    assert!(text.contains("\nIt is 42.\n"), "the final answer: {text}");
    assert_eq!(backup.requests(), 0);
}

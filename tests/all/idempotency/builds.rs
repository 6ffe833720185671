//! A rebuilt tool or an edited config: effect keys name the effect, so a
//! recorded payment replays (and says `digest_changed`); pure keys name the
//! build, so a rebuilt pure tool computes afresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use toolhost::config::ToolPolicy;
use toolhost::idempotency::RECORD_ATTEMPTS;
use toolhost::store::CallState;

use super::on_both_backends;
use super::{World, keyed, testkit_dir, within};
use crate::support::{examples_dir, stdout_json, toolhost};

/// Copies every tool in `from` into `<world>/<name>/`, each with a custom
/// section appended: the same code, another blake3 digest, as a rebuild
/// with a new compiler would give.
fn rebuilt(world: &World, from: &Path, name: &str) -> PathBuf {
    let dir = world.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let mut bytes = std::fs::read(entry.path()).unwrap();
        // A component-level custom section: id 0, size, name, payload.
        let (section, payload) = ("rebuilt-by", b"toolhost tests".as_slice());
        let body_len = 1 + section.len() + payload.len();
        bytes.extend([0u8, body_len as u8, section.len() as u8]);
        bytes.extend(section.as_bytes());
        bytes.extend(payload);
        std::fs::write(dir.join(entry.file_name()), bytes).unwrap();
    }
    dir
}

on_both_backends! {
#[tokio::test]
async fn a_rebuilt_tool_replays_a_recorded_effect_and_says_so(world) {
    let input = json!({"file": "pay.txt", "text": "charge"}).to_string();
    let before = world.append_executor().await;
    let first = within(
        20,
        "the first call",
        before.call("append", &input, keyed("pay-9")),
    )
    .await
    .unwrap();
    assert!(!first.digest_changed);
    drop(before);

    let dir = rebuilt(&world, &testkit_dir(), "rebuilt");
    let after = world.executor(&dir, world.testkit_policies(), None).await;
    let original =
        toolhost::sandbox::Sandbox::open(toolhost::sandbox::SandboxOptions::for_dir(testkit_dir()))
            .await
            .unwrap();
    assert_ne!(
        after.sandbox().tool("append").unwrap().digest,
        original.tool("append").unwrap().digest,
        "the rebuild has another digest"
    );
    let replay = within(
        20,
        "the replay",
        after.call("append", &input, keyed("pay-9")),
    )
    .await
    .unwrap();
    assert!(replay.cached && replay.digest_changed, "{replay:?}");
    assert_eq!(
        replay.key, first.key,
        "the key names the effect, not the build"
    );
    assert_eq!(
        world.lines("pay.txt").len(),
        1,
        "the payment did not repeat"
    );
    assert_eq!(after.sandbox().runs(), 0);

    // The empty scope too (within its window).
    let plain = json!({"file": "pay.txt", "text": "plain"}).to_string();
    let dir_exec = world.append_executor().await;
    within(
        20,
        "a plain call",
        dir_exec.call("append", &plain, Default::default()),
    )
    .await
    .unwrap();
    let again = within(
        20,
        "its replay",
        after.call("append", &plain, Default::default()),
    )
    .await
    .unwrap();
    assert!(again.cached && again.digest_changed);
    assert_eq!(world.lines("pay.txt").len(), 2);
}
}

on_both_backends! {
#[tokio::test]
async fn an_edited_policy_replays_a_recorded_effect_and_says_so(world) {
    let input = json!({"file": "e.txt", "text": "x"}).to_string();
    let ex = world.append_executor().await;
    within(20, "the call", ex.call("append", &input, keyed("edit-1")))
        .await
        .unwrap();
    let mut policies = world.testkit_policies();
    policies.get_mut("append").unwrap().timeout_ms = Some(5_000);
    let edited = world.executor(&testkit_dir(), policies, None).await;
    let out = within(
        20,
        "the replay",
        edited.call("append", &input, keyed("edit-1")),
    )
    .await
    .unwrap();
    assert!(out.cached && out.digest_changed);
    // A per-call override is not a config edit.
    let overridden = toolhost::idempotency::ExecOptions {
        overrides: toolhost::sandbox::Overrides {
            timeout_ms: Some(3_000),
            ..Default::default()
        },
        ..keyed("edit-1")
    };
    let out = within(20, "the replay", ex.call("append", &input, overridden))
        .await
        .unwrap();
    assert!(out.cached && !out.digest_changed);
    assert_eq!(world.lines("e.txt").len(), 1);
}
}

on_both_backends! {
#[tokio::test]
async fn a_rebuilt_pure_tool_computes_afresh_and_grants_count_but_limits_do_not(world) {
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    let input = r#"{"expr":"6*7"}"#;
    let first = within(20, "calc", ex.call("calc", input, Default::default()))
        .await
        .unwrap();
    // Other limits: the same key, a replay.
    let policies = BTreeMap::from([(
        "calc".to_string(),
        ToolPolicy {
            fuel: Some(5_000_000),
            ..ToolPolicy::default()
        },
    )]);
    let limited = world.executor(&examples_dir(), policies, None).await;
    let out = within(20, "calc", limited.call("calc", input, Default::default()))
        .await
        .unwrap();
    assert!(out.cached && !out.digest_changed);
    assert_eq!(out.key, first.key, "limits never enter a key");
    // Other grants: another key.
    let policies = BTreeMap::from([(
        "calc".to_string(),
        ToolPolicy {
            env: vec!["HOME".into()],
            ..ToolPolicy::default()
        },
    )]);
    let granted = world.executor(&examples_dir(), policies, None).await;
    let out = within(20, "calc", granted.call("calc", input, Default::default()))
        .await
        .unwrap();
    assert!(!out.cached);
    assert_ne!(out.key, first.key);
    // Another build: another key.
    let dir = rebuilt(&world, &examples_dir(), "rebuilt-examples");
    let rebuilt = world.executor(&dir, BTreeMap::new(), None).await;
    let out = within(20, "calc", rebuilt.call("calc", input, Default::default()))
        .await
        .unwrap();
    assert!(!out.cached);
    assert_ne!(out.key, first.key);
    assert_eq!(out.output, json!({"value": 42}));
}
}

on_both_backends! {
/// `cache resolve --retry` after a rebuild retries the same call under the
/// current build, and says that the tool changed since the claim.
#[tokio::test]
async fn a_retry_after_a_rebuild_says_the_tool_changed(world) {
    let input = json!({"file": "d.txt", "text": "x"}).to_string();
    let before = world.append_executor().await;
    before.store().inject_write_failures(RECORD_ATTEMPTS);
    let e = within(
        20,
        "the call",
        before.call("append", &input, keyed("doubt-1")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "in_doubt");
    let key = e.key().unwrap().to_string();
    drop(before);

    let dir = rebuilt(&world, &testkit_dir(), "rebuilt");
    let after = world.executor(&dir, world.testkit_policies(), None).await;
    let out = within(20, "the retry", after.retry_in_doubt(&key))
        .await
        .unwrap();
    assert!(out.digest_changed);
    assert_eq!((out.attempt, out.key.as_str()), (2, key.as_str()));
    let row = after.store().get(&key).await.unwrap().unwrap();
    assert_eq!(row.state, CallState::Done);
    assert_eq!(
        row.component_digest.as_deref(),
        Some(after.sandbox().tool("append").unwrap().digest.as_str()),
        "the row records the build that produced its outcome"
    );
    assert_eq!(world.lines("d.txt").len(), 2);
}
}

/// The CLI shows it: `"digest_changed": true` in `--json`, a warning on stderr.
#[test]
fn the_cli_reports_digest_changed() {
    let world = World::new();
    let config = world.write_testkit_config();
    let config = config.to_str().unwrap();
    let input = json!({"file": "cli.txt", "text": "x"}).to_string();
    let args = |tools: &str| {
        vec![
            "--config".to_string(),
            config.to_string(),
            "--tools-dir".into(),
            tools.to_string(),
            "--json".into(),
            "call".into(),
            "append".into(),
            "--input".into(),
            input.clone(),
            "--idempotency-key".into(),
            "cli-1".into(),
        ]
    };
    let run = |tools: &str| {
        let a = args(tools);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        toolhost(world.path(), &a)
    };
    let first = run(testkit_dir().to_str().unwrap());
    assert!(first.status.success(), "{first:?}");
    assert_eq!(stdout_json(&first)["digest_changed"], false);
    let dir = rebuilt(&world, &testkit_dir(), "rebuilt");
    let second = run(dir.to_str().unwrap());
    assert!(second.status.success(), "{second:?}");
    let v = stdout_json(&second);
    assert_eq!(
        (v["cached"].clone(), v["digest_changed"].clone()),
        (json!(true), json!(true)),
        "{v}"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("digest_changed"), "{stderr}");
    assert_eq!(world.lines("cli.txt").len(), 1);
}

//! Components of `tool@0.1.0`, `tool@0.2.0` and `reconciling-tool@0.2.0`
//! load side by side, run, and say which they are.

use serde_json::json;
use toolhost::sandbox::{CallRequest, WorldVersion};

use crate::support::{stdout_json, toolhost};
use crate::support_http::sandbox_with;

#[tokio::test]
async fn every_world_loads_and_says_whether_it_reconciles() {
    let sandbox = sandbox_with(&["calc", "legacy", "pay"], &[], Default::default()).await;
    let world = |name: &str| sandbox.tool(name).unwrap().world;
    assert_eq!(world("legacy_append"), WorldVersion::Tool010);
    assert_eq!(world("calc"), WorldVersion::Tool020);
    assert_eq!(world("pay"), WorldVersion::Reconciling020);
    assert!(world("pay").reconciles());
    assert!(!world("legacy_append").reconciles() && !world("calc").reconciles());
    // The 0.2.0 plain tool still runs as before.
    let out = sandbox
        .call("calc", r#"{"expr":"6*7"}"#, CallRequest::default())
        .await
        .unwrap();
    assert_eq!(out.output["value"], json!(42));
}

#[tokio::test]
async fn a_010_component_runs_unchanged() {
    let world = crate::idempotency::World::new();
    let ex = world
        .executor(
            &super::testkit_dir(),
            super::policies(vec![("legacy_append", world.append_policy())]),
            None,
        )
        .await;
    let input = json!({"file": "legacy.txt", "text": "hello"}).to_string();
    let out = ex
        .call("legacy_append", &input, crate::idempotency::keyed("v1-run"))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"appended": true, "attempt": 1}));
    assert!(!out.cached);
    assert_eq!(world.executions("legacy.txt", &out.key), 1);
    // Its outcome replays like any other's.
    let again = ex
        .call("legacy_append", &input, crate::idempotency::keyed("v1-run"))
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(world.executions("legacy.txt", &out.key), 1);
}

#[test]
fn tools_inspect_says_whether_a_tool_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolhost(dir.path(), &["--json", "tools", "inspect", "pay"]);
    assert!(out.status.success(), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["world"], "toolhost:tool/reconciling-tool@0.2.0");
    assert_eq!(v["reconciles"], true);
    assert_eq!(v["effect"], "side-effecting");
    let out = toolhost(dir.path(), &["--json", "tools", "inspect", "calc"]);
    let v = stdout_json(&out);
    assert_eq!(v["world"], "toolhost:tool/tool@0.2.0");
    assert_eq!(v["reconciles"], false);
    let out = toolhost(dir.path(), &["tools", "inspect", "pay"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reconciling-tool@0.2.0 (reconciles calls in doubt)"),
        "{text}"
    );
}

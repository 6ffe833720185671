//! The tool sees exactly what was hashed: the host parses the input once as
//! I-JSON, refuses what canonical JSON cannot keep apart (naming the path),
//! and hands the guest the canonical text.

use std::collections::BTreeMap;

use serde_json::json;
use toolhost::idempotency::ExecOptions;

use super::{World, within};
use crate::support::examples_dir;

/// jq's `tostring` shows the guest's text: `1.0` and `1` used to reach the
/// guest as written (`"1.0"` and `"1"`) under one key. Now both are `1`.
#[tokio::test]
async fn spellings_that_share_a_key_reach_the_tool_as_the_same_text() {
    let world = World::new();
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    let fresh = || ExecOptions {
        scope: toolhost::idempotency::Scope::Fresh,
        ..ExecOptions::default()
    };
    let a = within(
        20,
        "jq",
        ex.call("jq", r#"{"filter":"tostring","input":1.0}"#, fresh()),
    )
    .await
    .unwrap();
    let b = within(
        20,
        "jq",
        ex.call("jq", r#"{ "input" : 1 , "filter":"tostring"}"#, fresh()),
    )
    .await
    .unwrap();
    assert_eq!(a.output, json!({"results": ["1"]}));
    assert_eq!(b.output, a.output);
    let c = within(
        20,
        "jq",
        ex.call(
            "jq",
            r#"{"filter":"tostring","input":{"b":1e2,"a":"\u00e9"}}"#,
            fresh(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(c.output, json!({"results": [r#"{"a":"é","b":100}"#]}));
    // And with the default scope, the two spellings are one call.
    let d = within(
        20,
        "jq",
        ex.call(
            "jq",
            r#"{"filter":"tostring","input":1.0}"#,
            Default::default(),
        ),
    )
    .await
    .unwrap();
    let e = within(
        20,
        "jq",
        ex.call(
            "jq",
            r#"{"filter":"tostring","input":1}"#,
            Default::default(),
        ),
    )
    .await
    .unwrap();
    assert!(!d.cached && e.cached && d.key == e.key);
}

/// Regression: `{"expr":"1+1","expr":"2+2"}` was recorded (as the tool's
/// `invalid_input`) under the key of `{"expr":"2+2"}`, which then replayed
/// that error forever: any caller could poison any pure tool's cache.
#[tokio::test]
async fn a_duplicate_member_is_refused_and_never_poisons_the_valid_input() {
    let world = World::new();
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    let e = within(
        20,
        "calc",
        ex.call("calc", r#"{"expr":"1+1","expr":"2+2"}"#, Default::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    assert!(e.to_string().contains("at /expr"), "{e}");
    assert!(e.to_string().contains("duplicate"), "{e}");
    assert_eq!(e.key(), None, "refused before a key exists");
    assert_eq!(ex.sandbox().runs(), 0);
    assert!(
        ex.store().list(10).await.unwrap().is_empty(),
        "nothing recorded"
    );
    let ok = within(
        20,
        "calc",
        ex.call("calc", r#"{"expr":"2+2"}"#, Default::default()),
    )
    .await
    .unwrap();
    assert_eq!(ok.output, json!({"value": 4}));
}

#[tokio::test]
async fn numbers_a_double_cannot_hold_and_lone_surrogates_are_refused_with_their_path() {
    let world = World::new();
    let ex = world.executor(&examples_dir(), BTreeMap::new(), None).await;
    let cases = [
        (
            r#"{"filter":".","input":{"id":9007199254740993}}"#,
            "/input/id",
            "pass it as a string",
        ),
        (r#"{"filter":".","input":[1e400]}"#, "/input/0", "range"),
        (
            r#"{"filter":".","input":0.10000000000000000001}"#,
            "/input",
            "precision",
        ),
        (r#"{"filter":".","input":"\ud800"}"#, "/input", "surrogate"),
    ];
    for (input, path, says) in cases {
        let e = within(20, "jq", ex.call("jq", input, Default::default()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "invalid_input", "{input}");
        let m = e.to_string();
        assert!(
            m.contains(&format!("at {path}:")) && m.contains(says),
            "{input}: {m}"
        );
    }
    assert_eq!(ex.sandbox().runs(), 0);
    // As a string, a big id passes through exactly.
    let out = within(
        20,
        "jq",
        ex.call(
            "jq",
            r#"{"filter":".id","input":{"id":"9007199254740993"}}"#,
            Default::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.output, json!({"results": ["9007199254740993"]}));
}

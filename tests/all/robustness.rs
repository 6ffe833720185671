//! Property tests on generated input at the sandbox's front door: arbitrary
//! bytes and arbitrary JSON into a call's input handling and the
//! canonicaliser. Nothing panics; what is refused is refused with a typed
//! error (`invalid_input`).

use proptest::prelude::*;
use serde_json::Value;
use toolhost::idempotency::canonical_json;
use toolhost::sandbox::{ErrorKind, Overrides};

use crate::support::examples;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes as a call's input: accepted, or `invalid_input`.
    #[test]
    fn arbitrary_input_bytes_are_accepted_or_invalid_input(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        for tool in ["echo", "calc"] {
            if let Err(e) = examples().prepare(tool, &text, &Overrides::default()) {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}: {}", tool, e);
            }
        }
    }

    /// Arbitrary JSON as a call's input: accepted, or `invalid_input`.
    #[test]
    fn arbitrary_input_json_is_accepted_or_invalid_input(value in json_value()) {
        let text = value.to_string();
        for tool in ["echo", "calc", "jq"] {
            if let Err(e) = examples().prepare(tool, &text, &Overrides::default()) {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}: {}", tool, e);
            }
        }
    }

    /// The canonical form is JSON, a fixed point, and blind to key order
    /// and whitespace.
    #[test]
    fn canonical_json_is_a_stable_json_fixed_point(value in json_value()) {
        let canonical = canonical_json(&value);
        let reparsed: Value = serde_json::from_str(&canonical)
            .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {canonical}")))?;
        prop_assert_eq!(canonical_json(&reparsed), canonical.clone());
        let pretty: Value = serde_json::from_str(&serde_json::to_string_pretty(&value).unwrap()).unwrap();
        prop_assert_eq!(canonical_json(&pretty), canonical);
    }
}

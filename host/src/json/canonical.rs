//! RFC 8785 (JCS) canonical JSON: object keys sorted by UTF-16 code units,
//! no insignificant whitespace, numbers as ECMAScript prints IEEE-754
//! doubles, so `{"a":1.0, "b":2}` and `{ "b": 2, "a": 1 }` are one text. The
//! guest is handed this text and the idempotency key hashes it, so two
//! inputs share a key only if the tool sees the same bytes.

use serde_json::Value;

/// RFC 8785 (JCS) canonical JSON.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&canonical_number(n)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785 sorts by UTF-16 code units, which differs from UTF-8
            // byte order for characters above U+FFFF.
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    // serde_json escapes exactly as RFC 8785 asks: `"` and `\`, the short
    // forms \b \f \n \r \t, other controls as lowercase \u00xx, the rest raw.
    out.push_str(&serde_json::to_string(s).expect("a string always serialises"));
}

/// A JSON number as ECMAScript's `Number.prototype.toString` prints the
/// nearest IEEE-754 double (RFC 8785 section 3.2.2.3).
fn canonical_number(n: &serde_json::Number) -> String {
    let f = match n.as_f64() {
        Some(f) if f.is_finite() => f,
        _ => return n.to_string(),
    };
    if f == 0.0 {
        return "0".to_string(); // -0 too
    }
    // `{:e}` prints the shortest digits that round-trip: "1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().expect("`{:e}` exponents are integers");
    let k = digits.len() as i32;
    let n = exp + 1; // the decimal point sits after `n` digits
    let mut s = String::new();
    if f < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if n > 0 { '+' } else { '-' });
        s.push_str(&(n - 1).abs().to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        canonical_json(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn rfc8785_numbers() {
        // Examples from RFC 8785 appendix B and ECMAScript.
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("1.0", "1"),
            ("1e2", "100"),
            ("100", "100"),
            ("-1.5", "-1.5"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("123456789012345680000", "123456789012345680000"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1.5e-7", "1.5e-7"),
            ("9007199254740993", "9007199254740992"),
            ("333333333.33333329", "333333333.3333333"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("4.5", "4.5"),
            ("2e-3", "0.002"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn rfc8785_structure_and_strings() {
        assert_eq!(
            canon(r#"{ "b": [1, 2.0, {"z": null, "a": true}], "a": "x" }"#),
            r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#
        );
        assert_eq!(canon(r#""\u0001\n\"\\/é€""#), "\"\\u0001\\n\\\"\\\\/é€\"");
        // Keys sort by UTF-16 code units: U+1F600 (surrogates D83D..) sorts
        // before U+FB01 (FB01), though its UTF-8 bytes sort after.
        assert_eq!(
            canon(r#"{"\ufb01": 1, "😀": 2}"#),
            "{\"😀\":2,\"\u{fb01}\":1}"
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|i| json!(i)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-z\u{e9}\u{1F600}\\\\\"\n]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\u{1F600}]{1,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical JSON is valid JSON, means the same value, and is a fixed
        /// point: canonicalising it again changes nothing.
        #[test]
        fn canonical_json_round_trips(v in arb_json()) {
            let c = canonical_json(&v);
            let reparsed: Value = serde_json::from_str(&c).unwrap();
            prop_assert_eq!(canonical_json(&reparsed), c.clone());
            prop_assert!(!c.contains(": ") && !c.contains(", "));
        }

        /// Integers written as floats or with exponents are the same number.
        #[test]
        fn integer_spellings_agree(i in -1_000_000i64..1_000_000) {
            prop_assert_eq!(canon(&format!("{i}")), canon(&format!("{i}.0")));
            prop_assert_eq!(canon(&format!("{i}")), canon(&format!("{i}e0")));
            prop_assert_eq!(canon(&format!("{i}00")), canon(&format!("{i}e2")));
        }

        /// Pretty-printing (whitespace) and re-serialising never change the text.
        #[test]
        fn whitespace_never_changes_the_text(v in arb_json()) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(canon(&pretty), canonical_json(&v));
        }
    }
}

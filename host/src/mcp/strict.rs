//! `tools/call` arguments read by the strict I-JSON parse, as the CLI reads
//! `--input`.
//!
//! rmcp hands the handler arguments serde_json already parsed: the last of
//! two duplicate member names won, `0.1000000000000000001` became `0.1`, an
//! integer above 2^53 was rounded. The call would then run (and be keyed) on
//! a value the client never sent. So each transport keeps the message's
//! text: the HTTP guard (`http/jsonrpc.rs`) reads the body, the stdio tap
//! (`stdio.rs`) each line, and both run [`StrictArguments::read`] on it. The
//! handler then passes the strictly parsed arguments to the executor, or
//! refuses the call as `invalid_input` with the parser's words, the JSON
//! pointer relative to the arguments (as the CLI names it).
//!
//! The whole message goes through the strict parse, so a duplicate name or
//! an inexact number in the envelope (`_meta`, say) is refused too, named by
//! its pointer in the request.
//!
//! One input serde_json refuses outright: a lone surrogate escape
//! (`"\ud800"`). rmcp would drop such a line (stdio) or answer a parse error
//! (HTTP), not the `invalid_input` result the CLI gives. So the transports
//! route a message by [`routable`]: serde_json's reading, or, when that
//! fails, the same text with every surrogate escape spelled `\ufffd` (the
//! same length). rmcp parses that copy only to route the call; the handler
//! still decides by the strict reading of the text as sent, which refuses.

use serde_json::Value;

use crate::idempotency::{IJsonError, parse_ijson};

/// Where the arguments sit in a `tools/call` request.
const ARGUMENTS: &str = "/params/arguments";

/// A `tools/call` request's arguments as text the executor will parse (the
/// strict parse accepted it), or why the strict parse refused the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictArguments(pub Result<String, IJsonError>);

impl StrictArguments {
    /// The arguments of the JSON-RPC message `text` (a `tools/call`).
    pub fn read(text: &[u8]) -> StrictArguments {
        let Ok(text) = std::str::from_utf8(text) else {
            return StrictArguments(Err(IJsonError {
                path: "/".into(),
                reason: "the request is not UTF-8".into(),
            }));
        };
        StrictArguments(match parse_ijson(text) {
            Ok(message) => Ok(match message.pointer(ARGUMENTS) {
                Some(arguments @ Value::Object(_)) => arguments.to_string(),
                // rmcp refuses other shapes before the handler runs.
                _ => "{}".to_string(),
            }),
            Err(e) => Err(relative(e)),
        })
    }
}

/// The error's pointer relative to the arguments when it lies inside them.
fn relative(e: IJsonError) -> IJsonError {
    let Some(rest) = e.path.strip_prefix(ARGUMENTS) else {
        return IJsonError {
            path: e.path,
            reason: format!("{} (in the tools/call request itself)", e.reason),
        };
    };
    let path = if rest.is_empty() { "/" } else { rest };
    IJsonError {
        path: path.to_string(),
        reason: e.reason,
    }
}

/// The message `text` as rmcp can parse it: serde_json's reading and, when
/// serde_json only accepts it with its surrogate escapes replaced, that
/// rewritten text (to hand to rmcp in place of `text`).
pub fn routable(text: &[u8]) -> Option<(Value, Option<Vec<u8>>)> {
    if let Ok(message) = serde_json::from_slice(text) {
        return Some((message, None));
    }
    let rewritten = without_surrogates(text)?;
    let message = serde_json::from_slice(&rewritten).ok()?;
    Some((message, Some(rewritten)))
}

/// `text` with each `\uD800`–`\uDFFF` escape spelled `\uFFFD`, or `None`
/// when it has none. Only escapes are touched (an escaped backslash followed
/// by `ud800` is text), and the length is kept.
fn without_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = text.to_vec();
    let mut changed = false;
    let mut i = 0;
    while i < out.len() {
        if out[i] != b'\\' {
            i += 1;
            continue;
        }
        let escape = out.get(i + 1..i + 6);
        let is_surrogate = escape.is_some_and(|e| {
            e[0] == b'u'
                && std::str::from_utf8(&e[1..])
                    .ok()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                    .is_some_and(|unit| (0xD800..=0xDFFF).contains(&unit))
        });
        if is_surrogate {
            out[i + 2..i + 6].copy_from_slice(b"fffd");
            changed = true;
            i += 6;
        } else {
            i += 2;
        }
    }
    changed.then_some(out)
}

/// Whether `message` (leniently parsed) is a `tools/call` request.
pub fn is_tool_call(message: &Value) -> bool {
    message.get("method").and_then(Value::as_str) == Some("tools/call")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<String, IJsonError> {
        StrictArguments::read(text.as_bytes()).0
    }

    fn call(arguments: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","arguments":{arguments}}}}}"#
        )
    }

    #[test]
    fn refuses_what_the_cli_refuses_with_the_same_pointer() {
        for (arguments, path) in [
            (r#"{"message":"a","message":"b"}"#, "/message"),
            (r#"{"x":0.1000000000000000001}"#, "/x"),
            (r#"{"x":9007199254740993}"#, "/x"),
            (r#"{"x":"\ud800"}"#, "/x"),
        ] {
            let cli = parse_ijson(arguments).expect_err(arguments);
            let mcp = read(&call(arguments)).expect_err(arguments);
            assert_eq!(mcp, cli, "{arguments}");
            assert_eq!(mcp.path, path);
        }
    }

    #[test]
    fn passes_the_arguments_through_and_names_envelope_faults() {
        assert_eq!(
            read(&call(r#"{"message":"hi","n":0.5}"#)),
            Ok(r#"{"message":"hi","n":0.5}"#.to_string())
        );
        let no_arguments =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        assert_eq!(read(no_arguments), Ok("{}".to_string()));
        let envelope = r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{}}"#;
        let e = read(envelope).expect_err("a duplicate id");
        assert_eq!(e.path, "/id");
        assert!(e.reason.contains("request itself"), "{}", e.reason);
    }

    #[test]
    fn a_lone_surrogate_is_routed_by_a_same_length_copy() {
        let sent = call(r#"{"message":"\ud800","note":"\\ud800 \ud83d\ude00"}"#);
        assert!(serde_json::from_str::<Value>(&sent).is_err());
        let (message, rewritten) = routable(sent.as_bytes()).expect("routable");
        let rewritten = rewritten.expect("a rewritten copy");
        assert_eq!(rewritten.len(), sent.len());
        assert!(is_tool_call(&message));
        assert_eq!(message["id"], 3);
        assert_eq!(message["params"]["arguments"]["message"], "\u{fffd}");
        // An escaped backslash before `ud800` is text, left alone.
        assert_eq!(
            message["params"]["arguments"]["note"],
            "\\ud800 \u{fffd}\u{fffd}"
        );
        // The strict reading of the text as sent still refuses it.
        assert_eq!(read(&sent).expect_err("a lone surrogate").path, "/message");
        // Text serde_json reads is routed as it is.
        let plain = call(r#"{"message":"hi"}"#);
        assert_eq!(routable(plain.as_bytes()).unwrap().1, None);
        assert_eq!(routable(b"{not json"), None);
    }
}

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
}

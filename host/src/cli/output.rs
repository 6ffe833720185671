//! How a command fails: a message, a kind for `--json`, and an exit code.

use std::process::ExitCode;

use serde_json::json;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// Exit code: 1 when a call failed, 2 for usage and config errors.
    pub code: u8,
    /// The error kind (`invalid_input`, `config`, `usage`, ...).
    pub kind: String,
    pub message: String,
    /// When set, this JSON is printed to stdout instead of an error object.
    pub json: Option<serde_json::Value>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(2, "usage", message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Failure::new(2, "config", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure::new(1, "internal", message)
    }

    /// A usage error from an `anyhow` chain, every cause on one line.
    pub fn usage_from(e: &anyhow::Error) -> Self {
        Failure::usage(format!("{e:#}"))
    }

    /// A host failure from an `anyhow` chain, every cause on one line.
    pub fn internal_from(e: &anyhow::Error) -> Self {
        Failure::internal(format!("{e:#}"))
    }

    /// The same failure under another kind name.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    pub fn new(code: u8, kind: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            code,
            kind: kind.into(),
            message: message.into(),
            json: None,
        }
    }

    /// Prints the failure (JSON on stdout with `--json`, text on stderr
    /// otherwise) and returns its exit code.
    pub fn report(self, json: bool) -> ExitCode {
        if json {
            let body = self.json.unwrap_or_else(
                || json!({"ok": false, "error": {"kind": self.kind, "message": self.message}}),
            );
            println!("{body}");
        } else {
            eprintln!("error: {}: {}", self.kind, self.message);
        }
        ExitCode::from(self.code)
    }
}

/// Prints a JSON document: compact with `--json` (one line, for machines),
/// pretty otherwise (nested schemas and outcomes read better indented).
pub fn print_document(json: bool, body: &serde_json::Value) {
    if json {
        println!("{body}");
    } else {
        println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
    }
}

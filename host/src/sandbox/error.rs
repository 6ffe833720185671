//! The sandbox's errors, with the stable kind names of `shared/design.md`.

use std::fmt;
use std::path::PathBuf;

/// Stable snake_case names for `--json` output and metrics. Never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    LoadError,
    InvalidInput,
    ToolFailed,
    ToolTransient,
    OutOfFuel,
    Timeout,
    MemoryLimit,
    OutputTooLarge,
    Trap,
    CapabilityDenied,
    /// No tool by that name is loaded (a caller's mistake; the CLI exits 2).
    UnknownTool,
    /// The tool's policy cannot be applied (a granted directory is missing):
    /// the operator's config, not the tool or the input (the CLI exits 2).
    Config,
    /// The host itself failed (an I/O error, an exhausted pool); not the tool.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::LoadError => "load_error",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::ToolFailed => "tool_failed",
            ErrorKind::ToolTransient => "tool_transient",
            ErrorKind::OutOfFuel => "out_of_fuel",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::Trap => "trap",
            ErrorKind::CapabilityDenied => "capability_denied",
            ErrorKind::UnknownTool => "unknown_tool",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }

    /// A limit stopped the call: such outcomes are never cached.
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            ErrorKind::OutOfFuel
                | ErrorKind::Timeout
                | ErrorKind::MemoryLimit
                | ErrorKind::OutputTooLarge
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a component could not be loaded. The file is skipped, the host goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("load_error: {}: {reason}", path.display())]
pub struct LoadError {
    /// The file that failed.
    pub path: PathBuf,
    /// What was wrong: not wasm, a core module, another world, a bad schema...
    pub reason: String,
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The input is not JSON, violates the input schema, or the tool said so.
    #[error("{0}")]
    InvalidInput(String),
    /// The tool ran and reported a failure.
    #[error("{0}")]
    ToolFailed(String),
    /// The tool reported a failure worth retrying later.
    #[error("{0}")]
    ToolTransient(String),
    /// The call burned all of its fuel.
    #[error("the call used all of its {limit} units of fuel")]
    OutOfFuel { limit: u64 },
    /// The call ran past its wall-clock deadline.
    #[error("the call ran past its {ms} ms deadline")]
    Timeout { ms: u64 },
    /// The call tried to grow its memory past the limit.
    #[error("the call tried to grow its memory past {limit_mb} MiB")]
    MemoryLimit { limit_mb: u64 },
    /// The result, stdout or stderr exceeded its cap.
    #[error("{0}")]
    OutputTooLarge(String),
    /// The tool trapped (a panic, a stack overflow, an out-of-bounds access).
    #[error("{0}")]
    Trap(String),
    /// The tool touched something its policy does not grant.
    #[error("{0}")]
    CapabilityDenied(String),
    /// No tool by this name is loaded. The message says why and what was
    /// meant where it can: a file of that name skipped as unusable, or a
    /// close name on the search path.
    #[error(
        "no tool named `{name}` is loaded{}{} (loaded: {})",
        skipped.as_ref().map(|s| format!(": {s}")).unwrap_or_default(),
        suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default(),
        known.join(", ")
    )]
    UnknownTool {
        name: String,
        /// Every name on the search path.
        known: Vec<String>,
        /// The closest of them, if one is close.
        suggestion: Option<String>,
        /// The file of that name that was skipped, and why.
        skipped: Option<String>,
    },
    /// The tool's policy cannot be applied; the message names the config key
    /// and line. Refused before a key exists, so never recorded.
    #[error("{0}")]
    Config(String),
    /// The host failed; the tool may never have run.
    #[error("{0}")]
    Internal(String),
}

impl CallError {
    /// Rebuilds a recorded outcome's error from its kind name and message.
    /// Only outcomes that are ever recorded need to round-trip; anything
    /// else comes back as `tool_failed` with the original kind in the text.
    pub fn from_recorded(kind: &str, message: String) -> CallError {
        match kind {
            "invalid_input" => CallError::InvalidInput(message),
            "tool_failed" => CallError::ToolFailed(message),
            "tool_transient" => CallError::ToolTransient(message),
            "output_too_large" => CallError::OutputTooLarge(message),
            "trap" => CallError::Trap(message),
            "capability_denied" => CallError::CapabilityDenied(message),
            "internal" => CallError::Internal(message),
            other => CallError::ToolFailed(format!("{other}: {message}")),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CallError::InvalidInput(_) => ErrorKind::InvalidInput,
            CallError::ToolFailed(_) => ErrorKind::ToolFailed,
            CallError::ToolTransient(_) => ErrorKind::ToolTransient,
            CallError::OutOfFuel { .. } => ErrorKind::OutOfFuel,
            CallError::Timeout { .. } => ErrorKind::Timeout,
            CallError::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            CallError::OutputTooLarge(_) => ErrorKind::OutputTooLarge,
            CallError::Trap(_) => ErrorKind::Trap,
            CallError::CapabilityDenied(_) => ErrorKind::CapabilityDenied,
            CallError::UnknownTool { .. } => ErrorKind::UnknownTool,
            CallError::Config(_) => ErrorKind::Config,
            CallError::Internal(_) => ErrorKind::Internal,
        }
    }
}

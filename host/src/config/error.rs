use std::fmt;
use std::path::{Path, PathBuf};

use super::spans::Spans;

/// A config that cannot be used, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the config came from.
    pub file: PathBuf,
    /// The 1-based line of the offending key, when it can be found.
    pub line: Option<usize>,
    /// The dotted key, such as `sandbox.fuel` or `tools.notes.dirs`, if known.
    pub key: Option<String>,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error in {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, " at `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// A deserialisation error, placed by its span: the key that holds the
    /// offending text, and its line.
    pub(super) fn from_toml(e: &toml::de::Error, spans: &Spans<'_>, file: &Path) -> Self {
        let span = e.span();
        ConfigError {
            file: file.to_path_buf(),
            line: span.as_ref().map(|s| spans.line(s.start)),
            key: span.as_ref().and_then(|s| spans.key_at(s)),
            message: e.message().trim().to_string(),
        }
    }

    /// A working-directory config that is not trusted (`config::trust`).
    pub(super) fn untrusted(file: &Path, verdict: &super::trust::Verdict) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: super::trust::refusal(file, verdict),
        }
    }

    pub(super) fn unreadable(file: &Path, e: &std::io::Error) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read it: {e}"),
        }
    }
}

/// A validation failure before it knows its line: the dotted key and message.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn locate(self, spans: &Spans<'_>, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: spans.line_of(&self.key),
            key: Some(self.key),
            message: self.message,
        }
    }
}

use std::fmt;
use std::path::{Path, PathBuf};

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
    pub(super) fn from_toml(e: &toml::de::Error, text: &str, file: &Path) -> Self {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError {
            file: file.to_path_buf(),
            line,
            key: None,
            message: e.message().trim().to_string(),
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

/// 1-based line number of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
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

    pub fn locate(self, text: &str, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: super::locate::line_of_key(text, &self.key),
            key: Some(self.key),
            message: self.message,
        }
    }
}

//! `toolhost.toml`: every key optional, defaults as `shared/design.md` fixes
//! them, and nothing silent.
//!
//! An unknown key, a wrong type or an impossible value is a [`ConfigError`]
//! that names the key and its line; the CLI exits 2 on it. We never fall back
//! to a default for a value the user wrote, because a typo in `timeout_ms`
//! that silently means "10 s" is worse than a refusal to start.

mod error;
mod grants;
mod host_pattern;
mod schema;
mod spans;

pub use error::ConfigError;
pub use host_pattern::{HostMatch, HostPattern, RequestHost};
pub use schema::*;

use std::path::{Path, PathBuf};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_PATH: &str = "toolhost.toml";

impl Config {
    /// Parses and validates a config text. `origin` names the file in errors
    /// (and is one of the host's own files no grant may reach).
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::parse_adjusted(text, origin, |_| {})
    }

    /// Parses a config text, lets `adjust` apply command-line overrides
    /// (`--db`, `--tools-dir`), then validates the result, so a grant that
    /// reaches an overridden store is refused like one that reaches the
    /// configured store, naming the grant's key and line.
    pub fn parse_adjusted(
        text: &str,
        origin: &Path,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, ConfigError> {
        let spans = spans::Spans::parse(text);
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, &spans, origin))?;
        adjust(&mut config);
        config.validate().map_err(|v| v.locate(&spans, origin))?;
        grants::check(&config, Some(origin)).map_err(|v| v.locate(&spans, origin))?;
        Ok(config)
    }

    /// Loads `path`; `None` reads `./toolhost.toml` if present, else defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_adjusted(path, |_| {})
    }

    /// [`Config::load`] with command-line overrides applied before
    /// validation (see [`Config::parse_adjusted`]).
    pub fn load_adjusted(
        path: Option<&Path>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse_adjusted(&text, &path, adjust),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                let mut config = Config::default();
                adjust(&mut config);
                let spans = spans::Spans::parse("");
                config.validate().map_err(|v| v.locate(&spans, &path))?;
                grants::check(&config, None).map_err(|v| v.locate(&spans, &path))?;
                Ok(config)
            }
            Err(e) => Err(ConfigError::unreadable(&path, &e)),
        }
    }
}

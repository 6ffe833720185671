//! `toolhost.toml`: every key optional, defaults as `shared/design.md` fixes
//! them, and nothing silent.
//!
//! An unknown key, a wrong type or an impossible value is a [`ConfigError`]
//! that names the key and its line; the CLI exits 2 on it. We never fall back
//! to a default for a value the user wrote, because a typo in `timeout_ms`
//! that silently means "10 s" is worse than a refusal to start.

mod error;
mod host_pattern;
mod locate;
mod schema;
mod serve;

pub use error::ConfigError;
pub use host_pattern::{HostMatch, HostPattern, RequestHost};
pub use schema::*;
pub use serve::{DEFAULT_MAX_BODY_BYTES, ServeConfig};

use std::path::{Path, PathBuf};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_PATH: &str = "toolhost.toml";

impl Config {
    /// Parses and validates a config text. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text, origin))?;
        config.validate().map_err(|v| v.locate(text, origin))?;
        Ok(config)
    }

    /// Loads `path`; `None` reads `./toolhost.toml` if present, else defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(e) => Err(ConfigError::unreadable(&path, &e)),
        }
    }
}

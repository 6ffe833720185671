//! `toolhost.toml`: every key optional, defaults as `shared/design.md` fixes
//! them, and nothing silent.
//!
//! An unknown key, a wrong type or an impossible value is a [`ConfigError`]
//! that names the key and its line; the CLI exits 2 on it. We never fall back
//! to a default for a value the user wrote, because a typo in `timeout_ms`
//! that silently means "10 s" is worse than a refusal to start.

mod diagnostics;
mod error;
mod grants;
mod host_pattern;
mod relative;
mod schema;
mod serve;
mod spans;
mod telemetry;
pub mod trust;
pub mod warned;

pub use diagnostics::{ConfigWarning, Diagnostics, closest_name};
pub use error::ConfigError;
pub use host_pattern::{HostMatch, HostPattern, RequestHost};
pub use schema::*;
pub use serve::{DEFAULT_MAX_BODY_BYTES, ServeConfig};
pub use telemetry::{TelemetryConfig, check_endpoint};
pub use trust::Source;

use std::path::{Path, PathBuf};

use error::Invalid;

/// The file read from the current directory when `--config` is not given.
pub const DEFAULT_PATH: &str = crate::paths::CONFIG_FILE;

/// Which config file applies, and why it may be used: `flag` (`--config`),
/// else `TOOLHOST_CONFIG` (empty means unset), else `./toolhost.toml`, else
/// `toolhost.toml` in the user's config directory, else none (built-in
/// defaults). A working-directory file is returned here whether or not it
/// is trusted: [`Config::load`] refuses it if not.
pub fn locate(flag: Option<&Path>) -> Option<(PathBuf, Source)> {
    if let Some(path) = flag {
        return Some((path.to_path_buf(), Source::Flag));
    }
    if let Some(path) = std::env::var_os(trust::ENV_VAR).filter(|v| !v.is_empty()) {
        return Some((PathBuf::from(path), Source::Env));
    }
    let here = PathBuf::from(DEFAULT_PATH);
    if here.is_file() {
        return Some((here, Source::WorkingDir));
    }
    crate::paths::user_config()
        .filter(|p| p.is_file())
        .map(|p| (p, Source::UserConfigDir))
}

impl Config {
    /// Parses and validates a config text. `origin` names the file in errors
    /// (and is one of the host's own files no grant may reach); relative
    /// paths in it resolve against `origin`'s directory.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::parse_adjusted(text, origin, |_| {})
    }

    /// Parses a config text, resolves its relative paths against `origin`'s
    /// directory, lets `adjust` apply command-line overrides (`--db`,
    /// `--tools-dir`, already absolute), then validates the result, so a
    /// grant that reaches an overridden store is refused like one that
    /// reaches the configured store, naming the grant's key and line.
    pub fn parse_adjusted(
        text: &str,
        origin: &Path,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, ConfigError> {
        let spans = spans::Spans::parse(text);
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, &spans, origin))?;
        if config.store.url.is_some() && store_path_given(text) {
            return Err(Invalid::new(
                "store.url",
                "`path` and `url` are mutually exclusive: a store is a SQLite file or a PostgreSQL database",
            )
            .locate(&spans, origin));
        }
        relative::resolve(&mut config, origin);
        config.file = Some(std::path::absolute(origin).unwrap_or_else(|_| origin.to_path_buf()));
        adjust(&mut config);
        config.validate().map_err(|v| v.locate(&spans, origin))?;
        grants::check(&config, Some(origin)).map_err(|v| v.locate(&spans, origin))?;
        diagnostics::degrade_missing_grants(&mut config, &spans, origin);
        config.diagnostics.digest = Some(trust::digest(text.as_bytes()));
        Ok(config)
    }

    /// Loads `path`; `None` reads the file [`locate`] finds, else defaults.
    /// A `./toolhost.toml` that `toolhost config trust` has not recorded
    /// (or that changed since) is refused.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_adjusted(path, |_| {})
    }

    /// [`Config::load`] with command-line overrides applied before
    /// validation (see [`Config::parse_adjusted`]).
    pub fn load_adjusted(
        path: Option<&Path>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, ConfigError> {
        match locate(path) {
            Some((path, source)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::unreadable(&path, &e))?;
                // The bytes checked are the bytes parsed: swapping the file
                // after the check changes nothing.
                if source == Source::WorkingDir {
                    let verdict = trust::verdict(&path, text.as_bytes());
                    if verdict != trust::Verdict::Trusted {
                        return Err(ConfigError::untrusted(&path, &verdict));
                    }
                }
                let mut config = Config::parse_adjusted(&text, &path, adjust)?;
                config.diagnostics.source = Some(source);
                Ok(config)
            }
            None => {
                // No file: only the command line can make defaults invalid.
                let origin = Path::new("(command line)");
                let mut config = Config::default();
                adjust(&mut config);
                let spans = spans::Spans::parse("");
                config.validate().map_err(|v| v.locate(&spans, origin))?;
                grants::check(&config, None).map_err(|v| v.locate(&spans, origin))?;
                Ok(config)
            }
        }
    }
}

/// Whether the text sets `[store] path` (which has a default, so the parsed
/// config cannot tell).
fn store_path_given(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| {
        t.get("store")
            .and_then(|s| s.as_table())
            .is_some_and(|s| s.contains_key("path"))
    })
}

#[cfg(test)]
mod robustness {
    use super::*;
    use proptest::prelude::*;

    /// TOML-shaped text from arbitrary JSON: every key and value kind, at
    /// the config's real table names and at random ones.
    fn toml_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(toml::Value::Integer),
            any::<bool>().prop_map(toml::Value::Boolean),
            any::<f64>().prop_map(toml::Value::Float),
            "\\PC{0,12}".prop_map(toml::Value::String),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
                prop::collection::btree_map(
                    "fuel|timeout_ms|memory_mb|dirs|host|guest|mode|name|provider|\\PC{1,8}",
                    inner,
                    0..4
                )
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map(
            "sandbox|tools|models|retry|breaker|agent|store|fallback|\\PC{1,8}",
            value,
            0..4,
        )
        .prop_filter_map("not representable as a TOML document", |m| {
            toml::to_string(&toml::Table::from_iter(m)).ok()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes: a config or a typed error with a line, never a
        /// panic.
        #[test]
        fn arbitrary_bytes_parse_or_fail_typed(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = Config::parse(&text, Path::new("t.toml")) {
                prop_assert!(!e.message.is_empty());
                prop_assert!(e.line.is_some(), "{}", e);
            }
        }

        /// Well-formed TOML of any shape: a config, or an error that names
        /// both the key and the line.
        #[test]
        fn arbitrary_documents_fail_with_key_and_line(text in toml_text()) {
            if let Err(e) = Config::parse(&text, Path::new("t.toml")) {
                prop_assert!(e.key.is_some(), "no key: {} in\n{}", e, text);
                prop_assert!(e.line.is_some(), "no line: {} in\n{}", e, text);
            }
        }
    }
}

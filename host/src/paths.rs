//! Where toolhost keeps its state when nothing says otherwise: the user's
//! own directories, never the current one.
//!
//! A store in `./.toolhost/` of whatever directory you stand in meant the
//! same `--idempotency-key` run from a subdirectory executed its side effect
//! again, and every new directory recompiled every tool. So each kind of
//! state goes where the platform keeps that kind (`directories`: the XDG base
//! directories on Linux, `~/Library/...` on macOS, `%APPDATA%` on Windows):
//!
//! | what | kind | Linux default |
//! |---|---|---|
//! | the store (`toolhost.db`) and the user's tools (`tools/`) | data: losing it loses records | `$XDG_DATA_HOME/toolhost` (`~/.local/share/toolhost`) |
//! | compiled components and tool metadata (`artifacts/`) | cache: safe to delete | `$XDG_CACHE_HOME/toolhost` (`~/.cache/toolhost`) |
//! | the artifact key (`artifact.key`) and the trusted configs (`trusted/`) | state: private, per machine | `$XDG_STATE_HOME/toolhost` (`~/.local/state/toolhost`) |
//! | `toolhost.toml` when `./toolhost.toml` is absent | config | `$XDG_CONFIG_HOME/toolhost` (`~/.config/toolhost`) |
//!
//! Platforms without a state directory keep the key in the data directory.
//! Every function returns `None` when the user has no home directory; the
//! caller then says which setting to pin.

use std::path::{Path, PathBuf};

use directories::ProjectDirs;

/// The user's directories for this program, read from the environment now
/// (so a test that sets `XDG_*` or `HOME` sees its own).
fn project() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "toolhost")
}

/// The data directory: the store and the user's tools.
pub fn data_dir() -> Option<PathBuf> {
    project().map(|p| p.data_dir().to_path_buf())
}

/// The cache directory: compiled components and their metadata.
pub fn cache_dir() -> Option<PathBuf> {
    project().map(|p| p.cache_dir().to_path_buf())
}

/// The config directory, searched for `toolhost.toml` after the current one.
pub fn config_dir() -> Option<PathBuf> {
    project().map(|p| p.config_dir().to_path_buf())
}

/// The state directory: the artifact key (the data directory where the
/// platform has no state directory).
pub fn state_dir() -> Option<PathBuf> {
    let p = project()?;
    Some(p.state_dir().unwrap_or(p.data_dir()).to_path_buf())
}

/// The store's default file: `toolhost.db` in the data directory.
pub fn default_store() -> Option<PathBuf> {
    data_dir().map(|d| d.join("toolhost.db"))
}

/// The artifact cache's default directory: `artifacts/` in the cache directory.
pub fn default_artifacts() -> Option<PathBuf> {
    cache_dir().map(|d| d.join("artifacts"))
}

/// The user's tools directory: `tools/` in the data directory. Searched
/// after the built-in tools and before `--tools-dir`; it may not exist.
pub fn user_tools_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("tools"))
}

/// The config file's name, looked for in the current directory, then in
/// the config directory.
pub const CONFIG_FILE: &str = "toolhost.toml";

/// The user's config file: `toolhost.toml` in the config directory.
pub fn user_config() -> Option<PathBuf> {
    config_dir().map(|d| d.join(CONFIG_FILE))
}

/// Where the artifact key lives unless configured: the user's state
/// directory (`$XDG_STATE_HOME/toolhost`, else `~/.local/state/toolhost` on
/// Linux). `None` without a home directory.
pub fn default_key_dir() -> Option<PathBuf> {
    state_dir()
}

/// Where `toolhost config trust` keeps its records: `trusted/` in the
/// state directory, one file per trusted config.
pub fn trust_dir() -> Option<PathBuf> {
    state_dir().map(|d| d.join("trusted"))
}

/// `path` made absolute against `base` (a config file's directory, or the
/// current directory for command-line flags); lexical, no symlinks resolved.
pub fn resolve_against(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        // `components` drops the `.` inside a path, so `./data` under
        // `/etc/toolhost` reads `/etc/toolhost/data` in messages; `..` is
        // kept (removing it lexically would be wrong across a symlink).
        base.join(path).components().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_the_base_and_absolute_ones_stay() {
        assert_eq!(
            resolve_against(Path::new("/etc/toolhost"), Path::new("tools")),
            PathBuf::from("/etc/toolhost/tools")
        );
        assert_eq!(
            resolve_against(Path::new("/etc/toolhost"), Path::new("./data")),
            PathBuf::from("/etc/toolhost/data")
        );
        assert_eq!(
            resolve_against(Path::new("/etc/toolhost"), Path::new("/srv/tools")),
            PathBuf::from("/srv/tools")
        );
    }
}

//! Warnings given once per config, not on every command.
//!
//! A `[tools.NAME]` policy that names no tool on the search path is a
//! warning (`diagnostics`), and repeated on every `toolhost call` it is
//! noise: the user has read it, and an agent calling tools in a loop fills
//! its log with it. So a command gives it once for each config text and
//! set of warnings, and says nothing more until either changes (an edit of
//! the config, or a tool added to or removed from the search path).
//! `toolhost config check` always lists every warning.
//!
//! What was last warned about is kept in the user's state directory
//! (`warned/`, one small file per config named by the digest of its path,
//! as `trust` keeps its records), holding one digest of the config's text
//! and the warnings' words. Losing it (a race of two commands, no state
//! directory) costs one repeated warning, never a missing one.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ConfigWarning;

/// Where the records are: `warned/` in the user's state directory.
pub fn default_dir() -> Option<PathBuf> {
    crate::paths::state_dir().map(|d| d.join("warned"))
}

/// Whether `warnings` about the config at `file`, whose text hashes to
/// `config_digest`, are new (records in `dir`); if so, records them as
/// given. An empty list is never new and records nothing.
pub fn first_time_in(
    dir: &Path,
    file: &Path,
    config_digest: &str,
    warnings: &[ConfigWarning],
) -> bool {
    if warnings.is_empty() {
        return false;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(config_digest.as_bytes());
    for w in warnings {
        hasher.update(b"\n");
        hasher.update(w.to_string().as_bytes());
    }
    let digest = hasher.finalize().to_hex().to_string();
    let resolved = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let name = blake3::hash(resolved.as_os_str().as_encoded_bytes()).to_hex();
    let record = dir.join(&name[..32]);
    if std::fs::read_to_string(&record).is_ok_and(|seen| seen.trim() == digest) {
        return false;
    }
    // Best effort: a record that cannot be written means the warning is
    // given again next time.
    let _ = write(dir, &record, &digest);
    true
}

/// [`first_time_in`] the user's records; with no state directory, every
/// time is the first.
pub fn first_time(file: &Path, config_digest: &str, warnings: &[ConfigWarning]) -> bool {
    match default_dir() {
        Some(dir) => first_time_in(&dir, file, config_digest, warnings),
        None => !warnings.is_empty(),
    }
}

/// Writes `digest` to `record` whole: a private temporary file, renamed.
fn write(dir: &Path, record: &Path, digest: &str) -> std::io::Result<()> {
    super::trust::private_dir(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(digest.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, record));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(message: &str) -> ConfigWarning {
        ConfigWarning {
            file: PathBuf::from("/etc/toolhost.toml"),
            line: Some(1),
            key: "tools.x".into(),
            unusable_tool: None,
            message: message.into(),
        }
    }

    #[test]
    fn a_warning_is_new_once_per_config_text_and_set_of_warnings() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state").join("warned");
        let (a, b) = (Path::new("/p/a.toml"), Path::new("/p/b.toml"));
        let w = [warning("no tool `x`")];
        assert!(first_time_in(&dir, a, "d1", &w), "first");
        assert!(!first_time_in(&dir, a, "d1", &w), "the same again");
        assert!(first_time_in(&dir, b, "d1", &w), "another config");
        assert!(first_time_in(&dir, a, "d2", &w), "the config changed");
        assert!(!first_time_in(&dir, a, "d2", &w));
        let other = [warning("no tool `y`")];
        assert!(first_time_in(&dir, a, "d2", &other), "other warnings");
        assert!(!first_time_in(&dir, a, "d2", &[]), "nothing to warn about");
        assert!(
            !first_time_in(&dir, a, "d2", &other),
            "an empty list records nothing"
        );
    }
}

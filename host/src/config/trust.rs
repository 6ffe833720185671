//! Which config files toolhost may use, and the records that trust one.
//!
//! A config grants tools the host's files, variables and network, so
//! nothing a tool can write may become one. A tool granted `proj/` (rw)
//! once wrote `proj/toolhost.toml`; the next `toolhost` run from `proj/`
//! loaded it and granted the tool `/etc`. So a config is used only when
//! the user vouched for it:
//!
//! - `--config PATH` and `TOOLHOST_CONFIG` are trusted by being named;
//! - `toolhost.toml` in the user's config directory is trusted (no grant
//!   may reach that directory: `grants`);
//! - `./toolhost.toml` from the working directory is used only once
//!   `toolhost config trust` recorded its path and blake3 digest here, as
//!   `direnv allow` and `mise trust` do. A changed file is untrusted again.
//!
//! Records live in the user's state directory (`paths::trust_dir`), one
//! file per config named by the digest of its resolved path, so two
//! concurrent `config trust` runs never lose each other's record. Each is
//! written to a private temporary file (0600) and renamed into place.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the config in use came from, and so why it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `--config PATH`: trusted by being named.
    Flag,
    /// `TOOLHOST_CONFIG`: trusted by being named.
    Env,
    /// `./toolhost.toml`, trusted by a record of `toolhost config trust`.
    WorkingDir,
    /// `toolhost.toml` in the user's config directory.
    UserConfigDir,
}

impl Source {
    /// Why a config from here is trusted, for `config check`.
    pub fn reason(self) -> &'static str {
        match self {
            Source::Flag => "named by --config",
            Source::Env => "named by TOOLHOST_CONFIG",
            Source::WorkingDir => "./toolhost.toml, trusted with `toolhost config trust`",
            Source::UserConfigDir => "the user's config directory",
        }
    }
}

/// The variable that names a config as `--config` does.
pub const ENV_VAR: &str = "TOOLHOST_CONFIG";

/// One trusted config: its resolved path and the digest of the bytes the
/// user trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub path: PathBuf,
    pub blake3: String,
}

/// Whether a working-directory config may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// No record for this path.
    Unknown,
    /// A record, for other contents: the file changed since it was trusted.
    Changed {
        trusted: String,
        now: String,
    },
}

/// Why a config could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "no state directory to keep the record in (HOME is not set); name the config with --config instead"
    )]
    NoStateDir,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the trust record in {}: {source}", dir.display())]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The hex blake3 digest of a config's bytes.
pub fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// `path` with symlinks resolved: the file a record is about.
fn resolved(path: &Path) -> Result<PathBuf, TrustError> {
    path.canonicalize().map_err(|source| TrustError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The record file for the config at `resolved`, in `dir`.
fn record_file(dir: &Path, resolved: &Path) -> PathBuf {
    let name = blake3::hash(resolved.as_os_str().as_encoded_bytes()).to_hex();
    dir.join(format!("{}.toml", &name[..32]))
}

/// Whether `path`, whose contents are `bytes`, is trusted (records in `dir`).
pub fn verdict_in(dir: &Path, path: &Path, bytes: &[u8]) -> Verdict {
    let Ok(resolved) = resolved(path) else {
        return Verdict::Unknown;
    };
    let Some(record) = std::fs::read_to_string(record_file(dir, &resolved))
        .ok()
        .and_then(|text| toml::from_str::<Record>(&text).ok())
        .filter(|r| r.path == resolved)
    else {
        return Verdict::Unknown;
    };
    let now = digest(bytes);
    if record.blake3 == now {
        Verdict::Trusted
    } else {
        Verdict::Changed {
            trusted: record.blake3,
            now,
        }
    }
}

/// [`verdict_in`] the user's records.
pub fn verdict(path: &Path, bytes: &[u8]) -> Verdict {
    match crate::paths::trust_dir() {
        Some(dir) => verdict_in(&dir, path, bytes),
        None => Verdict::Unknown,
    }
}

/// Records `path`, whose contents are `bytes`, as trusted in `dir`.
pub fn trust_in(dir: &Path, path: &Path, bytes: &[u8]) -> Result<Record, TrustError> {
    let record = Record {
        path: resolved(path)?,
        blake3: digest(bytes),
    };
    let write = |source| TrustError::Write {
        dir: dir.to_path_buf(),
        source,
    };
    private_dir(dir).map_err(write)?;
    let text = format!(
        "# Trusted by `toolhost config trust`: used as a config while its contents hash to this.\n{}",
        toml::to_string(&record).expect("a record is plain TOML")
    );
    // A private name per process and write, created 0600; the rename
    // replaces a record whole.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, record_file(dir, &record.path)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write(e));
    }
    Ok(record)
}

/// [`trust_in`] the user's records.
pub fn trust(path: &Path, bytes: &[u8]) -> Result<Record, TrustError> {
    let dir = crate::paths::trust_dir().ok_or(TrustError::NoStateDir)?;
    trust_in(&dir, path, bytes)
}

/// Makes `dir` and its parent (the state directory, which also holds the
/// artifact key and must stay private) with mode 0700 where missing.
pub(super) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if let Some(grand) = parent.parent() {
        std::fs::create_dir_all(grand)?;
    }
    for d in [parent, dir] {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The refusal of an untrusted working-directory config: what is wrong and
/// the command that trusts it.
pub fn refusal(path: &Path, verdict: &Verdict) -> String {
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let command = format!(
        "toolhost config trust {}",
        crate::hint::shell_quote(&shown.to_string_lossy())
    );
    let (why, again) = match verdict {
        Verdict::Changed { trusted, now } => (
            format!(
                "changed since it was trusted (blake3 {} then, {} now)",
                &trusted[..12.min(trusted.len())],
                &now[..12]
            ),
            " again",
        ),
        _ => ("not trusted".to_string(), ""),
    };
    format!(
        "{why}: a config grants tools the host's files, variables and network, so a \
         ./toolhost.toml (which a tool may have written) is used only once you trust it; \
         read it, then run `{command}`{again} (or name a config with --config)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_trusts_those_bytes_at_that_path_only() {
        let root = tempfile::tempdir().unwrap();
        let records = root.path().join("state").join("trusted");
        let config = root.path().join("toolhost.toml");
        std::fs::write(&config, "a").unwrap();
        assert_eq!(verdict_in(&records, &config, b"a"), Verdict::Unknown);
        let record = trust_in(&records, &config, b"a").unwrap();
        assert_eq!(record.path, config.canonicalize().unwrap());
        assert_eq!(verdict_in(&records, &config, b"a"), Verdict::Trusted);
        assert!(matches!(
            verdict_in(&records, &config, b"b"),
            Verdict::Changed { .. }
        ));
        // Another file with the same bytes is not trusted by it.
        let other = root.path().join("other.toml");
        std::fs::write(&other, "a").unwrap();
        assert_eq!(verdict_in(&records, &other, b"a"), Verdict::Unknown);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&records), 0o700);
            assert_eq!(mode(records.parent().unwrap()), 0o700);
            let file = std::fs::read_dir(&records)
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(mode(&file.path()), 0o600);
        }
    }
}

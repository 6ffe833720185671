//! The per-user secret that authenticates compiled artifacts.
//!
//! Why a secret at all: `Component::deserialize` maps the artifact's bytes
//! as native code and runs them. A checksum stored beside the bytes proves
//! nothing against someone who can write the file (they rewrite the checksum
//! too), and the artifact directory is writable by more than the host: a
//! tool with an `rw` grant over it, another user sharing a cache, a careless
//! backup restore. A keyed MAC proves the artifact was written by a process
//! that could read this user's key, which no tool can (grants may not cover
//! this directory, see `config::grants`).
//!
//! The key is 32 random bytes, made on first use, in a file of mode 0600 in
//! a directory of mode 0700, both owned by the user running toolhost, and
//! neither a symlink. Anything else (another owner, group or world access,
//! a short file) is refused rather than repaired: a key another user could
//! have read is not a secret, and a directory we do not own may be swapped
//! under us. Refusal disables the artifact cache (every start compiles),
//! never the host.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The key file's name inside the key directory.
const KEY_FILE: &str = "artifact.key";
/// Key length: blake3's keyed mode takes exactly 32 bytes.
const KEY_LEN: usize = 32;

/// The secret key of blake3's keyed mode.
#[derive(Clone)]
pub(crate) struct ArtifactKey([u8; KEY_LEN]);

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey([redacted])")
    }
}

impl ArtifactKey {
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Why the key cannot be used (the cache is then off).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or creating the directory or the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory or the file is a symlink, or not what it should be.
    #[error("{} is not a plain {what}", path.display())]
    NotPlain { path: PathBuf, what: &'static str },
    /// Another user owns the directory or the file.
    #[error("{} is owned by uid {owner}, not by this user (uid {me})", path.display())]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    /// Group or others have some access.
    #[error("{} has mode {mode:o}; it must be {want:o}", path.display())]
    TooOpen { path: PathBuf, mode: u32, want: u32 },
    /// The file does not hold exactly 32 bytes.
    #[error("{} does not hold a {KEY_LEN}-byte key", path.display())]
    BadLength { path: PathBuf },
    /// Not a Unix host: the ownership rules cannot be checked.
    #[error("artifact keys need a Unix host")]
    Unsupported,
}

pub use crate::paths::default_key_dir;

/// The key in `dir`, made now if there is none yet.
#[cfg(unix)]
pub(crate) fn load_or_create(dir: &Path) -> Result<ArtifactKey, KeyError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    match std::fs::DirBuilder::new()
        .recursive(false)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The parents are missing: make them (default mode), then ours.
            let parent = dir.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            return load_or_create(dir);
        }
        Err(e) => return Err(io(dir)(e)),
    }
    check(dir, "directory", 0o700)?;

    let path = dir.join(KEY_FILE);
    if !exists(&path)? {
        // Written under a private name, then linked into place: a reader
        // never sees half a key, and of two racing creators one key wins.
        let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let key: [u8; KEY_LEN] = rand::random();
        file.write_all(&key)
            .and_then(|()| file.sync_all())
            .map_err(io(&tmp))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    check(&path, "file", 0o600)?;
    let bytes = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| {
            let mut buf = Vec::with_capacity(KEY_LEN + 1);
            std::io::Read::read_to_end(&mut f, &mut buf)?;
            Ok(buf)
        })
        .map_err(io(&path))?;
    let key: [u8; KEY_LEN] = bytes
        .try_into()
        .map_err(|_| KeyError::BadLength { path: path.clone() })?;
    Ok(ArtifactKey(key))
}

#[cfg(not(unix))]
pub(crate) fn load_or_create(_dir: &Path) -> Result<ArtifactKey, KeyError> {
    Err(KeyError::Unsupported)
}

#[cfg(unix)]
fn exists(path: &Path) -> Result<bool, KeyError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(KeyError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `path` is a plain `what` (no symlink), owned by this user, with no
/// permission bits beyond `want`.
#[cfg(unix)]
fn check(path: &Path, what: &'static str, want: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::MetadataExt;

    let meta = std::fs::symlink_metadata(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let plain = match what {
        "directory" => meta.file_type().is_dir(),
        _ => meta.file_type().is_file(),
    };
    if !plain {
        return Err(KeyError::NotPlain {
            path: path.to_path_buf(),
            what,
        });
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return Err(KeyError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & !want != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_path_buf(),
            mode,
            want,
        });
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_key_is_made_once_private_and_reused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state").join("toolhost");
        let a = load_or_create(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_eq!(format!("{a:?}"), "ArtifactKey([redacted])");
        // Two users' keys (two directories) differ.
        let other = load_or_create(&root.path().join("other")).unwrap();
        assert_ne!(a.as_bytes(), other.as_bytes());
    }

    #[test]
    fn open_or_odd_key_places_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("k");
        load_or_create(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            load_or_create(&dir),
            Err(KeyError::TooOpen { .. })
        ));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = dir.join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&dir),
            Err(KeyError::TooOpen { .. })
        ));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&key, b"short").unwrap();
        assert!(matches!(
            load_or_create(&dir),
            Err(KeyError::BadLength { .. })
        ));
        // A symlinked key directory is not ours to trust.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            load_or_create(&link),
            Err(KeyError::NotPlain { .. })
        ));
    }
}

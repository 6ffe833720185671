//! Which claim owners are alive, across processes, without heartbeats.
//!
//! Each open store holds an exclusive `flock` on its own file
//! `<db>.owners/<owner id>.lock` for as long as it lives. The kernel drops
//! the lock when the process dies, however it dies (SIGKILL included), so
//! "can I take this owner's lock?" is an exact, instant liveness test: no
//! lease to tune, no clock to trust.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// This process's (this store's) owner identity and its held lock.
#[derive(Debug)]
pub struct OwnerLock {
    id: String,
    path: PathBuf,
    _file: File,
}

fn owners_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".owners");
    db.with_file_name(name)
}

impl OwnerLock {
    pub(crate) fn acquire(db: &Path) -> std::io::Result<OwnerLock> {
        let dir = owners_dir(db);
        std::fs::create_dir_all(&dir)?;
        let id = format!("{}-{}", std::process::id(), random_hex());
        let path = dir.join(format!("{id}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(OwnerLock {
            id,
            path,
            _file: file,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the owner `id` of database `db` still holds its lock.
pub(crate) fn is_alive(db: &Path, id: &str) -> bool {
    if id.contains('/') || id.contains("..") {
        return false;
    }
    let path = owners_dir(db).join(format!("{id}.lock"));
    let Ok(file) = OpenOptions::new().write(true).open(&path) else {
        // No lock file: the owner finished cleanly, or never existed.
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            // We got it, so its owner is dead; tidy up.
            let _ = std::fs::remove_file(&path);
            false
        }
        Err(TryLockError::WouldBlock) => true,
        // Cannot tell: assume alive, which errs toward waiting, never toward
        // running a side effect twice.
        Err(TryLockError::Error(_)) => true,
    }
}

/// 64 random bits in hex (the OS-seeded thread RNG): unique per call, per
/// process, and unguessable, so no caller can predict another's lock or scope.
pub(crate) fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_alive_and_a_dropped_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let a = OwnerLock::acquire(&db).unwrap();
        let b = OwnerLock::acquire(&db).unwrap();
        assert_ne!(a.id(), b.id());
        assert!(is_alive(&db, a.id()));
        let id = a.id().to_string();
        drop(a);
        assert!(!is_alive(&db, &id));
        assert!(is_alive(&db, b.id()));
        assert!(!is_alive(&db, "../../etc/passwd"));
    }
}

//! Which claim owners are alive, across processes, without heartbeats.
//!
//! Each open store holds an exclusive `flock` on its own file
//! `<db>.owners/<owner id>.lock` for as long as it lives. The kernel drops
//! the lock when the process dies, however it dies (SIGKILL included), so
//! "can I take this owner's lock?" is an exact, instant liveness test: no
//! lease to tune, no clock to trust.
//!
//! Only two answers mean "dead": the lock file is missing (its owner closed
//! cleanly, or a sweep removed it after its owner died), or its lock can be
//! taken. Any other failure (EACCES, EMFILE, EIO, ELOOP...) means "cannot
//! tell", which counts as alive: declaring a live owner dead hands its claim
//! to someone else, and that can repeat a side effect; waiting cannot.
//!
//! A lock file is created under a temporary name, locked, and only then
//! renamed into place, so a prober never sees a fresh, not-yet-locked file
//! and mistakes its owner for dead.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
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

fn lock_path(db: &Path, id: &str) -> PathBuf {
    owners_dir(db).join(format!("{id}.lock"))
}

impl OwnerLock {
    pub(crate) fn acquire(db: &Path) -> io::Result<OwnerLock> {
        let dir = owners_dir(db);
        std::fs::create_dir_all(&dir)?;
        let id = format!("{}-{}", std::process::id(), random_hex());
        let path = lock_path(db, &id);
        let staging = dir.join(format!("{id}.lock.new"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&staging)?;
        file.lock()?;
        std::fs::rename(&staging, &path)?;
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
        let _ = std::fs::remove_file(self.path.with_extension("recovers"));
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Marks owner `id` as a server that adopts interrupted runs: an empty
/// `<id>.recovers` beside its lock file, believed only while that lock is
/// held. Blocking.
pub(crate) fn mark_recoverer(db: &Path, id: &str) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(lock_path(db, id).with_extension("recovers"))
        .map(drop)
}

/// The live owners with a recoverer marker, sorted; the markers of dead
/// owners are removed. Blocking.
pub(crate) fn recoverer_ids(db: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(owners_dir(db)) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".recovers") else {
            continue;
        };
        if probe(db, id) == Liveness::Dead {
            let _ = std::fs::remove_file(entry.path());
        } else {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    ids
}

/// What a liveness probe concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The owner holds its lock.
    Alive,
    /// The lock file is gone, or its lock was free (the owner died).
    Dead,
    /// The probe failed in a way that proves nothing; treated as alive.
    Unknown(String),
}

impl Liveness {
    /// Whether a claim of this owner must be left alone.
    pub fn counts_as_alive(&self) -> bool {
        !matches!(self, Liveness::Dead)
    }
}

/// Probes the owner `id` of database `db`. Blocking (file system calls):
/// async callers go through `Store::owner_alive`, which runs it off the
/// async workers.
pub(crate) fn probe(db: &Path, id: &str) -> Liveness {
    if id.is_empty() || id.contains('/') || id.contains("..") {
        return Liveness::Dead; // Not an id this code ever made.
    }
    let path = lock_path(db, id);
    // Read-only: taking a `flock` needs no write access, and a read-only
    // open cannot create, truncate or change the file.
    let verdict = judge(File::open(&path));
    if verdict == Liveness::Dead {
        // Its owner is dead; tidy up (a missing file is fine too).
        let _ = std::fs::remove_file(&path);
    }
    if let Liveness::Unknown(why) = &verdict {
        tracing::warn!(owner = id, error = %why, "cannot probe a claim owner; assuming it is alive");
    }
    verdict
}

/// The verdict on one opened (or not) lock file. The lock, when taken, is
/// dropped with the file at the end of this function.
pub(crate) fn judge(opened: io::Result<File>) -> Liveness {
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Liveness::Dead,
        Err(e) => return Liveness::Unknown(format!("opening the lock file: {e}")),
    };
    match file.try_lock() {
        Ok(()) => Liveness::Dead,
        Err(TryLockError::WouldBlock) => Liveness::Alive,
        Err(TryLockError::Error(e)) => Liveness::Unknown(format!("locking: {e}")),
    }
}

/// Removes the lock files of dead owners; returns how many. Blocking.
pub(crate) fn sweep_locks(db: &Path, own: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(owners_dir(db)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Staging files (`.lock.new`) are left alone: one may belong to an
        // owner between creating and locking it.
        let Some(id) = name.strip_suffix(".lock").filter(|id| *id != own) else {
            continue;
        };
        let path = entry.path();
        if judge(File::open(&path)) == Liveness::Dead && std::fs::remove_file(&path).is_ok() {
            tracing::debug!(owner = id, "removed a dead owner's lock file");
            removed += 1;
        }
    }
    removed
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
        assert_eq!(probe(&db, a.id()), Liveness::Alive);
        let id = a.id().to_string();
        drop(a);
        assert_eq!(probe(&db, &id), Liveness::Dead);
        assert_eq!(probe(&db, b.id()), Liveness::Alive);
        assert_eq!(probe(&db, "../../etc/passwd"), Liveness::Dead);
    }

    /// Regression: EACCES, EMFILE and EIO used to count as "dead", handing a
    /// live owner's claim to someone else.
    #[test]
    fn only_a_missing_file_or_a_free_lock_means_dead() {
        for kind in [
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::Other,
            io::ErrorKind::Interrupted,
        ] {
            let verdict = judge(Err(io::Error::from(kind)));
            assert!(matches!(verdict, Liveness::Unknown(_)), "{kind:?}");
            assert!(verdict.counts_as_alive());
        }
        for errno in [13, 24, 5] {
            // EACCES, EMFILE, EIO
            assert!(judge(Err(io::Error::from_raw_os_error(errno))).counts_as_alive());
        }
        assert_eq!(judge(Err(io::ErrorKind::NotFound.into())), Liveness::Dead);
    }

    #[test]
    fn a_dead_owners_lock_file_is_swept_and_a_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let live = OwnerLock::acquire(&db).unwrap();
        // A dead owner's file: present, unlocked (its process is gone).
        let dead = owners_dir(&db).join("1-dead.lock");
        std::fs::write(&dead, b"").unwrap();
        assert_eq!(sweep_locks(&db, "someone-else"), 1);
        assert!(!dead.exists());
        assert!(lock_path(&db, live.id()).exists());
        assert_eq!(probe(&db, live.id()), Liveness::Alive);
    }
}

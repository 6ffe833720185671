//! `files.index`: what the catalog knows of each file on the search path
//! without reading it. For each file seen, its inode facts (device, inode,
//! size, mtime and ctime in nanoseconds), its blake3 digest and the name its
//! metadata gives; a file whose facts still match is not read at all. An
//! entry for a file changed within [`RACY`] of being hashed is racy and is
//! hashed again next time (as git does with "racily clean" entries).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::artifacts::{ArtifactCache, INDEX};
use super::catalog::{Location, Origin};

/// Files changed more recently than this are hashed again next time rather
/// than trusted by their inode facts (timestamps tick coarsely).
const RACY: Duration = Duration::from_secs(2);

/// The inode facts that say a file is unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Facts {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) len: u64,
    pub(super) mtime_ns: i128,
    pub(super) ctime_ns: i128,
}

impl Facts {
    #[cfg(unix)]
    pub(super) fn of(m: &std::fs::Metadata) -> Facts {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Facts {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    pub(super) fn of(m: &std::fs::Metadata) -> Facts {
        let ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Facts {
            len: m.len(),
            mtime_ns: ns,
            ctime_ns: ns,
            ..Facts::default()
        }
    }

    /// Changed so recently that an edit in the same clock tick could hide.
    pub(super) fn racy(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let newest = self.mtime_ns.max(self.ctime_ns);
        now - newest < RACY.as_nanos() as i128
    }
}

/// One file in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Indexed {
    pub(super) facts: Facts,
    pub(super) digest: String,
    /// The name its metadata gives; `None`: see the metadata record.
    pub(super) name: Option<String>,
    /// Hashed so soon after a change that the facts may not show a later
    /// one: not trusted.
    pub(super) racy: bool,
}

/// The sealed index, by [`Location::display`] path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    pub(super) files: BTreeMap<PathBuf, Indexed>,
    #[serde(skip)]
    pub(super) dirty: bool,
}

/// The index's name in the cache.
const INDEX_NAME: &str = "files";

impl Index {
    pub(crate) fn read(cache: &ArtifactCache) -> Index {
        cache
            .read_sealed(INDEX, INDEX_NAME)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the index back if this start learnt something.
    pub(crate) fn write(&self, cache: &ArtifactCache) {
        if self.dirty
            && let Ok(bytes) = serde_json::to_vec(self)
        {
            cache.write_sealed(INDEX, INDEX_NAME, &bytes);
        }
    }

    /// Drops the entries of files that are gone from a directory this start
    /// found tools in, so the index does not grow with every file ever seen
    /// there. (A directory emptied of tools keeps its few stale entries.)
    pub(super) fn forget_missing(&mut self, candidates: &[(Origin, Location)]) {
        let present: BTreeSet<PathBuf> = candidates.iter().map(|(_, l)| l.display()).collect();
        let listed: BTreeSet<&Path> = present.iter().filter_map(|p| p.parent()).collect();
        let before = self.files.len();
        self.files.retain(|path, _| {
            present.contains(path) || !path.parent().is_some_and(|d| listed.contains(d))
        });
        self.dirty |= self.files.len() != before;
    }

    /// Whether this start learnt something to write back.
    pub(crate) fn dirty(&self) -> bool {
        self.dirty
    }

    pub(super) fn set(&mut self, key: PathBuf, value: Indexed) {
        if self.files.get(&key) != Some(&value) {
            self.files.insert(key, value);
            self.dirty = true;
        }
    }

    /// Records the name `describe` gave a file identified as `digest`.
    pub(crate) fn name(&mut self, location: &Location, digest: &str, name: Option<&str>) {
        let key = location.display();
        if let Some(entry) = self.files.get_mut(&key)
            && entry.digest == digest
            && entry.name.as_deref() != name
        {
            entry.name = name.map(str::to_string);
            self.dirty = true;
        }
    }
}

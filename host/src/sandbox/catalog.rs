//! The tool search path, and knowing what is on it without running it.
//!
//! Tools come from three places, searched in order: the examples embedded
//! in the binary (`builtin`), the user's tools directory (`user`:
//! `tools/` in the data directory; it may not exist), and the configured
//! directory (`dir`: `--tools-dir` or `[sandbox] tools_dir`; it must exist).
//! A later place's tool replaces an earlier one of the same name; two files
//! of one place claiming one name are a load error.
//!
//! A call should pay only for the tool it calls, so a start must learn every
//! file's name without compiling or running it. Two sealed records make that
//! a few `stat`s and small reads (see `artifacts` for the seal):
//!
//! - `files.index`: for each file seen, its inode facts (device, inode,
//!   size, mtime and ctime in nanoseconds), its blake3 digest and the name
//!   its metadata gives. A file whose facts still match is not read at all.
//!   A rewrite changes the ctime, which no user can set; a file changed
//!   within a clock tick of being hashed could keep its facts, so an entry
//!   for a file changed in the last `RACY` (`file_index.rs`) before it was hashed is marked
//!   racy and not trusted (as git does with "racily clean" entries): it is
//!   hashed again next time, and recorded as settled once it is.
//! - `<digest>.meta` (`metadata`): what `describe` returned.
//!
//! Only what is new (a digest without a record) is compiled and described.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::artifacts::{ArtifactCache, LoadSource};
use super::bindings::ToolPre;
use super::builtin::{self, Builtin};
use super::capabilities::HostState;
use super::file_index::{Facts, Index, Indexed};
use super::loader;
use super::metadata::{self, Described, Record};
use super::wasm::LazyWasm;

/// Where on the search path a tool was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Embedded in the binary.
    Builtin,
    /// The user's tools directory (`tools/` in the data directory).
    User,
    /// The configured directory (`--tools-dir`, `[sandbox] tools_dir`).
    Dir,
}

impl Origin {
    /// How `tools list` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Builtin => "builtin",
            Origin::User => "user",
            Origin::Dir => "dir",
        }
    }
}

/// Where a tool's bytes are.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    Builtin(&'static Builtin),
    File(PathBuf),
}

impl Location {
    /// The path shown to people: the file, or `builtin:NAME.wasm`.
    pub(crate) fn display(&self) -> PathBuf {
        match self {
            Location::Builtin(b) => PathBuf::from(format!("builtin:{}", b.file)),
            Location::File(p) => p.clone(),
        }
    }

    pub(crate) fn read(&self) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            Location::Builtin(b) => Ok(Cow::Borrowed(b.bytes)),
            Location::File(p) => std::fs::read(p).map(Cow::Owned),
        }
    }
}

/// The places tools are searched, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct SearchPath {
    pub builtin: bool,
    /// May be missing.
    pub user: Option<PathBuf>,
    /// Must exist.
    pub dir: Option<PathBuf>,
}

/// Every candidate on the search path, in search order; an unreadable
/// configured directory (or user directory, other than missing) is `Err`.
pub(crate) fn candidates(
    search: &SearchPath,
) -> Result<Vec<(Origin, Location)>, (PathBuf, std::io::Error)> {
    let mut out = Vec::new();
    if search.builtin {
        out.extend(
            builtin::all()
                .iter()
                .map(|b| (Origin::Builtin, Location::Builtin(b))),
        );
    }
    if let Some(dir) = &search.user {
        match loader::wasm_files(dir) {
            Ok(files) => out.extend(files.into_iter().map(|f| (Origin::User, Location::File(f)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err((dir.clone(), e)),
        }
    }
    if let Some(dir) = &search.dir {
        let files = loader::wasm_files(dir).map_err(|e| (dir.clone(), e))?;
        out.extend(files.into_iter().map(|f| (Origin::Dir, Location::File(f))));
    }
    Ok(out)
}

/// What a file is, as far as this start needed to know.
pub(crate) enum State {
    /// Named by the index; its metadata was not needed.
    Named(String),
    /// Its recorded (or just produced) metadata.
    Described(Described),
    /// Compiled now; `describe` has not run yet.
    Compiled(ToolPre<HostState>, LoadSource),
    /// Compiled and described now: its metadata and its loaded component.
    Ready(Described, ToolPre<HostState>, LoadSource),
    /// It cannot load, and why.
    Failed(String),
}

/// One candidate, identified.
pub(crate) struct Entry {
    pub origin: Origin,
    pub location: Location,
    /// blake3 of the bytes, hex (empty if they could not be read).
    pub digest: String,
    pub state: State,
}

impl Entry {
    /// The tool's name, once known.
    pub(crate) fn name(&self) -> Option<&str> {
        match &self.state {
            State::Named(n) => Some(n),
            State::Described(d) | State::Ready(d, ..) => Some(d.name()),
            State::Compiled(..) | State::Failed(_) => None,
        }
    }
}

/// How to compile what is new (the engine is built only if something is).
pub(crate) struct Compiler<'a> {
    pub wasm: &'a LazyWasm,
    pub cache: &'a ArtifactCache,
}

/// Identifies each candidate: its digest (from the index, else by hashing),
/// its name (from the index) or metadata (from its record, when `wanted`
/// names it or is `None`), compiling only what has no record.
pub(crate) fn identify(
    candidates: Vec<(Origin, Location)>,
    wanted: Option<&BTreeSet<String>>,
    index: &mut Index,
    compiler: &Compiler<'_>,
) -> Vec<Entry> {
    index.forget_missing(&candidates);
    candidates
        .into_iter()
        .map(|(origin, location)| {
            let (digest, name, bytes) = match digest_of(&location, index) {
                Ok(found) => found,
                Err(reason) => {
                    return Entry {
                        origin,
                        location,
                        digest: String::new(),
                        state: State::Failed(reason),
                    };
                }
            };
            let state = match name {
                Some(name) if wanted.is_some_and(|w| !w.contains(&name)) => State::Named(name),
                _ => describe_or_compile(&location, &digest, bytes, compiler),
            };
            Entry {
                origin,
                location,
                digest,
                state,
            }
        })
        .collect()
}

/// The digest and indexed name of a candidate, and its bytes if they had to
/// be read.
#[allow(clippy::type_complexity)]
fn digest_of(
    location: &Location,
    index: &mut Index,
) -> Result<(String, Option<String>, Option<Cow<'static, [u8]>>), String> {
    let key = location.display();
    let path = match location {
        // A built-in tool is named by its file (`calc.wasm` is `calc`, a
        // build-time fact the tests check against its `describe`), so a
        // first call never compiles the other built-in tools to learn
        // their names.
        Location::Builtin(b) => {
            let name = b.file.strip_suffix(".wasm").unwrap_or(b.file);
            return Ok((b.digest.to_string(), Some(name.to_string()), None));
        }
        Location::File(p) => p,
    };
    let stat = |p: &Path| std::fs::metadata(p).map(|m| Facts::of(&m));
    let before = stat(path).map_err(|e| format!("cannot read: {e}"))?;
    if let Some(e) = index.files.get(&key)
        && e.facts == before
        && !e.racy
    {
        return Ok((e.digest.clone(), e.name.clone(), None));
    }
    let bytes = location.read().map_err(|e| format!("cannot read: {e}"))?;
    let digest = blake3::hash(&bytes).to_hex().to_string();
    // Recorded only if nothing changed while we read; marked racy if the
    // last change was so recent that another could hide in its tick.
    if stat(path).is_ok_and(|after| after == before) {
        let racy = before.racy();
        index.set(
            key,
            Indexed {
                facts: before,
                digest: digest.clone(),
                name: None,
                racy,
            },
        );
    }
    Ok((digest, None, Some(bytes)))
}

/// The recorded metadata of `digest`, else a compile (its `describe` is the
/// caller's, on the async side).
fn describe_or_compile(
    location: &Location,
    digest: &str,
    bytes: Option<Cow<'static, [u8]>>,
    compiler: &Compiler<'_>,
) -> State {
    match metadata::read(compiler.cache, digest) {
        Some(Record::Described(d)) => return State::Described(d),
        Some(Record::Failed(f)) if f.limits == super::engine::pool_limits() => {
            return State::Failed(f.reason);
        }
        // Refused under other limits, or never seen: compile (again).
        Some(Record::Failed(_)) | None => {}
    }
    let bytes = match bytes.map_or_else(|| location.read(), Ok) {
        Ok(b) => b,
        Err(e) => return State::Failed(format!("cannot read: {e}")),
    };
    // The file may have changed since the index named its digest: what is
    // compiled is what is described, so it must be these bytes' digest.
    let digest_now = blake3::hash(&bytes).to_hex().to_string();
    if digest_now != digest {
        return State::Failed("changed while loading; run again".into());
    }
    let wasm = match compiler.wasm.get() {
        Ok(w) => w,
        Err(e) => return State::Failed(format!("cannot start the wasm engine: {e}")),
    };
    match loader::prepare(&wasm.engine, &wasm.linker, compiler.cache, &bytes, digest) {
        Ok((pre, source)) => State::Compiled(pre, source),
        Err(reason) => {
            // The bytes alone decide this: record it, so it is not redone.
            metadata::write(compiler.cache, digest, &Record::failed(reason.clone()));
            State::Failed(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn entry(path: &Path, digest: &str, racy: bool) -> Indexed {
        Indexed {
            facts: Facts::of(&std::fs::metadata(path).unwrap()),
            digest: digest.into(),
            name: Some("t".into()),
            racy,
        }
    }

    /// A settled entry whose facts match is believed without a read; a
    /// racy one, or one whose file changed, is hashed again.
    #[test]
    fn the_index_is_trusted_only_for_settled_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wasm");
        std::fs::write(&path, b"one").unwrap();
        let location = Location::File(path.clone());
        let real = |bytes: &[u8]| blake3::hash(bytes).to_hex().to_string();

        let mut index = Index::default();
        index
            .files
            .insert(path.clone(), entry(&path, "recorded", false));
        let (digest, name, bytes) = digest_of(&location, &mut index).unwrap();
        assert_eq!((digest.as_str(), name.as_deref()), ("recorded", Some("t")));
        assert!(bytes.is_none(), "not read");

        index
            .files
            .insert(path.clone(), entry(&path, "recorded", true));
        let (digest, name, _) = digest_of(&location, &mut index).unwrap();
        assert_eq!(digest, real(b"one"), "racy: hashed again");
        assert_eq!(name, None);
        assert!(index.files[&path].racy, "just written: still racy");

        index
            .files
            .insert(path.clone(), entry(&path, "recorded", false));
        std::fs::write(&path, b"two, longer").unwrap();
        let (digest, _, _) = digest_of(&location, &mut index).unwrap();
        assert_eq!(digest, real(b"two, longer"), "changed: hashed again");
        assert!(index.dirty);
    }

    #[test]
    fn entries_of_removed_files_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, gone) = (dir.path().join("a.wasm"), dir.path().join("b.wasm"));
        std::fs::write(&kept, b"a").unwrap();
        std::fs::write(&gone, b"b").unwrap();
        let elsewhere = PathBuf::from("/elsewhere/c.wasm");
        let mut index = Index::default();
        for p in [&kept, &gone] {
            index.files.insert(p.clone(), entry(p, "d", false));
        }
        let mut other = entry(&kept, "d", false);
        other.name = None;
        index.files.insert(elsewhere.clone(), other);
        std::fs::remove_file(&gone).unwrap();
        index.forget_missing(&[(Origin::Dir, Location::File(kept.clone()))]);
        let left: Vec<_> = index.files.keys().cloned().collect();
        assert_eq!(left, [elsewhere, kept], "another directory's entries stay");
        assert!(index.dirty);
    }

    #[test]
    fn a_file_changed_long_ago_is_settled_and_one_changed_now_is_racy() {
        let old = Facts {
            mtime_ns: 1,
            ctime_ns: 1,
            ..Facts::default()
        };
        assert!(!old.racy());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let fresh = Facts {
            mtime_ns: 1,
            ctime_ns: now,
            ..Facts::default()
        };
        assert!(fresh.racy(), "the ctime counts, whatever the mtime says");
    }
}

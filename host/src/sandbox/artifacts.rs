//! Compiled components cached on disk, so a restart does not recompile, and
//! authenticated, so the cache cannot be turned into code execution.
//!
//! An artifact lives at `<dir>/<engine fingerprint>/<wasm digest>.cwasm`. The
//! engine fingerprint hashes wasmtime's own compatibility hash (its version
//! and every setting that changes compiled code), so another wasmtime or
//! another config never reads this one's artifacts.
//!
//! Deserialising maps the payload as native code and runs it, with no
//! verification by wasmtime. So a file is deserialised only if its header
//! carries the right MAC: blake3 in keyed mode, under the user's secret key
//! ([`super::artifact_key`]), over a domain string, the engine fingerprint,
//! the wasm digest the file is named for, and the payload. Whoever can write
//! the cache directory but cannot read the key (a tool with a grant, another
//! user) can neither forge an artifact nor move a genuine one to another
//! tool's name. Anything that fails the check (forged, foreign, truncated,
//! unreadable) is recompiled from the wasm and rewritten, never deserialised.
//! Without a usable key the cache is off and every start compiles.
//!
//! Beside the artifacts, in `<dir>/meta/`, lives what each tool's
//! `describe` returned (`<digest>.meta`) and one index of tools files
//! (`files.index`, see `catalog`), so a start reads metadata instead of
//! running every tool. They depend on the wasm alone, not on the engine, so
//! reading them needs no engine: a call whose result is replayed never
//! builds one.
//! Both steer what runs (a forged name could route a call to another tool),
//! so both are sealed the same way, each kind under its own MAC domain, and
//! anything that fails the check is ignored and rebuilt.
//!
//! Writes go to a temporary file and are renamed into place, so a crash or a
//! concurrent writer never leaves half an artifact under the real name.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::artifact_key::{self, ArtifactKey};

/// One kind of sealed file: how it starts, what its MAC's domain is, how
/// its name ends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kind {
    magic: &'static [u8; 16],
    /// Changes whenever what the MAC covers does.
    domain: &'static [u8],
    ext: &'static str,
}

/// Compiled components.
const ARTIFACT: Kind = Kind {
    magic: b"toolhost-cwasm2\n",
    domain: b"toolhost/artifact-mac/v1",
    ext: "cwasm",
};
/// What a component's `describe` returned (or why it cannot load). Format
/// 2 records the world too; a format-1 record (which also refused 0.2.0
/// components as failures) is ignored, so each is described afresh.
pub(crate) const METADATA: Kind = Kind {
    magic: b"toolhost-meta-2\n",
    domain: b"toolhost/metadata-mac/v2",
    ext: "meta",
};
/// The index from tools files (path and inode facts) to digests and names.
pub(crate) const INDEX: Kind = Kind {
    magic: b"toolhost-index1\n",
    domain: b"toolhost/index-mac/v1",
    ext: "index",
};
const HEADER: usize = 16 + blake3::OUT_LEN;

/// Where a loaded component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled from the wasm bytes now (and cached, when there is a cache).
    Compiled,
    /// Read from the on-disk cache, its MAC verified.
    Cached,
}

/// The on-disk cache; without a directory or a key it compiles every time.
#[derive(Clone, Debug)]
pub(crate) struct ArtifactCache {
    store: Option<Store>,
}

#[derive(Clone, Debug)]
struct Store {
    root: PathBuf,
    key: ArtifactKey,
}

/// The directory of records that do not depend on the engine.
const META_DIR: &str = "meta";

impl ArtifactCache {
    /// A cache under `root` (none: no cache), authenticated with the key in
    /// `key_dir` (none: the user's default key directory).
    pub(crate) fn new(root: Option<&Path>, key_dir: Option<&Path>) -> Self {
        let Some(root) = root else {
            return ArtifactCache { store: None };
        };
        let key_dir = key_dir
            .map(Path::to_path_buf)
            .or_else(artifact_key::default_key_dir);
        let key = match key_dir.as_deref().map(artifact_key::load_or_create) {
            Some(Ok(key)) => key,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "no artifact key: compiled components are not cached");
                return ArtifactCache { store: None };
            }
            None => {
                tracing::warn!(
                    "no home directory for the artifact key: compiled components are not cached"
                );
                return ArtifactCache { store: None };
            }
        };
        ArtifactCache {
            store: Some(Store {
                root: root.to_path_buf(),
                key,
            }),
        }
    }

    /// The authenticated payload of the `kind` file named `name`, if present.
    pub(crate) fn read_sealed(&self, kind: Kind, name: &str) -> Option<Vec<u8>> {
        self.store.as_ref()?.read(kind, META_DIR, name)
    }

    /// Seals and writes a `kind` file named `name`; failures cost a rebuild
    /// next time, nothing more.
    pub(crate) fn write_sealed(&self, kind: Kind, name: &str, payload: &[u8]) {
        if let Some(store) = &self.store {
            store.write_logged(kind, META_DIR, name, payload);
        }
    }

    /// The cached component for `digest`, without its wasm: `None` if there
    /// is no authentic one.
    pub(crate) fn load_cached(&self, engine: &Engine, digest: &str) -> Option<Component> {
        self.store.as_ref()?.component(engine, digest)
    }

    /// The cached component for `digest`, or a fresh compile of `wasm`.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> Result<(Component, LoadSource), String> {
        if let Some(component) = self.load_cached(engine, digest) {
            return Ok((component, LoadSource::Cached));
        }
        let component =
            Component::new(engine, wasm).map_err(|e| format!("does not compile: {e:#}"))?;
        if let Some(store) = &self.store {
            match component.serialize() {
                Ok(payload) => store.write_logged(ARTIFACT, &fingerprint(engine), digest, &payload),
                Err(e) => tracing::warn!(error = %e, "cannot serialise a compiled component"),
            }
        }
        Ok((component, LoadSource::Compiled))
    }
}

fn fingerprint(engine: &Engine) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Store {
    fn path(&self, kind: Kind, dir: &str, name: &str) -> PathBuf {
        self.root.join(dir).join(format!("{name}.{}", kind.ext))
    }

    /// The MAC of `payload` stored as `kind` under `dir/name` (`dir`: the
    /// engine fingerprint of an artifact, `meta` for the rest).
    fn mac(&self, kind: Kind, dir: &str, name: &str, payload: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(self.key.as_bytes());
        for field in [kind.domain, dir.as_bytes(), name.as_bytes()] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field);
        }
        h.update(payload);
        h.finalize()
    }

    /// A sealed file's payload, or `None` if absent, unreadable or
    /// unauthentic.
    fn read(&self, kind: Kind, dir: &str, name: &str) -> Option<Vec<u8>> {
        let path = self.path(kind, dir, name);
        let mut bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable cache file");
                return None;
            }
        };
        if bytes.len() < HEADER || &bytes[..kind.magic.len()] != kind.magic {
            tracing::warn!(path = %path.display(), "ignoring a cache file without our header");
            return None;
        }
        let (mac, payload) = bytes[kind.magic.len()..].split_at(blake3::OUT_LEN);
        // blake3::Hash compares in constant time.
        let mac = blake3::Hash::from_bytes(mac.try_into().ok()?);
        if mac != self.mac(kind, dir, name, payload) {
            tracing::warn!(path = %path.display(), "ignoring a cache file that fails authentication");
            return None;
        }
        bytes.drain(..HEADER);
        Some(bytes)
    }

    /// A cached component, or `None` if absent, unreadable, unauthentic or
    /// incompatible.
    fn component(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let payload = self.read(ARTIFACT, &fingerprint(engine), digest)?;
        // SAFETY: the MAC proves this payload is exactly what
        // `Component::serialize` produced, in a process holding this user's
        // key, for this engine fingerprint and this wasm digest; wasmtime
        // also rejects artifacts of other engine configs.
        match unsafe { Component::deserialize(engine, &payload) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(digest, error = %e, "ignoring an incompatible cached artifact");
                None
            }
        }
    }

    /// [`Store::write`]; a failure costs a rebuild next time, nothing more.
    fn write_logged(&self, kind: Kind, dir: &str, name: &str, payload: &[u8]) {
        if let Err(e) = self.write(kind, dir, name, payload) {
            tracing::warn!(dir = %self.root.join(dir).display(), error = %e, "cannot write to the artifact cache");
        }
    }

    fn write(&self, kind: Kind, dir: &str, name: &str, payload: &[u8]) -> std::io::Result<()> {
        let dir_path = self.root.join(dir);
        std::fs::create_dir_all(&dir_path)?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(kind.magic);
        bytes.extend_from_slice(self.mac(kind, dir, name, payload).as_bytes());
        bytes.extend_from_slice(payload);
        // Unique per process and per write, so concurrent writers never share it.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = dir_path.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, self.path(kind, dir, name))
    }
}

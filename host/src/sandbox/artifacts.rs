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
//! Writes go to a temporary file and are renamed into place, so a crash or a
//! concurrent writer never leaves half an artifact under the real name.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::artifact_key::{self, ArtifactKey};

const MAGIC: &[u8; 16] = b"toolhost-cwasm2\n";
const HEADER: usize = MAGIC.len() + blake3::OUT_LEN;
/// Changes whenever what the MAC covers does.
const DOMAIN: &[u8] = b"toolhost/artifact-mac/v1";

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
    dir: PathBuf,
    fingerprint: String,
    key: ArtifactKey,
}

impl ArtifactCache {
    /// A cache under `root` (none: no cache), authenticated with the key in
    /// `key_dir` (none: the user's default key directory).
    pub(crate) fn new(engine: &Engine, root: Option<&Path>, key_dir: Option<&Path>) -> Self {
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
        let fingerprint = fingerprint(engine);
        ArtifactCache {
            store: Some(Store {
                dir: root.join(&fingerprint),
                fingerprint,
                key,
            }),
        }
    }

    /// The cached component for `digest`, or a fresh compile of `wasm`.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> Result<(Component, LoadSource), String> {
        if let Some(store) = &self.store
            && let Some(component) = store.read(engine, digest)
        {
            return Ok((component, LoadSource::Cached));
        }
        let component =
            Component::new(engine, wasm).map_err(|e| format!("does not compile: {e:#}"))?;
        if let Some(store) = &self.store
            && let Err(e) = store.write(&component, digest)
        {
            // A read-only or full disk costs a recompile next time, nothing more.
            tracing::warn!(dir = %store.dir.display(), error = %e, "cannot cache a compiled component");
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
    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// The MAC of `payload` stored under `digest`.
    fn mac(&self, digest: &str, payload: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(self.key.as_bytes());
        for field in [DOMAIN, self.fingerprint.as_bytes(), digest.as_bytes()] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field);
        }
        h.update(payload);
        h.finalize()
    }

    /// A cached component, or `None` if absent, unreadable, unauthentic or
    /// incompatible.
    fn read(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable cached artifact");
                return None;
            }
        };
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            tracing::warn!(path = %path.display(), "ignoring a cached artifact without our header");
            return None;
        }
        let (mac, payload) = bytes[MAGIC.len()..].split_at(blake3::OUT_LEN);
        // blake3::Hash compares in constant time.
        let mac = blake3::Hash::from_bytes(mac.try_into().ok()?);
        if mac != self.mac(digest, payload) {
            tracing::warn!(path = %path.display(), "ignoring a cached artifact that fails authentication");
            return None;
        }
        // SAFETY: the MAC proves this payload is exactly what
        // `Component::serialize` produced, in a process holding this user's
        // key, for this engine fingerprint and this wasm digest; wasmtime
        // also rejects artifacts of other engine configs.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an incompatible cached artifact");
                None
            }
        }
    }

    fn write(&self, component: &Component, digest: &str) -> std::io::Result<()> {
        let payload = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::create_dir_all(&self.dir)?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(self.mac(digest, &payload).as_bytes());
        bytes.extend_from_slice(&payload);
        // Unique per process and per write, so concurrent writers never share it.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, self.path(digest))
    }
}

//! Compiled components cached on disk, so a restart does not recompile.
//!
//! An artifact lives at `<dir>/<engine fingerprint>/<wasm digest>.cwasm`. The
//! engine fingerprint hashes wasmtime's own compatibility hash (its version
//! and every setting that changes compiled code), so another wasmtime or
//! another config never reads this one's artifacts. Deserialising runs native
//! code without verification, so a file is trusted only if its blake3 checksum
//! (stored in a header) matches; anything else is recompiled and rewritten.
//! Writes go to a temporary file and are renamed into place, so a crash or a
//! concurrent writer never leaves half an artifact under the real name.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 16] = b"toolhost-cwasm1\n";
const HEADER: usize = MAGIC.len() + blake3::OUT_LEN;

/// Where a loaded component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled from the wasm bytes now (and cached, when there is a cache).
    Compiled,
    /// Read from the on-disk cache.
    Cached,
}

/// The on-disk cache; `None` compiles every time.
#[derive(Clone, Debug)]
pub(crate) struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    pub(crate) fn new(engine: &Engine, root: Option<&Path>) -> Self {
        let dir = root.map(|r| r.join(fingerprint(engine)));
        ArtifactCache { dir }
    }

    /// The cached component for `digest`, or a fresh compile of `wasm`.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> Result<(Component, LoadSource), String> {
        if let Some(path) = self.path(digest)
            && let Some(component) = read(engine, &path)
        {
            return Ok((component, LoadSource::Cached));
        }
        let component =
            Component::new(engine, wasm).map_err(|e| format!("does not compile: {e:#}"))?;
        if let Some(path) = self.path(digest)
            && let Err(e) = write(&component, &path)
        {
            // A read-only or full disk costs a recompile next time, nothing more.
            tracing::warn!(path = %path.display(), error = %e, "cannot cache a compiled component");
        }
        Ok((component, LoadSource::Compiled))
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{digest}.cwasm")))
    }
}

fn fingerprint(engine: &Engine) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A cached component, or `None` if absent, corrupt or incompatible.
fn read(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        tracing::warn!(path = %path.display(), "ignoring a cached artifact without our header");
        return None;
    }
    let (sum, payload) = bytes[MAGIC.len()..].split_at(blake3::OUT_LEN);
    if blake3::hash(payload).as_bytes() != sum {
        tracing::warn!(path = %path.display(), "ignoring a corrupt cached artifact");
        return None;
    }
    // SAFETY: the payload is exactly what `Component::serialize` wrote for an
    // engine with this fingerprint (the checksum rules out corruption and
    // truncation), and wasmtime rejects artifacts of other engine configs.
    match unsafe { Component::deserialize(engine, payload) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an incompatible cached artifact");
            None
        }
    }
}

fn write(component: &Component, path: &Path) -> std::io::Result<()> {
    let payload = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = path.parent().expect("artifact paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
    bytes.extend_from_slice(&payload);
    // Unique per process and per write, so concurrent writers never share it.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact"),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)
}

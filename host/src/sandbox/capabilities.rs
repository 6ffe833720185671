//! What a tool's store holds and what it may touch.
//!
//! A tool starts with nothing: no preopened directories, no environment, no
//! sockets (TCP, UDP and name lookup are switched off, not merely left
//! without addresses), empty stdin, and stdout/stderr captured into capped
//! buffers. Its policy may grant directories (through cap-std, so `..`,
//! absolute paths and symlinks cannot leave them; a read-only grant refuses
//! every write), named environment variables, and outgoing HTTP to listed
//! hosts (through [`super::egress`], the only way out of the sandbox).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::egress::{Egress, EgressOptions, Forward};
use super::limits::Limits;
use crate::config::{DirMode, ToolPolicy};

/// The data of one call's store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) egress: Egress,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    pub(crate) deadline: Instant,
    pub(crate) timed_out: bool,
    pub(crate) stdout: CappedLog,
    pub(crate) stderr: CappedLog,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl HostState {
    /// A fresh state for one call under `limits`, granted what `policy` says
    /// (its directories already opened, in `dirs`).
    pub(crate) fn new(
        limits: &Limits,
        policy: Option<&ToolPolicy>,
        dirs: &OpenedDirs,
        egress: &EgressOptions,
        forward: Option<Forward>,
    ) -> Result<Self, String> {
        let stdout = CappedLog::new(limits.max_log_bytes);
        let stderr = CappedLog::new(limits.max_log_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        // wasi:sockets would bypass every egress check: off, whatever the policy.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        dirs.grant(&mut wasi)?;
        if let Some(policy) = policy {
            grant_env(&mut wasi, policy);
        }
        let allow = policy.map(ToolPolicy::host_patterns).unwrap_or_default();
        Ok(HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            egress: Egress::new(allow, egress.clone(), limits.max_response_bytes, forward),
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(limits.memory_bytes),
            deadline: Instant::now() + limits.timeout,
            timed_out: false,
            stdout,
            stderr,
        })
    }
}

/// A tool's granted directories, opened once when the sandbox opens.
///
/// wasmtime-wasi's builder takes a path, not an open directory, so each call
/// still hands it one; but the path is `/proc/self/fd/N` of the directory
/// opened here (on Linux), so every call sees the directory the config named
/// when the sandbox opened, even if that path is later renamed or swapped for
/// a symlink, and no call walks the configured path again. Elsewhere the
/// configured path is used as is.
#[derive(Debug)]
pub(crate) struct OpenedDirs {
    dirs: Result<Vec<OpenedDir>, String>,
}

#[derive(Debug)]
struct OpenedDir {
    /// Held open for the sandbox's life; its fd names the directory.
    handle: std::fs::File,
    host: std::path::PathBuf,
    guest: String,
    perms: FsPerms,
}

impl OpenedDirs {
    /// Opens every directory `policy` grants. A failure is kept, not
    /// returned: it fails that tool's calls (as before any call could run),
    /// not the whole sandbox.
    pub(crate) fn open(policy: Option<&ToolPolicy>) -> OpenedDirs {
        let Some(policy) = policy else {
            return OpenedDirs {
                dirs: Ok(Vec::new()),
            };
        };
        let dirs = policy
            .dirs
            .iter()
            .map(|d| {
                let handle = std::fs::File::open(&d.host).map_err(|e| {
                    format!("cannot open granted directory {}: {e}", d.host.display())
                })?;
                Ok(OpenedDir {
                    handle,
                    host: d.host.clone(),
                    guest: d.guest.clone(),
                    perms: match d.mode {
                        DirMode::Ro => FsPerms::ReadOnly,
                        DirMode::Rw => FsPerms::ReadWrite,
                    },
                })
            })
            .collect();
        OpenedDirs { dirs }
    }

    /// Preopens each directory in one call's context.
    fn grant(&self, wasi: &mut WasiCtxBuilder) -> Result<(), String> {
        let dirs = self.dirs.as_ref().map_err(Clone::clone)?;
        for dir in dirs {
            wasi.preopened_dir(dir.path(), &dir.guest, dir.perms)
                .map_err(|e| {
                    format!("cannot open granted directory {}: {e}", dir.host.display())
                })?;
        }
        Ok(())
    }
}

impl OpenedDir {
    #[cfg(target_os = "linux")]
    fn path(&self) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        std::path::PathBuf::from(format!("/proc/self/fd/{}", self.handle.as_raw_fd()))
    }

    #[cfg(not(target_os = "linux"))]
    fn path(&self) -> std::path::PathBuf {
        let _ = &self.handle;
        self.host.clone()
    }
}

fn grant_env(wasi: &mut WasiCtxBuilder, policy: &ToolPolicy) {
    for name in &policy.env {
        // A granted variable the host does not have is simply absent.
        if let Ok(value) = std::env::var(name) {
            wasi.env(name, value);
        }
    }
}

/// Bounds the *total* of a call's linear memories and tables by the call's
/// `memory_mb`, and remembers that it refused, so the resulting trap (Rust
/// aborts on allocation failure) or failed instantiation is reported as
/// `memory_limit` rather than as a bare trap.
///
/// wasmtime asks per memory and per table; a component may have several of
/// each (the pool admits two memories per component), so a per-memory
/// check would let a call use the limit once per memory. The limiter keeps
/// the running sum instead: every approved growth (initial sizes included)
/// adds `desired - current`. Table elements count as pointer-sized, which is
/// what wasmtime stores.
///
/// A growth past the memory's or table's own declared maximum is approved
/// here but not counted: wasmtime refuses it right after asking us. Any other
/// failure after our approval (the OS refusing to map pages) stays counted:
/// the sum can only err on the strict side, and a failure notice is never
/// used to subtract, because wasmtime also sends one for growths it refused
/// before asking us, and subtracting then would let a guest shrink the sum
/// at will.
pub(crate) struct MemoryLimiter {
    max_bytes: u64,
    total_bytes: u64,
    hit: bool,
}

/// Bytes one table element takes in the host.
const TABLE_ELEMENT_BYTES: u64 = size_of::<usize>() as u64;

impl MemoryLimiter {
    fn new(max_bytes: u64) -> Self {
        MemoryLimiter {
            max_bytes,
            total_bytes: 0,
            hit: false,
        }
    }

    /// Whether a growth was refused.
    pub(crate) fn hit(&self) -> bool {
        self.hit
    }

    /// The bytes of memory and table the call holds now.
    #[cfg(test)]
    fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn grow(&mut self, current: u64, desired: u64, maximum: Option<u64>) -> bool {
        if maximum.is_some_and(|max| desired > max) {
            // wasmtime fails this growth itself, after asking; nothing grows.
            return true;
        }
        let delta = desired.saturating_sub(current);
        match self.total_bytes.checked_add(delta) {
            Some(total) if total <= self.max_bytes => {
                self.total_bytes = total;
                true
            }
            _ => {
                self.hit = true;
                false
            }
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current as u64, desired as u64, maximum.map(|m| m as u64)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |n: usize| (n as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(bytes(current), bytes(desired), maximum.map(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_a_total_over_every_memory_and_table() {
        let mut l = MemoryLimiter::new(10 << 20);
        // Two memories of 4 MiB each fit; a third 4 MiB does not.
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(!l.hit());
        assert!(!l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(l.hit());
        // Growing one of them by what is left fits exactly.
        assert!(l.memory_growing(4 << 20, 6 << 20, None).unwrap());
        assert_eq!(l.total_bytes(), 10 << 20);
        // Tables count too.
        assert!(!l.table_growing(0, 1, None).unwrap());
    }

    #[test]
    fn growth_past_a_declared_maximum_is_not_counted() {
        let mut l = MemoryLimiter::new(1 << 20);
        // wasmtime refuses this one itself; it must not eat the budget.
        assert!(l.memory_growing(0, 2 << 20, Some(1 << 16)).unwrap());
        assert_eq!(l.total_bytes(), 0);
        assert!(l.table_growing(0, 100, Some(1_000)).unwrap());
        assert_eq!(l.total_bytes(), 100 * TABLE_ELEMENT_BYTES);
        // A failure notice changes nothing.
        l.memory_grow_failed(wasmtime::Error::msg("refused"))
            .unwrap();
        assert_eq!(l.total_bytes(), 100 * TABLE_ELEMENT_BYTES);
        assert!(!l.hit());
    }
}

/// A stdout or stderr buffer that refuses writes past its cap and remembers
/// that it did, so the call can be failed as `output_too_large`.
#[derive(Clone)]
pub(crate) struct CappedLog {
    inner: Arc<Mutex<LogBuffer>>,
}

struct LogBuffer {
    bytes: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedLog {
    fn new(cap: u64) -> Self {
        CappedLog {
            inner: Arc::new(Mutex::new(LogBuffer {
                bytes: Vec::new(),
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                overflowed: false,
            })),
        }
    }

    /// What was written, lossily decoded.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuffer> {
        // The lock guards plain bytes; a panic mid-write leaves them usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IsTerminal for CappedLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CappedLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut log = self.lock();
        if log.bytes.len() + buf.len() > log.cap {
            log.overflowed = true;
            return Poll::Ready(Err(std::io::Error::other("log cap exceeded")));
        }
        log.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

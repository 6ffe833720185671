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

use super::egress::{Egress, EgressOptions};
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
    /// A fresh state for one call under `limits`, granted what `policy` says.
    pub(crate) fn new(
        limits: &Limits,
        policy: Option<&ToolPolicy>,
        egress: &EgressOptions,
    ) -> Result<Self, String> {
        let stdout = CappedLog::new(limits.max_log_bytes);
        let stderr = CappedLog::new(limits.max_log_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        // wasi:sockets would bypass every egress check: off, whatever the policy.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(policy) = policy {
            grant(&mut wasi, policy)?;
        }
        let allow = policy.map(ToolPolicy::host_patterns).unwrap_or_default();
        Ok(HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            egress: Egress::new(allow, egress.clone(), limits.max_response_bytes),
            table: ResourceTable::new(),
            memory: MemoryLimiter {
                max_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                hit: false,
            },
            deadline: Instant::now() + limits.timeout,
            timed_out: false,
            stdout,
            stderr,
        })
    }
}

fn grant(wasi: &mut WasiCtxBuilder, policy: &ToolPolicy) -> Result<(), String> {
    for dir in &policy.dirs {
        let perms = match dir.mode {
            DirMode::Ro => FsPerms::ReadOnly,
            DirMode::Rw => FsPerms::ReadWrite,
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| format!("cannot open granted directory {}: {e}", dir.host.display()))?;
    }
    for name in &policy.env {
        // A granted variable the host does not have is simply absent.
        if let Ok(value) = std::env::var(name) {
            wasi.env(name, value);
        }
    }
    Ok(())
}

/// Refuses memory growth past the call's limit, and remembers that it did,
/// so the resulting trap (Rust aborts on allocation failure) is reported as
/// `memory_limit` rather than as a bare trap.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) hit: bool,
}

/// Table elements a call may have; Rust tools use a few hundred.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
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

//! Fault injection for the recording path, so tests can prove what a failed
//! write after a run leaves behind (`in_doubt`, never `running`) without a
//! broken disk. Off unless a test arms it; costs one atomic load per write.

use std::sync::atomic::{AtomicU32, Ordering};

/// How many of the next outcome writes (`complete`, `release`) fail.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    failing_writes: AtomicU32,
}

impl Faults {
    pub(crate) fn arm(&self, writes: u32) {
        self.failing_writes.store(writes, Ordering::SeqCst);
    }

    /// Whether this write is one that must fail (and counts it).
    pub(crate) fn take(&self) -> bool {
        self.failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

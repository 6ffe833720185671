//! Back-pressure: at most `max_concurrent_calls` MCP calls at once, the rest
//! refused at once.
//!
//! Why refuse rather than queue: the sandbox already queues calls beyond its
//! slots, which suits one CLI process; a server facing many clients would let
//! that queue grow without bound, each waiter holding a connection and memory
//! while its client's own timeout runs out. A refusal (`overloaded`, a tool
//! result with `isError`) tells the client at once to back off, and the limit
//! is the same number the sandbox sizes its instance pool with.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The server's call slots.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot, held until the permit drops, or `None` when all are taken.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so an error means no free slot.
        self.slots.clone().try_acquire_owned().ok()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The refusal's text.
    pub fn refusal(&self) -> String {
        format!(
            "the server is already running its limit of {} concurrent calls \
             (sandbox.max_concurrent_calls); retry later",
            self.limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_frees_on_drop() {
        let admission = Admission::new(1);
        let first = admission.try_admit().expect("a free slot");
        assert!(admission.try_admit().is_none());
        drop(first);
        assert!(admission.try_admit().is_some());
    }
}

//! The one place wasmtime is configured. Everything a tool can do to the
//! host is decided here and in `capabilities.rs`.
//!
//! - **Fuel** bounds compute deterministically: the same call burns the same
//!   fuel on any machine, so `out_of_fuel` is reproducible.
//! - **Epoch interruption** bounds wall-clock time inside wasm: a ticker thread
//!   bumps the epoch every [`TICK`] while a call runs (and sleeps while none
//!   does); each store's deadline callback either
//!   yields to tokio (so a spinning guest never monopolises an executor
//!   thread) or, past the call's deadline, stops it.
//! - **The pooling allocator** pre-reserves instance, memory, table and stack
//!   slots, so a fresh instance per call costs microseconds, not mmaps.
//!   Where the kernel has `PAGEMAP_SCAN` (Linux 6.7+), a slot is reset by
//!   zeroing the pages the last call touched, up to [`KEEP_RESIDENT`],
//!   instead of `madvise`-ing them away: the next call then takes no page
//!   faults on them (the warm call went from about 33 to 15 µs). Elsewhere
//!   wasmtime's default `madvise` reset stays. Zeroed either way, so
//!   nothing of one call is visible to the next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::MAX_WASM_STACK;

/// How often the epoch advances: the resolution of wasm-side deadlines and of
/// cooperative yields.
pub const TICK: Duration = Duration::from_millis(1);

/// How long the ticker keeps ticking after the last call ends.
pub const LINGER: Duration = Duration::from_millis(50);

/// Core instances, memories and tables one tool component may use. A Rust
/// `wasm32-wasip2` component has one main module plus a couple of shims; a
/// componentize-py one links CPython and its libraries as 14 core
/// instances, and a ComponentizeJS one carries StarlingMonkey. The pool
/// reserves address space for these per concurrent call, not memory.
const CORE_INSTANCES_PER_CALL: u32 = 32;
const TABLES_PER_CALL: u32 = 8;
const MEMORIES_PER_CALL: u32 = 2;

/// The per-component pool limits, as recorded beside a component the pool
/// refused (`metadata`): a build with other limits tries it again.
pub(crate) fn pool_limits() -> String {
    format!(
        "core {CORE_INSTANCES_PER_CALL}, memories {MEMORIES_PER_CALL}, tables {TABLES_PER_CALL}"
    )
}

/// Every wasm32 memory fits in 4 GiB; the real per-call limit is enforced by
/// the store's resource limiter, so the pool's slots can all be this size.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// Per memory and table slot, how much stays resident (zeroed, not
/// decommitted) between calls: a small tool's whole working set (a Rust
/// `wasm32-wasip2` guest touches well under 1 MiB). The cost is that much
/// resident memory per slot used, at most `max_concurrent_calls` x
/// ([`MEMORIES_PER_CALL`] + [`TABLES_PER_CALL`]) slots.
pub const KEEP_RESIDENT: usize = 1 << 20;

/// Builds the engine, its pool sized for `max_concurrent_calls` at once.
pub(crate) fn build(max_concurrent_calls: u32) -> wasmtime::Result<Engine> {
    let n = max_concurrent_calls;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n * CORE_INSTANCES_PER_CALL)
        .total_memories(n * MEMORIES_PER_CALL)
        .total_tables(n * TABLES_PER_CALL)
        .total_stacks(n)
        .max_memory_size(MAX_MEMORY_BYTES)
        .max_core_instances_per_component(CORE_INSTANCES_PER_CALL)
        .max_memories_per_component(MEMORIES_PER_CALL)
        .max_tables_per_component(TABLES_PER_CALL)
        .pagemap_scan(Enabled::Auto);
    // Without the scan, keeping pages resident means zeroing all of them
    // with `memset` on every call, touched or not: `madvise` is cheaper.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
    }

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(MAX_WASM_STACK + (1 << 20))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances an engine's epoch every [`TICK`] while at least one call runs,
/// and for [`LINGER`] after the last one ends; then sleeps (parked on a
/// condition variable, no wake-ups) until a call starts: an idle host costs
/// no CPU. Stops when dropped.
///
/// Why not tick forever: a 1 ms ticker wakes the CPU a thousand times a
/// second for nothing on a host that mostly waits for a model. Why linger:
/// most calls are shorter than a tick, and parking after each one cost every
/// call a wake-up of this thread and a signal to it (decision 0092); under
/// steady traffic the ticker now just ticks.
pub(crate) struct Ticker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<TickState>,
    wake: Condvar,
    /// Epochs advanced so far (for tests and diagnostics).
    ticks: AtomicU64,
}

#[derive(Default)]
struct TickState {
    /// Calls running now.
    active: usize,
    /// Whether the thread is parked, waiting for a call.
    parked: bool,
    stop: bool,
}

/// Keeps the ticker running while held: one per running call.
pub(crate) struct Running {
    shared: Arc<Shared>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared {
            state: Mutex::new(TickState::default()),
            wake: Condvar::new(),
            ticks: AtomicU64::new(0),
        });
        let engine = engine.clone();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("toolhost-epoch".into())
            .spawn(move || {
                let linger = LINGER.as_millis() / TICK.as_millis().max(1);
                let mut idle_ticks = 0;
                loop {
                    {
                        let mut state = lock(&theirs.state);
                        idle_ticks = if state.active == 0 { idle_ticks + 1 } else { 0 };
                        while state.active == 0 && idle_ticks > linger && !state.stop {
                            state.parked = true;
                            state = theirs.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                            idle_ticks = 0;
                        }
                        state.parked = false;
                        if state.stop {
                            return;
                        }
                    }
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                    theirs.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(Ticker {
            shared,
            thread: Some(thread),
        })
    }

    /// Marks a call as running until the guard drops.
    pub(crate) fn enter(&self) -> Running {
        let mut state = lock(&self.shared.state);
        state.active += 1;
        if state.parked {
            self.shared.wake.notify_one();
        }
        drop(state);
        Running {
            shared: self.shared.clone(),
        }
    }

    /// Whether the thread is parked (no call runs, nothing ticks).
    pub(crate) fn is_parked(&self) -> bool {
        lock(&self.shared.state).parked
    }

    /// Epochs advanced so far.
    pub(crate) fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.shared.state).active -= 1;
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<TickState>) -> std::sync::MutexGuard<'_, TickState> {
    // Plain counters: a panic while held leaves them usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn ticks_only_while_a_call_runs() {
        let engine = Engine::new(Config::new().epoch_interruption(true)).unwrap();
        let ticker = Ticker::start(&engine).unwrap();
        wait_until("the idle ticker parks", || ticker.is_parked());
        let before = ticker.ticks();
        let running = ticker.enter();
        wait_until("a running call makes it tick", || {
            ticker.ticks() >= before + 3
        });
        drop(running);
        wait_until("it parks again", || ticker.is_parked());
        // Parked means blocked on the condition variable: nothing ticks.
        let parked_at = ticker.ticks();
        std::thread::sleep(Duration::from_millis(20));
        assert!(ticker.is_parked());
        assert_eq!(ticker.ticks(), parked_at);
    }
}

//! The one place wasmtime is configured. Everything a tool can do to the
//! host is decided here and in `capabilities.rs`.
//!
//! - **Fuel** bounds compute deterministically: the same call burns the same
//!   fuel on any machine, so `out_of_fuel` is reproducible.
//! - **Epoch interruption** bounds wall-clock time inside wasm: a ticker thread
//!   bumps the epoch every [`TICK`]; each store's deadline callback either
//!   yields to tokio (so a spinning guest never monopolises an executor
//!   thread) or, past the call's deadline, stops it.
//! - **The pooling allocator** pre-reserves instance, memory, table and stack
//!   slots, so a fresh instance per call costs microseconds, not mmaps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::MAX_WASM_STACK;

/// How often the epoch advances: the resolution of wasm-side deadlines and of
/// cooperative yields.
pub const TICK: Duration = Duration::from_millis(1);

/// Core instances, memories and tables one tool component may use. A Rust
/// `wasm32-wasip2` component has one main module plus a couple of shims.
const CORE_INSTANCES_PER_CALL: u32 = 8;
const TABLES_PER_CALL: u32 = 8;
const MEMORIES_PER_CALL: u32 = 2;

/// Every wasm32 memory fits in 4 GiB; the real per-call limit is enforced by
/// the store's resource limiter, so the pool's slots can all be this size.
const MAX_MEMORY_BYTES: usize = 4 << 30;

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
        .max_tables_per_component(TABLES_PER_CALL);

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

/// Advances an engine's epoch every [`TICK`] until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("toolhost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! The engine, its linker and its epoch ticker, built on first need.
//!
//! Building them is most of a millisecond (the pooling allocator's
//! reservations, the ISA detection, hundreds of WASI and HTTP functions put
//! into the linker, a thread), and a start that only lists tools, or a call
//! whose result is replayed from the store, runs no wasm at all. So the
//! sandbox builds them the first time something must be compiled, loaded or
//! run, and never otherwise.

use std::sync::{Arc, OnceLock};

use wasmtime::Engine;
use wasmtime::component::Linker;

use super::capabilities::HostState;
use super::engine;

/// What running wasm needs. The ticker is declared last: dropped after
/// everything that might still run wasm.
pub(crate) struct Wasm {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub ticker: engine::Ticker,
}

/// A [`Wasm`] built on first use, shared by clones.
#[derive(Clone)]
pub(crate) struct LazyWasm {
    cell: Arc<OnceLock<Result<Wasm, String>>>,
    max_concurrent_calls: u32,
}

impl LazyWasm {
    pub(crate) fn new(max_concurrent_calls: u32) -> Self {
        LazyWasm {
            cell: Arc::default(),
            max_concurrent_calls,
        }
    }

    /// The engine, linker and ticker, built now if not yet; `Err` says why
    /// wasmtime refused (say, no virtual memory for the pool).
    pub(crate) fn get(&self) -> Result<&Wasm, String> {
        self.cell
            .get_or_init(|| build(self.max_concurrent_calls))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The built one, if something has needed it.
    pub(crate) fn started(&self) -> Option<&Wasm> {
        self.cell.get().and_then(|r| r.as_ref().ok())
    }

    /// Why it could not be built, if it was tried and failed.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.cell
            .get()
            .and_then(|r| r.as_ref().err())
            .map(String::as_str)
    }
}

fn build(max_concurrent_calls: u32) -> Result<Wasm, String> {
    let engine = engine::build(max_concurrent_calls).map_err(|e| format!("{e:#}"))?;
    let ticker = engine::Ticker::start(&engine).map_err(|e| e.to_string())?;
    let mut linker: Linker<HostState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("{e:#}"))?;
    // wasi:http, sent through the egress checks (capabilities::HostState).
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| format!("{e:#}"))?;
    Ok(Wasm {
        engine,
        linker,
        ticker,
    })
}

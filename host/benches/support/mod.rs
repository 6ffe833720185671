//! What the benches share (included by `#[path]`).

#![allow(dead_code)]

pub mod pairs;
pub mod stores;

/// The benches' runtime: two workers, as many as this machine's cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

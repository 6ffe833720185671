//! Sandbox benchmarks, each beside its baseline in the same run:
//!
//! - `call/toolhost_warm`: a warm call of the trivial `echo` tool through the
//!   whole host (schema check, fresh store, fuel, epoch deadline, memory
//!   limiter, capped logs, output checks) with all limits on;
//! - `call/raw_wasmtime`: plain wasmtime (default config, typed bindings, a
//!   bare WASI context) instantiating and calling the same component, and
//!   `call/raw_wasmtime_pooling`, the same with the pooling allocator, which
//!   isolates what toolhost's own layers cost;
//! - `call/native_subprocess`: what a host without wasm would do, a native
//!   process per call (`cat`, fed the input on stdin);
//! - `load/compile` against `load/cached`: opening a sandbox on the `jq` tool
//!   with no artifact cache against one with a warm cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};
use toolhost::sandbox::{CallRequest, EXAMPLES_DIR, Sandbox, SandboxOptions};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod raw {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "tool",
        exports: { default: async },
    });
}

const INPUT: &str = r#"{"message":"hello"}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A directory holding just one example tool.
fn dir_with(tool: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let name = format!("{tool}.wasm");
    std::fs::copy(Path::new(EXAMPLES_DIR).join(&name), dir.path().join(&name))
        .expect("copy the tool");
    dir
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn call_benches(c: &mut Criterion) {
    let rt = runtime();
    let tools = dir_with("echo");
    let sandbox = rt
        .block_on(Sandbox::open(SandboxOptions::for_dir(tools.path())))
        .expect("open the sandbox");
    // Sanity: the benchmarked call works.
    let out = rt.block_on(sandbox.call("echo", INPUT, CallRequest::default()));
    assert_eq!(out.expect("echo works").output["message"], "hello");

    let mut group = c.benchmark_group("call");
    group.bench_function("toolhost_warm", |b| {
        b.iter(|| {
            rt.block_on(sandbox.call("echo", INPUT, CallRequest::default()))
                .expect("echo works")
        })
    });

    let mut pooling = Config::new();
    pooling.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::new(),
    ));
    for (name, config) in [
        ("raw_wasmtime", Config::new()),
        ("raw_wasmtime_pooling", pooling),
    ] {
        let engine = Engine::new(&config).expect("an engine");
        let component =
            Component::from_file(&engine, tools.path().join("echo.wasm")).expect("compile echo");
        let mut linker = Linker::<Bare>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("add WASI");
        let pre = raw::ToolPre::new(linker.instantiate_pre(&component).expect("link"))
            .expect("the tool world");
        let ctx = raw::toolhost::tool::types::CallContext {
            idempotency_key: String::new(),
            attempt: 1,
            deadline_ms: 10_000,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let state = Bare {
                        wasi: WasiCtx::builder().build(),
                        table: ResourceTable::new(),
                    };
                    let mut store = Store::new(&engine, state);
                    let tool = pre
                        .instantiate_async(&mut store)
                        .await
                        .expect("instantiate");
                    tool.call_call(&mut store, &ctx, INPUT)
                        .await
                        .expect("call")
                        .expect("echo works")
                })
            })
        });
    }

    group.bench_function("native_subprocess", |b| {
        b.iter(|| {
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn cat");
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(INPUT.as_bytes())
                .expect("write the input");
            let out = child.wait_with_output().expect("cat finishes");
            assert_eq!(out.stdout, INPUT.as_bytes());
        })
    });
    group.finish();
}

fn load_benches(c: &mut Criterion) {
    let rt = runtime();
    let tools = dir_with("jq");
    let cache = tempfile::tempdir().expect("a temp dir");
    let open = |cache_dir: Option<PathBuf>| {
        let mut options = SandboxOptions::for_dir(tools.path());
        options.cache_dir = cache_dir;
        let sandbox = rt.block_on(Sandbox::open(options)).expect("open");
        assert!(sandbox.tool("jq").is_some());
        sandbox
    };
    // Warm the cache once.
    open(Some(cache.path().to_path_buf()));

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("compile", |b| b.iter(|| open(None)));
    group.bench_function("cached", |b| {
        b.iter(|| open(Some(cache.path().to_path_buf())))
    });
    group.finish();
}

criterion_group!(benches, call_benches, load_benches);
criterion_main!(benches);

//! Tools in Rust, Python and JavaScript side by side on the same call
//! (issue 20's per-language numbers): the echo tool in each language
//! (`tools/echo`, `tools/python/echo_py`, `tools/js/echo_js`), through the
//! whole host, in one run.
//!
//! - `languages/warm_call/LANG`: a call with the component loaded;
//! - `languages/load_cached/LANG`: opening a sandbox on the tool and loading
//!   its component from a warm artifact cache (what every later process
//!   pays);
//! - the compile a first call would pay (and `tools build` pays instead) is
//!   timed once per language and printed, not sampled: at 10-30 s a
//!   component, criterion's ten samples would take the bench ten minutes.
//!
//! Each component's size is printed at the start. The Python and JS
//! components are built with the real `toolhost tools new` + `tools build`
//! (componentize-py must be installed, `pip install componentize-py==0.25.1`,
//! and ComponentizeJS in `guest-sdk/js`, `npm ci --prefix guest-sdk/js`).

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use toolhost::sandbox::{CallRequest, EXAMPLES_DIR, Sandbox, SandboxOptions};

const INPUT: &str = r#"{"message":"hello"}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Runs the binary with its XDG directories under `cwd`, so a bench never
/// writes the user's own cache or config.
fn toolhost(cwd: &Path, args: &[&str]) {
    let xdg = |d: &str| cwd.join(".xdg").join(d);
    let out = Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args(args)
        .current_dir(cwd)
        .env("XDG_CACHE_HOME", xdg("cache"))
        .env("XDG_CONFIG_HOME", xdg("config"))
        .env("XDG_DATA_HOME", xdg("data"))
        .env("XDG_STATE_HOME", xdg("state"))
        .output()
        .expect("run toolhost");
    assert!(
        out.status.success(),
        "toolhost {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory holding just `name`.wasm, for each language.
fn tool_dir(lang: &str, name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = format!("{name}.wasm");
    match lang {
        "rust" => {
            std::fs::copy(
                Path::new(EXAMPLES_DIR).join("echo.wasm"),
                dir.path().join(&file),
            )
            .expect("copy echo");
        }
        _ => {
            // The project `tools new` writes, with the example's module.
            let project = dir.path().join("project");
            let project_arg = project.to_str().expect("a UTF-8 path");
            toolhost(
                dir.path(),
                &["tools", "new", name, "--lang", lang, "--dir", project_arg],
            );
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let source = root.join("tools").join(lang).join(name);
            let module = if lang == "js" { "tool.js" } else { "app.py" };
            std::fs::copy(source.join(module), project.join(module)).expect("copy the module");
            if lang == "js" {
                std::os::unix::fs::symlink(
                    root.join("guest-sdk/js/node_modules"),
                    project.join("node_modules"),
                )
                .expect("link ComponentizeJS");
            }
            toolhost(dir.path(), &["tools", "build", project_arg]);
            std::fs::rename(project.join(&file), dir.path().join(&file)).expect("move it");
            std::fs::remove_dir_all(&project).expect("clean up");
        }
    }
    let size = std::fs::metadata(dir.path().join(&file))
        .expect("built")
        .len();
    eprintln!("{lang}: {file} is {:.1} MB", size as f64 / 1e6);
    dir
}

fn open(rt: &tokio::runtime::Runtime, dir: &Path, cache: Option<PathBuf>, name: &str) -> Sandbox {
    let mut options = SandboxOptions::for_dir(dir);
    options.key_dir = cache.as_ref().map(|c| c.with_extension("key"));
    options.cache_dir = cache;
    let sandbox = rt.block_on(Sandbox::open(options)).expect("open");
    rt.block_on(sandbox.load(name)).expect("load");
    sandbox
}

fn languages(c: &mut Criterion) {
    let rt = runtime();
    let cache = tempfile::tempdir().expect("a temp dir");
    let cache_dir = cache.path().join("artifacts");
    let tools = [("rust", "echo"), ("python", "echo_py"), ("js", "echo_js")];
    let dirs: Vec<_> = tools.iter().map(|(l, n)| tool_dir(l, n)).collect();

    let mut group = c.benchmark_group("languages");
    for ((lang, name), dir) in tools.iter().zip(&dirs) {
        let sandbox = open(&rt, dir.path(), Some(cache_dir.clone()), name);
        let out = rt.block_on(sandbox.call(name, INPUT, CallRequest::default()));
        assert_eq!(out.expect("echo works").output["message"], "hello");
        group.bench_function(format!("warm_call/{lang}"), |b| {
            b.iter(|| {
                rt.block_on(sandbox.call(name, INPUT, CallRequest::default()))
                    .expect("echo works")
            })
        });
    }
    group.sample_size(10);
    for ((lang, name), dir) in tools.iter().zip(&dirs) {
        group.bench_function(format!("load_cached/{lang}"), |b| {
            b.iter(|| open(&rt, dir.path(), Some(cache_dir.clone()), name))
        });
    }
    group.finish();
    for ((lang, name), dir) in tools.iter().zip(&dirs) {
        let started = std::time::Instant::now();
        open(&rt, dir.path(), None, name);
        eprintln!(
            "{lang}: compile (no cache) took {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
}

criterion_group!(benches, languages);
criterion_main!(benches);

//! Shared helpers: sandboxes over the built tools, the binary, temp dirs,
//! and (in `model_server`) a fault-injecting model server.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use toolhost::sandbox::{CallError, CallOutput, CallRequest, Overrides, Sandbox, SandboxOptions};

/// The tools the binary embeds (the examples), in name order.
pub const BUILT_IN_TOOLS: &[&str] = &[
    "calc",
    "echo",
    "http_fetch",
    "jq",
    "markdown",
    "notes",
    "pay",
    "slow",
];

pub fn examples_dir() -> PathBuf {
    PathBuf::from(toolhost::sandbox::EXAMPLES_DIR)
}

pub fn hostile_dir() -> PathBuf {
    PathBuf::from(toolhost::sandbox::HOSTILE_DIR)
}

/// Compiled components are cached here between test runs; each test that
/// is about caching makes its own directory instead.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
}

/// Opens a sandbox outside any test's runtime, so it can be shared: the
/// sandbox is runtime-agnostic (its ticker is a thread, its engine plain data).
/// It runs on its own thread because the first caller is usually inside a
/// test's runtime, where blocking on another runtime is not allowed.
fn open_shared(dir: PathBuf) -> Sandbox {
    let mut options = SandboxOptions::for_dir(dir);
    options.cache_dir = Some(shared_cache());
    // The key that authenticates the cache, beside it: tests never touch
    // the user's own key.
    options.key_dir = Some(shared_cache().with_extension("key"));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime
            .block_on(Sandbox::open(options))
            .expect("open the sandbox")
    })
    .join()
    .expect("the opening thread")
}

/// The example tools, loaded once per test binary.
pub fn examples() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| open_shared(examples_dir()))
}

/// The hostile tools beside two well-behaved ones (`echo`, `calc`), loaded
/// once per test binary: every hostile test then proves the same host still
/// serves a normal call.
pub fn hostile() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-and-examples");
        std::fs::create_dir_all(&dir).expect("create the mixed tools dir");
        let hostile = std::fs::read_dir(hostile_dir()).expect("list hostile tools");
        for entry in hostile.flatten() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy a hostile tool");
        }
        for name in ["echo.wasm", "calc.wasm"] {
            std::fs::copy(examples_dir().join(name), dir.join(name)).expect("copy an example");
        }
        open_shared(dir)
    })
}

/// Calls `tool` with default limits.
pub async fn call(sandbox: &Sandbox, tool: &str, input: &str) -> Result<CallOutput, CallError> {
    sandbox.call(tool, input, CallRequest::default()).await
}

/// Calls `tool` with per-call limit overrides.
pub async fn call_with(
    sandbox: &Sandbox,
    tool: &str,
    input: &str,
    overrides: Overrides,
) -> Result<CallOutput, CallError> {
    let request = CallRequest {
        overrides,
        ..CallRequest::default()
    };
    sandbox.call(tool, input, request).await
}

/// The environment every run of the binary gets, so no test reads or writes
/// the real user's directories: the data directory (store, user tools) and
/// config directory are the test's own (`cwd`), as `./.toolhost` used to be;
/// the cache and the artifact key are shared by the whole suite (under the
/// target's temp directory), so a tool compiles once per suite, not once
/// per test.
pub fn state_env(cwd: &Path) -> Vec<(&'static str, PathBuf)> {
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xdg");
    vec![
        ("HOME", shared.join("home")),
        ("XDG_DATA_HOME", cwd.join(".xdg-data")),
        ("XDG_CONFIG_HOME", cwd.join(".xdg-config")),
        ("XDG_CACHE_HOME", shared.join("cache")),
        ("XDG_STATE_HOME", shared.join("state")),
    ]
}

/// How long one run of the binary may take before the test fails: every
/// command the suite runs finishes in seconds, so a hang is a regression.
pub const BINARY_DEADLINE: Duration = Duration::from_secs(120);

/// Runs the real `toolhost` binary in `cwd`, killing it (and failing the
/// test) if it has not exited within [`BINARY_DEADLINE`].
pub fn toolhost(cwd: &Path, args: &[&str]) -> Output {
    run_binary(
        Path::new(env!("CARGO_BIN_EXE_toolhost")),
        cwd,
        args,
        &state_env(cwd),
    )
}

/// Writes `text` as `dir/toolhost.toml` and trusts it as a user would
/// (`toolhost config trust`), so runs from `dir` use it.
pub fn write_trusted_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("toolhost.toml");
    std::fs::write(&path, text).expect("write toolhost.toml");
    let out = toolhost(dir, &["config", "trust"]);
    assert!(
        out.status.success(),
        "config trust: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Runs `binary` in `cwd` with `env` (the directories it may use) set, as
/// [`toolhost`] does.
pub fn run_binary(binary: &Path, cwd: &Path, args: &[&str], env: &[(&str, PathBuf)]) -> Output {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("TOOLHOST_LOG")
        .stdin(Stdio::null());
    output_within(cmd, BINARY_DEADLINE)
}

/// Runs `cmd` with stdout and stderr captured, killing it (and failing the
/// test) if it has not exited within `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run toolhost");
    wait_within(child, limit)
}

/// Waits for `child` (stdout and stderr piped), draining both pipes on
/// threads so a chatty child never blocks on a full pipe; kills it and
/// fails the test if it has not exited within `limit`.
pub fn wait_within(mut child: std::process::Child, limit: Duration) -> Output {
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("toolhost did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The process's stdout parsed as one JSON value.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub mod browser;
pub mod js;
pub mod model_server;
pub mod otlp;
pub mod payments;
pub mod pg;
pub mod python;
pub mod serve;
pub mod world;

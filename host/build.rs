//! Builds the example and hostile tools for `wasm32-wasip2`, so that a plain
//! `cargo build` or `cargo test` from a fresh clone has every component it
//! runs. As in wasmtime's `test-programs/artifacts`, this runs a nested
//! `cargo build` with its own target directory (the outer one is locked).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example tools: embedded in the binary as its built-in tools.
const EXAMPLES: &[&str] = &[
    "calc",
    "jq",
    "markdown",
    "slow",
    "echo",
    "notes",
    "http_fetch",
    "pay",
];
/// Tools that attack the sandbox; tests load them from their own directory.
const HOSTILE: &[&str] = &[
    "spin",
    "residue",
    "membomb",
    "recurse",
    "bigout",
    "flood",
    "panic",
    "snoop",
    "sneak",
    "plant",
    "dialer",
    "otherworld",
    "misbehave",
];
/// Hostile tools no Rust toolchain can emit, written in the component text
/// format by their own crates: installed beside the built hostile tools.
const HANDWRITTEN: &[(&str, Assemble)] = &[("twomem", || {
    hostile_twomem::component().map_err(|e| e.to_string())
})];
/// Assembles one hand-written component.
type Assemble = fn() -> Result<Vec<u8>, String>;
/// Tools for the end-to-end tests of effects (claims, crashes).
/// `legacy` is a component of the frozen 0.1.0 world (decision 0083).
const TESTKIT: &[&str] = &["append", "tally", "legacy", "send"];
const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-tools";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the workspace")
        .to_path_buf();
    // What the Rust tools are built from. Not the Python and JavaScript
    // trees (`tools/python`, `tools/js`, `guest-sdk/python`,
    // `guest-sdk/js`): a directory is watched file by file, so their
    // `node_modules`, `__pycache__` and build scratch would rebuild this
    // crate on every `npm ci` or test run, and none of it is built here
    // (the files the binary embeds are `include_str!`s, which cargo
    // tracks itself).
    for watched in ["guest-sdk/rust", "guest-sdk/wit", "host/wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // Each Rust tool's directory (a new one is also a new entry in the lists
    // below, so an edit of this file).
    let tools = root.join("tools");
    for entry in std::fs::read_dir(&tools).expect("the tools directory") {
        let path = entry.expect("a tools entry").path();
        let name = path.file_name().unwrap_or_default();
        if name != "python" && name != "js" {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    // One directory for every outer profile (dev, release, clippy's check),
    // so the tools are built once, not once per profile.
    let outer_target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { root.join(p) } else { p })
        .unwrap_or_else(|| root.join("target"));
    let wasm_target = outer_target.join("wasm-tools");

    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "--quiet", "--locked", "--target", TARGET])
        .arg(format!("--profile={PROFILE}"))
        .arg("--target-dir")
        .arg(&wasm_target);
    for name in EXAMPLES {
        cmd.args(["-p", name]);
    }
    for name in HOSTILE {
        cmd.args(["-p", &format!("hostile-{name}")]);
    }
    for name in TESTKIT {
        cmd.args(["-p", &format!("testkit-{name}")]);
    }
    // The outer build's flags and wrappers (clippy-driver, coverage
    // instrumentation) are for the host, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the tools");
    if !status.success() {
        panic!(
            "building the tools for {TARGET} failed (is the target installed? \
             `rustup target add {TARGET}`)"
        );
    }

    let built = wasm_target.join(TARGET).join(PROFILE);
    // Installed per build of this package (OUT_DIR), so two checkouts that
    // share a target directory never rewrite each other's tools directory.
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let examples = out.join("examples");
    let hostile = out.join("hostile");
    install(
        &built,
        &examples,
        EXAMPLES.iter().map(|n| (n.to_string(), n.to_string())),
    );
    install(
        &built,
        &hostile,
        HOSTILE
            .iter()
            .map(|n| (format!("hostile_{n}"), n.to_string())),
    );
    for (name, assemble) in HANDWRITTEN {
        let bytes = assemble().unwrap_or_else(|e| panic!("assemble {name}: {e}"));
        write_if_changed(&hostile.join(format!("{name}.wasm")), &bytes);
    }
    let testkit = out.join("testkit");
    install(
        &built,
        &testkit,
        TESTKIT
            .iter()
            .map(|n| (format!("testkit_{n}"), n.to_string())),
    );
    embed(&out, &examples);
    println!("cargo:rustc-env=TOOLHOST_TESTKIT_DIR={}", testkit.display());
    println!(
        "cargo:rustc-env=TOOLHOST_EXAMPLES_DIR={}",
        examples.display()
    );
    println!("cargo:rustc-env=TOOLHOST_HOSTILE_DIR={}", hostile.display());
}

/// Writes `OUT_DIR/builtin_tools.rs`: the example tools as `include_bytes!`
/// with their blake3 digests, so the binary carries them (an installed or
/// moved binary has no build tree to read) and never hashes them at start.
fn embed(out: &Path, examples: &Path) {
    let mut table = String::from(
        "// Generated by host/build.rs: the example tools embedded in the binary.\n\
         pub(crate) static BUILTIN: &[Builtin] = &[\n",
    );
    for name in EXAMPLES {
        let path = examples.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        table.push_str(&format!(
            "    Builtin {{ file: {file:?}, digest: {digest:?}, bytes: include_bytes!({path:?}) }},\n",
            file = format!("{name}.wasm"),
            digest = blake3::hash(&bytes).to_hex().to_string(),
            path = path.display().to_string(),
        ));
    }
    table.push_str("];\n");
    write_if_changed(&out.join("builtin_tools.rs"), table.as_bytes());
}

/// Writes `bytes` to `to` through a temporary file and a rename, unless it
/// already holds them.
fn write_if_changed(to: &Path, bytes: &[u8]) {
    if std::fs::read(to).ok().as_deref() != Some(bytes) {
        let dir = to.parent().expect("a tool path has a directory");
        let name = to
            .file_name()
            .expect("a tool path has a name")
            .to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, bytes).expect("write a tool");
        std::fs::rename(&tmp, to).expect("install a tool");
    }
}

/// Copies `<built>/<artifact>.wasm` to `<dir>/<name>.wasm` through a
/// temporary file and a rename, so a test reading the directory while another
/// build installs never sees half a file; then removes `.wasm` files that are
/// no longer built, so a renamed tool does not linger.
fn install(built: &Path, dir: &Path, tools: impl Iterator<Item = (String, String)>) {
    std::fs::create_dir_all(dir).expect("create the tools directory");
    let mut keep = Vec::new();
    for (artifact, name) in tools {
        let from = built.join(format!("{artifact}.wasm"));
        let to = dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        write_if_changed(&to, &bytes);
        keep.push(to);
    }
    for entry in std::fs::read_dir(dir)
        .expect("list the tools directory")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") && !keep.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

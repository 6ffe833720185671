//! Python tools built from source for the tests, by the real `toolhost
//! tools build` (componentize-py): the examples in `tools/python/`, each
//! with a copy of the SDK (`guest-sdk/python`) and the WIT, as `tools new`
//! lays a project out.
//!
//! A build takes 10-15 s and its compile into the shared artifact cache
//! 10-20 s more, so each tool is built once per source digest: the output
//! lives under the target's temp directory, named by a blake3 of every
//! source file, and later runs reuse it. Without componentize-py the build
//! fails (and so does the test) with the install command: `.ci/run`
//! installs it, so a missing toolchain is a broken machine, never a skip.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{stdout_json, toolhost};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the workspace")
        .to_path_buf()
}

/// Every file under `dir` (sorted, skipping caches), relative to `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read a source dir") {
            let path = entry.expect("a dir entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name == "__pycache__" || name.ends_with(".wasm") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The sources of a project: (where the file goes, where it comes from).
fn sources(tool: &str) -> Vec<(PathBuf, PathBuf)> {
    let root = root();
    let mut all = Vec::new();
    let own = root.join("tools/python").join(tool);
    for f in files(&own) {
        all.push((f.clone(), own.join(&f)));
    }
    let sdk = root.join("guest-sdk/python/toolhost_sdk");
    for f in files(&sdk) {
        all.push((Path::new("toolhost_sdk").join(&f), sdk.join(&f)));
    }
    all.push((
        PathBuf::from("wit/world.wit"),
        root.join("guest-sdk/wit/world.wit"),
    ));
    let wit = root.join("guest-sdk/python/wit");
    for f in files(&wit) {
        all.push((Path::new("wit").join(&f), wit.join(&f)));
    }
    all
}

static BUILDS: Mutex<()> = Mutex::new(());

/// The directory holding `tool`'s built component `TOOL.wasm` (build it if
/// this source digest was never built).
pub fn built(tool: &str) -> PathBuf {
    // One build at a time: two tests asking for the same tool wait for one.
    let _one = BUILDS.lock().unwrap_or_else(|p| p.into_inner());
    let sources = sources(tool);
    let mut hasher = blake3::Hasher::new();
    for (to, from) in &sources {
        hasher.update(to.to_string_lossy().as_bytes());
        hasher.update(&std::fs::read(from).expect("read a source file"));
    }
    let digest = hasher.finalize().to_hex();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python");
    let dir = base.join(format!("{tool}-{}", &digest[..16]));
    let wasm = dir.join(format!("{tool}.wasm"));
    if wasm.is_file() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    for (to, from) in &sources {
        let to = dir.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    }
    let out = toolhost(&dir, &["--json", "tools", "build", "."]);
    assert!(
        out.status.success(),
        "tools build of {tool} failed (exit {:?}): {}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["name"], tool, "{report}");
    assert!(wasm.is_file(), "{report}");
    dir
}

/// The Python SDK's own directory (for its unit tests).
pub fn sdk_dir() -> PathBuf {
    root().join("guest-sdk/python")
}

/// An example's source directory (for its unit tests).
pub fn source_dir(tool: &str) -> PathBuf {
    root().join("tools/python").join(tool)
}

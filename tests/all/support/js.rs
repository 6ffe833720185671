//! JavaScript and TypeScript tools for the suite, built from source with
//! the JS SDK.
//!
//! Each project (the `tools new --lang js` template as `js_hello`, and
//! `tools/js/*`) is staged as `toolhost tools new --lang js|ts` lays a
//! project out (its files, copies of `toolhost.js`, `toolhost.d.ts`,
//! `build.mjs`, `typescript.mjs` and `wit/world.wit`, and `node_modules`
//! from `guest-sdk/js`), then built with its `build.mjs` (ComponentizeJS,
//! after the TypeScript compiler for a project whose source is `tool.ts`). That happens once per test process, and
//! not at all when an earlier run built the same sources: the results are
//! kept under the target's temp directory, keyed by a hash of every source.
//! The first process also compiles the components into the cache its
//! commands share, so no test waits on a 20 s compile.
//!
//! Node 20.16+, componentize-js and typescript (`npm ci --prefix
//! guest-sdk/js`, which `.ci/run` runs) are required: without them every JS
//! test fails, naming the command. They never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{output_within, state_env};

/// A `node build.mjs` of one project, or the first compile of them all
/// (20-30 s each alone; far more when the machine is busy).
const BUILD_DEADLINE: Duration = Duration::from_secs(900);

/// The install command the failures name.
pub const INSTALL: &str = "npm ci --prefix guest-sdk/js";

/// The projects: (tool name, source directory under the repository, whether
/// it is the template with `{{name}}` placeholders).
const PROJECTS: &[(&str, &str, bool)] = &[
    ("js_hello", "guest-sdk/js/template", true),
    ("template_text", "tools/js/template_text", false),
    ("js_effects", "tools/js/testkit/effects", false),
    ("js_hostile", "tools/js/testkit/hostile", false),
    ("word_stats", "tools/js/word_stats", false),
];

/// The SDK files a project gets beside its own (a JavaScript project needs
/// only the first two; the TypeScript ones are harmless there).
pub const SDK_FILES: &[&str] = &[
    "guest-sdk/js/toolhost.js",
    "guest-sdk/js/build.mjs",
    "guest-sdk/js/toolhost.d.ts",
    "guest-sdk/js/typescript.mjs",
];
const WIT: &str = "guest-sdk/wit/world.wit";

/// The built tools and where they were built.
pub struct JsTools {
    /// The components, `NAME.wasm` each: a tools directory.
    pub tools: PathBuf,
    /// The staged projects, `stage/NAME`: `node --test` runs there.
    pub stage: PathBuf,
    /// The compiled-artifact cache (and its key) every command here shares.
    pub cache: PathBuf,
}

impl JsTools {
    /// The config text that shares the tools and the compiled cache.
    pub fn sandbox_config(&self) -> String {
        format!(
            "[sandbox]\nbuiltin_tools = false\ntools_dir = {:?}\ncache_dir = {:?}\nkey_dir = {:?}\n",
            self.tools,
            self.cache,
            self.cache.with_extension("key"),
        )
    }

    /// The staged project of `tool`.
    pub fn project(&self, tool: &str) -> PathBuf {
        self.stage.join(tool)
    }
}

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The JS tools, built (or found built) once per test process.
pub fn js() -> &'static JsTools {
    static TOOLS: OnceLock<JsTools> = OnceLock::new();
    TOOLS.get_or_init(build_all)
}

/// Runs `cmd` within `limit`, failing the test with its output unless it
/// succeeds.
pub fn succeed(mut cmd: Command, what: &str, limit: Duration) -> Output {
    cmd.stdin(Stdio::null());
    let out = output_within(cmd, limit);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Node, componentize-js and typescript are there, or the test fails
/// saying how to install them.
fn check_toolchain(repo: &Path) {
    let version = Command::new("node").arg("--version").output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        other => panic!(
            "the JS tests need Node 20.16 or later (`node` on PATH), then `{INSTALL}`: {other:?}"
        ),
    };
    let parts: Vec<u32> = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    assert!(
        parts.as_slice() >= [20, 16].as_slice(),
        "the JS SDK needs Node 20.16 or later (process.getBuiltinModule); this is {version}"
    );
    for package in ["@bytecodealliance/componentize-js", "typescript"] {
        let installed = repo
            .join("guest-sdk/js/node_modules")
            .join(package)
            .join("package.json");
        assert!(
            installed.is_file(),
            "{package} is not installed: run `{INSTALL}` in {} first",
            repo.display()
        );
    }
}

/// The hash of everything a build reads: the SDK, the WIT, the lock file
/// (the toolchain's version) and every project's files.
fn sources_hash(repo: &Path) -> String {
    let mut files: Vec<PathBuf> = [WIT, "guest-sdk/js/package-lock.json"]
        .iter()
        .chain(SDK_FILES)
        .map(|f| repo.join(f))
        .collect();
    for (_, dir, _) in PROJECTS {
        files.extend(project_files(&repo.join(dir)));
    }
    let mut hasher = blake3::Hasher::new();
    for file in files {
        let text = std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let name = file.strip_prefix(repo).unwrap_or(&file).to_string_lossy();
        for part in [name.as_bytes(), &text] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hasher.finalize().to_hex()[..16].to_string()
}

/// A project's own files (not directories, not what a build leaves).
fn project_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "wasm"))
        .collect();
    files.sort();
    files
}

/// The source `build.mjs` builds a project from: `tool.ts` when it has
/// one, else `tool.js`.
pub fn source_of(project: &Path) -> &'static str {
    if project.join("tool.ts").is_file() {
        "tool.ts"
    } else {
        "tool.js"
    }
}

/// Lays `tool`'s project out in `at`, as `tools new` would.
pub fn stage(repo: &Path, at: &Path, tool: &str, dir: &str, template: bool) {
    std::fs::create_dir_all(at.join("wit")).expect("create the project");
    for file in project_files(&repo.join(dir)) {
        let mut text = std::fs::read_to_string(&file).expect("read a project file");
        if template {
            text = text
                .replace("{{name}}", tool)
                .replace("{{name_snake}}", tool);
        }
        std::fs::write(at.join(file.file_name().expect("a file name")), text)
            .expect("write a project file");
    }
    for file in SDK_FILES {
        let name = Path::new(file).file_name().expect("a file name");
        std::fs::copy(repo.join(file), at.join(name)).expect("copy the SDK");
    }
    std::fs::copy(repo.join(WIT), at.join("wit/world.wit")).expect("copy the WIT");
    std::os::unix::fs::symlink(
        repo.join("guest-sdk/js/node_modules"),
        at.join("node_modules"),
    )
    .expect("link node_modules");
}

fn build_all() -> JsTools {
    let repo = repo();
    check_toolchain(&repo);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("js");
    let done = root.join(sources_hash(&repo));
    let cache = root.join("artifacts");
    let tools = JsTools {
        tools: done.join("tools"),
        stage: done.join("stage"),
        cache,
    };
    if done.join("complete").is_file() {
        return tools;
    }
    // Build beside the final place, then rename: a run killed halfway
    // leaves nothing that looks complete.
    let work = root.join(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let children: Vec<_> = PROJECTS
        .iter()
        .map(|(tool, dir, template)| {
            let project = work.join("stage").join(tool);
            stage(&repo, &project, tool, dir, *template);
            let mut cmd = Command::new("node");
            cmd.current_dir(&project)
                .args(["build.mjs", "--source", source_of(&project), "--wit", "wit"])
                .arg("--out")
                .arg(work.join("tools").join(format!("{tool}.wasm")))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            (*tool, cmd.spawn().expect("run node build.mjs"))
        })
        .collect();
    for (tool, child) in children {
        let out = super::wait_within(child, BUILD_DEADLINE);
        assert!(
            out.status.success(),
            "building {tool} with build.mjs failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let built = JsTools {
        tools: work.join("tools"),
        stage: work.join("stage"),
        cache: tools.cache.clone(),
    };
    warm(&built);
    std::fs::write(work.join("complete"), "").expect("mark the build complete");
    if std::fs::rename(&work, &done).is_err() {
        // Another process finished the same sources first: use its build.
        let _ = std::fs::remove_dir_all(&work);
        assert!(
            done.join("complete").is_file(),
            "no complete build at {}",
            done.display()
        );
    }
    tools
}

/// Compiles every component into the shared cache (`tools list` describes
/// each), so the tests' first calls load compiled artifacts.
fn warm(tools: &JsTools) {
    let dir = tempfile::tempdir().expect("a temp dir");
    super::write_trusted_config(dir.path(), &tools.sandbox_config());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args(["--json", "tools", "list"])
        .current_dir(dir.path())
        .envs(state_env(dir.path()))
        .env_remove("TOOLHOST_LOG");
    let out = succeed(cmd, "toolhost tools list over the JS tools", BUILD_DEADLINE);
    let listed = String::from_utf8_lossy(&out.stdout);
    for (tool, _, _) in PROJECTS {
        assert!(
            listed.contains(&format!("\"{tool}\"")),
            "{tool} is not listed: {listed}"
        );
    }
}

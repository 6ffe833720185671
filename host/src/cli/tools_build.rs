//! `toolhost tools build [DIR] [--install]`: builds a tool project (Rust,
//! Python, JavaScript, TypeScript) with its language's toolchain into
//! `DIR/NAME.wasm`, checks that
//! toolhost loads it, compiles it into the artifact cache (so the first
//! call does not pay for the compile: 10-20 s for a Python or JavaScript
//! guest), and with `--install` copies it into the user's tools directory.
//!
//! A missing toolchain is a usage error (exit 2) that names the command
//! installing it; a build that fails is exit 1 (`build_failed`) with the
//! toolchain's own messages on stderr and its error lines (a TypeScript
//! tool's `tool.ts:14:53: error TS2339: ...`) in the failure's message. The
//! toolchain's output goes to stderr, so `--json` keeps stdout to one
//! document.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Args;
use serde_json::json;
use toolhost::sandbox::{LoadSource, Sandbox, SandboxOptions};

use super::templates::COMPONENTIZE_PY;
use super::tools_new::Lang;
use super::{Env, Failure};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project (default: the current directory).
    dir: Option<PathBuf>,
    /// Also copy the component into the user's tools directory.
    #[arg(long)]
    install: bool,
}

/// The worlds a Python tool may export (`guest-sdk/wit/world.wit` and
/// `guest-sdk/python/wit/http.wit`).
const PYTHON_WORLDS: [&str; 4] = [
    "tool",
    "reconciling-tool",
    "http-tool",
    "reconciling-http-tool",
];

/// A project, as its manifest describes it.
#[derive(Debug)]
struct Project {
    lang: Lang,
    /// The package name: the component is `DIR/NAME.wasm`.
    name: String,
    /// Python: the module defining `WitWorld`; JavaScript and TypeScript:
    /// the source file. All three: the world it exports.
    module: String,
    world: String,
}

fn read_toml(path: &Path) -> Result<toml::Table, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    text.parse::<toml::Table>()
        .map_err(|e| Failure::usage(format!("{} is not valid TOML: {e}", path.display())))
}

fn string_at<'t>(table: &'t toml::Table, keys: &[&str]) -> Option<&'t str> {
    let (last, parents) = keys.split_last()?;
    let mut t = table;
    for k in parents {
        t = t.get(*k)?.as_table()?;
    }
    t.get(*last)?.as_str()
}

/// Which language `dir` is in, from its manifest.
fn detect(dir: &Path) -> Result<Project, Failure> {
    let cargo = dir.join("Cargo.toml");
    let pyproject = dir.join("pyproject.toml");
    if cargo.is_file() {
        let manifest = read_toml(&cargo)?;
        let name = string_at(&manifest, &["package", "name"]).ok_or_else(|| {
            Failure::usage(format!(
                "{} has no [package] name: `tools build` builds one tool crate",
                cargo.display()
            ))
        })?;
        return Ok(Project {
            lang: Lang::Rust,
            name: name.to_string(),
            module: String::new(),
            world: String::new(),
        });
    }
    if pyproject.is_file() {
        let manifest = read_toml(&pyproject)?;
        if manifest
            .get("tool")
            .and_then(|t| t.get("toolhost"))
            .is_none()
        {
            return Err(Failure::usage(format!(
                "{} has no [tool.toolhost] table: add `module = \"app\"` and `world = \"tool\"` under it (or start from `toolhost tools new NAME --lang python`)",
                pyproject.display()
            )));
        }
        let name = string_at(&manifest, &["project", "name"]).ok_or_else(|| {
            Failure::usage(format!("{} has no [project] name", pyproject.display()))
        })?;
        let module = string_at(&manifest, &["tool", "toolhost", "module"]).unwrap_or("app");
        let world = string_at(&manifest, &["tool", "toolhost", "world"]).unwrap_or("tool");
        if !PYTHON_WORLDS.contains(&world) {
            return Err(Failure::usage(format!(
                "{}: [tool.toolhost] world = \"{world}\" is not a toolhost world: use \"tool\", \"reconciling-tool\" (a tool with reconcile=), or \"http-tool\" / \"reconciling-http-tool\" (one that sends HTTP)",
                pyproject.display()
            )));
        }
        return Ok(Project {
            lang: Lang::Python,
            name: name.to_string(),
            module: module.to_string(),
            world: world.to_string(),
        });
    }
    let package = dir.join("package.json");
    if package.is_file() {
        let text = std::fs::read_to_string(&package)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", package.display())))?;
        let manifest: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Failure::usage(format!("{} is not valid JSON: {e}", package.display())))?;
        let Some(section) = manifest.get("toolhost").filter(|t| t.is_object()) else {
            return Err(Failure::usage(format!(
                "{} has no \"toolhost\" section: add {{\"source\": \"tool.js\", \"world\": \"tool\"}} (\"tool.ts\" for TypeScript; or start from `toolhost tools new NAME --lang js|ts`)",
                package.display()
            )));
        };
        let name = manifest["name"]
            .as_str()
            .ok_or_else(|| Failure::usage(format!("{} has no \"name\"", package.display())))?;
        let world = section["world"].as_str().unwrap_or("tool");
        if world != "tool" && world != "reconciling-tool" {
            return Err(Failure::usage(format!(
                "{}: toolhost.world is \"{world}\": use \"tool\", or \"reconciling-tool\" for a tool with reconcile",
                package.display()
            )));
        }
        let default = if dir.join("tool.ts").is_file() && !dir.join("tool.js").is_file() {
            "tool.ts"
        } else {
            "tool.js"
        };
        let source = section["source"].as_str().unwrap_or(default);
        return Ok(Project {
            lang: if is_typescript(source) {
                Lang::Ts
            } else {
                Lang::Js
            },
            name: name.to_string(),
            module: source.to_string(),
            world: world.to_string(),
        });
    }
    Err(Failure::usage(format!(
        "{} has no Cargo.toml, pyproject.toml or package.json: start a project with `toolhost tools new NAME --lang rust|python|js|ts`",
        dir.display()
    )))
}

/// Whether a JavaScript project's source is TypeScript, which build.mjs
/// type-checks and compiles first (as its `isTypeScript` decides).
fn is_typescript(source: &str) -> bool {
    (source.ends_with(".ts") || source.ends_with(".mts"))
        && !(source.ends_with(".d.ts") || source.ends_with(".d.mts"))
}

/// At most this many of a toolchain's lines go into a failure's message.
const MAX_REASONS: usize = 20;

/// The lines of a toolchain's stderr that say why it failed: its `error`
/// lines and `file:line:col: ...` diagnostics (cargo's `--> file:line:col`
/// too); else its last few lines.
fn reasons(stderr: &str) -> Vec<&str> {
    let diagnostic = |line: &str| {
        let Some((place, _)) = line.split_once(": ") else {
            return false;
        };
        let mut parts = place.rsplitn(3, ':');
        let numeric = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        numeric(parts.next())
            && numeric(parts.next())
            && parts.next().is_some_and(|f| !f.is_empty())
    };
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let picked: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let t = l.trim_start();
            t.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("error"))
                || t.starts_with("--> ")
                || diagnostic(t)
        })
        .take(MAX_REASONS)
        .collect();
    if picked.is_empty() {
        lines[lines.len().saturating_sub(5)..].to_vec()
    } else {
        picked
    }
}

/// `summary`, then the toolchain's reasons, one per indented line.
fn with_reasons(summary: &str, stderr: &str) -> String {
    let reasons = reasons(stderr);
    if reasons.is_empty() {
        return format!("{summary}: see its messages above");
    }
    let mut message = format!("{summary}:");
    for line in reasons {
        message.push_str("\n  ");
        message.push_str(line.trim());
    }
    message
}

/// Runs a toolchain command with its output on our stderr (as it comes: a
/// build takes tens of seconds), keeping its stderr for the failure's
/// message; `missing` is the error when the program is not installed. A
/// build script that exits 2 (`build.mjs`: usage, or its toolchain
/// missing) is a usage error too.
fn run_tool(mut cmd: Command, missing: impl FnOnce() -> Failure) -> Result<(), Failure> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => {
            return Err(Failure::new(
                1,
                "build_failed",
                format!("cannot run {program}: {e}"),
            ));
        }
    };
    let echo = child.stderr.take().map(|stderr| {
        std::thread::spawn(move || {
            let mut kept = String::new();
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line);
                eprint!("{text}");
                kept.push_str(&text);
                line.clear();
            }
            kept
        })
    });
    let status = child.wait();
    // The thread ends at the pipe's end; a panic in it lost only the echo.
    let said = echo.and_then(|t| t.join().ok()).unwrap_or_default();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) if program == "node" && status.code() == Some(2) => Err(Failure::usage(
            with_reasons("build.mjs could not start the build", &said),
        )),
        Ok(status) => Err(Failure::new(
            1,
            "build_failed",
            with_reasons(&format!("{program} failed ({status})"), &said),
        )),
        Err(e) => Err(Failure::new(
            1,
            "build_failed",
            format!("cannot wait for {program}: {e}"),
        )),
    }
}

/// Why a probe of the toolchain gave no answer.
enum Probe {
    /// The program is not on PATH.
    Missing,
    /// It ran and failed: the command and its stderr.
    Failed(String),
}

impl Probe {
    /// The failure to report: `missing` for an absent program, else what
    /// the program said.
    fn failure(self, missing: impl FnOnce() -> Failure) -> Failure {
        match self {
            Probe::Missing => missing(),
            Probe::Failed(why) => Failure::usage(why),
        }
    }
}

/// The trimmed stdout of a command that must succeed.
fn output_of(cmd: &mut Command) -> Result<String, Probe> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Probe::Missing),
        Err(e) => return Err(Probe::Failed(format!("cannot run `{shown}`: {e}"))),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Probe::Failed(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn build_rust(dir: &Path, project: &Project) -> Result<PathBuf, Failure> {
    let no_rust = || {
        Failure::usage(
            "cargo is not installed: install Rust from https://rustup.rs, then `rustup target add wasm32-wasip2`",
        )
    };
    // The target's standard library must be there, or cargo fails late
    // with a message about `std` that does not say what to run.
    let libdir = output_of(Command::new("rustc").current_dir(dir).args([
        "--print",
        "target-libdir",
        "--target",
        "wasm32-wasip2",
    ]))
    .map_err(|p| p.failure(no_rust))?;
    if !Path::new(&libdir).is_dir() {
        return Err(Failure::usage(
            "the wasm32-wasip2 target is not installed: rustup target add wasm32-wasip2",
        ));
    }
    let manifest = dir.join("Cargo.toml");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest);
    run_tool(cmd, no_rust)?;
    let metadata = output_of(
        Command::new("cargo")
            .current_dir(dir)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest),
    )
    .map_err(|p| match p.failure(no_rust) {
        f if f.code == 2 => Failure::new(1, "build_failed", f.message),
        f => f,
    })?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)
        .map_err(|e| Failure::new(1, "build_failed", format!("cargo metadata: {e}")))?;
    let target = metadata["target_directory"]
        .as_str()
        .ok_or_else(|| Failure::new(1, "build_failed", "cargo metadata has no target_directory"))?;
    let built = Path::new(target)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", project.name.replace('-', "_")));
    if !built.is_file() {
        return Err(Failure::new(
            1,
            "build_failed",
            format!(
                "cargo built no {}: is the crate a cdylib (`[lib] crate-type = [\"cdylib\"]`)?",
                built.display()
            ),
        ));
    }
    let out = dir.join(format!("{}.wasm", project.name));
    std::fs::copy(&built, &out).map_err(|e| {
        Failure::new(
            1,
            "io_error",
            format!("cannot copy {} to {}: {e}", built.display(), out.display()),
        )
    })?;
    Ok(out)
}

fn build_python(dir: &Path, project: &Project) -> Result<PathBuf, Failure> {
    let missing = || {
        Failure::usage(format!(
            "componentize-py is not installed: pip install componentize-py=={COMPONENTIZE_PY}"
        ))
    };
    let version = output_of(Command::new("componentize-py").arg("--version"))
        .map_err(|p| p.failure(missing))?;
    if !version.contains(COMPONENTIZE_PY) {
        tracing::warn!(
            "{version} is not the tested componentize-py {COMPONENTIZE_PY}: pip install componentize-py=={COMPONENTIZE_PY} if the build fails"
        );
    }
    if !dir.join("wit").is_dir() {
        return Err(Failure::usage(format!(
            "{} has no wit/ directory: copy toolhost's WIT there (`toolhost tools new` writes it)",
            dir.display()
        )));
    }
    let out = dir.join(format!("{}.wasm", project.name));
    let mut cmd = Command::new("componentize-py");
    cmd.current_dir(dir)
        .args([
            "-d",
            "wit",
            "-w",
            &project.world,
            "componentize",
            &project.module,
            "-o",
        ])
        .arg(&out);
    run_tool(cmd, missing)?;
    Ok(out)
}

fn build_js(dir: &Path, project: &Project) -> Result<PathBuf, Failure> {
    let missing = || {
        Failure::usage(
            "node is not installed: install Node.js 20.16 or later (https://nodejs.org, or `apt-get install nodejs`), then `npm install` in the project",
        )
    };
    output_of(Command::new("node").arg("--version")).map_err(|p| p.failure(missing))?;
    let needs: &[&str] = match project.lang {
        Lang::Ts => &["build.mjs", "typescript.mjs"],
        _ => &["build.mjs"],
    };
    if let Some(file) = needs.iter().find(|f| !dir.join(f).is_file()) {
        return Err(Failure::usage(format!(
            "{} has no {file}: copy it from a project `toolhost tools new NAME --lang {}` writes",
            dir.display(),
            project.lang.as_str()
        )));
    }
    let out = dir.join(format!("{}.wasm", project.name));
    let mut cmd = Command::new("node");
    cmd.current_dir(dir)
        .args([
            "build.mjs",
            "--source",
            &project.module,
            "--wit",
            "wit",
            "--world",
            &project.world,
            "--out",
        ])
        .arg(&out);
    run_tool(cmd, missing)?;
    Ok(out)
}

/// What loading the built component found.
struct Checked {
    name: String,
    effect: String,
    world: String,
    source: LoadSource,
    load_ms: u128,
}

/// Loads the component as a call would, compiling it into the user's
/// artifact cache; a component toolhost refuses is `load_error` here, at
/// build time, not at the first call.
async fn check(env: &Env, wasm: &Path) -> Result<Checked, Failure> {
    let dir = wasm.parent().unwrap_or(Path::new("."));
    let mut options = SandboxOptions::from_config(&env.config);
    options.builtin = false;
    options.user_tools_dir = None;
    options.tools_dir = Some(dir.to_path_buf());
    let sandbox = Sandbox::open(options)
        .await
        .map_err(|e| Failure::usage(e.to_string()))?;
    let same = |p: &Path| p.file_name() == wasm.file_name();
    if let Some(e) = sandbox.load_errors().iter().find(|e| same(&e.path)) {
        return Err(Failure::new(1, "load_error", e.to_string()));
    }
    let tool = sandbox
        .tools()
        .find(|t| same(&t.path))
        .ok_or_else(|| {
            Failure::new(
                1,
                "load_error",
                format!("{} did not load as a tool", wasm.display()),
            )
        })?
        .clone();
    let started = Instant::now();
    let source = sandbox
        .load(&tool.name)
        .await
        .map_err(|e| Failure::new(1, "load_error", e.to_string()))?;
    Ok(Checked {
        name: tool.name.clone(),
        effect: tool.effect.as_str().to_string(),
        world: tool.world.as_str().to_string(),
        source,
        load_ms: started.elapsed().as_millis(),
    })
}

fn install(wasm: &Path, name: &str) -> Result<PathBuf, Failure> {
    let dir = toolhost::paths::user_tools_dir().ok_or_else(|| {
        Failure::usage("no user tools directory (set HOME or XDG_DATA_HOME), so --install has nowhere to copy to")
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::new(
            1,
            "io_error",
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let to = dir.join(format!("{name}.wasm"));
    std::fs::copy(wasm, &to).map_err(|e| {
        Failure::new(
            1,
            "io_error",
            format!("cannot copy to {}: {e}", to.display()),
        )
    })?;
    Ok(to)
}

pub async fn run(env: &Env, args: BuildArgs) -> Result<(), Failure> {
    let dir = std::path::absolute(args.dir.unwrap_or_else(|| PathBuf::from(".")))
        .map_err(|e| Failure::usage(format!("bad directory: {e}")))?;
    let project = detect(&dir)?;
    let wasm = match project.lang {
        Lang::Rust => build_rust(&dir, &project)?,
        Lang::Python => build_python(&dir, &project)?,
        Lang::Js | Lang::Ts => build_js(&dir, &project)?,
    };
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let checked = check(env, &wasm).await?;
    let installed = if args.install {
        Some(install(&wasm, &checked.name)?)
    } else {
        None
    };
    if env.json {
        let body = json!({
            "name": checked.name, "lang": project.lang.as_str(), "path": wasm,
            "size": size, "effect": checked.effect, "world": checked.world,
            "compiled": matches!(checked.source, LoadSource::Compiled),
            "load_ms": checked.load_ms as u64, "installed": installed,
        });
        super::output::print_document(true, &body);
        return Ok(());
    }
    let how = match checked.source {
        LoadSource::Compiled => "compiled",
        LoadSource::Cached => "loaded from the artifact cache",
    };
    println!(
        "built {} ({}): tool `{}`, {}, world {}; {how} in {} ms",
        wasm.display(),
        super::human::size(size),
        checked.name,
        checked.effect,
        checked.world,
        checked.load_ms
    );
    if checked.name != project.name {
        eprintln!(
            "note: the tool calls itself `{}` but the project is `{}`; callers use `{}`",
            checked.name, project.name, checked.name
        );
    }
    match installed {
        Some(to) => println!(
            "installed {}: `toolhost call {} --input ...` finds it anywhere",
            to.display(),
            checked.name
        ),
        None => println!(
            "try it: toolhost --tools-dir {} call {} --input ...  (or build with --install)",
            super::lookup::shell_quote(&dir.to_string_lossy()),
            checked.name
        ),
    }
    Ok(())
}

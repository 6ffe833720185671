//! A CLI that installs and lives anywhere: state in the user's directories
//! (never the current one), configs found and resolved the same from every
//! directory, the example tools inside the binary, the search path, and a
//! call that loads only the tool it calls.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{examples_dir, run_binary, stdout_json};

/// A user: a home of their own (data and config directories, and `HOME`),
/// with the suite's shared cache and key unless `own_cache`.
struct User {
    root: tempfile::TempDir,
    own_cache: bool,
}

impl User {
    fn new() -> User {
        User {
            root: tempfile::tempdir().unwrap(),
            own_cache: false,
        }
    }

    /// A user whose cache and key are theirs alone (for tests that tamper
    /// with the cache).
    fn with_own_cache() -> User {
        User {
            own_cache: true,
            ..User::new()
        }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    fn config_dir(&self) -> PathBuf {
        self.path().join("config")
    }

    fn cache(&self) -> PathBuf {
        if self.own_cache {
            self.path().join("cache")
        } else {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("xdg")
                .join("cache")
        }
    }

    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xdg");
        let state = if self.own_cache {
            self.path().join("state")
        } else {
            shared.join("state")
        };
        vec![
            ("HOME", self.path().join("home")),
            ("XDG_DATA_HOME", self.data()),
            ("XDG_CONFIG_HOME", self.config_dir()),
            ("XDG_CACHE_HOME", self.cache()),
            ("XDG_STATE_HOME", state),
        ]
    }

    /// A directory to stand in (made if missing).
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run_in(&self, cwd: &Path, args: &[&str]) -> Output {
        run_binary(
            Path::new(env!("CARGO_BIN_EXE_toolhost")),
            cwd,
            args,
            &self.env(),
        )
    }

    /// Writes the user's own config (`$XDG_CONFIG_HOME/toolhost/toolhost.toml`).
    fn write_user_config(&self, text: &str) -> PathBuf {
        let dir = self.config_dir().join("toolhost");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("toolhost.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tools list --json`'s tools, by name: (origin, path).
fn listed(out: &Output) -> std::collections::BTreeMap<String, (String, String)> {
    ok(out);
    stdout_json(out)["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                (
                    t["origin"].as_str().unwrap().to_string(),
                    t["path"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The issue's story: the same `--idempotency-key` from a subdirectory
/// executed the side effect again. Now the store is the user's, so the
/// second call replays, and nothing is written where the command runs.
#[test]
fn a_side_effect_repeated_from_two_directories_runs_once() {
    let user = User::new();
    // The grant is outside the config directory, which no grant may reach.
    let notes = user.dir("notes");
    user.write_user_config(&format!(
        "[tools.notes]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\n",
        notes.display().to_string()
    ));
    let input = r#"{"file":"log.txt","text":"paid invoice 7"}"#;
    let args = [
        "--json",
        "call",
        "notes",
        "--input",
        input,
        "--idempotency-key",
        "invoice-7",
    ];

    let project = user.dir("project");
    let sub = user.dir("project/sub/dir");
    let first = user.run_in(&project, &args);
    ok(&first);
    assert_eq!(stdout_json(&first)["cached"], false);
    let second = user.run_in(&sub, &args);
    ok(&second);
    assert_eq!(stdout_json(&second)["cached"], true, "replayed, not re-run");

    let log = std::fs::read_to_string(notes.join("log.txt")).unwrap();
    assert_eq!(log.lines().count(), 1, "the side effect ran once: {log}");
    assert!(user.data().join("toolhost").join("toolhost.db").is_file());
    for cwd in [&project, &sub] {
        let left: Vec<_> = std::fs::read_dir(cwd)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "sub")
            .collect();
        assert!(left.is_empty(), "state left in {}: {left:?}", cwd.display());
    }
}

/// `tools inspect`'s timeout for `echo`, which each config sets apart.
fn echo_timeout(user: &User, cwd: &Path, extra: &[&str]) -> Value {
    let mut args = extra.to_vec();
    args.extend(["--json", "tools", "inspect", "echo"]);
    let out = user.run_in(cwd, &args);
    ok(&out);
    stdout_json(&out)["limits"]["timeout_ms"].clone()
}

#[test]
fn the_config_is_found_at_the_flag_the_variable_then_here_once_trusted_then_in_the_users_config_dir()
 {
    let user = User::new();
    let cwd = user.dir("work");
    assert_eq!(echo_timeout(&user, &cwd, &[]), 10_000, "built-in defaults");

    user.write_user_config("[tools.echo]\ntimeout_ms = 1111\n");
    assert_eq!(echo_timeout(&user, &cwd, &[]), 1111, "the user's config");

    // ./toolhost.toml comes first, once trusted (`tests/all/trust.rs`).
    std::fs::write(
        cwd.join("toolhost.toml"),
        "[tools.echo]\ntimeout_ms = 2222\n",
    )
    .unwrap();
    ok(&user.run_in(&cwd, &["config", "trust"]));
    assert_eq!(
        echo_timeout(&user, &cwd, &[]),
        2222,
        "./toolhost.toml first"
    );

    // TOOLHOST_CONFIG comes before it, and --config before that.
    let named = user.path().join("named.toml");
    std::fs::write(&named, "[tools.echo]\ntimeout_ms = 4444\n").unwrap();
    let mut env = user.env();
    env.push(("TOOLHOST_CONFIG", named.clone()));
    let timeout = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--json", "tools", "inspect", "echo"]);
        let out = run_binary(Path::new(env!("CARGO_BIN_EXE_toolhost")), &cwd, &args, &env);
        ok(&out);
        stdout_json(&out)["limits"]["timeout_ms"].clone()
    };
    assert_eq!(timeout(&[]), 4444, "TOOLHOST_CONFIG before ./toolhost.toml");
    let explicit = user.path().join("explicit.toml");
    std::fs::write(&explicit, "[tools.echo]\ntimeout_ms = 3333\n").unwrap();
    let flag = ["--config", explicit.to_str().unwrap()];
    assert_eq!(timeout(&flag), 3333, "--config before TOOLHOST_CONFIG");
    assert_eq!(echo_timeout(&user, &cwd, &flag), 3333, "--config first");

    // A --config that does not exist is an error, never a fallback.
    let out = user.run_in(&cwd, &["--config", "missing.toml", "tools", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn relative_paths_in_a_config_resolve_against_its_own_directory() {
    let user = User::new();
    let conf_dir = user.dir("etc");
    let mine = user.dir("etc/mytools");
    std::fs::copy(examples_dir().join("echo.wasm"), mine.join("echo.wasm")).unwrap();
    std::fs::write(
        conf_dir.join("toolhost.toml"),
        "[sandbox]\ntools_dir = \"mytools\"\n\n[store]\npath = \"state.db\"\n",
    )
    .unwrap();
    let config = conf_dir.join("toolhost.toml");
    // Run from two unrelated directories: the same tools and store.
    for cwd in [user.dir("a"), user.dir("b/c")] {
        let out = user.run_in(
            &cwd,
            &[
                "--config",
                config.to_str().unwrap(),
                "--json",
                "tools",
                "list",
            ],
        );
        let tools = listed(&out);
        assert_eq!(tools["echo"].0, "dir");
        assert_eq!(Path::new(&tools["echo"].1), mine.join("echo.wasm"));
        let out = user.run_in(
            &cwd,
            &[
                "--config",
                config.to_str().unwrap(),
                "call",
                "echo",
                "--input",
                r#"{"message":"hi"}"#,
            ],
        );
        ok(&out);
    }
    assert!(
        conf_dir.join("state.db").is_file(),
        "the store beside the config"
    );
}

#[test]
fn an_explicit_db_whose_directory_is_missing_is_refused() {
    let user = User::new();
    let cwd = user.dir("work");
    let db = user.path().join("nonexistent").join("dir").join("x.db");
    let out = user.run_in(
        &cwd,
        &[
            "--db",
            db.to_str().unwrap(),
            "call",
            "echo",
            "--input",
            r#"{"message":"hi"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(!user.path().join("nonexistent").exists(), "nothing created");

    // A relative --db is relative to where the command runs, and works
    // when its directory exists.
    std::fs::create_dir(cwd.join("here")).unwrap();
    let out = user.run_in(
        &cwd,
        &[
            "--db",
            "here/x.db",
            "call",
            "echo",
            "--input",
            r#"{"message":"hi"}"#,
        ],
    );
    ok(&out);
    assert!(cwd.join("here").join("x.db").is_file());
}

/// What `cargo install` does: one file, somewhere else. It still has the
/// example tools, and runs from any directory.
#[test]
fn a_copied_binary_runs_from_anywhere_with_its_builtin_tools() {
    let user = User::new();
    let bin = user.dir("bin").join("toolhost");
    std::fs::copy(env!("CARGO_BIN_EXE_toolhost"), &bin).unwrap();
    let cwd = user.dir("somewhere/else");

    let out = run_binary(&bin, &cwd, &["--json", "tools", "list"], &user.env());
    let tools = listed(&out);
    let names: Vec<_> = tools.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        crate::support::BUILT_IN_TOOLS,
        "the examples and nothing else (no hostile or test-kit tool)"
    );
    for (name, (origin, path)) in &tools {
        assert_eq!(origin, "builtin", "{name}");
        assert_eq!(path, &format!("builtin:{name}.wasm"));
    }

    let out = run_binary(
        &bin,
        &cwd,
        &["call", "echo", "--input", r#"{"message":"from anywhere"}"#],
        &user.env(),
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("from anywhere"));
}

#[test]
fn the_search_path_lets_later_tools_win_and_says_where_each_came_from() {
    let user = User::new();
    let cwd = user.dir("work");
    // The user's tools directory: a copy of echo (same name as a builtin)
    // and a tool of its own.
    let user_tools = user.data().join("toolhost").join("tools");
    std::fs::create_dir_all(&user_tools).unwrap();
    std::fs::copy(
        examples_dir().join("echo.wasm"),
        user_tools.join("echo.wasm"),
    )
    .unwrap();
    std::fs::copy(
        crate::support::hostile_dir().join("spin.wasm"),
        user_tools.join("spin.wasm"),
    )
    .unwrap();

    let tools = listed(&user.run_in(&cwd, &["--json", "tools", "list"]));
    assert_eq!(tools["calc"].0, "builtin");
    assert_eq!(
        tools["echo"].0, "user",
        "the user's echo replaces the builtin"
    );
    assert_eq!(Path::new(&tools["echo"].1), user_tools.join("echo.wasm"));
    assert_eq!(tools["spin"].0, "user");

    // --tools-dir comes last, and wins over both.
    let dir = user.dir("extra");
    std::fs::copy(examples_dir().join("echo.wasm"), dir.join("echo.wasm")).unwrap();
    let tools = listed(&user.run_in(
        &cwd,
        &[
            "--tools-dir",
            dir.to_str().unwrap(),
            "--json",
            "tools",
            "list",
        ],
    ));
    assert_eq!(tools["echo"].0, "dir");
    assert_eq!(Path::new(&tools["echo"].1), dir.join("echo.wasm"));
    assert_eq!(tools["spin"].0, "user");
    assert_eq!(tools.len(), 9, "{tools:?}");

    // The human table says it too.
    let out = user.run_in(&cwd, &["tools", "list"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let echo = text.lines().find(|l| l.starts_with("echo ")).unwrap();
    assert!(
        echo.contains("user") && echo.contains("echo.wasm"),
        "{text}"
    );
    let calc = text.lines().find(|l| l.starts_with("calc ")).unwrap();
    assert!(calc.trim_end().ends_with("builtin"), "{text}");
}

/// The sealed compiled artifacts of a cache.
fn artifacts(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for engine in std::fs::read_dir(cache.join("toolhost").join("artifacts"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(engine.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "cwasm") {
                found.push(f.path());
            }
        }
    }
    found
}

/// A call loads only the tool it calls, and `tools list` loads none: a
/// damaged artifact of another tool is not even read (a read would find
/// it unauthentic and rewrite it), until that tool is called.
#[test]
fn a_call_loads_only_the_tool_it_calls() {
    let user = User::with_own_cache();
    let cwd = user.dir("work");
    let tools = user.dir("tools");
    for name in ["echo.wasm", "calc.wasm"] {
        std::fs::copy(examples_dir().join(name), tools.join(name)).unwrap();
    }
    std::fs::write(
        cwd.join("toolhost.toml"),
        format!(
            "[sandbox]\nbuiltin_tools = false\ntools_dir = {:?}\n",
            tools.display().to_string()
        ),
    )
    .unwrap();
    ok(&user.run_in(&cwd, &["config", "trust"]));
    let list = listed(&user.run_in(&cwd, &["--json", "tools", "list"]));
    assert_eq!(list.len(), 2);

    let calc_digest = {
        let out = user.run_in(&cwd, &["--json", "tools", "inspect", "calc"]);
        ok(&out);
        stdout_json(&out)["digest"].as_str().unwrap().to_string()
    };
    let calc = artifacts(&user.cache())
        .into_iter()
        .find(|p| p.file_stem().unwrap().to_str() == Some(calc_digest.as_str()))
        .expect("calc was compiled and cached");
    let mut damaged = std::fs::read(&calc).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(&calc, &damaged).unwrap();

    let out = user.run_in(
        &cwd,
        &[
            "call",
            "echo",
            "--input",
            r#"{"message":"hi"}"#,
            "--no-cache",
        ],
    );
    ok(&out);
    let out = user.run_in(&cwd, &["tools", "list"]);
    ok(&out);
    assert_eq!(
        std::fs::read(&calc).unwrap(),
        damaged,
        "calc was never loaded"
    );
    // The call's one-slot engine shares the artifacts `tools list` compiled.
    assert_eq!(artifacts(&user.cache()).len(), 2, "nothing recompiled");

    // Calling calc loads it: the damage is found, it is recompiled, and runs.
    let out = user.run_in(
        &cwd,
        &["--json", "call", "calc", "--input", r#"{"expr":"6*7"}"#],
    );
    ok(&out);
    assert_eq!(stdout_json(&out)["output"]["value"], 42);
    assert_ne!(
        std::fs::read(&calc).unwrap(),
        damaged,
        "rewritten, authentic"
    );
}

/// A new user's first call compiles the one tool it calls, not the eight
/// built-in ones (their names are known without running them).
#[test]
fn a_first_call_compiles_only_its_tool() {
    let user = User::with_own_cache();
    let cwd = user.dir("work");
    let out = user.run_in(
        &cwd,
        &["--json", "call", "calc", "--input", r#"{"expr":"6*7"}"#],
    );
    ok(&out);
    assert_eq!(stdout_json(&out)["output"]["value"], 42);
    assert_eq!(artifacts(&user.cache()).len(), 1, "only calc was compiled");

    // An unknown tool still hears every name on the search path.
    let out = user.run_in(&cwd, &["call", "nope", "--input", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("calc, echo, http_fetch, jq, markdown, notes, pay, slow"),
        "{stderr}"
    );
    assert_eq!(artifacts(&user.cache()).len(), 1);
}

/// Issue 24, item 3: `cargo install --path host` built a 266 MB binary,
/// nearly all of it line tables. The release profile (what `cargo install`
/// uses) carries no debug info; profiling has a profile of its own.
#[test]
fn the_installed_binary_carries_no_debug_info_and_profiling_has_its_own_profile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let profile = |name: &str| {
        manifest["profile"][name]
            .as_table()
            .unwrap_or_else(|| panic!("no [profile.{name}]"))
            .clone()
    };
    let release = profile("release");
    assert_eq!(release["debug"].as_bool(), Some(false), "{release}");
    assert_eq!(release["strip"].as_str(), Some("debuginfo"), "{release}");
    let profiling = profile("profiling");
    assert_eq!(profiling["inherits"].as_str(), Some("release"));
    assert_eq!(profiling["debug"].as_str(), Some("line-tables-only"));
    assert_eq!(profiling["strip"].as_str(), Some("none"));
    // The manual's size claim names the profile that makes it true.
    let started = std::fs::read_to_string(root.join("docs/src/getting-started.md")).unwrap();
    assert!(
        started.contains("no debug info") && started.contains("--profile profiling"),
        "getting-started.md says what the release binary carries"
    );
}

/// `cargo tree` over the workspace's lock file: every package instance it
/// builds, as `name version features` lines (a crate built both for build
/// scripts or proc-macros and for the binary appears twice when the two
/// get different features).
fn cargo_tree(args: &[&str], format: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--prefix",
            "none",
            "--no-dedupe",
            "-f",
            format,
        ])
        .args(args)
        .current_dir(&root)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

/// Issue 24, item 3: the README's two commands share one build of wasmtime.
/// `cargo install --path host` builds the binary alone; `cargo test
/// --workspace --release` builds it with every member and the
/// dev-dependencies, whose features Cargo unifies. Every crate wasmtime is
/// built from (its build scripts' and proc-macros' crates included) must get
/// the same features both ways, or one command recompiles it all.
#[test]
fn the_installed_binary_and_the_test_build_share_one_wasmtime() {
    let closure: std::collections::BTreeSet<String> =
        cargo_tree(&["-p", "wasmtime-wasi-http", "-e", "normal,build"], "{p}")
            .iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
    assert!(
        closure.iter().any(|p| p.starts_with("wasmtime ")),
        "{closure:?}"
    );
    let of_closure = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| closure.contains(&l.split(' ').take(2).collect::<Vec<_>>().join(" ")))
            .collect()
    };
    let installed = of_closure(cargo_tree(
        &["-p", "toolhost", "-e", "normal,build"],
        "{p} {f}",
    ));
    let tested = of_closure(cargo_tree(
        &["--workspace", "-e", "normal,build,dev"],
        "{p} {f}",
    ));
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|l| !b.contains(l)).cloned().collect()
    };
    assert!(
        installed == tested,
        "wasmtime's crates get different features from `cargo install --path host` and \
         `cargo test --workspace`; name the missing features in host/Cargo.toml \
         (decision 0071).\n  install only: {:#?}\n  test only: {:#?}",
        only(&installed, &tested),
        only(&tested, &installed)
    );
}

//! `toolhost tools new` and `tools build`: a newcomer's path from nothing
//! to a called tool, in each language, and the errors on the way.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::{run_binary, state_env, stdout_json, toolhost};

fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// ComponentizeJS and TypeScript as `.ci/run` installs them, instead of
/// `npm install` per test (build.mjs finds them in the project's
/// node_modules).
fn link_node_modules(project: &Path) {
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/js/node_modules");
    std::os::unix::fs::symlink(installed, project.join("node_modules")).unwrap();
}

/// Scaffolds `name` in `lang` under `home`, builds and installs it, and
/// calls it from another directory (the user's tools directory is found
/// from anywhere).
fn new_build_install_call(home: &Path, lang: &str, name: &str, extra: &[(&'static str, PathBuf)]) {
    let out = toolhost(home, &["tools", "new", name, "--lang", lang]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("toolhost tools build --install"),
        "{}",
        text(&out)
    );
    let project = home.join(name);
    if lang == "js" || lang == "ts" {
        link_node_modules(&project);
    }
    let mut env = state_env(&project);
    env.retain(|(k, _)| *k != "XDG_DATA_HOME");
    env.push(("XDG_DATA_HOME", home.join(".xdg-data")));
    env.extend(extra.iter().cloned());
    let out = run_binary(
        Path::new(env!("CARGO_BIN_EXE_toolhost")),
        &project,
        &["--json", "tools", "build", "--install"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let report = stdout_json(&out);
    assert_eq!(report["name"], name, "{report}");
    assert_eq!(report["lang"], lang, "{report}");
    assert_eq!(report["effect"], "pure", "{report}");
    assert!(project.join(format!("{name}.wasm")).is_file(), "{report}");
    let installed = report["installed"].as_str().expect("installed path");
    assert!(Path::new(installed).is_file(), "{report}");

    let elsewhere = home.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    // The same user (the data directory holding the user's tools is
    // `home`'s), in another directory.
    let out = run_binary(
        Path::new(env!("CARGO_BIN_EXE_toolhost")),
        &elsewhere,
        &["--json", "call", name, "--input", r#"{"name":"Ada"}"#],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout_json(&out)["output"],
        json!({"greeting": "Hello, Ada!"})
    );
}

#[test]
fn a_new_python_tool_builds_installs_and_answers_from_anywhere() {
    let home = tempfile::tempdir().unwrap();
    new_build_install_call(home.path(), "python", "greet_py", &[]);
    // Its own unit test runs natively against the copied SDK.
    let out = crate::support::output_within(
        {
            let mut cmd = std::process::Command::new("python3");
            cmd.args(["-m", "unittest"])
                .current_dir(home.path().join("greet_py"))
                .env("PYTHONDONTWRITEBYTECODE", "1");
            cmd
        },
        std::time::Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_new_js_tool_builds_installs_and_answers_from_anywhere() {
    let home = tempfile::tempdir().unwrap();
    new_build_install_call(home.path(), "js", "greet_js", &[]);
    let out = crate::support::output_within(
        {
            let mut cmd = std::process::Command::new("node");
            cmd.args(["--test"])
                .current_dir(home.path().join("greet_js"));
            cmd
        },
        std::time::Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_new_ts_tool_builds_installs_and_answers_from_anywhere() {
    let home = tempfile::tempdir().unwrap();
    new_build_install_call(home.path(), "ts", "greet_ts", &[]);
    // `npm test` as the README says: the test is type-checked and compiled
    // with the tool, then run in Node.
    let out = crate::support::output_within(
        {
            let mut cmd = std::process::Command::new("npm");
            cmd.args(["test"])
                .current_dir(home.path().join("greet_ts"))
                .env("npm_config_update_notifier", "false");
            cmd
        },
        std::time::Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("# fail 0"),
        "{}",
        text(&out)
    );
}

/// A TypeScript tool that misuses its typed input does not build: exit 1,
/// `build_failed`, and the compiler's `file:line:col` diagnostic in the
/// message (not just somewhere above it).
#[test]
fn a_ts_tool_with_a_type_error_fails_its_build_naming_the_line() {
    let home = tempfile::tempdir().unwrap();
    let out = toolhost(
        home.path(),
        &["tools", "new", "typo", "--lang", "typescript"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let project = home.path().join("typo");
    let source = project.join("tool.ts");
    let good = std::fs::read_to_string(&source).unwrap();
    assert!(good.contains("input.name"), "{good}");
    let bad = good.replace("input.name", "input.nmae");
    std::fs::write(&source, &bad).unwrap();
    // Where the compiler points: the misspelt property, 1-based (the
    // template's comment names `input.nmae` too; the code is `${...}`).
    let at = bad.find("${input.nmae}").unwrap() + "${input.".len();
    let line = bad[..at].matches('\n').count() + 1;
    let column = at - bad[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    link_node_modules(&project);
    let out = run_binary(
        Path::new(env!("CARGO_BIN_EXE_toolhost")),
        &project,
        &["--json", "tools", "build"],
        &state_env(&project),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = stdout_json(&out);
    assert_eq!(report["error"]["kind"], "build_failed", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "tool.ts:{line}:{column}: error TS2339: Property 'nmae' does not exist"
        )),
        "{message}"
    );
    assert!(
        !project.join("typo.wasm").exists(),
        "a failed build left a component"
    );
}

/// Without `npm install`, a TypeScript project's build says to run it
/// (exit 2): here componentize-js is there and the compiler is not.
#[test]
fn a_ts_project_without_typescript_names_npm_install() {
    let home = tempfile::tempdir().unwrap();
    let out = toolhost(home.path(), &["tools", "new", "bare", "--lang", "ts"]);
    assert!(out.status.success(), "{}", text(&out));
    let project = home.path().join("bare");
    let scoped = project.join("node_modules/@bytecodealliance");
    std::fs::create_dir_all(&scoped).unwrap();
    let installed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-sdk/js/node_modules/@bytecodealliance/componentize-js");
    std::os::unix::fs::symlink(installed, scoped.join("componentize-js")).unwrap();
    let out = run_binary(
        Path::new(env!("CARGO_BIN_EXE_toolhost")),
        &project,
        &["--json", "tools", "build"],
        &state_env(&project),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let message = stdout_json(&out)["error"]["message"].to_string();
    assert!(
        message.contains("typescript is not installed") && message.contains("npm install"),
        "{message}"
    );
}

#[test]
fn a_new_rust_tool_builds_installs_and_answers_from_anywhere() {
    let home = tempfile::tempdir().unwrap();
    // The project's dependencies build once per suite run, not per test.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    // The suite's HOME is a scratch one: rustup and cargo need to be told
    // where the real toolchains are.
    let real_home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
    let rustup =
        std::env::var_os("RUSTUP_HOME").map_or_else(|| real_home.join(".rustup"), PathBuf::from);
    let cargo =
        std::env::var_os("CARGO_HOME").map_or_else(|| real_home.join(".cargo"), PathBuf::from);
    new_build_install_call(
        home.path(),
        "rust",
        "greet-rs",
        &[
            ("CARGO_TARGET_DIR", target),
            ("RUSTUP_HOME", rustup),
            ("CARGO_HOME", cargo),
        ],
    );
}

#[test]
fn bad_names_full_directories_and_missing_projects_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let out = toolhost(home.path(), &["tools", "new", "Greet!", "--lang", "python"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("1-64 characters of a-z"),
        "{}",
        text(&out)
    );

    std::fs::create_dir(home.path().join("taken")).unwrap();
    std::fs::write(home.path().join("taken/keep.txt"), "mine").unwrap();
    let out = toolhost(home.path(), &["tools", "new", "taken", "--lang", "rust"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--dir"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(home.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );

    let out = toolhost(home.path(), &["tools", "build", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("toolhost tools new NAME"),
        "{}",
        text(&out)
    );
}

/// Without the language's toolchain on PATH, `tools build` says which
/// command installs it, and exits 2.
#[test]
fn a_missing_toolchain_names_its_install_command() {
    let home = tempfile::tempdir().unwrap();
    for (lang, name, install) in [
        ("python", "nopy", "pip install componentize-py==0.25.1"),
        ("rust", "nors", "https://rustup.rs"),
        ("js", "nojs", "install Node.js 20.16"),
        ("ts", "nots", "install Node.js 20.16"),
    ] {
        let out = toolhost(home.path(), &["tools", "new", name, "--lang", lang]);
        assert!(out.status.success(), "{}", text(&out));
        let mut env = state_env(&home.path().join(name));
        env.push(("PATH", home.path().join("empty-bin")));
        let out = run_binary(
            Path::new(env!("CARGO_BIN_EXE_toolhost")),
            &home.path().join(name),
            &["tools", "build"],
            &env,
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(install), "{}", text(&out));
    }
}

/// The Rust template's copy of the SDK manifest names the workspace's
/// dependency versions: a project built from it gets what was tested.
#[test]
fn the_rust_templates_sdk_versions_are_the_workspaces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let read = |p: &str| -> toml::Table {
        std::fs::read_to_string(root.join(p))
            .unwrap()
            .parse()
            .unwrap()
    };
    let workspace = read("Cargo.toml");
    let deps = &workspace["workspace"]["dependencies"];
    let template = read("guest-sdk/rust/template/sdk-Cargo.toml.tmpl");
    let sdk = read("guest-sdk/rust/Cargo.toml");
    let version = |v: &toml::Value| {
        v.as_str()
            .or_else(|| v.get("version").and_then(toml::Value::as_str))
            .map(str::to_string)
    };
    let mut wanted: Vec<(String, toml::Value)> = sdk["dependencies"]
        .as_table()
        .unwrap()
        .keys()
        .map(|k| (k.clone(), template["dependencies"][k].clone()))
        .collect();
    for (k, _) in sdk["target"]["cfg(target_os = \"wasi\")"]["dependencies"]
        .as_table()
        .unwrap()
    {
        wanted.push((
            k.clone(),
            template["target"]["cfg(target_os = \"wasi\")"]["dependencies"][k].clone(),
        ));
    }
    for (name, in_template) in wanted {
        assert_eq!(
            version(&in_template),
            version(&deps[&name]),
            "{name}: the template's version differs from the workspace's"
        );
    }
}

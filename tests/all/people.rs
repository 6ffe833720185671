//! Output for people (issue 12, item 4): tables with short keys, states,
//! outcomes and relative times; unique prefixes wherever a key or run id
//! is taken; replays that say so without touching stdout; a closed pipe;
//! colour only where it belongs; shell completions.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{stdout_json, toolhost, write_trusted_config};

/// A fresh working directory whose artifact cache (`.toolhost/artifacts`,
/// beside the default store) is shared by these tests, so only the first
/// one compiles the example tools.
pub fn workdir() -> tempfile::TempDir {
    let shared = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("people-artifacts");
    std::fs::create_dir_all(&shared).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".toolhost")).unwrap();
    std::os::unix::fs::symlink(&shared, dir.path().join(".toolhost/artifacts")).unwrap();
    dir
}

/// A config whose chain is `models` (TOML) plus a scripted model `local`.
fn scripted_chain(dir: &Path, models: &str) {
    std::fs::write(dir.join("t.json"), r#"{"turns": [{"text": "x"}]}"#).unwrap();
    let config = format!(
        "{models}[[models]]\nname = \"local\"\nprovider = \"scripted\"\nscript = \"t.json\"\n"
    );
    write_trusted_config(dir, &config);
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn keys(dir: &Path) -> Vec<String> {
    let out = toolhost(dir, &["cache", "list", "--json"]);
    stdout_json(&out)["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn cache_list_is_a_table_with_short_keys_states_outcomes_and_times() {
    let dir = workdir();
    let ok = toolhost(
        dir.path(),
        &["call", "calc", "--input", r#"{"expr":"1+1"}"#],
    );
    assert!(ok.status.success(), "{ok:?}");
    // A pure tool's own refusal is recorded, so it is listed with its kind.
    let bad = toolhost(
        dir.path(),
        &["call", "jq", "--input", r#"{"filter":"][","input":1}"#],
    );
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let (listed, _) = text(&toolhost(dir.path(), &["cache", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("KEY ") && lines[0].contains("OUTCOME"),
        "{listed}"
    );
    for key in keys(dir.path()) {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&key[..12]))
            .unwrap_or_else(|| panic!("no row for {key}:\n{listed}"));
        assert!(!row.contains(&key), "the table shows the short key: {row}");
        assert!(row.contains("done"), "{row}");
        // A relative time: "now", or "1 second ago" when the second turned.
        assert!(
            row.contains(" now") || row.contains(" ago"),
            "a relative time: {row}"
        );
    }
    assert!(listed.contains(" ok "), "{listed}");
    assert!(
        listed.contains("tool_failed") || listed.contains("invalid_input"),
        "{listed}"
    );
    // --json keeps the complete, stable form.
    let v = stdout_json(&toolhost(dir.path(), &["cache", "list", "--json"]));
    assert_eq!(v["calls"][0]["key"].as_str().unwrap().len(), 64);
}

#[test]
fn cache_show_and_tools_inspect_are_summaries_for_people() {
    let dir = workdir();
    let ok = toolhost(
        dir.path(),
        &["call", "calc", "--input", r#"{"expr":"6*7"}"#],
    );
    assert!(ok.status.success(), "{ok:?}");
    let key = keys(dir.path()).remove(0);
    let (shown, _) = text(&toolhost(dir.path(), &["cache", "show", &key[..8]]));
    assert!(shown.starts_with(&format!("key        {key}\n")), "{shown}");
    assert!(shown.contains("state      done, outcome ok"), "{shown}");
    assert!(shown.contains("output     {\"value\":42}"), "{shown}");
    assert!(
        shown.contains("memory 64 MiB, output 1 MiB"),
        "human sizes: {shown}"
    );
    let (inspect, _) = text(&toolhost(dir.path(), &["tools", "inspect", "calc"]));
    assert!(
        inspect.starts_with("tool         calc 0.1.0\n"),
        "{inspect}"
    );
    assert!(inspect.contains("effect       pure"), "{inspect}");
    assert!(inspect.contains("dirs         none"), "{inspect}");
    assert!(inspect.contains("input schema:\n{"), "{inspect}");
    let v = stdout_json(&toolhost(
        dir.path(),
        &["tools", "inspect", "calc", "--json"],
    ));
    assert_eq!(v["name"], "calc");
}

/// 17 keys cannot all start with different hex digits, so one digit is an
/// ambiguous prefix; every key's 12-character prefix is unique.
#[test]
fn key_prefixes_are_accepted_and_ambiguous_ones_list_candidates() {
    let dir = workdir();
    for i in 0..17 {
        let input = format!(r#"{{"expr":"{i}+1"}}"#);
        let out = toolhost(dir.path(), &["call", "calc", "--input", &input]);
        assert!(out.status.success(), "{out:?}");
    }
    let keys = keys(dir.path());
    let shared = keys
        .iter()
        .map(|k| &k[..1])
        .find(|c| keys.iter().filter(|k| k.starts_with(*c)).count() > 1)
        .expect("pigeonhole");
    let out = toolhost(dir.path(), &["--json", "cache", "show", shared]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "ambiguous_prefix");
    let message = v["error"]["message"].as_str().unwrap();
    for k in keys.iter().filter(|k| k.starts_with(shared)) {
        assert!(message.contains(k.as_str()), "{message} lists {k}");
    }
    let out = toolhost(dir.path(), &["cache", "show", "--json", &keys[3][..12]]);
    assert_eq!(stdout_json(&out)["key"], keys[3].as_str());
    // The same lookup serves `cache resolve` (which then says what is wrong).
    let out = toolhost(
        dir.path(),
        &["--json", "cache", "resolve", &keys[3][..12], "--abandon"],
    );
    assert_eq!(
        stdout_json(&out)["error"]["kind"],
        "not_in_doubt",
        "{out:?}"
    );
    let out = toolhost(dir.path(), &["--json", "cache", "show", "ffffffffffffff"]);
    assert_eq!(stdout_json(&out)["error"]["kind"], "not_found", "{out:?}");
}

/// Run ids by prefix: `runs show`, `stats --run`, `replay`, `agent resume`.
#[test]
fn run_id_prefixes_are_accepted_everywhere_a_run_is() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("turns.json"),
        r#"{"turns": [{"text": "done"}]}"#,
    )
    .unwrap();
    write_trusted_config(
        dir.path(),
        "[[models]]\nname = \"s\"\nprovider = \"scripted\"\nscript = \"turns.json\"\n",
    );
    for id in ["nightly-report-1", "nightly-report-2", "audit"] {
        let out = toolhost(
            dir.path(),
            &["--json", "agent", "run", "task", "--run-id", id],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let out = toolhost(dir.path(), &["--json", "runs", "show", "nightly"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let message = stdout_json(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("nightly-report-1, nightly-report-2"),
        "{message}"
    );
    let out = toolhost(dir.path(), &["--json", "runs", "show", "nightly-report-2"]);
    assert_eq!(stdout_json(&out)["run"]["id"], "nightly-report-2");
    let out = toolhost(dir.path(), &["--json", "runs", "show", "aud"]);
    assert_eq!(stdout_json(&out)["run"]["id"], "audit");
    let out = toolhost(dir.path(), &["--json", "stats", "--run", "aud"]);
    assert_eq!(stdout_json(&out)["run"], "audit", "{out:?}");
    let out = toolhost(dir.path(), &["--json", "replay", "aud"]);
    assert_eq!(stdout_json(&out)["run_id"], "audit", "{out:?}");
    let out = toolhost(dir.path(), &["--json", "agent", "resume", "aud"]);
    assert_eq!(
        stdout_json(&out)["error"]["kind"],
        "run_completed",
        "{out:?}"
    );
    let (list, _) = text(&toolhost(dir.path(), &["runs", "list"]));
    assert!(list.starts_with("RUN "), "{list}");
    // "now", or "1 second ago" when the second turned between run and list.
    assert!(
        list.contains("completed") && (list.contains("now") || list.contains(" ago")),
        "{list}"
    );
}

#[test]
fn a_replay_says_so_on_stderr_and_stdout_stays_the_result() {
    let dir = workdir();
    let args = ["call", "calc", "--input", r#"{"expr":"2*(3+4)"}"#];
    let first = toolhost(dir.path(), &args);
    let second = toolhost(dir.path(), &args);
    assert_eq!(first.stdout, second.stdout, "the same clean result");
    assert_eq!(stdout_json(&second), serde_json::json!({"value": 14}));
    let (_, err) = text(&second);
    assert!(err.starts_with("(replayed from cache: key "), "{err}");
    let (_, err) = text(&first);
    assert!(!err.contains("replayed"), "{err}");
}

/// Regression (issue 12): `toolhost tools list | head -1` panicked with
/// "failed printing to stdout: Broken pipe" and exit code 101. The read end
/// is closed before the process starts, so every write meets a closed pipe.
#[test]
fn a_closed_pipe_ends_the_process_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = workdir();
    for args in [
        &["tools", "list"][..],
        &["completions", "bash"],
        &["cache", "list"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_toolhost"))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?} ends by SIGPIPE, as `cat` does: {:?} {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

fn colour_run(dir: &Path, vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args(["model", "list"])
        .current_dir(dir)
        // The directories `write_trusted_config` trusted the config in.
        .envs(crate::support::state_env(dir))
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Colour only on a terminal: a pipe gets none, `CLICOLOR_FORCE` stands in
/// for a terminal, and `NO_COLOR` wins over both.
#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let dir = workdir();
    scripted_chain(dir.path(), "");
    let piped = colour_run(dir.path(), &[]);
    assert!(!piped.contains('\x1b'), "{piped:?}");
    let forced = colour_run(dir.path(), &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\x1b["), "{forced:?}");
    let no_color = colour_run(dir.path(), &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!no_color.contains('\x1b'), "{no_color:?}");
    assert_eq!(no_color, piped);
}

#[test]
fn completions_for_each_shell() {
    let dir = workdir();
    for (shell, marker) in [
        ("bash", "complete -F _toolhost"),
        ("zsh", "#compdef toolhost"),
        ("fish", "complete -c toolhost"),
    ] {
        let out = toolhost(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in [
            "cache",
            "completions",
            "config",
            "resolve",
            "idempotency-key",
        ] {
            assert!(script.contains(sub), "{shell} completes {sub}");
        }
    }
    // bash parses the script and registers the completion.
    let script = dir.path().join("toolhost.bash");
    let out = toolhost(dir.path(), &["completions", "bash"]);
    std::fs::write(&script, out.stdout).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p toolhost",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("_toolhost"),
        "{out:?}"
    );
    let out = toolhost(dir.path(), &["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn model_list_is_a_table_with_key_and_breaker_columns() {
    let dir = workdir();
    scripted_chain(
        dir.path(),
        "[[models]]\nname = \"hosted\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\napi_key_env = \"TOOLHOST_TEST_UNSET_KEY\"\n\n",
    );
    let (out, err) = text(&toolhost(dir.path(), &["model", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("#  NAME") && lines[0].contains("KEY"),
        "{out}"
    );
    assert!(
        lines[1].contains("hosted") && lines[1].contains("no key"),
        "{out}"
    );
    assert!(
        lines[2].contains("local") && lines[2].contains("none needed"),
        "{out}"
    );
    assert!(err.contains("model `hosted` is skipped"), "{err}");
    let v: Value = stdout_json(&toolhost(dir.path(), &["model", "list", "--json"]));
    assert_eq!(v["models"][0]["key"], "no_key");
    assert_eq!(v["models"][1]["key"], "not_needed");
}

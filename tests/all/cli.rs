//! The real `toolhost` binary: outputs, `--json` shapes and exit codes.

use serde_json::json;

use crate::support::{hostile_dir, stdout_json, toolhost, write_trusted_config};

#[test]
fn call_prints_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolhost(
        dir.path(),
        &["call", "calc", "--input", r#"{"expr":"2*(3+4)"}"#],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_json(&out), json!({"value": 14}));
}

#[test]
fn call_json_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolhost(
        dir.path(),
        &["call", "calc", "--json", "--input", r#"{"expr":"1+1"}"#],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = stdout_json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["tool"], "calc");
    assert_eq!(v["output"], json!({"value": 2}));
    assert!(v["fuel_used"].as_u64().unwrap() > 0);
    assert!(v["duration_us"].as_u64().is_some());
}

#[test]
fn a_failed_call_exits_1_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolhost(
        dir.path(),
        &["--json", "call", "calc", "--input", r#"{"expr":7}"#],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["tool"], "calc");
    assert_eq!(v["error"]["kind"], "invalid_input");
    assert!(v["error"]["message"].as_str().unwrap().contains("/expr"));

    let out = toolhost(dir.path(), &["call", "calc", "--input", "{"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_input"));
}

#[test]
fn per_call_limits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let tools = hostile_dir();
    let tools = tools.to_str().unwrap();
    let out = toolhost(
        dir.path(),
        &[
            "--tools-dir",
            tools,
            "--json",
            "call",
            "spin",
            "--input",
            "{}",
            "--fuel",
            "1000000",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["error"]["kind"], "out_of_fuel");

    let out = toolhost(
        dir.path(),
        &[
            "--tools-dir",
            tools,
            "--json",
            "call",
            "spin",
            "--input",
            "{}",
            "--fuel",
            "100000000000000",
            "--timeout-ms",
            "100",
        ],
    );
    assert_eq!(stdout_json(&out)["error"]["kind"], "timeout");

    let out = toolhost(
        dir.path(),
        &[
            "--tools-dir",
            tools,
            "--json",
            "call",
            "membomb",
            "--input",
            "{}",
            "--memory-mb",
            "8",
        ],
    );
    assert_eq!(stdout_json(&out)["error"]["kind"], "memory_limit");
}

#[test]
fn input_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.json"), r##"{"markdown": "*x*"}"##).unwrap();
    let out = toolhost(dir.path(), &["call", "markdown", "--input", "@in.json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_json(&out), json!({"html": "<p><em>x</em></p>\n"}));

    let out = toolhost(
        dir.path(),
        &["call", "markdown", "--input", "@missing.json"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolhost(dir.path(), &["call", "nope", "--input", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tool named `nope`"));

    let out = toolhost(dir.path(), &["call", "calc"]);
    assert_eq!(out.status.code(), Some(2), "missing --input");

    let out = toolhost(
        dir.path(),
        &["call", "calc", "--input", "{}", "--memory-mb", "0"],
    );
    assert_eq!(out.status.code(), Some(2));

    let out = toolhost(dir.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_broken_config_names_key_and_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_config_error(
        dir.path(),
        "[sandbox]\nfuel = 10\ntimeout_ms = 0\n",
        3,
        "sandbox.timeout_ms",
    );

    std::fs::write(dir.path().join("bad.toml"), "[sandbox\n").unwrap();
    let out = toolhost(dir.path(), &["--config", "bad.toml", "tools", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml line 1"));

    let out = toolhost(dir.path(), &["--config", "absent.toml", "tools", "list"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_limits_apply_to_calls() {
    let dir = tempfile::tempdir().unwrap();
    write_trusted_config(dir.path(), "[tools.slow]\ntimeout_ms = 100\n");
    let out = toolhost(
        dir.path(),
        &["--json", "call", "slow", "--input", r#"{"ms":2000}"#],
    );
    assert_eq!(stdout_json(&out)["error"]["kind"], "timeout");
    let out = toolhost(dir.path(), &["--json", "tools", "inspect", "slow"]);
    assert_eq!(stdout_json(&out)["limits"]["timeout_ms"], 100);
}

#[test]
fn tools_list_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolhost(dir.path(), &["tools", "list", "--json"]);
    assert!(out.status.success());
    let v = stdout_json(&out);
    let names: Vec<_> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, crate::support::BUILT_IN_TOOLS);
    assert_eq!(v["load_errors"], json!([]));

    let out = toolhost(dir.path(), &["tools", "inspect", "jq", "--json"]);
    let v = stdout_json(&out);
    assert_eq!(v["effect"], "pure");
    assert_eq!(v["digest"].as_str().unwrap().len(), 64);
    assert_eq!(v["input_schema"]["required"], json!(["filter", "input"]));
    assert_eq!(v["limits"]["fuel"], 1_000_000_000u64);

    let out = toolhost(dir.path(), &["tools", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("markdown") && text.contains("pure"), "{text}");

    let out = toolhost(dir.path(), &["tools", "inspect", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn inspect_shows_the_effective_grants_and_policy_digest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_trusted_config(
        dir.path(),
        &(shared_cache_config()
            + "[tools.notes]\ndirs = [{ host = \"./data\", guest = \"/data\", mode = \"rw\" }]\nenv = [\"PATH\", \"TOOLHOST_TEST_SURELY_UNSET\"]\nallow_hosts = [\"API.example.com\", \"*.example.org\", \"127.0.0.1:8080\"]\nmax_response_bytes = 2048\n"),
    );
    let out = toolhost(dir.path(), &["tools", "inspect", "notes", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v = stdout_json(&out);
    let grants = &v["grants"];
    let host = std::path::PathBuf::from(grants["dirs"][0]["host"].as_str().unwrap());
    assert!(host.is_absolute() && host.ends_with("data"), "{host:?}");
    assert_eq!(grants["dirs"][0]["mode"], "rw");
    assert_eq!(
        grants["env"],
        json!([{"name": "PATH", "set": true}, {"name": "TOOLHOST_TEST_SURELY_UNSET", "set": false}])
    );
    assert_eq!(
        grants["allow_hosts"],
        json!(["api.example.com", "*.example.org", "127.0.0.1:8080"])
    );
    assert_eq!(v["limits"]["max_response_bytes"], 2048);
    let digest = v["policy_digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);

    // A tool without a policy has no grants and another digest.
    let out = toolhost(dir.path(), &["tools", "inspect", "calc", "--json"]);
    let v = stdout_json(&out);
    assert_eq!(
        v["grants"],
        json!({"dirs": [], "env": [], "allow_hosts": []})
    );
    assert_ne!(v["policy_digest"].as_str().unwrap(), digest);
}

#[test]
fn a_malformed_host_pattern_is_a_config_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    assert_config_error(
        dir.path(),
        "[tools.http_fetch]\ntimeout_ms = 100\nallow_hosts = [\"https://api.example.com/v1\"]\n",
        3,
        "tools.http_fetch.allow_hosts",
    );
}

#[test]
fn notes_without_a_grant_is_capability_denied() {
    let dir = tempfile::tempdir().unwrap();
    write_trusted_config(dir.path(), &shared_cache_config());
    let out = toolhost(
        dir.path(),
        &[
            "--json",
            "call",
            "notes",
            "--input",
            r#"{"file":"log.txt","text":"hi"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["error"]["kind"], "capability_denied");
}

/// A `[sandbox]` table reusing the suite's compiled components, so a test
/// that runs the binary in a fresh directory does not recompile every tool.
fn shared_cache_config() -> String {
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    format!(
        "[sandbox]\ncache_dir = {:?}\n\n",
        cache.display().to_string()
    )
}

/// Writes `text` as `toolhost.toml` and checks that the binary refuses it
/// with exit 2, naming `key` and `line`.
fn assert_config_error(dir: &std::path::Path, text: &str, line: usize, key: &str) {
    std::fs::write(dir.join("toolhost.toml"), text).unwrap();
    let out = toolhost(dir, &["--config", "toolhost.toml", "tools", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("line {line}")) && stderr.contains(key),
        "{stderr}"
    );
}

/// Errors that name the fix (issue 24, item 2). The kinds stay; the words
/// say what was meant, why a file was skipped, and which key grants what.
mod errors_that_name_the_fix {
    use super::*;

    fn stderr(out: &std::process::Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn a_misspelt_tool_gets_a_did_you_mean() {
        let dir = tempfile::tempdir().unwrap();
        write_trusted_config(dir.path(), &shared_cache_config());
        let out = toolhost(dir.path(), &["call", "cacl", "--input", "{}"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            stderr(&out).starts_with(
                "error: unknown_tool: no tool named `cacl` is loaded; did you mean `calc`? (loaded: calc, echo"
            ),
            "{out:?}"
        );
        let out = toolhost(dir.path(), &["tools", "inspect", "cacl"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(stderr(&out).contains("did you mean `calc`?"), "{out:?}");
        // Nothing close: no guess.
        let out = toolhost(dir.path(), &["call", "zzzzzz", "--input", "{}"]);
        assert!(!stderr(&out).contains("did you mean"), "{out:?}");
    }

    #[test]
    fn calling_a_skipped_file_says_why_it_was_skipped_and_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        write_trusted_config(dir.path(), &shared_cache_config());
        let tools = dir.path().join("tools");
        std::fs::create_dir(&tools).unwrap();
        let file = tools.join("broken.wasm");
        std::fs::write(&file, b"not a component").unwrap();
        let out = toolhost(
            dir.path(),
            &[
                "--tools-dir",
                "tools",
                "--json",
                "call",
                "broken",
                "--input",
                "{}",
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let v = stdout_json(&out);
        assert_eq!(v["error"]["kind"], "unknown_tool", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "no tool named `broken` is loaded: {} was skipped: ",
                file.display()
            )),
            "{message}"
        );
        assert!(!message.contains("did you mean"), "{message}");
    }

    #[test]
    fn a_path_outside_the_grants_names_the_dirs_key() {
        let dir = tempfile::tempdir().unwrap();
        write_trusted_config(dir.path(), &shared_cache_config());
        let input = r#"{"file":"log.txt","text":"hi"}"#;
        let out = toolhost(dir.path(), &["--json", "call", "notes", "--input", input]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let v = stdout_json(&out);
        assert_eq!(v["error"]["kind"], "capability_denied");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with(
                "; `notes` has no directory grants: give it one under `[tools.notes]` in the config, as `dirs = [{ host = \"./data\", guest = \"/data\", mode = \"rw\" }]`"
            ),
            "{message}"
        );
        // A read-only grant: the write is refused, and the hint names the
        // grant and the mode it needs.
        std::fs::create_dir(dir.path().join("data")).unwrap();
        write_trusted_config(
            dir.path(),
            &format!(
                "{}[tools.notes]\ndirs = [{{ host = \"./data\", guest = \"/data\", mode = \"ro\" }}]\n",
                shared_cache_config()
            ),
        );
        // (A new input: the first refusal is recorded under the first.)
        let input = r#"{"file":"other.txt","text":"hi"}"#;
        let out = toolhost(dir.path(), &["--json", "call", "notes", "--input", input]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let v = stdout_json(&out);
        assert_eq!(v["error"]["kind"], "capability_denied", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`notes` may reach only its grants (/data (ro)): add one to `dirs` under `[tools.notes]`")
                && message.contains("mode = \"rw\""),
            "{message}"
        );
    }

    #[test]
    fn a_refused_host_names_allow_hosts() {
        let dir = tempfile::tempdir().unwrap();
        write_trusted_config(dir.path(), &shared_cache_config());
        let out = toolhost(
            dir.path(),
            &[
                "--json",
                "call",
                "http_fetch",
                "--input",
                r#"{"url":"https://api.example.com/"}"#,
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let v = stdout_json(&out);
        assert_eq!(v["error"]["kind"], "capability_denied", "{v}");
        assert_eq!(
            v["error"]["message"],
            "api.example.com:443 is not in this tool's allow_hosts; to allow it, add the host to `allow_hosts` under `[tools.http_fetch]` in the config",
            "{v}"
        );
    }

    #[test]
    fn db_naming_a_directory_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let out = toolhost(dir.path(), &["--db", "state", "cache", "list"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let state = dir.path().join("state");
        assert_eq!(
            stderr(&out),
            format!(
                "error: usage: --db {}: that is a directory; --db names the store's file (such as {}), or a postgres:// URL\n",
                state.display(),
                state.join("toolhost.db").display()
            ),
        );
    }

    /// The warning of a missing grant and the call's error were the same
    /// words twice.
    #[test]
    fn a_missing_grant_directory_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        write_trusted_config(
            dir.path(),
            &format!(
                "{}[tools.notes]\ndirs = [{{ host = \"./data\", guest = \"/data\", mode = \"rw\" }}]\n",
                shared_cache_config()
            ),
        );
        let input = r#"{"file":"log.txt","text":"hi"}"#;
        let out = toolhost(dir.path(), &["call", "notes", "--input", input]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let text = stderr(&out);
        assert_eq!(text.matches("is not a directory").count(), 1, "{text}");
        assert!(text.starts_with("error: config: "), "{text}");
        // Another tool's call still warns about it.
        let out = toolhost(
            dir.path(),
            &["call", "calc", "--input", r#"{"expr":"1+1"}"#],
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(stderr(&out).starts_with("warning: "), "{out:?}");
    }
}

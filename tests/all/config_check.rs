//! Configs that fail gently (issue 12, item 5), `toolhost config check`,
//! and the same error kinds and hints in every command (item 7).

use std::path::Path;

use serde_json::{Value, json};

use crate::people::workdir;
use crate::support::{stdout_json, toolhost, write_trusted_config};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A config whose `notes` grant names a directory that does not exist yet.
fn missing_grant(dir: &Path) {
    write_trusted_config(
        dir,
        "[sandbox]\ntimeout_ms = 5_000\n\n[tools.notes]\ndirs = [{ host = \"./data\", guest = \"/data\", mode = \"rw\" }]\n",
    );
}

#[test]
fn a_missing_grant_makes_only_that_tool_unusable() {
    let dir = workdir();
    missing_grant(dir.path());
    let list = toolhost(dir.path(), &["tools", "list"]);
    assert_eq!(list.status.code(), Some(0), "{list:?}");
    let warned = stderr(&list);
    assert!(
        warned.contains("warning: toolhost.toml line 5 at `tools.notes.dirs.0.host`: `")
            && warned.contains(&format!(
                "{}` is not a directory",
                dir.path().join("data").display()
            )),
        "{warned}"
    );
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("notes") && l.contains("unusable")),
        "{listed}"
    );
    // Every other tool and command works, and says what is wrong.
    let calc = toolhost(
        dir.path(),
        &["call", "calc", "--input", r#"{"expr":"1+1"}"#],
    );
    assert_eq!(calc.status.code(), Some(0), "{calc:?}");
    assert!(
        stderr(&calc).contains("tools.notes.dirs.0.host"),
        "{calc:?}"
    );
    let gc = toolhost(dir.path(), &["cache", "gc"]);
    assert_eq!(gc.status.code(), Some(0), "{gc:?}");
    // Calling the tool names the key and the line; nothing is recorded.
    let input = r#"{"file":"log.txt","text":"hello"}"#;
    let notes = toolhost(dir.path(), &["--json", "call", "notes", "--input", input]);
    assert_eq!(notes.status.code(), Some(2), "{notes:?}");
    let v = stdout_json(&notes);
    assert_eq!(v["error"]["kind"], "config");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 5") && message.contains("tools.notes.dirs.0.host"),
        "{message}"
    );
    // Once the directory exists the same call runs: the refusal was not cached.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let notes = toolhost(dir.path(), &["call", "notes", "--input", input]);
    assert_eq!(notes.status.code(), Some(0), "{notes:?}");
    assert!(!stderr(&notes).contains("warning"), "{notes:?}");
}

/// Regression (issue 24, item 1): `call calc` loads only `calc`, and a
/// policy for `notes`, which is on the search path, warned on every call.
#[test]
fn a_policy_for_a_tool_on_the_search_path_but_not_loaded_is_no_warning() {
    let dir = workdir();
    write_trusted_config(dir.path(), "[tools.notes]\ntimeout_ms = 2_000\n");
    let calc = toolhost(
        dir.path(),
        &["call", "calc", "--input", r#"{"expr":"1+1"}"#],
    );
    assert_eq!(calc.status.code(), Some(0), "{calc:?}");
    assert_eq!(stderr(&calc), "", "{calc:?}");
}

/// A policy for a name on no tool is warned about once per config text,
/// not on every call; an edit of the config warns again.
#[test]
fn an_unknown_policy_is_warned_about_once_per_config_change() {
    let dir = workdir();
    let config = "[tools.nosuch]\ntimeout_ms = 2_000\n";
    write_trusted_config(dir.path(), config);
    let call = || {
        let out = toolhost(
            dir.path(),
            &["call", "calc", "--input", r#"{"expr":"1+1"}"#],
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        stderr(&out)
    };
    let warning = "toolhost.toml line 1 at `tools.nosuch`: a policy for `nosuch`, but no tool by that name is on the search path; it grants nothing";
    let first = call();
    assert!(first.contains(warning), "{first}");
    assert_eq!(first.matches("warning").count(), 1, "{first}");
    let second = call();
    assert!(!second.contains("warning"), "the same config: {second}");
    // `config check` lists it whenever it is asked.
    let check = toolhost(dir.path(), &["config", "check"]);
    assert!(stderr(&check).contains(warning), "{check:?}");
    // An edit (trusted again) is a new config: it warns once more.
    write_trusted_config(dir.path(), &format!("# edited\n\n{config}"));
    let edited = call();
    assert!(
        edited.contains("toolhost.toml line 3 at `tools.nosuch`"),
        "{edited}"
    );
    let again = call();
    assert!(!again.contains("warning"), "and then not again: {again}");
}

#[test]
fn a_policy_for_a_tool_that_is_not_loaded_says_did_you_mean() {
    let dir = workdir();
    write_trusted_config(
        dir.path(),
        "[tools.http-fetch]\nallow_hosts = [\"api.example.com\"]\n",
    );
    let out = toolhost(dir.path(), &["tools", "list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr(&out).contains("toolhost.toml line 1 at `tools.http-fetch`: a policy for `http-fetch`, but no tool by that name is on the search path; it grants nothing (did you mean `http_fetch`?)"),
        "{out:?}"
    );
    let check = toolhost(dir.path(), &["config", "check", "--json"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "a warning is not an error: {check:?}"
    );
    let v = stdout_json(&check);
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("did you mean `http_fetch`?"),
        "{v}"
    );
}

#[test]
fn config_check_prints_the_resolved_config_and_exits_2_on_errors() {
    let dir = workdir();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_trusted_config(
        dir.path(),
        "[tools.notes]\ndirs = [{ host = \"./data\", guest = \"/data\", mode = \"rw\" }]\nenv = [\"TOOLHOST_TEST_NOTES_OWNER\"]\ntimeout_ms = 2_000\n\n[[models]]\nname = \"hosted\"\nprovider = \"anthropic\"\nmodel = \"claude-sonnet-4-5\"\napi_key_env = \"TOOLHOST_TEST_UNSET_KEY\"\n\n[[models]]\nname = \"keyed\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"PATH\"\n",
    );
    let out = toolhost(dir.path(), &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["ok"], true);
    let real = dir.path().canonicalize().unwrap();
    let under = |p: &Value| {
        Path::new(p.as_str().unwrap())
            .canonicalize()
            .ok()
            .is_some_and(|p| p.starts_with(&real))
            || p.as_str()
                .unwrap()
                .starts_with(dir.path().to_str().unwrap())
    };
    assert!(under(&v["paths"]["config"]), "{v}");
    assert_eq!(v["paths"]["config_source"], "working_dir", "{v}");
    assert!(under(&v["paths"]["store"]), "{v}");
    let notes = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "notes")
        .unwrap();
    assert_eq!(notes["limits"]["timeout_ms"], 2000);
    assert_eq!(notes["grants"]["dirs"][0]["mode"], "rw");
    assert_eq!(notes["grants"]["dirs"][0]["exists"], true);
    assert_eq!(
        notes["grants"]["env"][0],
        json!({"name": "TOOLHOST_TEST_NOTES_OWNER", "set": false})
    );
    assert_eq!(v["models"][0]["key"], "no_key");
    assert_eq!(v["models"][1]["key"], "set");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("TOOLHOST_TEST_UNSET_KEY"),
        "{v}"
    );
    let human = toolhost(dir.path(), &["config", "check"]);
    let text = String::from_utf8_lossy(&human.stdout);
    for part in [
        "paths",
        "tools",
        "models",
        "no key (TOOLHOST_TEST_UNSET_KEY is not set)",
        "set (PATH)",
        "/data (rw)",
        "(./toolhost.toml, trusted with `toolhost config trust`)",
        "\nok\n",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }

    // A missing grant: the tool is unusable, so the check fails (exit 2).
    std::fs::remove_dir(dir.path().join("data")).unwrap();
    let out = toolhost(dir.path(), &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["ok"], false);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("tools.notes.dirs.0.host"),
        "{v}"
    );
    let out = toolhost(dir.path(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MISSING"),
        "{out:?}"
    );

    // A config that does not load: exit 2 naming the key and line.
    // Trusting it refuses too, with the same words: a record for a config
    // that cannot load would trust nothing.
    std::fs::write(dir.path().join("toolhost.toml"), "[sandbox]\nfuell = 5\n").unwrap();
    for args in [
        &["--config", "toolhost.toml", "config", "check"][..],
        &["config", "trust"],
    ] {
        let out = toolhost(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(stderr(&out).contains("line 2"), "{out:?}");
    }
}

/// `unknown_tool` from `call` and `tools inspect`, with the same words; an
/// agent's call of an unknown tool is journaled under the same kind. (MCP:
/// `mcp::http`, the JSON-RPC error's `data.kind`.)
#[test]
fn an_unknown_tool_is_unknown_tool_in_every_command() {
    let dir = workdir();
    let call = toolhost(
        dir.path(),
        &["--json", "call", "frobnicate", "--input", "{}"],
    );
    let inspect = toolhost(dir.path(), &["--json", "tools", "inspect", "frobnicate"]);
    for out in [&call, &inspect] {
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let v = stdout_json(out);
        assert_eq!(v["error"]["kind"], "unknown_tool", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("no tool named `frobnicate` is loaded (loaded: calc, echo"),
            "{v}"
        );
    }
    std::fs::write(
        dir.path().join("turns.json"),
        r#"{"mode": "conversation", "turns": [{"tool_calls": [{"name": "nope", "arguments": {}}]}, {"text": "done"}]}"#,
    )
    .unwrap();
    write_trusted_config(
        dir.path(),
        "[[models]]\nname = \"s\"\nprovider = \"scripted\"\nscript = \"turns.json\"\n",
    );
    let run = toolhost(
        dir.path(),
        &["--json", "agent", "run", "t", "--run-id", "r1"],
    );
    assert!(run.status.success(), "{run:?}");
    let show = stdout_json(&toolhost(dir.path(), &["--json", "runs", "show", "r1"]));
    let tool = show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "tool")
        .unwrap();
    assert_eq!(tool["error_kind"], "unknown_tool", "{show}");
}

/// The `in_doubt` message names the exact command to run next, with the
/// `--config`, `--tools-dir` and `--db` the failing call used, and that
/// command works as printed.
#[test]
fn the_in_doubt_hint_is_the_exact_command_with_the_calls_flags() {
    let dir = workdir();
    let state = dir.path().join("elsewhere");
    std::fs::create_dir_all(state.join("data")).unwrap();
    std::fs::write(
        state.join("conf.toml"),
        format!(
            "[tools.notes]\ndirs = [{{ host = \"{}\", guest = \"/data\", mode = \"rw\" }}]\n",
            state.join("data").display()
        ),
    )
    .unwrap();
    let (config, db) = (state.join("conf.toml"), state.join("state.db"));
    let (config, db) = (config.to_str().unwrap(), db.to_str().unwrap());
    let call = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            config,
            "--db",
            db,
            "call",
            "notes",
            "--input",
            r#"{"file":"log.txt","text":"charge"}"#,
            "--idempotency-key",
            "order-17",
        ];
        args.extend_from_slice(extra);
        toolhost(dir.path(), &args)
    };
    // A limit cutting a side effect short leaves it in doubt.
    let out = call(&["--fuel", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).starts_with("error: out_of_fuel: "), "{out:?}");
    // The next caller of that key is told it is in doubt, and what to run.
    let out = call(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let message = stderr(&out);
    assert!(message.starts_with("error: in_doubt: "), "{message}");
    let start = message.find("`toolhost ").expect("a command") + 1;
    let end = start + message[start..].find('`').unwrap();
    let command = &message[start..end];
    assert!(
        command.starts_with(&format!(
            "toolhost --config {config} --db {db} cache resolve "
        )),
        "{command}"
    );
    assert!(command.ends_with(" --retry|--abandon"), "{command}");
    // Pasted as printed (choosing --abandon), from another directory.
    let abandon = command.replace("--retry|--abandon", "--abandon");
    let args: Vec<&str> = abandon.split(' ').skip(1).collect();
    let other = workdir();
    let out = toolhost(other.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // A second resolve finds nothing in doubt: its own kind.
    let out = toolhost(other.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).starts_with("error: not_in_doubt: "), "{out:?}");
}

/// Issue 24, item 8: `config init` writes a starter config that passes
/// `config check`, is trusted, and runs an agent offline: the quick start
/// is two commands. It never overwrites a file without `--force`.
#[test]
fn config_init_writes_a_trusted_starter_that_checks_and_runs_an_agent() {
    let dir = workdir();
    let init = toolhost(dir.path(), &["config", "init"]);
    assert_eq!(init.status.code(), Some(0), "{init:?}");
    let said = String::from_utf8_lossy(&init.stdout);
    assert!(
        said.contains("trusted it") && said.contains("next: toolhost agent run"),
        "{said}"
    );
    let config = std::fs::read_to_string(dir.path().join("toolhost.toml")).unwrap();
    assert!(
        config.starts_with("# toolhost.toml, written by"),
        "{config}"
    );
    assert!(config.contains("[tools.notes]"), "{config}");
    let check = toolhost(dir.path(), &["config", "check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert_eq!(stderr(&check), "", "no warning: {check:?}");
    let run = toolhost(
        dir.path(),
        &["agent", "run", "What is 6*7? Note the answer."],
    );
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("6*7 is 42"),
        "{run:?}"
    );
    let noted = std::fs::read_to_string(dir.path().join("data/answers.txt")).unwrap();
    assert!(noted.trim_end().ends_with(" 6*7 = 42"), "{noted}");

    // A second init refuses, and changes nothing.
    std::fs::write(dir.path().join("toolhost.toml"), "# mine\n").unwrap();
    let again = toolhost(dir.path(), &["config", "init"]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(stderr(&again).contains("exists; nothing was written (--force overwrites it)"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("toolhost.toml")).unwrap(),
        "# mine\n"
    );
    // `--force` works even though the edited file is no longer trusted.
    let forced = toolhost(dir.path(), &["config", "init", "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{forced:?}");
    let check = toolhost(dir.path(), &["config", "check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
}

/// A config of another name is read only through `--config`, which needs
/// no trust: `init` records none and says how to use it.
#[test]
fn config_init_of_another_name_says_to_use_config() {
    let dir = workdir();
    let out = toolhost(dir.path(), &["--json", "config", "init", "starter.toml"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["trusted"], false, "{v}");
    let path = dir.path().join("starter.toml");
    assert_eq!(v["config"], json!(path), "{v}");
    assert_eq!(
        v["next"],
        format!(
            "toolhost --config {} agent run \"What is 6*7? Note the answer.\"",
            path.display()
        )
    );
    let check = toolhost(dir.path(), &["--config", "starter.toml", "config", "check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
}

/// Issue 19: `idempotency_header` must be a header name the forwarded key
/// may take: not a malformed one, and not one the HTTP layer or the
/// remote's authentication owns. Either is a config error naming the key
/// and the line, before anything runs.
#[test]
fn a_bad_idempotency_header_is_a_config_error_naming_the_key_and_line() {
    let dir = workdir();
    for (name, why) in [
        ("Idempotency Key", "is not an HTTP header name"),
        ("Content-Length", "cannot carry the forwarded key"),
        ("host", "cannot carry the forwarded key"),
        ("Authorization", "cannot carry the forwarded key"),
    ] {
        std::fs::write(
            dir.path().join("toolhost.toml"),
            format!(
                "[tools.pay]\nallow_hosts = [\"127.0.0.1:9\"]\nidempotency_header = {name:?}\n"
            ),
        )
        .unwrap();
        let out = toolhost(
            dir.path(),
            &["--config", "toolhost.toml", "config", "check"],
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        let text = stderr(&out);
        assert!(
            text.contains("line 3")
                && text.contains("tools.pay.idempotency_header")
                && text.contains(&format!("`{name}` {why}")),
            "{name}: {text}"
        );
    }
    // A header of the API's own is fine.
    std::fs::write(
        dir.path().join("toolhost.toml"),
        "[tools.pay]\nallow_hosts = [\"127.0.0.1:9\"]\nidempotency_header = \"X-Request-Key\"\n",
    )
    .unwrap();
    let out = toolhost(
        dir.path(),
        &["--config", "toolhost.toml", "config", "check"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

//! The trust boundary around the host's own files and resources: grants
//! cannot reach the store, locks, artifact cache, key, tools or config, the
//! user's config and state directories, or `/proc`, `/sys` and `/dev`; a
//! `./toolhost.toml` (which a tool may have written) is used only once
//! trusted;
//! granted directories are pinned when the sandbox opens; the epoch ticker
//! sleeps when no call runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use toolhost::config::{Config, DirGrant, DirMode, ToolPolicy};
use toolhost::sandbox::{Sandbox, SandboxOptions};

use crate::support::{call, hostile_dir, run_binary, stdout_json, toolhost};

fn grant_config(store: &Path, grant: &Path, extra: &str) -> String {
    format!(
        "[store]\npath = {:?}\n\n[sandbox]\n{extra}\n\n[tools.notes]\nenv = []\ndirs = [\n  {{ host = {:?}, guest = \"/data\", mode = \"rw\" }},\n]\n",
        store.display().to_string(),
        grant.display().to_string(),
    )
}

fn refused(text: &str, origin: &Path) -> toolhost::config::ConfigError {
    Config::parse(text, origin).expect_err("the grant must be refused")
}

#[test]
fn a_grant_reaching_the_hosts_own_files_is_refused_with_key_and_line() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    std::fs::create_dir_all(state.join("artifacts").join("engine")).unwrap();
    std::fs::create_dir_all(state.join("app.db.owners")).unwrap();
    let tools = root.path().join("tools");
    let keys = root.path().join("keys");
    let elsewhere = root.path().join("elsewhere");
    for d in [&tools, &keys, &elsewhere] {
        std::fs::create_dir_all(d).unwrap();
    }
    let db = state.join("app.db");
    let origin = root.path().join("conf").join("toolhost.toml");
    std::fs::create_dir_all(origin.parent().unwrap()).unwrap();
    let dirs = format!(
        "tools_dir = {:?}\nkey_dir = {:?}\ncache_dir = {:?}",
        tools.display().to_string(),
        keys.display().to_string(),
        state.join("artifacts").display().to_string()
    );

    let cases: &[(&Path, &str)] = &[
        (&state, "contains the store"),
        (&state.join("artifacts"), "is the artifact cache"),
        (
            &state.join("artifacts").join("engine"),
            "lies inside the artifact cache",
        ),
        (&state.join("app.db.owners"), "is the store's owner locks"),
        (&tools, "is the tools directory"),
        (&keys, "is the artifact key directory"),
        (root.path(), "contains the store"),
        (origin.parent().unwrap(), "contains the config file"),
    ];
    for (grant, why) in cases {
        let text = grant_config(&db, grant, &dirs);
        let e = refused(&text, &origin);
        assert_eq!(e.key.as_deref(), Some("tools.notes.dirs.0.host"), "{e}");
        assert_eq!(e.line, Some(12), "{e}");
        assert!(e.message.contains(why), "{why}: {e}");
    }
    // A directory of its own is fine.
    Config::parse(&grant_config(&db, &elsewhere, &dirs), &origin).unwrap();
}

#[cfg(unix)]
#[test]
fn symlinks_are_resolved_before_comparing() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let origin = root.path().join("toolhost.toml");
    // The grant is a link to the store's directory...
    let link = root.path().join("innocent");
    std::os::unix::fs::symlink(&state, &link).unwrap();
    let text = grant_config(&state.join("x.db"), &link, "");
    let e = refused(&text, &origin);
    assert!(e.message.contains("contains the store"), "{e}");
    // ...and the store is reached through a link to the granted directory.
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let via = root.path().join("via");
    std::os::unix::fs::symlink(&data, &via).unwrap();
    let text = grant_config(&via.join("x.db"), &data, "");
    let e = refused(&text, &origin);
    assert!(e.message.contains("contains the store"), "{e}");
}

#[test]
fn the_cli_refuses_a_grant_over_the_db_given_on_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = root.path().join("toolhost.toml");
    std::fs::write(
        &config,
        format!(
            "[tools.notes]\ndirs = [{{ host = {:?}, guest = \"/data\" }}]\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let db = data.join("calls.db");
    let out = toolhost(
        root.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "tools",
            "list",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("tools.notes.dirs.0.host"), "{stderr}");
    assert!(stderr.contains("contains the store"), "{stderr}");
}

/// A granted directory is opened when the sandbox opens: swapping its path
/// for a link to somewhere else afterwards changes nothing a call sees.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn granted_directories_are_pinned_when_the_sandbox_opens() {
    let root = tempfile::tempdir().unwrap();
    let granted = root.path().join("granted");
    let secret = root.path().join("secret");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(granted.join("note.txt"), "granted").unwrap();
    std::fs::write(secret.join("note.txt"), "secret").unwrap();
    let policy = ToolPolicy {
        dirs: vec![DirGrant {
            host: granted.clone(),
            guest: "/data".into(),
            mode: DirMode::Ro,
        }],
        ..ToolPolicy::default()
    };
    let mut options = SandboxOptions::for_dir(hostile_dir());
    let shared = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    options.key_dir = Some(shared.with_extension("key"));
    options.cache_dir = Some(shared);
    options.policies = BTreeMap::from([("snoop".to_string(), policy)]);
    let sandbox = Sandbox::open(options).await.unwrap();

    let read = || call(&sandbox, "snoop", r#"{"path":"/data/note.txt"}"#);
    assert_eq!(read().await.unwrap().output["contents"], "granted");
    // Swap the configured path for a symlink to the secret directory.
    std::fs::rename(&granted, root.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&secret, &granted).unwrap();
    let out = read().await.unwrap();
    assert_eq!(
        out.output["contents"], "granted",
        "followed the swapped path"
    );
}

#[tokio::test]
async fn the_epoch_ticker_sleeps_when_no_call_runs() {
    // A sandbox of its own: no other test's calls keep its ticker awake.
    let mut options = SandboxOptions::for_dir(crate::support::examples_dir());
    let shared = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    options.key_dir = Some(shared.with_extension("key"));
    options.cache_dir = Some(shared);
    let sandbox = &Sandbox::open(options).await.unwrap();
    let wait_idle = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sandbox.ticker_idle() {
            assert!(Instant::now() < deadline, "the ticker never went idle");
            std::thread::yield_now();
        }
    };
    // A call ticks (it spins long enough for several ticks)...
    let before = sandbox.ticks();
    let out = call(sandbox, "slow", r#"{"ms":30}"#).await.unwrap();
    assert!(out.output.is_object());
    assert!(sandbox.ticks() > before, "no tick during a call");
    // ...and once no call runs, the ticker parks and stops counting.
    wait_idle();
    let parked = sandbox.ticks();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(sandbox.ticker_idle());
    assert_eq!(sandbox.ticks(), parked, "ticked while idle");
}

/// A home of its own for the binary: `HOME` holds the config, data and
/// state directories (so granting `HOME` reaches them), the cache is the
/// suite's (nothing recompiles).
fn home_env(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let home = root.join("home");
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xdg");
    vec![
        ("HOME", home.clone()),
        ("XDG_CONFIG_HOME", home.join(".config")),
        ("XDG_DATA_HOME", home.join(".local/share")),
        ("XDG_STATE_HOME", home.join(".local/state")),
        ("XDG_CACHE_HOME", shared.join("cache")),
    ]
}

fn run_in(root: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut env = home_env(root);
    // Never a variable of the test's own environment.
    env.push(("TOOLHOST_CONFIG", PathBuf::new()));
    run_binary(Path::new(env!("CARGO_BIN_EXE_toolhost")), cwd, args, &env)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `[sandbox]` with the suite's compiled components and their key.
fn shared_cache() -> String {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    format!(
        "[sandbox]\ncache_dir = {:?}\nkey_dir = {:?}\n",
        cache.display().to_string(),
        cache.with_extension("key").display().to_string(),
    )
}

/// [`shared_cache`] over the hostile tools alone (`plant`, `snoop`).
fn hostile_sandbox() -> String {
    format!(
        "{}builtin_tools = false\ntools_dir = {:?}\n",
        shared_cache(),
        hostile_dir().display().to_string(),
    )
}

/// The attack: a tool granted only `proj -> /project (rw)` writes
/// `/project/toolhost.toml` granting `snoop` `/etc`; the next run from
/// `proj` must not load it. It is refused (exit 2) with the command that
/// would trust it, and `snoop` never runs.
#[test]
fn a_config_planted_by_a_tool_in_its_granted_dir_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let proj = root.path().join("proj");
    let conf = root.path().join("conf");
    for d in [&proj, &conf] {
        std::fs::create_dir_all(d).unwrap();
    }
    let host_config = conf.join("toolhost.toml");
    std::fs::write(
        &host_config,
        format!(
            "{}\n[tools.plant]\ndirs = [{{ host = {:?}, guest = \"/project\", mode = \"rw\" }}]\n",
            hostile_sandbox(),
            proj.display().to_string()
        ),
    )
    .unwrap();
    let planted = format!(
        "{}\n[tools.snoop]\ndirs = [{{ host = \"/etc\", guest = \"/etc\" }}]\n",
        hostile_sandbox()
    );
    let input = serde_json::json!({"path": "/project/toolhost.toml", "contents": planted});
    let out = run_in(
        root.path(),
        &proj,
        &[
            "--config",
            host_config.to_str().unwrap(),
            "call",
            "plant",
            "--input",
            &input.to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(proj.join("toolhost.toml")).unwrap(),
        planted,
        "the tool wrote the config"
    );

    // The next run from `proj`: refused, whatever the command.
    for args in [
        &[
            "--json",
            "call",
            "snoop",
            "--input",
            r#"{"path":"/etc/passwd"}"#,
        ][..],
        &["tools", "list"],
        &["config", "check"],
    ] {
        let out = run_in(root.path(), &proj, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let said = text(&out);
        let real = proj.canonicalize().unwrap().join("toolhost.toml");
        assert!(
            said.contains("not trusted")
                && said.contains(&format!("`toolhost config trust {}`", real.display())),
            "{args:?}: {said}"
        );
        assert!(!said.contains("root:"), "snoop ran: {said}");
    }
}

/// A trusted `./toolhost.toml` is used; once it changes it is refused
/// again (exit 2, naming both digests and the command), until trusted
/// again. `config check` says why the file it uses is trusted.
#[test]
fn a_trusted_config_that_changes_is_refused_again() {
    let root = tempfile::tempdir().unwrap();
    let proj = root.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let config = proj.join("toolhost.toml");
    let text_of = |ms: u32| format!("{}\n[tools.echo]\ntimeout_ms = {ms}\n", shared_cache());
    std::fs::write(&config, text_of(1234)).unwrap();
    // `echo`'s timeout as the run from `proj` sees it, or the refusal.
    let timeout = || {
        let out = run_in(root.path(), &proj, &["--json", "tools", "inspect", "echo"]);
        match out.status.code() {
            Some(0) => Ok(stdout_json(&out)["limits"]["timeout_ms"].clone()),
            code => Err((code, text(&out))),
        }
    };
    let (code, said) = timeout().expect_err("untrusted");
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("not trusted"), "{said}");

    let out = run_in(root.path(), &proj, &["--json", "config", "trust"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let record = stdout_json(&out);
    assert_eq!(
        record["trusted"],
        config.canonicalize().unwrap().display().to_string()
    );
    assert_eq!(
        record["blake3"],
        blake3::hash(text_of(1234).as_bytes()).to_hex().to_string()
    );
    assert_eq!(timeout().unwrap(), 1234);
    let check = run_in(root.path(), &proj, &["--json", "config", "check"]);
    assert_eq!(stdout_json(&check)["paths"]["config_source"], "working_dir");

    // The record is private: 0600 in a 0700 directory, under the state dir.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let records = root.path().join("home/.local/state/toolhost/trusted");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&records), 0o700);
        let files: Vec<_> = std::fs::read_dir(&records).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        assert_eq!(mode(&files[0].path()), 0o600);
    }

    std::fs::write(&config, text_of(4321)).unwrap();
    let (code, said) = timeout().expect_err("changed");
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("changed since it was trusted") && said.contains("`toolhost config trust "),
        "{said}"
    );
    let out = run_in(root.path(), &proj, &["config", "trust"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(timeout().unwrap(), 4321);

    // The same text at another path is not trusted by that record.
    let other = root.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(&config, other.join("toolhost.toml")).unwrap();
    let out = run_in(root.path(), &other, &["tools", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // --config needs no record.
    let out = run_in(
        root.path(),
        &other,
        &["--config", "toolhost.toml", "--json", "config", "check"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout_json(&out)["paths"]["config_source"], "flag");
}

/// A grant of `/proc/self` exposed every host variable (API keys, the
/// serve token); `/proc`, `/sys`, `/dev`, anything under them, the user's
/// config and state directories, and any ancestor of these (`HOME`) can
/// never be granted: a config error naming the key and line, symlinks
/// resolved first.
#[test]
fn grants_of_the_hosts_kernel_files_and_the_users_own_dirs_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let config_dir = home.join(".config/toolhost");
    let state_dir = home.join(".local/state/toolhost");
    for d in [&config_dir, &state_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let into_proc = root.path().join("innocent");
    #[cfg(unix)]
    std::os::unix::fs::symlink("/proc/self", &into_proc).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        ("/proc/self".into(), "lies inside the host's processes"),
        ("/proc".into(), "is the host's processes"),
        ("/proc/self/fd".into(), "lies inside the host's processes"),
        (into_proc.clone(), "lies inside the host's processes"),
        ("/sys".into(), "is the host's kernel"),
        ("/sys/kernel".into(), "lies inside the host's kernel"),
        ("/dev".into(), "is the host's devices"),
        ("/dev/shm".into(), "lies inside the host's devices"),
        (config_dir.clone(), "is the user's config directory"),
        (home.join(".config"), "contains the user's config directory"),
        (state_dir.clone(), "is the user's state directory"),
        (home.clone(), "contains"),
        ("/".into(), "contains"),
    ];
    let config = root.path().join("grant.toml");
    for (grant, why) in &cases {
        std::fs::write(
            &config,
            format!(
                "{}\n[tools.snoop]\nenv = []\ndirs = [\n  {{ host = {:?}, guest = \"/x\" }},\n]\n",
                hostile_sandbox(),
                grant.display().to_string()
            ),
        )
        .unwrap();
        let out = run_in(
            root.path(),
            root.path(),
            &["--config", config.to_str().unwrap(), "tools", "list"],
        );
        assert_eq!(out.status.code(), Some(2), "{grant:?}: {}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("line 10") && said.contains("`tools.snoop.dirs.0.host`"),
            "{grant:?}: {said}"
        );
        assert!(said.contains(why), "{grant:?} ({why}): {said}");
    }
}

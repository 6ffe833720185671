//! The trust boundary around the host's own files and resources: grants
//! cannot reach the store, locks, artifact cache, key, tools or config;
//! granted directories are pinned when the sandbox opens; the epoch ticker
//! sleeps when no call runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use toolhost::config::{Config, DirGrant, DirMode, ToolPolicy};
use toolhost::sandbox::{Sandbox, SandboxOptions};

use crate::support::{call, hostile_dir, toolhost};

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

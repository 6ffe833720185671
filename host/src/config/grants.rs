//! Directory grants may not reach the host's own files.
//!
//! A tool with a grant over the store could rewrite recorded outcomes (and so
//! what the cache replays) or forge a claim; over the owner locks, make a dead
//! claimant look alive or a live one dead; over the artifact cache or the key
//! directory, plant native code the host would run; over the tools directory,
//! replace a tool; over the config file or the user's config directory,
//! widen its own grants; over the state directory, forge the record that
//! trusts a working-directory config (`trust`). `/proc`, `/sys` and `/dev`
//! are the host itself: `/proc/self/environ` alone holds every variable of
//! the host, API keys and the serve token included. So a grant that
//! contains any of these, or lies inside one, is a config error naming the
//! grant's key and line; granting an ancestor (`$HOME`, `/`) is refused for
//! what it contains.
//!
//! Both sides are compared after resolving symlinks (`canonicalize`), so
//! neither `grant -> /var/lib/toolhost` nor a store path reached through a
//! link slips by. A path that does not exist yet (a store not created, a
//! cache not written) is resolved through its deepest existing ancestor:
//! what it will be once created is what the grant must not reach.

use std::path::{Component, Path, PathBuf};

use super::error::Invalid;
use super::schema::Config;

/// One of the host's own paths, and how to name it in an error.
struct Protected {
    what: &'static str,
    path: PathBuf,
}

/// The host's own paths under `config` (`origin`: the config file, if any).
fn protected(config: &Config, origin: Option<&Path>) -> Vec<Protected> {
    let db = &config.store.path;
    let mut owners = db.file_name().unwrap_or_default().to_os_string();
    owners.push(".owners");
    let mut out = vec![
        Protected {
            what: "the store",
            path: db.clone(),
        },
        Protected {
            what: "the store's owner locks",
            path: db.with_file_name(owners),
        },
    ];
    if let Some(cache) = config.sandbox.effective_cache_dir() {
        out.push(Protected {
            what: "the artifact cache",
            path: cache,
        });
    }
    // Every directory on the tool search path: whoever writes one picks
    // what runs.
    for dir in [
        config.sandbox.tools_dir.clone(),
        crate::paths::user_tools_dir(),
    ]
    .into_iter()
    .flatten()
    {
        out.push(Protected {
            what: "the tools directory",
            path: dir,
        });
    }
    if let Some(key_dir) = config
        .sandbox
        .key_dir
        .clone()
        .or_else(crate::paths::default_key_dir)
    {
        out.push(Protected {
            what: "the artifact key directory",
            path: key_dir,
        });
    }
    let user_dirs = [
        ("the user's config directory", crate::paths::config_dir()),
        (
            "the user's state directory (trusted configs, artifact key)",
            crate::paths::state_dir(),
        ),
        ("the user's cache directory", crate::paths::cache_dir()),
    ];
    for (what, dir) in user_dirs {
        if let Some(path) = dir {
            out.push(Protected { what, path });
        }
    }
    for (what, dir) in [
        ("the host's processes and their environments", "/proc"),
        ("the host's kernel and devices", "/sys"),
        ("the host's devices", "/dev"),
    ] {
        out.push(Protected {
            what,
            path: PathBuf::from(dir),
        });
    }
    if let Some(file) = origin {
        out.push(Protected {
            what: "the config file",
            path: file.to_path_buf(),
        });
    }
    out
}

/// `path` with symlinks resolved; a missing tail is appended to its deepest
/// existing ancestor, resolved.
pub(super) fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in tail.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other),
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                tail.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Refuses any grant that contains one of the host's own paths or lies
/// inside one.
pub(super) fn check(config: &Config, origin: Option<&Path>) -> Result<(), Invalid> {
    let own: Vec<(&'static str, PathBuf, PathBuf)> = protected(config, origin)
        .into_iter()
        .map(|p| (p.what, resolve(&p.path), p.path))
        .collect();
    for (name, policy) in &config.tools {
        for (i, grant) in policy.dirs.iter().enumerate() {
            let granted = resolve(&grant.host);
            for (what, real, configured) in &own {
                let relation = if *real == granted {
                    "is"
                } else if real.starts_with(&granted) {
                    "contains"
                } else if granted.starts_with(real) {
                    "lies inside"
                } else {
                    continue;
                };
                return Err(Invalid::new(
                    format!("tools.{name}.dirs.{i}.host"),
                    format!(
                        "the grant `{}` (resolved: {}) {relation} {what} ({}); a tool may not reach the host's own files",
                        grant.host.display(),
                        granted.display(),
                        configured.display(),
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tails_resolve_through_their_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(resolve(&dir.path().join("a/b/../c")), real.join("a/c"));
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&real, &link).unwrap();
            assert_eq!(resolve(&link.join("not-yet.db")), real.join("not-yet.db"));
        }
    }
}

//! Relative paths in a config mean "beside this file", not "wherever the
//! command runs".
//!
//! A `tools_dir = "tools"` that meant a different directory in every shell
//! made the same config load different tools, and a `[store] path` that
//! moved with the current directory made a repeated side effect run again.
//! So every path a config names (the tools, cache and key directories, the
//! store, each grant's host directory, each scripted model's file) is joined
//! to the config file's own directory right after parsing. The result is
//! lexical: symlinks are resolved later, where it matters (`grants`).

use std::path::{Path, PathBuf};

use super::schema::Config;

/// Makes every relative path in `config` absolute against `origin`'s
/// directory (the current directory if `origin` is a bare file name).
pub(super) fn resolve(config: &mut Config, origin: &Path) {
    let dir = match origin.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let fix = |p: &mut PathBuf| {
        // An empty path stays empty, so validation can say it is missing.
        if !p.as_os_str().is_empty() {
            *p = crate::paths::resolve_against(&base, p);
        }
    };
    let sandbox = &mut config.sandbox;
    for p in [
        &mut sandbox.tools_dir,
        &mut sandbox.cache_dir,
        &mut sandbox.key_dir,
    ]
    .into_iter()
    .flatten()
    {
        fix(p);
    }
    fix(&mut config.store.path);
    for grant in config.tools.values_mut().flat_map(|t| t.dirs.iter_mut()) {
        fix(&mut grant.host);
    }
    for script in config.models.iter_mut().filter_map(|m| m.script.as_mut()) {
        fix(script);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_in_a_config_resolves_against_its_directory() {
        let text = r#"
[sandbox]
tools_dir = "tools"
cache_dir = "../cache"
key_dir = "/abs/keys"

[tools.notes]
dirs = [{ host = "data", guest = "/data", mode = "rw" }]

[[models]]
name = "s"
provider = "scripted"
script = "turns.json"

[store]
path = "state/toolhost.db"
"#;
        let mut config: Config = toml::from_str(text).unwrap();
        resolve(&mut config, Path::new("/etc/toolhost/toolhost.toml"));
        let s = &config.sandbox;
        assert_eq!(
            s.tools_dir.as_deref(),
            Some(Path::new("/etc/toolhost/tools"))
        );
        assert_eq!(
            s.cache_dir.as_deref(),
            Some(Path::new("/etc/toolhost/../cache"))
        );
        assert_eq!(s.key_dir.as_deref(), Some(Path::new("/abs/keys")));
        assert_eq!(
            config.tools["notes"].dirs[0].host,
            Path::new("/etc/toolhost/data")
        );
        assert_eq!(
            config.models[0].script.as_deref(),
            Some(Path::new("/etc/toolhost/turns.json"))
        );
        assert_eq!(
            config.store.path,
            Path::new("/etc/toolhost/state/toolhost.db")
        );
    }

    #[test]
    fn a_bare_file_name_resolves_against_the_current_directory() {
        let mut config: Config = toml::from_str("[sandbox]\ntools_dir = \"t\"\n").unwrap();
        resolve(&mut config, Path::new("toolhost.toml"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.sandbox.tools_dir, Some(cwd.join("t")));
    }
}

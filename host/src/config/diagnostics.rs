//! What is wrong with a config that still loads: warnings, not errors.
//!
//! A config error stops every command (exit 2), which is right for a value
//! that cannot mean anything (`timeout_ms = "soon"`). Some problems concern
//! one tool only, and stopping everything for them would take `tools list`,
//! `cache resolve` and every other tool down with it:
//!
//! - a directory grant whose host directory is missing: that tool is
//!   unusable (each call of it fails as `config`, naming the key and line),
//!   everything else works;
//! - a `[tools.NAME]` policy for a tool that is not on the search path (a
//!   typo such as `http-fetch` for `http_fetch` would otherwise silently
//!   grant nothing): a warning, with a "did you mean" when a name on the
//!   search path is close. The names are the search path's, loaded or not:
//!   `toolhost call calc` loads only `calc`, and a policy for `notes` is
//!   not a typo for it.
//!
//! Every command prints the missing-grant warnings on stderr; an unknown
//! policy is warned about once per config text (`warned`);
//! `toolhost config check` lists them all with the resolved config.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::schema::Config;
use super::spans::{self, Spans};

/// Where a config came from, and what is wrong with it that is not fatal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnostics {
    /// The file read, if any (none: built-in defaults).
    pub file: Option<PathBuf>,
    /// Why the file may be used (`None`: parsed from text, or defaults).
    pub source: Option<super::Source>,
    /// The blake3 digest of the text parsed (`None`: built-in defaults):
    /// what a warning given once is remembered under (`warned`).
    pub digest: Option<String>,
    /// Problems found while loading, in file order.
    pub warnings: Vec<ConfigWarning>,
    /// The line of each `[tools.NAME]` policy, for later warnings.
    policy_lines: BTreeMap<String, usize>,
}

/// A problem in a config that loads: what it concerns, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: PathBuf,
    /// The 1-based line, when it can be found.
    pub line: Option<usize>,
    /// The dotted key, such as `tools.notes.dirs.0.host`.
    pub key: String,
    /// The tool it makes unusable, if any.
    pub unusable_tool: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        write!(f, " at `{}`: {}", self.key, self.message)
    }
}

/// Marks each tool with a missing grant directory unusable and records a
/// warning for it, placed by `spans`.
pub(super) fn degrade_missing_grants(config: &mut Config, spans: &Spans<'_>, file: &Path) {
    let mut warnings = Vec::new();
    for (name, policy) in &mut config.tools {
        for (i, grant) in policy.dirs.iter().enumerate() {
            if grant.host.is_dir() {
                continue;
            }
            let key = format!("{}.dirs.{i}.host", policy_key(name));
            let warning = ConfigWarning {
                file: file.to_path_buf(),
                line: spans.line_of(&key),
                key,
                unusable_tool: Some(name.clone()),
                message: format!(
                    "`{}` is not a directory; `{name}` cannot be called until it exists",
                    grant.host.display()
                ),
            };
            // The first missing grant is the one a call reports.
            policy.unusable.get_or_insert_with(|| warning.to_string());
            warnings.push(warning);
        }
    }
    config.diagnostics.policy_lines = config
        .tools
        .keys()
        .filter_map(|name| Some((name.clone(), spans.line_of(&policy_key(name))?)))
        .collect();
    config.diagnostics.file = Some(file.to_path_buf());
    config.diagnostics.warnings.extend(warnings);
}

/// `tools.NAME`, quoted as TOML needs it.
fn policy_key(name: &str) -> String {
    spans::join(&["tools".to_string(), name.to_string()])
}

/// How close two tool names must be (Jaro-Winkler, after treating `-` and
/// `_` alike) to suggest one for the other; clap uses the same measure and
/// threshold for misspelt subcommands.
const CLOSE: f64 = 0.8;

/// The name in `known` closest to `name`, if one is close enough to be
/// what was meant (`-` and `_` alike, case ignored). One measure for every
/// "did you mean": policies, `call`, `tools inspect`, MCP.
pub fn closest_name<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let fold = |s: &str| s.replace('-', "_").to_lowercase();
    let name = fold(name);
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&name, &fold(k)), k))
        .filter(|(score, _)| *score >= CLOSE)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

impl Config {
    /// A warning for each `[tools.NAME]` policy that names no tool in
    /// `names` (every name on the search path, loaded or not), with a
    /// "did you mean" when one is close.
    pub fn unknown_policies(&self, names: &[&str]) -> Vec<ConfigWarning> {
        let file = self.diagnostics.file.clone().unwrap_or_default();
        self.tools
            .keys()
            .filter(|name| !names.contains(&name.as_str()))
            .map(|name| {
                let mut message = format!(
                    "a policy for `{name}`, but no tool by that name is on the search path; it grants nothing"
                );
                if let Some(close) = closest_name(name, names.iter().copied()) {
                    message.push_str(&format!(" (did you mean `{close}`?)"));
                }
                ConfigWarning {
                    file: file.clone(),
                    line: self.diagnostics.policy_lines.get(name).copied(),
                    key: policy_key(name),
                    unusable_tool: None,
                    message,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("toolhost.toml")).unwrap()
    }

    #[test]
    fn a_missing_grant_makes_only_its_tool_unusable() {
        let c = parse(
            "[tools.x]\nfuel = 5\ndirs = [{ host = \"/no/such/dir\", guest = \"/d\" }]\n\n[tools.y]\nfuel = 5\n",
        );
        let w = &c.diagnostics.warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].key, "tools.x.dirs.0.host");
        assert_eq!(w[0].line, Some(3));
        assert_eq!(w[0].unusable_tool.as_deref(), Some("x"));
        let reason = c.tools["x"].unusable.as_deref().unwrap();
        assert!(
            reason.contains("line 3") && reason.contains("/no/such/dir"),
            "{reason}"
        );
        assert!(c.tools["y"].unusable.is_none());
    }

    #[test]
    fn unknown_policies_suggest_a_close_name() {
        let c = parse(
            "[tools.calc]\nfuel = 5\n\n[tools.http-fetch]\nfuel = 5\n\n[tools.zzz]\nfuel = 5\n",
        );
        let w = c.unknown_policies(&["calc", "http_fetch", "echo"]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(w[0].key, "tools.http-fetch");
        assert_eq!(w[0].line, Some(4));
        assert!(
            w[0].message.contains("did you mean `http_fetch`?"),
            "{}",
            w[0]
        );
        assert_eq!(w[1].key, "tools.zzz");
        assert!(!w[1].message.contains("did you mean"), "{}", w[1]);
    }
}

//! The layering rule, checked: arrows point down only.
//!
//! Each top-level module of the library sits on a layer; a module may name
//! (`crate::...`) only modules on lower layers. The foundation (layers 0-2:
//! json, clock, urls, paths, config) depends on nothing above it, so a
//! change to the store or a provider never ripples into how config parses.
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | `json`, `clock`, `urls`, `hint` | strict I-JSON and canonical JSON; wall and monotonic time; URL checks; commands quoted in hints |
//! | 1 | `paths` | where state lives by default |
//! | 2 | `config` | `toolhost.toml`, parsed strictly |
//! | 3 | `model`, `sandbox`, `telemetry` | the `Model` trait, its types and providers; wasmtime, narrowed; trace export and log formats |
//! | 4 | `resilience` | retry, fallback, breakers around any model |
//! | 5 | `store` | SQLite and PostgreSQL behind one facade |
//! | 6 | `idempotency`, `metrics` | the executor and its keys; Prometheus metrics |
//! | 7 | `agent`, `mcp` | agent runs; the MCP server |
//! | 8 | `web` | the run API and the runs page (mounted on the MCP server's HTTP router) |
//!
//! (`cli` is the binary's and sits above all of them.) The check reads every
//! `.rs` file under `src/`, drops comments and string literals, and looks at
//! each `crate::NAME` path; a new top-level module must be given a layer
//! here before it builds.

/// The layer table above, as data.
const LAYERS: &[(&str, u8)] = &[
    ("json", 0),
    ("clock", 0),
    ("urls", 0),
    ("hint", 0),
    ("paths", 1),
    ("config", 2),
    ("model", 3),
    ("sandbox", 3),
    ("telemetry", 3),
    ("resilience", 4),
    ("store", 5),
    ("idempotency", 6),
    ("metrics", 6),
    ("agent", 7),
    ("mcp", 7),
    ("web", 8),
];

/// `text` with `//` and `/* */` comments and string and char literals
/// blanked out, so only code is scanned.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(text.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(text.len(), |n| i + n + 2);
            i = end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map_or(text.len(), |n| i + body + n + close.len());
            out.push(' ');
            i = end;
        } else if rest.starts_with("'\"'") || rest.starts_with("'\\\"'") {
            // A char literal holding a quote is not a string's start.
            i += if rest.starts_with("'\"'") { 3 } else { 4 };
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push(' ');
            i = j + 1;
        } else {
            let c = rest.chars().next().expect("rest is not empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The top-level modules that `code` names through `crate::`.
fn named_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at + "crate::".len()..];
        // `$crate::` in a macro is the same crate; `foo_crate::` is not.
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) || before == Some('$') {
            let name: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        rest = tail;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn layer(module: &str) -> Option<u8> {
        LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every arrow in `files` (path under `src/`, text) that points up or
    /// at a module with no layer.
    fn violations(files: &[(std::path::PathBuf, String)]) -> Vec<String> {
        let mut wrong = Vec::new();
        for (relative, text) in files {
            let first = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .expect("a UTF-8 path");
            let module = first.strip_suffix(".rs").unwrap_or(first);
            if matches!(module, "lib" | "main" | "layers" | "cli") {
                continue;
            }
            let Some(own) = layer(module) else {
                wrong.push(format!(
                    "{}: module `{module}` has no layer in src/layers.rs",
                    relative.display()
                ));
                continue;
            };
            for name in named_modules(&code_only(text)) {
                if name == module {
                    continue;
                }
                match layer(&name) {
                    Some(theirs) if theirs < own => {}
                    Some(theirs) => wrong.push(format!(
                        "{}: `{module}` (layer {own}) uses `crate::{name}` (layer {theirs})",
                        relative.display()
                    )),
                    None => wrong.push(format!(
                        "{}: `crate::{name}` has no layer in src/layers.rs",
                        relative.display()
                    )),
                }
            }
        }
        wrong
    }

    #[test]
    fn no_module_imports_from_a_layer_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        let files: Vec<_> = paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("a readable source file");
                (
                    p.strip_prefix(&src).expect("under src/").to_path_buf(),
                    text,
                )
            })
            .collect();
        assert!(files.len() > 100, "src/ was read: {} files", files.len());
        let wrong = violations(&files);
        assert!(
            wrong.is_empty(),
            "arrows must point down (see src/layers.rs):\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn an_arrow_pointing_up_is_found() {
        let files: Vec<(std::path::PathBuf, String)> = vec![
            (
                "config/schema.rs".into(),
                "fn f() -> crate::store::StoreOptions { todo!() }".to_string(),
            ),
            (
                "model/mod.rs".into(),
                "use crate::config::ModelConfig;".into(),
            ),
            (
                "resilience/retry.rs".into(),
                "use crate::resilience::x;".into(),
            ),
            ("sandbox/mod.rs".into(), "use crate::model::Model;".into()),
            ("newthing.rs".into(), String::new()),
        ];
        assert_eq!(
            violations(&files),
            vec![
                "config/schema.rs: `config` (layer 2) uses `crate::store` (layer 5)",
                "sandbox/mod.rs: `sandbox` (layer 3) uses `crate::model` (layer 3)",
                "newthing.rs: module `newthing` has no layer in src/layers.rs",
            ]
        );
    }

    #[test]
    fn the_scanner_sees_code_and_skips_comments_and_strings() {
        let text = "use crate::store::Store; // crate::agent\n\
                    /* crate::mcp */ let s = \"crate::cli\"; let r = r#\"crate::x\"#;\n\
                    $crate::model::f(); my_crate::y(); crate::paths::p();";
        assert_eq!(
            named_modules(&code_only(text)),
            vec!["store", "model", "paths"]
        );
    }
}

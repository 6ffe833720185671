//! Where a key is in a config text, from the `toml` crate's own spans.
//!
//! serde forgets positions once a value is deserialised, and a spanned type
//! on every field would leak into the whole config API. So the text is
//! parsed a second time into `toml::de::DeTable`, the parser's spanned tree,
//! and errors are placed on it: a deserialisation error's span is mapped to
//! the dotted key that holds it, a validation error's dotted key to its line.
//! Because the tree is the parser's, dotted keys (`sandbox.fuel = 5`), inline
//! tables (`sandbox = { fuel = 5 }`), quoted keys (`[tools."my-tool"]`) and
//! arrays of tables all resolve the way TOML defines them, with no second
//! parser to drift from the first.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A config text and its spanned tree (what of it parses).
pub(super) struct Spans<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
}

impl<'i> Spans<'i> {
    /// Parses `text`, recovering what it can from a malformed one.
    pub(super) fn parse(text: &'i str) -> Self {
        let (root, _errors) = DeTable::parse_recoverable(text);
        Spans { text, root }
    }

    /// 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The dotted key (array elements by index, such as `models.1.name`)
    /// of the innermost entry whose key or value contains `at`.
    pub(super) fn key_at(&self, at: &Range<usize>) -> Option<String> {
        let mut path = Vec::new();
        walk_table(self.root.get_ref(), at.start, &mut path);
        (!path.is_empty()).then(|| join(&path))
    }

    /// The line of dotted `key`, else of its nearest ancestor in the text.
    pub(super) fn line_of(&self, key: &str) -> Option<usize> {
        let mut best: Option<Range<usize>> = None;
        let mut value = Some(Node::Table(self.root.get_ref()));
        for part in split(key) {
            let Some(node) = value.take() else { break };
            match node {
                Node::Table(t) => {
                    if let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref() == part.as_str()) {
                        best = Some(k.span());
                        value = Some(Node::of(v.get_ref()));
                    }
                }
                Node::Array(items) => {
                    if let Some(item) = part.parse::<usize>().ok().and_then(|i| items.get(i)) {
                        best = Some(item.span());
                        value = Some(Node::of(item.get_ref()));
                    }
                }
                Node::Leaf => {}
            }
        }
        best.map(|s| self.line(s.start))
    }
}

enum Node<'a, 'i> {
    Table(&'a DeTable<'i>),
    Array(&'a [Spanned<DeValue<'i>>]),
    Leaf,
}

impl<'a, 'i> Node<'a, 'i> {
    fn of(v: &'a DeValue<'i>) -> Self {
        match v {
            DeValue::Table(t) => Node::Table(t),
            DeValue::Array(a) => Node::Array(a),
            _ => Node::Leaf,
        }
    }
}

fn contains(span: &Range<usize>, at: usize) -> bool {
    span.start <= at && at < span.end.max(span.start + 1)
}

fn walk_table(table: &DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        if contains(&k.span(), at) {
            path.push(k.get_ref().to_string());
            return true;
        }
        let inside = contains(&v.span(), at);
        // Tables from `[headers]` may span less than their keys' lines, so
        // also look inside any table value whatever its span says.
        let before = path.len();
        path.push(k.get_ref().to_string());
        if walk_value(v.get_ref(), at, path) || inside {
            return true;
        }
        path.truncate(before);
    }
    false
}

fn walk_value(value: &DeValue<'_>, at: usize, path: &mut Vec<String>) -> bool {
    match value {
        DeValue::Table(t) => walk_table(t, at, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let before = path.len();
                path.push(i.to_string());
                if walk_value(item.get_ref(), at, path) || contains(&item.span(), at) {
                    return true;
                }
                path.truncate(before);
            }
            false
        }
        _ => false,
    }
}

/// A key part needs quotes when it is not a bare TOML key.
pub(super) fn join(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            let bare = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if bare { p.clone() } else { format!("{p:?}") }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Splits a dotted key as [`join`] writes it (quoted parts may hold dots).
fn split(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let Some(end) = end else {
                parts.push(quoted.to_string());
                break;
            };
            let raw = &quoted[..end];
            parts.push(
                serde_json::from_str::<String>(&format!("\"{raw}\""))
                    .unwrap_or_else(|_| raw.to_string()),
            );
            rest = quoted[end + 1..]
                .strip_prefix('.')
                .unwrap_or(&quoted[end + 1..]);
        } else {
            let (part, tail) = rest.split_once('.').unwrap_or((rest, ""));
            parts.push(part.to_string());
            rest = tail;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[sandbox]\nfuel = 0\n\n[tools.notes]\ntimeout_ms = 0\n\n[[models]]\nname = \"a\"\n[[models]]\nname = \"b\"\n";

    #[test]
    fn finds_keys_in_tables_and_array_elements() {
        let s = Spans::parse(TEXT);
        assert_eq!(s.line_of("sandbox.fuel"), Some(2));
        assert_eq!(s.line_of("tools.notes.timeout_ms"), Some(5));
        assert_eq!(s.line_of("models.0.name"), Some(8));
        assert_eq!(s.line_of("models.1.name"), Some(10));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let s = Spans::parse(TEXT);
        assert_eq!(s.line_of("tools.notes.dirs"), Some(4));
        assert_eq!(s.line_of("retry.max_attempts"), None);
    }

    #[test]
    fn dotted_inline_and_quoted_keys_resolve() {
        let text = "sandbox.fuel = 1\nretry = { max_attempts = 0 }\n\n[tools.\"my.tool\"]\nenv = [\"A\"]\n";
        let s = Spans::parse(text);
        assert_eq!(s.line_of("sandbox.fuel"), Some(1));
        assert_eq!(s.line_of("retry.max_attempts"), Some(2));
        assert_eq!(s.line_of("tools.\"my.tool\".env"), Some(5));
        let at = text.find("0 }").unwrap();
        assert_eq!(
            s.key_at(&(at..at + 1)).as_deref(),
            Some("retry.max_attempts")
        );
        let at = text.find("[\"A\"]").unwrap() + 1;
        assert_eq!(
            s.key_at(&(at..at + 3)).as_deref(),
            Some("tools.\"my.tool\".env.0")
        );
    }

    #[test]
    fn split_undoes_join() {
        for path in [
            vec!["a", "b"],
            vec!["tools", "my.tool", "env"],
            vec!["x y", "0"],
        ] {
            let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            assert_eq!(split(&join(&owned)), owned);
        }
    }
}

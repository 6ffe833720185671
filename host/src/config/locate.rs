//! Finds the line of a dotted key (`sandbox.fuel`, `models.1.name`) in a TOML
//! text, for validation errors. serde has no spans once a value parsed, and a
//! spanned type on every field would leak into the whole config API, so we
//! scan the text: table headers set the current table, `key =` lines match.

use super::error::line_of;

/// The line of `key`'s assignment, else of its table's header, if present.
pub(super) fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let parts: Vec<&str> = dotted.split('.').collect();
    // `models.1.name` -> table `models` (the second `[[models]]`), key `name`.
    let (table, index, key) = match parts.as_slice() {
        [t, i, k, ..] if i.parse::<usize>().is_ok() => {
            (t.to_string(), i.parse::<usize>().ok(), Some(*k))
        }
        [t, i] if i.parse::<usize>().is_ok() => (t.to_string(), i.parse::<usize>().ok(), None),
        [single] => (String::new(), None, Some(*single)),
        [.., k] => (parts[..parts.len() - 1].join("."), None, Some(*k)),
        [] => return None,
    };

    let mut current = String::new();
    let mut occurrence: usize = 0;
    let mut header_line = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if let Some(name) = header(trimmed) {
            current = name.to_string();
            if current == table {
                let wanted = index.is_none_or(|i| i == occurrence);
                if trimmed.starts_with("[[") {
                    occurrence += 1;
                }
                if wanted {
                    header_line = Some(line_of(text, start));
                } else if header_line.is_some() {
                    // Past the wanted array element: stop looking.
                    break;
                }
            }
            continue;
        }
        let in_table =
            current == table && header_line.is_some() || table.is_empty() && current.is_empty();
        if let (true, Some(key)) = (in_table, key) {
            let lhs = trimmed
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if lhs == key && trimmed.contains('=') {
                return Some(line_of(text, start));
            }
        }
    }
    header_line
}

/// `[a.b]` or `[[a]]` -> `a.b` / `a`; anything else -> None.
fn header(line: &str) -> Option<&str> {
    let line = line.split('#').next()?.trim();
    let inner = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]"));
    let inner = inner.or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?;
    Some(inner.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[sandbox]\nfuel = 0\n\n[tools.notes]\ntimeout_ms = 0\n\n[[models]]\nname = \"a\"\n[[models]]\nname = \"b\"\n";

    #[test]
    fn finds_keys_in_tables_and_array_elements() {
        assert_eq!(line_of_key(TEXT, "sandbox.fuel"), Some(2));
        assert_eq!(line_of_key(TEXT, "tools.notes.timeout_ms"), Some(5));
        assert_eq!(line_of_key(TEXT, "models.0.name"), Some(8));
        assert_eq!(line_of_key(TEXT, "models.1.name"), Some(10));
    }

    #[test]
    fn falls_back_to_the_table_header() {
        assert_eq!(line_of_key(TEXT, "tools.notes.dirs"), Some(4));
        assert_eq!(line_of_key(TEXT, "models.1"), Some(9));
        assert_eq!(line_of_key(TEXT, "retry.max_attempts"), None);
    }
}

//! Commands printed in hints, made to work when pasted as they are.
//!
//! An `in_doubt` error says "resolve it with `toolhost cache resolve K
//! --retry|--abandon`". Run without the `--config`, `--tools-dir` and `--db`
//! of the process that printed it, that command acts on the default store,
//! not the one the call is in. So every process that prints such a hint
//! (the CLI and `serve` alike) repeats its own global flags in it.

/// `arg` quoted for a POSIX shell when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `text` with every suggested `` `toolhost ...` `` command carrying
/// `flags` (already quoted), so a hint can be pasted as it is.
pub fn with_flags(text: &str, flags: &[String]) -> String {
    if flags.is_empty() {
        return text.to_string();
    }
    text.replace("`toolhost ", &format!("`toolhost {} ", flags.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/tmp/a.db"), "/tmp/a.db");
        assert_eq!(shell_quote("/tmp/my dir/a.db"), "'/tmp/my dir/a.db'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn every_suggested_command_gets_the_flags() {
        let flags = ["--db".to_string(), "/s/x.db".to_string()];
        assert_eq!(
            with_flags(
                "run `toolhost cache resolve k --retry` or `toolhost cache list`",
                &flags
            ),
            "run `toolhost --db /s/x.db cache resolve k --retry` or `toolhost --db /s/x.db cache list`"
        );
        assert_eq!(
            with_flags("`toolhost cache list`", &[]),
            "`toolhost cache list`"
        );
    }
}

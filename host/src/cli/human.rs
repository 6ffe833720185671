//! Output for people: short keys, relative times, sizes, colour.
//!
//! `--json` stays the complete, stable form for programs; these helpers
//! only shape what a person reads in a terminal. Times are relative ("3
//! minutes ago", from `timeago`) because an absolute epoch in milliseconds
//! means nothing at a glance; sizes are binary units (`humansize`); keys
//! are cut to [`SHORT_KEY`] characters, which every command that takes a
//! key accepts back as a unique prefix (`super::lookup`).
//!
//! Colour goes through `anstream`, which strips the escapes when stdout is
//! not a terminal, when `NO_COLOR` is set, or when `TERM=dumb`
//! (`CLICOLOR_FORCE` turns it back on), so a pipe or a file never receives
//! escape codes.

use std::time::Duration;

use anstyle::{AnsiColor, Style};

/// How many characters of a 64-character key the tables show: 12 hex
/// digits (48 bits) make an accidental clash between two calls of one
/// store vanishingly rare, and the lookup says so when one happens.
pub const SHORT_KEY: usize = 12;

/// The first [`SHORT_KEY`] characters of `key`.
pub fn short_key(key: &str) -> &str {
    match key.char_indices().nth(SHORT_KEY) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

/// `then_ms` (Unix milliseconds) relative to `now_ms`: "3 minutes ago",
/// "now", or "in 2 hours" for a time still to come (an expiry).
pub fn ago(then_ms: i64, now_ms: i64) -> String {
    let mut f = timeago::Formatter::new();
    f.too_low("now");
    if then_ms > now_ms {
        f.ago("").too_low("now");
        let left = Duration::from_millis((then_ms - now_ms).unsigned_abs());
        return format!("in {}", f.convert(left).trim_end());
    }
    f.convert(Duration::from_millis((now_ms - then_ms).unsigned_abs()))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    toolhost::clock::unix_ms()
}

/// A byte count in binary units ("1.5 KiB").
pub fn size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// A duration in microseconds, in the largest unit that keeps it readable.
pub fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// The outcome column of a table: `ok`, or the error kind.
pub fn outcome(ok: Option<bool>, kind: Option<&str>) -> String {
    match (ok, kind) {
        (Some(true), _) => "ok".to_string(),
        (_, Some(kind)) => kind.to_string(),
        (Some(false), None) => "error".to_string(),
        (None, None) => "-".to_string(),
    }
}

/// Styles for headers, good and bad states.
pub mod style {
    use super::*;

    pub const HEADER: Style = Style::new().bold();
    pub const GOOD: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
    pub const BAD: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
    pub const WARN: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
    pub const DIM: Style = Style::new().dimmed();

    /// The style for a state or outcome word.
    pub fn of(word: &str) -> Style {
        match word {
            "ok" | "done" | "completed" | "closed" | "set" => GOOD,
            "running" | "interrupted" | "partial" | "half_open" | "no key" => WARN,
            "-" | "none needed" => DIM,
            _ => BAD,
        }
    }
}

/// `text` padded to `width` (by characters), wrapped in `style`: padding
/// first, so escape codes never count toward a column's width.
pub fn paint(text: &str, width: usize, style: Style) -> String {
    format!("{style}{text:<width$}{style:#}")
}

/// A plain table: a header row and rows, each column padded to its widest
/// cell; the last column is not padded. Cells are measured before styling
/// (`styles` gives a cell's style by column and text).
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table; `styled` names the columns whose words get
    /// [`style::of`] (states, outcomes).
    pub fn print(&self, styled: &[usize]) {
        let columns = self.header.len();
        let width = |c: usize| {
            self.rows
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain([self.header[c].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: Vec<String>, header: bool| {
            let mut out = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let last = c + 1 == columns;
                let w = if last { 0 } else { widths[c] };
                let s = if header {
                    style::HEADER
                } else if styled.contains(&c) {
                    style::of(cell)
                } else {
                    Style::new()
                };
                out.push_str(&paint(cell, w, s));
                if !last {
                    out.push_str("  ");
                }
            }
            out
        };
        let header = self.header.iter().map(|h| h.to_string()).collect();
        anstream::println!("{}", line(header, true).trim_end());
        for r in &self.rows {
            anstream::println!("{}", line(r.clone(), false).trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_relative() {
        let now = 1_800_000_000_000;
        assert_eq!(ago(now - 3 * 60_000 - 5_000, now), "3 minutes ago");
        assert_eq!(ago(now - 500, now), "now");
        assert_eq!(ago(now + 2 * 3_600_000 + 1, now), "in 2 hours");
    }

    #[test]
    fn keys_sizes_and_durations() {
        assert_eq!(short_key(&"ab".repeat(32)), "abababababab");
        assert_eq!(short_key("abc"), "abc");
        assert_eq!(size(1536), "1.50 KiB");
        assert_eq!(micros(170), "170 µs");
        assert_eq!(micros(66_500), "66.5 ms");
        assert_eq!(outcome(Some(false), Some("trap")), "trap");
        assert_eq!(outcome(None, None), "-");
    }
}

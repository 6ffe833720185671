//! Logs for people and for machines: plain text on stderr (coloured only on
//! a terminal, and never with `NO_COLOR` set), or one JSON object per line
//! with `TOOLHOST_LOG_FORMAT=json`. Which events are written is the
//! filter's business (`TOOLHOST_LOG`, else the command's default).

use std::io::IsTerminal;

use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The variable that picks the format: `text` (the default) or `json`.
pub const FORMAT_VAR: &str = "TOOLHOST_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-03T07:30:00.000Z  INFO toolhost::serve: tool call tool="calc" ...`
    Text,
    /// `{"timestamp":"...","level":"INFO","target":"toolhost::serve","message":"tool call","tool":"calc",...}`
    Json,
}

impl LogFormat {
    /// The format `value` (of [`FORMAT_VAR`]) names, and a warning when it
    /// names none (then: text). Unset or empty is text, silently.
    pub fn parse(value: Option<&str>) -> (LogFormat, Option<String>) {
        match value.map(str::trim) {
            None | Some("") => (LogFormat::Text, None),
            Some(v) if v.eq_ignore_ascii_case("text") => (LogFormat::Text, None),
            Some(v) if v.eq_ignore_ascii_case("json") => (LogFormat::Json, None),
            Some(other) => (
                LogFormat::Text,
                Some(format!(
                    "{FORMAT_VAR}=`{other}` is neither `text` nor `json`; writing text logs"
                )),
            ),
        }
    }

    /// The format the environment asks for (see [`LogFormat::parse`]).
    pub fn from_env() -> (LogFormat, Option<String>) {
        let value = std::env::var(FORMAT_VAR).ok();
        LogFormat::parse(value.as_deref())
    }
}

/// Whether log lines may carry colour codes: only when stderr is a terminal
/// and `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether this process's stderr may carry colour codes.
pub fn colour_on_stderr() -> bool {
    colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The layer writing log lines to stderr in `format`.
pub fn layer<S>(format: LogFormat, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => base.with_ansi(ansi).boxed(),
        // One flat object per line: the event's fields beside its message,
        // no span lists (a shipper indexes fields, and spans go to traces).
        LogFormat::Json => base
            .json()
            .with_ansi(false)
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_format_is_text_unless_json_is_named() {
        assert_eq!(LogFormat::parse(None), (LogFormat::Text, None));
        assert_eq!(LogFormat::parse(Some("")), (LogFormat::Text, None));
        assert_eq!(LogFormat::parse(Some("JSON")), (LogFormat::Json, None));
        assert_eq!(LogFormat::parse(Some("text")), (LogFormat::Text, None));
        let (format, warning) = LogFormat::parse(Some("yaml"));
        assert_eq!(format, LogFormat::Text);
        assert!(warning.is_some_and(|w| w.contains("`yaml`")));
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}

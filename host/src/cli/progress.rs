//! The live timeline of a run: one line per model turn and tool call as it
//! finishes, and on a terminal a transient "in flight" line (rewritten in
//! place, then cleared) while a model or tool call is under way. A
//! streamed answer's text is printed as it arrives; an attempt that broke
//! after some of it is marked retracted (that text is no part of the turn).
//! [`JsonLines`] is the same events for programs, one JSON object a line.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use toolhost::agent::{Event, Observer};

/// Prints events to stdout.
pub struct Progress {
    terminal: bool,
    screen: Mutex<Screen>,
}

/// What the last output left on the screen.
#[derive(Default)]
struct Screen {
    /// A transient line is showing and must be cleared first.
    transient: bool,
    /// Streamed text is open on its line: a newline comes first.
    text: bool,
}

impl Progress {
    pub fn stdout() -> Self {
        Progress {
            terminal: std::io::stdout().is_terminal(),
            screen: Mutex::default(),
        }
    }

    fn screen(&self) -> std::sync::MutexGuard<'_, Screen> {
        self.screen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(screen: &mut Screen, out: &mut impl Write) {
        if screen.transient {
            let _ = write!(out, "\r\x1b[2K");
            screen.transient = false;
        }
        if screen.text {
            let _ = writeln!(out);
            screen.text = false;
        }
    }

    fn line(&self, text: &str) {
        let mut screen = self.screen();
        let mut out = std::io::stdout().lock();
        Self::settle(&mut screen, &mut out);
        let _ = writeln!(out, "{text}");
    }

    /// Streamed text, on its own lines, as it comes.
    fn text(&self, text: &str) {
        let mut screen = self.screen();
        let mut out = std::io::stdout().lock();
        if screen.transient {
            let _ = write!(out, "\r\x1b[2K");
            screen.transient = false;
        }
        let _ = write!(out, "{text}");
        let _ = out.flush();
        screen.text = true;
    }

    fn transient(&self, text: &str) {
        if !self.terminal {
            return;
        }
        let mut screen = self.screen();
        if screen.text {
            // Streamed text stays where it is.
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K… {text}");
        let _ = out.flush();
        screen.transient = true;
    }
}

/// Prints each event as one JSON object per line (`agent run --events`).
pub struct JsonLines;

impl Observer for JsonLines {
    fn event(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

fn plural(n: u32, one: &str) -> String {
    match (n, one.strip_suffix('y')) {
        (1, _) => format!("1 {one}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {one}s"),
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event) {
        match event {
            Event::Started {
                run_id,
                resumed,
                journaled_steps,
            } => {
                if *resumed {
                    self.line(&format!(
                        "resuming run {run_id}: {journaled_steps} steps in the journal"
                    ));
                } else {
                    self.line(&format!("run {run_id}"));
                }
            }
            Event::ModelCalling { step } => {
                self.transient(&format!("step {step}: waiting for the model"))
            }
            Event::ModelDone {
                step,
                served_by,
                attempts,
                retries,
                fallbacks,
                duration_ms,
                from_journal,
                tool_calls,
            } => {
                let how = if *from_journal {
                    "from the journal".to_string()
                } else {
                    let mut s = plural(*attempts, "attempt");
                    if *retries > 0 {
                        s.push_str(&format!(", {}", plural(*retries, "retry")));
                    }
                    if *fallbacks > 0 {
                        s.push_str(&format!(", {}", plural(*fallbacks, "fallback")));
                    }
                    s
                };
                let next = if *tool_calls == 0 {
                    "answer".to_string()
                } else {
                    plural(*tool_calls as u32, "tool call")
                };
                self.line(&format!(
                    "step {step:<3} model  {served_by:<12} {how:<34} {duration_ms:>6} ms  -> {next}"
                ));
            }
            Event::ModelFailed {
                step,
                kind,
                message,
            } => self.line(&format!("step {step:<3} model  failed: {kind}: {message}")),
            Event::TextDelta { text, .. } => self.text(text),
            Event::ToolCall { .. } | Event::Finished { .. } => {}
            Event::Retracted {
                model,
                kind,
                tokens_discarded,
                ..
            } => self.line(&format!(
                "[retracted: the stream from {model} broke ({kind}); the text above is discarded ({tokens_discarded} tokens)]"
            )),
            Event::Retry {
                step,
                model,
                after_attempt,
                reason,
                delay_ms,
            } => self.transient(&format!(
                "step {step}: {model} attempt {after_attempt} failed ({reason}); retrying in {delay_ms} ms"
            )),
            Event::Fallback {
                step,
                from,
                to,
                reason,
            } => self.transient(&format!(
                "step {step}: {from} failed ({reason}); falling back to {to}"
            )),
            Event::ToolsCalling { step, tools } => {
                self.transient(&format!("step {step}: running {}", tools.join(", ")))
            }
            Event::ToolDone {
                tool,
                error_kind,
                cached,
                from_journal,
                duration_us,
                ..
            } => {
                let mut how = match error_kind {
                    None => "ok".to_string(),
                    Some(k) => format!("error: {k}"),
                };
                if *cached {
                    how.push_str(" (cache hit)");
                }
                if *from_journal {
                    how.push_str(" (from the journal)");
                }
                self.line(&format!(
                    "         tool   {tool:<12} {how:<34} {:>6} ms",
                    duration_us / 1000
                ));
            }
        }
    }
}

//! The live timeline of a run: one line per model turn and tool call as it
//! finishes, and on a terminal a transient "in flight" line (rewritten in
//! place, then cleared) while a model or tool call is under way.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use toolhost::agent::{Event, Observer};

/// Prints events to stdout.
pub struct Progress {
    terminal: bool,
    /// Whether a transient line is showing and must be cleared first.
    pending: Mutex<bool>,
}

impl Progress {
    pub fn stdout() -> Self {
        Progress {
            terminal: std::io::stdout().is_terminal(),
            pending: Mutex::new(false),
        }
    }

    fn line(&self, text: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        if *pending {
            let _ = write!(out, "\r\x1b[2K");
            *pending = false;
        }
        let _ = writeln!(out, "{text}");
    }

    fn transient(&self, text: &str) {
        if !self.terminal {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K… {text}");
        let _ = out.flush();
        *pending = true;
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

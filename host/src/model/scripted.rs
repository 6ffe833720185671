//! The `scripted` provider: replays a file of turns and faults, in order,
//! starting over at the end. No network, no clock but the runtime's, no
//! chance: the offline demo and tests get the same answers every time.
//!
//! The file is JSON:
//!
//! ```json
//! { "turns": [
//!     { "tool_calls": [{ "name": "calc", "arguments": { "expr": "6*7" } }] },
//!     { "fault": "overloaded", "retry_after_ms": 200 },
//!     { "text": "The answer is 42.", "delay_ms": 50 }
//! ] }
//! ```
//!
//! Three optional keys make it a stand-in for a real model inside an agent
//! run, where a crashed and resumed process must get the same answer for
//! the same point of the conversation:
//!
//! - `"mode": "conversation"` picks the turn by the conversation instead of
//!   by the request count: turn `k` answers a request holding `k` assistant
//!   messages (the last turn answers anything longer). The default,
//!   `"sequence"`, replays turns in request order.
//! - `"faults": [{ "at": 3, "count": 2, "kind": "rate_limited",
//!   "retry_after_ms": 20 }]` fails requests number `at` .. `at + count - 1`
//!   of this process (1-based) with that kind, whatever the mode: a
//!   rate-limit burst, or with a large `count` an outage.
//! - `"log": "requests.log"` appends one line per request received
//!   (`request N step S`, `S` = assistant messages + 1), resolved against
//!   the script's directory: how tests and the demo count model requests
//!   across processes.
//!
//! A turn may also report `"usage": {"input_tokens": 80, "output_tokens": 20}`
//! (none by default), for token budgets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::CallContext;
use super::{
    BoxFuture, ChatRequest, ChatResponse, ErrorKind, Model, ModelError, Role, StopReason, ToolCall,
    Usage,
};

/// Why a script could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read the script {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a script.
    #[error("the script {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    /// The script has no turns to replay.
    #[error("the script {path} has no turns")]
    Empty { path: String },
}

/// One scripted turn: a reply, or a fault, after an optional delay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
    /// Fail this turn with this kind instead of replying.
    pub fault: Option<ErrorKind>,
    pub retry_after_ms: Option<u64>,
    #[serde(default)]
    pub delay_ms: u64,
    /// The token usage the turn reports (none by default).
    #[serde(default)]
    pub usage: Usage,
}

/// A tool call a scripted turn makes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

/// How a script picks the turn that answers a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// In request order, starting over at the end.
    #[default]
    Sequence,
    /// By the number of assistant messages in the request.
    Conversation,
}

/// Requests `at` .. `at + count - 1` (1-based, per process) fail with `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub at: usize,
    #[serde(default = "one")]
    pub count: usize,
    pub kind: ErrorKind,
    pub retry_after_ms: Option<u64>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    turns: Vec<Turn>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    faults: Vec<Fault>,
    log: Option<PathBuf>,
}

/// A model that replays a script.
#[derive(Debug)]
pub struct Scripted {
    name: String,
    turns: Vec<Turn>,
    mode: Mode,
    faults: Vec<Fault>,
    log: Option<PathBuf>,
    next: AtomicUsize,
}

impl Scripted {
    pub fn new(name: impl Into<String>, turns: Vec<Turn>) -> Self {
        Scripted {
            name: name.into(),
            turns,
            mode: Mode::Sequence,
            faults: Vec::new(),
            log: None,
            next: AtomicUsize::new(0),
        }
    }

    /// Picks turns by the conversation (see the module docs).
    pub fn by_conversation(mut self) -> Self {
        self.mode = Mode::Conversation;
        self
    }

    /// Adds injected faults by request number.
    pub fn with_faults(mut self, faults: Vec<Fault>) -> Self {
        self.faults = faults;
        self
    }

    /// Appends a line per request to `path`.
    pub fn with_log(mut self, path: PathBuf) -> Self {
        self.log = Some(path);
        self
    }

    fn note(&self, n: usize, step: usize) {
        let Some(path) = &self.log else {
            return;
        };
        // One write per line with O_APPEND: lines from several processes
        // never interleave. A log that cannot be written is not the model's
        // failure, so it is only traced.
        let line = format!("request {n} step {step}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the scripted request log");
        }
    }

    /// Loads a script file.
    pub fn load(name: impl Into<String>, path: &Path) -> Result<Self, ScriptError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: shown.clone(),
            source,
        })?;
        let script: Script = serde_json::from_str(&text).map_err(|source| ScriptError::Parse {
            path: shown.clone(),
            source,
        })?;
        if script.turns.is_empty() {
            return Err(ScriptError::Empty { path: shown });
        }
        let mut model = Scripted::new(name, script.turns).with_faults(script.faults);
        model.mode = script.mode;
        if let Some(log) = script.log {
            let base = path.parent().unwrap_or(Path::new("."));
            model = model.with_log(base.join(log));
        }
        Ok(model)
    }
}

impl Model for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        _cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            if self.turns.is_empty() {
                return Err(ModelError::new(
                    ErrorKind::InvalidRequest,
                    "the script has no turns",
                ));
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let said = req
                .messages
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .count();
            self.note(n + 1, said + 1);
            if let Some(f) = self
                .faults
                .iter()
                .find(|f| f.at <= n + 1 && n + 1 < f.at.saturating_add(f.count))
            {
                return Err(ModelError::new(
                    f.kind,
                    format!("scripted fault at request {}", n + 1),
                )
                .with_retry_after(f.retry_after_ms.map(Duration::from_millis)));
            }
            let (index, tag) = match self.mode {
                Mode::Sequence => (n % self.turns.len(), n),
                Mode::Conversation => (said.min(self.turns.len() - 1), said),
            };
            let turn = &self.turns[index];
            if turn.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(turn.delay_ms)).await;
            }
            if let Some(kind) = turn.fault {
                return Err(
                    ModelError::new(kind, format!("scripted fault at turn {}", index + 1))
                        .with_retry_after(turn.retry_after_ms.map(Duration::from_millis)),
                );
            }
            let tool_calls: Vec<ToolCall> = turn
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| ToolCall {
                    id: format!("call_{tag}_{i}"),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                    raw_arguments: None,
                    invalid_arguments: None,
                })
                .collect();
            Ok(ChatResponse {
                text: turn.text.clone(),
                stop: if tool_calls.is_empty() {
                    StopReason::EndTurn
                } else {
                    StopReason::ToolUse
                },
                tool_calls,
                usage: turn.usage,
                model: format!("scripted:{}", self.name),
            })
        })
    }
}

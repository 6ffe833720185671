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

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{
    BoxFuture, ChatRequest, ChatResponse, ErrorKind, Model, ModelError, StopReason, ToolCall, Usage,
};
use crate::resilience::CallContext;

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
}

/// A tool call a scripted turn makes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    turns: Vec<Turn>,
}

/// A model that replays a script.
#[derive(Debug)]
pub struct Scripted {
    name: String,
    turns: Vec<Turn>,
    next: AtomicUsize,
}

impl Scripted {
    pub fn new(name: impl Into<String>, turns: Vec<Turn>) -> Self {
        Scripted {
            name: name.into(),
            turns,
            next: AtomicUsize::new(0),
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
        Ok(Scripted::new(name, script.turns))
    }
}

impl Model for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat<'a>(
        &'a self,
        _req: &'a ChatRequest,
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
            let turn = &self.turns[n % self.turns.len()];
            if turn.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(turn.delay_ms)).await;
            }
            if let Some(kind) = turn.fault {
                return Err(ModelError::new(
                    kind,
                    format!("scripted fault at turn {}", n % self.turns.len() + 1),
                )
                .with_retry_after(turn.retry_after_ms.map(Duration::from_millis)));
            }
            let tool_calls: Vec<ToolCall> = turn
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| ToolCall {
                    id: format!("call_{n}_{i}"),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
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
                usage: Usage::default(),
                model: format!("scripted:{}", self.name),
            })
        })
    }
}

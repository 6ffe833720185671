//! What a request shows while it is under way: the text of a streamed
//! attempt as it arrives, a partial taken back when its attempt breaks, and
//! the retries and fallbacks between attempts. A [`LiveSink`] in the
//! [`CallContext`](super::CallContext) receives them; without one nothing is
//! sent anywhere.
//!
//! Why a partial is *retracted* rather than kept: a turn commits only when
//! its stream completes (docs/decisions/0077-streamed-turns-commit-whole.md).
//! What an attempt said before it broke is no part of the turn the agent
//! acts on, so a viewer is told to strike it out.
//!
//! The per-attempt [`StreamState`] lives here too: the provider marks each
//! event, the attempt timeout reads the marks to cut a stream that went
//! quiet, and the retry loop reads the attempt's time to first token and
//! the output it threw away.

use std::sync::Mutex;

use tokio::time::Instant;

use super::ErrorKind;

/// One thing a live viewer may show.
#[derive(Debug, Clone, PartialEq)]
pub enum Live<'a> {
    /// Attempt `n` (from 1) on the chain entry `model` starts.
    Attempt { model: &'a str, n: u32 },
    /// More of the answer's text.
    Text(&'a str),
    /// The answer asks for a call of `name` (its arguments follow unseen).
    ToolCall { id: &'a str, name: &'a str },
    /// The attempt broke after showing output: strike it out. `tokens` is
    /// how much output was thrown away (as `tokens_discarded` counts it).
    Retracted {
        model: &'a str,
        kind: ErrorKind,
        tokens: u64,
    },
    /// The retry loop waits `delay_ms` before another attempt on `model`.
    Retry {
        model: &'a str,
        after_attempt: u32,
        reason: ErrorKind,
        delay_ms: u64,
    },
    /// The request moves down the chain.
    Fallback {
        from: &'a str,
        to: &'a str,
        reason: ErrorKind,
    },
}

/// Receives a request's live events. Called on the request's task: it must
/// not block.
pub trait LiveSink: Send + Sync {
    fn live(&self, event: &Live<'_>);
}

/// The marks of the attempt in flight (attempts of one request never
/// overlap: retries and fallbacks are sequential).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    inner: Mutex<Marks>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Marks {
    pub started: Option<Instant>,
    /// The first content event (text or a tool call).
    pub first_token: Option<Instant>,
    /// The latest event of any kind (`ping` included).
    pub last_event: Option<Instant>,
    /// Characters of text and tool-call arguments received.
    pub chars: u64,
    /// Output tokens the provider reported so far, if it did.
    pub reported_tokens: Option<u64>,
    /// Whether any output was shown to a live viewer.
    pub shown: bool,
}

impl Marks {
    /// Output tokens received: the provider's count when it gave one, else
    /// about four characters a token (the rule of thumb both providers
    /// publish), rounded up.
    pub fn tokens(&self) -> u64 {
        let estimate = self.chars.div_ceil(4);
        self.reported_tokens.map_or(estimate, |r| r.max(estimate))
    }

    /// Time to first token, ms, if one came.
    pub fn first_token_ms(&self) -> Option<u64> {
        let (start, first) = (self.started?, self.first_token?);
        Some(super::report::ms(first.saturating_duration_since(start)))
    }
}

impl StreamState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        // Plain counters: a panic cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn begin(&self) {
        *self.lock() = Marks {
            started: Some(Instant::now()),
            ..Marks::default()
        };
    }

    pub fn end(&self) -> Marks {
        std::mem::take(&mut *self.lock())
    }

    pub fn marks(&self) -> Marks {
        *self.lock()
    }

    pub fn update(&self, f: impl FnOnce(&mut Marks)) {
        f(&mut self.lock())
    }
}

//! What happened to one request: which model served it, every attempt, and
//! why each retry and fallback happened. The CLI prints it, metrics count it.

use std::time::Duration;

use serde::Serialize;

use crate::model::ErrorKind;

/// The account of one request through the chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The chain entry that answered, if any did.
    pub served_by: Option<String>,
    pub attempts: Vec<Attempt>,
    pub retries: Vec<Retried>,
    pub fallbacks: Vec<FellBack>,
    /// Request time by the policies' clock.
    pub elapsed_ms: u64,
}

/// One try of one model. `error` is `None` when it answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub model: String,
    /// 1 for the first attempt on this model.
    pub n: u32,
    pub error: Option<ErrorKind>,
    pub status: Option<u16>,
    pub elapsed_ms: u64,
    /// A streamed attempt: ms from its start to its first content event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    /// A streamed attempt that broke: the output tokens it had received,
    /// thrown away (never journaled).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tokens_discarded: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A retry: after which attempt, why, and how long we waited.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retried {
    pub model: String,
    pub after_attempt: u32,
    pub reason: ErrorKind,
    pub delay_ms: u64,
    /// What the provider asked for, if it did.
    pub retry_after_ms: Option<u64>,
}

/// A move down the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FellBack {
    pub from: String,
    pub to: String,
    pub reason: ErrorKind,
}

impl Report {
    /// Attempts that reached the provider (an open breaker's rejections did not).
    pub fn network_attempts(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.error != Some(ErrorKind::CircuitOpen))
            .count()
    }

    /// Output tokens of broken streamed attempts, thrown away.
    pub fn tokens_discarded(&self) -> u64 {
        self.attempts.iter().map(|a| a.tokens_discarded).sum()
    }

    /// Attempts on `model`.
    pub fn attempts_on<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a Attempt> + 'a {
        self.attempts.iter().filter(move |a| a.model == model)
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

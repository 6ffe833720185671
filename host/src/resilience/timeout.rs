//! The per-attempt deadlines: an attempt that has no answer after
//! `attempt_timeout` fails with `timeout`; a streamed one also fails with
//! `timeout` when its first content event is later than
//! `first_token_timeout`, or when no event came for `idle_timeout`.
//!
//! It sits inside the breaker so the breaker sees a slow dependency's timeout
//! as the health failure it is. The request budget is cut one layer out, in
//! [`Retry`](super::Retry): a budget that runs out mid-attempt drops the
//! breaker's permit unsettled, because our deadline says nothing about the
//! dependency's health. Both use the runtime's timer (pausable with
//! `tokio::time::pause`) because they race live I/O.
//!
//! Why the stream deadlines live here and not in the provider: a provider
//! never times out (only the wrappers do); it marks each event it reads in
//! the [`CallContext`], and this wrapper sleeps until the earliest deadline
//! those marks allow, waking again only if an event moved it. An idle
//! stream is cut (its future dropped, the connection with it), not waited on.

use std::time::Duration;

use tokio::time::Instant;

use super::CallContext;
use crate::model::report::ms;
use crate::model::{BoxFuture, ChatRequest, ChatResponse, ErrorKind, Model, ModelError};

/// Bounds each attempt on `inner`.
#[derive(Debug)]
pub struct AttemptTimeout<M> {
    inner: M,
    limit: Duration,
    stream: Option<StreamLimits>,
}

/// The deadlines of a streamed attempt.
#[derive(Debug, Clone, Copy)]
struct StreamLimits {
    first_token: Duration,
    idle: Duration,
}

impl<M: Model> AttemptTimeout<M> {
    pub fn new(inner: M, limit: Duration) -> Self {
        AttemptTimeout {
            inner,
            limit,
            stream: None,
        }
    }

    /// Also bounds a streamed attempt's wait for its first content event
    /// and for each event after one came (only when `inner` streams).
    pub fn streaming(mut self, first_token: Duration, idle: Duration) -> Self {
        self.stream = Some(StreamLimits { first_token, idle });
        self
    }

    /// The deadline the attempt's marks allow now, and what it means.
    fn deadline(&self, start: Instant, cx: &CallContext) -> (Instant, Expired) {
        let total = (start + self.limit, Expired::Attempt);
        let Some(limits) = self.stream.filter(|_| self.inner.streams()) else {
            return total;
        };
        let marks = cx.marks();
        let mut candidates = vec![total];
        if marks.first_token.is_none() {
            candidates.push((start + limits.first_token, Expired::FirstToken));
        }
        if let Some(last) = marks.last_event {
            candidates.push((last + limits.idle, Expired::Idle));
        }
        // `total` is always there.
        candidates
            .into_iter()
            .min_by_key(|(at, _)| *at)
            .unwrap_or(total)
    }

    fn expired(&self, what: Expired) -> ModelError {
        let limits = self.stream.unwrap_or(StreamLimits {
            first_token: Duration::ZERO,
            idle: Duration::ZERO,
        });
        let message = match what {
            Expired::Attempt => {
                format!(
                    "no answer within the attempt timeout of {} ms",
                    ms(self.limit)
                )
            }
            Expired::FirstToken => format!(
                "no first token within first_token_timeout_ms ({} ms)",
                ms(limits.first_token)
            ),
            Expired::Idle => format!(
                "the stream was idle longer than idle_timeout_ms ({} ms); cut",
                ms(limits.idle)
            ),
        };
        ModelError::new(ErrorKind::Timeout, message)
    }
}

#[derive(Debug, Clone, Copy)]
enum Expired {
    Attempt,
    FirstToken,
    Idle,
}

impl<M: Model> Model for AttemptTimeout<M> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn streams(&self) -> bool {
        self.inner.streams()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let start = Instant::now();
            let mut attempt = self.inner.chat(req, cx);
            loop {
                let (at, _) = self.deadline(start, cx);
                tokio::select! {
                    result = &mut attempt => return result,
                    () = tokio::time::sleep_until(at) => {
                        // An event may have come while we slept: sleep
                        // again until the deadline it allows.
                        let (at, what) = self.deadline(start, cx);
                        if at <= Instant::now() {
                            return Err(self.expired(what));
                        }
                    }
                }
            }
        })
    }
}

//! The per-attempt deadline: an attempt gets `attempt_timeout` or what is
//! left of the request's budget, whichever is less, and then fails with
//! `timeout`.
//!
//! It sits inside the breaker so the breaker sees a timeout as the health
//! failure it is; an outer timeout would drop the breaker's future and the
//! breaker would never learn. It uses the runtime's timer (pausable with
//! `tokio::time::pause`) because it races live I/O.

use std::time::Duration;

use super::CallContext;
use super::report::ms;
use crate::model::{BoxFuture, ChatRequest, ChatResponse, ErrorKind, Model, ModelError};

/// Bounds each attempt on `inner`.
#[derive(Debug)]
pub struct AttemptTimeout<M> {
    inner: M,
    limit: Duration,
}

impl<M: Model> AttemptTimeout<M> {
    pub fn new(inner: M, limit: Duration) -> Self {
        AttemptTimeout { inner, limit }
    }
}

impl<M: Model> Model for AttemptTimeout<M> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let left = cx.remaining();
            let (limit, what) = if left < self.limit {
                (left, "the request budget")
            } else {
                (self.limit, "the attempt timeout")
            };
            if limit.is_zero() {
                return Err(ModelError::new(
                    ErrorKind::Timeout,
                    "the request budget is spent",
                ));
            }
            match tokio::time::timeout(limit, self.inner.chat(req, cx)).await {
                Ok(result) => result,
                Err(_) => Err(ModelError::new(
                    ErrorKind::Timeout,
                    format!("no answer within {} ms ({what})", ms(limit)),
                )),
            }
        })
    }
}

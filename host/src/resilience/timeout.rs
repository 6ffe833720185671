//! The per-attempt deadline: an attempt that has no answer after
//! `attempt_timeout` fails with `timeout`.
//!
//! It sits inside the breaker so the breaker sees a slow dependency's timeout
//! as the health failure it is. The request budget is cut one layer out, in
//! [`Retry`](super::Retry): a budget that runs out mid-attempt drops the
//! breaker's permit unsettled, because our deadline says nothing about the
//! dependency's health. Both use the runtime's timer (pausable with
//! `tokio::time::pause`) because they race live I/O.

use std::time::Duration;

use super::CallContext;
use crate::model::report::ms;
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
            let limit = self.limit;
            match tokio::time::timeout(limit, self.inner.chat(req, cx)).await {
                Ok(result) => result,
                Err(_) => Err(ModelError::new(
                    ErrorKind::Timeout,
                    format!("no answer within the attempt timeout of {} ms", ms(limit)),
                )),
            }
        })
    }
}

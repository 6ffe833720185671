//! The breaker as a layer: [`CircuitBreaker`] wraps a model and asks its
//! [`Breaker`] before each attempt, settling the permit with the outcome.

use std::sync::Arc;

use super::{Breaker, Verdict};
use crate::model::{BoxFuture, ChatRequest, ChatResponse, Model, ModelError};
use crate::resilience::CallContext;

/// `inner`, guarded by a breaker.
#[derive(Debug)]
pub struct CircuitBreaker<M> {
    inner: M,
    breaker: Arc<Breaker>,
}

impl<M: Model> CircuitBreaker<M> {
    pub fn new(inner: M, breaker: Arc<Breaker>) -> Self {
        CircuitBreaker { inner, breaker }
    }
}

impl<M: Model> Model for CircuitBreaker<M> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let permit = self.breaker.admit()?;
            let result = self.inner.chat(req, cx).await;
            permit.settle(Verdict::of(&result));
            result
        })
    }
}

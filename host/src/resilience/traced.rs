//! One `chat {model}` span per provider attempt, in the GenAI semantic
//! conventions.
//!
//! Why a wrapper inside [`Retry`](super::Retry) (and outside the breaker):
//! the retry loop calls it once per attempt, so each attempt is its own
//! span, a sibling of the others under the turn's span (`chain.rs`); a
//! fallback's attempts are siblings too. Outside the breaker, it sees an
//! attempt the open breaker refused (`error.type = circuit_open`, no I/O)
//! as the attempt the report counts. Nothing of the request or the answer
//! is recorded but its model, token counts and error kind.

use std::sync::Arc;

use tracing::Instrument;
use tracing::field::Empty;

use super::CallContext;
use super::breaker::Breaker;
use crate::model::{BoxFuture, ChatRequest, ChatResponse, Model, ModelError};
use crate::telemetry::{TARGET, attrs};

/// `inner`, with a span around each attempt.
#[derive(Debug)]
pub struct Traced<M> {
    inner: M,
    /// `anthropic`, `openai`, `scripted`.
    provider: String,
    /// The provider's model id (`[[models]] model`).
    model: String,
    breaker: Arc<Breaker>,
}

impl<M: Model> Traced<M> {
    pub fn new(inner: M, provider: String, model: String, breaker: Arc<Breaker>) -> Self {
        Traced {
            inner,
            provider,
            model,
            breaker,
        }
    }
}

impl<M: Model> Model for Traced<M> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        let entry = self.inner.name();
        // The retry loop records an attempt after it ends: those before
        // this one are in the report already.
        let report = cx.report();
        let attempt = report.attempts_on(entry).count() + 1;
        let fallback_reason = (attempt == 1)
            .then(|| report.fallbacks.last().filter(|f| f.to == entry))
            .flatten()
            .map(|f| f.reason.as_str());
        let span = tracing::info_span!(
            target: TARGET,
            "chat",
            otel.name = format!("chat {}", self.model),
            otel.kind = "client",
            otel.status_code = Empty,
            { attrs::OPERATION } = "chat",
            { attrs::PROVIDER } = self.provider.as_str(),
            { attrs::REQUEST_MODEL } = self.model.as_str(),
            { attrs::RESPONSE_MODEL } = Empty,
            { attrs::INPUT_TOKENS } = Empty,
            { attrs::OUTPUT_TOKENS } = Empty,
            { attrs::ERROR_TYPE } = Empty,
            { attrs::MODEL_ENTRY } = entry,
            { attrs::ATTEMPT } = attempt,
            { attrs::BREAKER_STATE } = self.breaker.status().state.as_str(),
            { attrs::FALLBACK_REASON } = fallback_reason,
            { attrs::TIME_TO_FIRST_TOKEN_MS } = Empty,
            { attrs::TOKENS_DISCARDED } = Empty,
        );
        Box::pin(
            async move {
                let result = self.inner.chat(req, cx).await;
                let span = tracing::Span::current();
                // The retry loop ends the attempt after this returns: its
                // stream marks are still this attempt's.
                let marks = cx.marks();
                if let Some(t) = marks.first_token_ms() {
                    span.record(attrs::TIME_TO_FIRST_TOKEN_MS, t);
                }
                if result.is_err() && marks.tokens() > 0 {
                    span.record(attrs::TOKENS_DISCARDED, marks.tokens());
                }
                match &result {
                    Ok(r) => {
                        span.record(attrs::RESPONSE_MODEL, r.model.as_str());
                        span.record(attrs::INPUT_TOKENS, r.usage.input_tokens);
                        span.record(attrs::OUTPUT_TOKENS, r.usage.output_tokens);
                    }
                    Err(e) => {
                        span.record(attrs::ERROR_TYPE, e.kind.as_str());
                        span.record("otel.status_code", "error");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

//! Fallback: an ordered chain of models. The [`FallbackPolicy`] decides
//! whether an error moves the request down the chain; [`Fallback`] walks it.
//!
//! The design's rule: move on when a model's retries are exhausted (the error
//! is still transient after the retry wrapper gave up), when its breaker is
//! open, or on `context_length`, and then only to a model with a larger
//! context window. Everything else (`invalid_request`, `auth`, `not_found`,
//! `content_policy`, `malformed_response`) is returned: another model would
//! get the same request, and hiding a caller's or operator's mistake behind a
//! fallback makes it harder to find.

use std::sync::Arc;

use super::CallContext;
use super::retry::is_transient;
use crate::model::report::FellBack;
use crate::model::{BoxFuture, ChatRequest, ChatResponse, ErrorKind, Model, ModelError};

/// What to do after a model failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the next model.
    MoveOn,
    /// Try the next model with a larger context window.
    LargerWindow,
    /// Return this error.
    Stop,
}

/// When the chain moves on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FallbackPolicy;

impl FallbackPolicy {
    pub fn decide(&self, e: &ModelError) -> Next {
        match e.kind {
            ErrorKind::ContextLength => Next::LargerWindow,
            ErrorKind::CircuitOpen => Next::MoveOn,
            kind if is_transient(kind) => Next::MoveOn,
            _ => Next::Stop,
        }
    }
}

/// One link of the chain.
pub struct Link {
    pub model: Arc<dyn Model>,
    /// Tokens of context, if known.
    pub context_window: Option<u64>,
}

/// Walks the chain until a model answers.
pub struct Fallback {
    links: Vec<Link>,
    policy: FallbackPolicy,
}

impl Fallback {
    pub fn new(links: Vec<Link>) -> Self {
        Fallback {
            links,
            policy: FallbackPolicy,
        }
    }

    /// Whether `i` may serve after a context_length failure on a model
    /// with `window` (unknown windows are given the chance).
    fn fits(&self, i: usize, window: Option<u64>) -> bool {
        match (window, self.links[i].context_window) {
            (Some(needed), Some(w)) => w > needed,
            _ => true,
        }
    }
}

impl Model for Fallback {
    fn name(&self) -> &str {
        "chain"
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let mut failures: Vec<(String, ModelError)> = Vec::new();
            // After a context_length failure: the window the next model must exceed.
            let mut too_small: Option<u64> = None;
            let mut i = 0;
            while i < self.links.len() {
                let link = &self.links[i];
                let name = link.model.name();
                let err = match link.model.chat(req, cx).await {
                    Ok(r) => {
                        cx.served_by(name);
                        return Ok(r);
                    }
                    Err(e) => e,
                };
                let next = self.policy.decide(&err);
                if next == Next::Stop {
                    return Err(err);
                }
                if next == Next::LargerWindow {
                    too_small = too_small.max(link.context_window);
                }
                failures.push((name.to_string(), err));
                let Some(to) = (i + 1..self.links.len()).find(|&j| self.fits(j, too_small)) else {
                    break;
                };
                if cx.remaining().is_zero() {
                    break;
                }
                let (reason, to_name) = (
                    failures[failures.len() - 1].1.kind,
                    self.links[to].model.name(),
                );
                tracing::warn!(target: "toolhost::model", from = name, to = to_name, %reason, "falling back");
                cx.fell_back(FellBack {
                    from: name.to_string(),
                    to: to_name.to_string(),
                    reason,
                });
                i = to;
            }
            Err(exhausted(failures, cx))
        })
    }
}

/// The error when no model answered: the last `context_length` if that is
/// all there was (the prompt is the problem), else `all_models_unavailable`
/// naming each model's last error.
fn exhausted(mut failures: Vec<(String, ModelError)>, cx: &CallContext) -> ModelError {
    if failures
        .iter()
        .all(|(_, e)| e.kind == ErrorKind::ContextLength)
        && let Some((_, e)) = failures.pop()
    {
        return e;
    }
    let list: Vec<String> = failures.iter().map(|(m, e)| format!("{m}: {e}")).collect();
    let budget = if cx.remaining().is_zero() {
        " (the request budget is spent)"
    } else {
        ""
    };
    ModelError::new(
        ErrorKind::AllModelsUnavailable,
        format!("no model answered{budget}; {}", list.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exhaustion_open_breakers_and_context_length_move_on() {
        let decide = |kind| FallbackPolicy.decide(&ModelError::new(kind, ""));
        for kind in ErrorKind::ALL {
            let expected = match kind {
                ErrorKind::ContextLength => Next::LargerWindow,
                ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::ServerError
                | ErrorKind::Timeout
                | ErrorKind::Connection
                | ErrorKind::CircuitOpen => Next::MoveOn,
                _ => Next::Stop,
            };
            assert_eq!(decide(kind), expected, "{kind}");
        }
    }
}

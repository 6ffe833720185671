//! Model providers behind one [`Model`] trait.
//!
//! A provider only speaks its wire format: it turns a [`ChatRequest`] into an
//! HTTP request, and the answer into a [`ChatResponse`] or a classified
//! [`ModelError`]. It does not retry, time out, fall back or keep health
//! state: those are policies in [`crate::resilience`], wrapped around any
//! `Model`, so each provider stays small and each policy is tested once.
//!
//! ## Layout
//!
//! - `types`: the provider-neutral turn (messages, tool specs, tool calls).
//! - `error`: [`ErrorKind`] (the design's names) and [`ModelError`].
//! - `anthropic`, `openai`, `scripted`: the providers.
//! - `http`: the shared request path; `secret`: [`ApiKey`], never printed.
//! - `classify`: status, headers, body or transport error -> error kind.
//! - `context`: one request's budget and the [`Report`] the policy
//!   wrappers in [`crate::resilience`] append to; `report`: the report.
//! - `live`: what a [`LiveSink`] is shown while a request runs (streamed
//!   text, a retracted partial, retries and fallbacks), and the streamed
//!   attempt's marks the attempt timeout reads.
//! - `stream`: server-sent events into the turn, one assembler per wire
//!   format; the turn exists only at the stream's end marker.
//!   They live here, below the wrappers, because [`Model::chat`] takes them.

mod anthropic;
pub mod classify;
mod context;
mod error;
mod http;
mod live;
mod openai;
pub(crate) mod report;
mod scripted;
mod secret;
mod stream;
mod types;

pub use anthropic::Anthropic;
pub use context::CallContext;
pub use error::{ErrorKind, ModelError};
pub use live::{Live, LiveSink};
pub use openai::OpenAi;
pub use report::{Attempt, FellBack, Report, Retried};
pub use scripted::{Fault, Mode as ScriptMode, ScriptError, Scripted, ScriptedCall, Turn};
pub use secret::ApiKey;
pub use types::*;

/// Wire-format helpers, public so tests and tools can check what is sent.
pub mod wire {
    pub use super::anthropic::{
        parse_response as parse_anthropic, request_body as anthropic_request,
    };
    pub use super::openai::{parse_response as parse_openai, request_body as openai_request};
    pub use super::stream::anthropic::Messages as AnthropicStream;
    pub use super::stream::openai::Chunks as OpenAiStream;
    pub use super::stream::{Assembler, Piece, assemble_bytes};
}

use std::sync::Arc;

pub use crate::clock::BoxFuture;
use crate::config::{ModelConfig, ProviderName};

/// Anything that answers a chat turn: a provider, or a policy wrapped around
/// one.
pub trait Model: Send + Sync {
    /// The chain entry's name (`served_by`, logs, metrics).
    fn name(&self) -> &str;

    /// One turn. `cx` carries the request's budget and its accounting.
    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>>;

    /// Whether an attempt streams its answer (so the first-token and idle
    /// deadlines apply to it): what the attempt timeout, which wraps the
    /// provider, asks.
    fn streams(&self) -> bool {
        false
    }
}

impl<M: Model + ?Sized> Model for Arc<M> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn streams(&self) -> bool {
        (**self).streams()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        (**self).chat(req, cx)
    }
}

impl<M: Model + ?Sized> Model for Box<M> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn streams(&self) -> bool {
        (**self).streams()
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        cx: &'a CallContext,
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
        (**self).chat(req, cx)
    }
}

/// Default `max_tokens` for Anthropic, which requires one.
pub const DEFAULT_MAX_TOKENS: u32 = 4_096;

/// Where and as whom an HTTP provider calls.
#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub model: String,
    pub base_url: Option<String>,
    /// The key, or the name of the unset variable that should have held it.
    key: Result<Option<ApiKey>, String>,
    configured_max_tokens: Option<u32>,
    max_tokens: u32,
    client: reqwest::Client,
    /// Whether the key may go over plain `http://` to a remote host.
    allow_insecure: bool,
    /// Whether to ask for a streamed answer.
    stream: bool,
}

impl Endpoint {
    /// An endpoint with the key given directly (tests, embedding).
    pub fn new(
        name: &str,
        model: &str,
        base_url: Option<String>,
        key: Option<ApiKey>,
    ) -> Result<Self, ModelError> {
        let client = http::client(base_url.as_deref())?;
        Ok(Endpoint {
            name: name.to_string(),
            model: model.to_string(),
            base_url,
            key: Ok(key),
            configured_max_tokens: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            client,
            allow_insecure: false,
            stream: false,
        })
    }

    /// This endpoint, asking for streamed answers (or not). Off for an
    /// endpoint built here; a config entry's `stream` defaults to on.
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// This endpoint, allowed (or not) to send its key over plain `http://`
    /// to a host that is not loopback. Off by default.
    pub fn allow_insecure(mut self, allow: bool) -> Self {
        self.allow_insecure = allow;
        self
    }

    /// An endpoint from a config entry, reading the key's variable now. An
    /// unset variable is not an error until a call needs it, so `model list`
    /// works without keys.
    pub fn from_config(m: &ModelConfig) -> Result<Self, ModelError> {
        let key = match &m.api_key_env {
            Some(var) => ApiKey::from_env(var).map(Some).ok_or_else(|| var.clone()),
            None => Ok(None),
        };
        Ok(Endpoint {
            name: m.name.clone(),
            model: m.model.clone(),
            base_url: m.base_url.clone(),
            key,
            configured_max_tokens: m.max_tokens,
            max_tokens: m.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            client: http::client(m.base_url.as_deref())?,
            allow_insecure: m.allow_insecure,
            stream: m.stream,
        })
    }

    /// The key to send, if any. A key never goes over plain `http://` to a
    /// host that is not loopback (anyone on the path could read it) unless
    /// the entry says `allow_insecure = true`.
    fn key(&self) -> Result<Option<&ApiKey>, ModelError> {
        match &self.key {
            Ok(Some(_))
                if !self.allow_insecure
                    && self.base_url.as_deref().is_some_and(http::is_plain_remote) =>
            {
                Err(ModelError::new(
                    ErrorKind::Auth,
                    format!(
                        "refusing to send the API key of `{}` over plain http:// to a host that is not loopback; use https:// or set allow_insecure = true",
                        self.name
                    ),
                ))
            }
            Ok(k) => Ok(k.as_ref()),
            Err(var) => Err(ModelError::new(
                ErrorKind::Auth,
                format!(
                    "the environment variable {var} (api_key_env of `{}`) is not set",
                    self.name
                ),
            )),
        }
    }
}

/// Whether a chain entry has the API key it needs. An entry whose variable
/// is unset is skipped by the chain (with a warning), not failed: a chain
/// of a hosted model and a local one works with only the local one's setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// `api_key_env` names a variable that is set.
    Set,
    /// `api_key_env` names a variable that is not set (or is empty).
    NoKey,
    /// No `api_key_env`: a local server, or the scripted provider.
    NotNeeded,
}

impl KeyStatus {
    /// The entry's status in the current environment.
    pub fn of(m: &ModelConfig) -> KeyStatus {
        match &m.api_key_env {
            None => KeyStatus::NotNeeded,
            Some(var) if std::env::var_os(var).is_some_and(|v| !v.is_empty()) => KeyStatus::Set,
            Some(_) => KeyStatus::NoKey,
        }
    }

    /// How tables show it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Set => "set",
            KeyStatus::NoKey => "no key",
            KeyStatus::NotNeeded => "none needed",
        }
    }
}

/// Why a config entry could not become a model.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The scripted provider's file is unusable.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The HTTP client could not be built.
    #[error("model `{name}`: {source}")]
    Http { name: String, source: ModelError },
}

/// The provider for one `[[models]]` entry, without policies.
pub fn provider(m: &ModelConfig) -> Result<Arc<dyn Model>, BuildError> {
    let endpoint = || {
        Endpoint::from_config(m).map_err(|source| BuildError::Http {
            name: m.name.clone(),
            source,
        })
    };
    Ok(match m.provider {
        ProviderName::Anthropic => Arc::new(Anthropic::new(endpoint()?)),
        ProviderName::Openai => Arc::new(OpenAi::new(endpoint()?)),
        ProviderName::Scripted => {
            // Validation guarantees a scripted entry names its script.
            let path = m.script.as_deref().unwrap_or(std::path::Path::new(""));
            Arc::new(Scripted::load(m.name.clone(), path)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal comes from `key()`, which both providers call before
    /// building a request: nothing is sent anywhere.
    #[test]
    fn a_key_never_goes_over_plain_http_to_a_remote_host() {
        let key = || Some(ApiKey::new("sk-test-0123456789"));
        // TEST-NET-1: documentation only; never contacted by this test.
        let remote = Endpoint::new("m", "x", Some("http://192.0.2.1/v1".into()), key()).unwrap();
        let e = remote.key().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(e.message.contains("allow_insecure"), "{e}");
        assert!(!e.message.contains("sk-test"), "{e}");

        let allowed = Endpoint::new("m", "x", Some("http://192.0.2.1/v1".into()), key())
            .unwrap()
            .allow_insecure(true);
        assert!(allowed.key().unwrap().is_some());
        for url in [
            "https://192.0.2.1/v1",
            "http://127.0.0.1:9/v1",
            "http://localhost:9",
        ] {
            let ok = Endpoint::new("m", "x", Some(url.into()), key()).unwrap();
            assert!(ok.key().unwrap().is_some(), "{url}");
        }
        // No key, nothing to protect.
        let keyless = Endpoint::new("m", "x", Some("http://192.0.2.1/v1".into()), None).unwrap();
        assert!(keyless.key().unwrap().is_none());
    }
}

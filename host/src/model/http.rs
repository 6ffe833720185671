//! The one HTTP path both wire formats share: post JSON, turn a transport
//! failure or a non-2xx answer into a classified [`ModelError`], and scrub the
//! API key out of anything a provider echoes back.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{ApiKey, ErrorKind, ModelError};
use crate::resilience::classify::{self, Wire};

/// Connecting takes at most this long; the per-attempt deadline (a policy)
/// bounds the whole attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one model entry. rustls only; no proxies from the
/// environment, so a stray `HTTPS_PROXY` cannot see the key.
pub(crate) fn client() -> Result<reqwest::Client, ModelError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
        .user_agent(concat!("toolhost/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            ModelError::new(
                ErrorKind::Connection,
                format!("cannot build an HTTP client: {e}"),
            )
        })
}

/// Posts `body` to `url` with `auth` (a header name and the key) and returns
/// the parsed JSON of a 2xx answer.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    wire: Wire,
    url: &str,
    headers: HeaderMap,
    auth: Option<(HeaderName, String, &ApiKey)>,
    body: &Value,
) -> Result<Value, ModelError> {
    let scrub = |text: &str| {
        auth.as_ref()
            .map_or_else(|| text.to_string(), |(_, _, key)| key.scrub(text))
    };
    let mut request = client.post(url).headers(headers).json(body);
    if let Some((name, prefix, key)) = &auth {
        let mut value =
            HeaderValue::from_str(&format!("{prefix}{}", key.expose())).map_err(|_| {
                ModelError::new(ErrorKind::Auth, "the API key is not a valid header value")
            })?;
        value.set_sensitive(true);
        request = request.header(name.clone(), value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| scrubbed(classify::from_transport(&e), &scrub))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .map_err(|e| scrubbed(classify::from_transport(&e), &scrub))?;
    if !(200..300).contains(&status) {
        return Err(scrubbed(
            classify::from_response(wire, status, &headers, &text),
            &scrub,
        ));
    }
    serde_json::from_str(&text).map_err(|e| {
        ModelError::new(
            ErrorKind::MalformedResponse,
            format!("the response is not JSON: {e}"),
        )
        .with_status(status)
    })
}

fn scrubbed(mut e: ModelError, scrub: &impl Fn(&str) -> String) -> ModelError {
    e.message = scrub(&e.message);
    e
}

/// `base` + `path` without a doubled slash.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A `malformed_response` naming what was missing or wrong.
pub(crate) fn malformed(what: impl Into<String>) -> ModelError {
    ModelError::new(ErrorKind::MalformedResponse, what)
}

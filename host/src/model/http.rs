//! The one HTTP path both wire formats share: post JSON, turn a transport
//! failure or a non-2xx answer into a classified [`ModelError`], and scrub the
//! API key out of anything a provider echoes back.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::classify::{self, Wire};
use super::{ApiKey, ErrorKind, ModelError};
use crate::urls::is_loopback;
pub(crate) use crate::urls::is_plain_remote;

/// Connecting takes at most this long; the per-attempt deadline (a policy)
/// bounds the whole attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one model entry. rustls only. Proxies come from the
/// environment (`HTTPS_PROXY`, `NO_PROXY`) as users expect, except for a
/// loopback base URL: a local model server (Ollama, llama.cpp) is always
/// reached directly, and a plain-HTTP key never crosses a proxy that way.
pub(crate) fn client(base_url: Option<&str>) -> Result<reqwest::Client, ModelError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("toolhost/", env!("CARGO_PKG_VERSION")));
    if base_url.is_some_and(is_loopback) {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| {
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
    let text = read_body(response).await.map_err(|e| scrubbed(e, &scrub))?;
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

/// Largest response body read: a model turn is kilobytes; a provider (or a
/// proxy) streaming without end must not exhaust memory.
const MAX_BODY: usize = 32 * 1024 * 1024;

async fn read_body(mut response: reqwest::Response) -> Result<String, ModelError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| classify::from_transport(&e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(malformed(format!(
                "the response is larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:11434/v1",
            "http://[::1]:8000",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "http://10.0.0.5/v1",
            "not a url",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn plain_http_to_a_remote_host_is_flagged() {
        assert!(is_plain_remote("http://10.0.0.5:8000/v1"));
        assert!(is_plain_remote("http://models.example.com/v1"));
        assert!(!is_plain_remote("https://models.example.com/v1"));
        assert!(!is_plain_remote("http://127.0.0.1:11434/v1"));
        assert!(!is_plain_remote("http://localhost:8000"));
        assert!(!is_plain_remote("http://[::1]:8000"));
    }
}

//! The one HTTP path both wire formats share: post JSON, turn a transport
//! failure or a non-2xx answer into a classified [`ModelError`], and scrub the
//! API key out of anything a provider echoes back.
//!
//! Two rules keep the key where it belongs:
//! - **No redirects.** A 3xx is an `invalid_request` error naming the status
//!   and the (scrubbed) `Location`, never followed: reqwest strips
//!   `Authorization` on a cross-origin hop but not `x-api-key`, and a
//!   redirect to another origin is exactly how a key reaches an attacker
//!   (docs/decisions/0030-model-clients-follow-no-redirects.md).
//! - **Scrub first, cut later.** Every body, success or error, is scrubbed
//!   as a whole before anything reads, cuts, prints or stores it.

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
        .redirect(reqwest::redirect::Policy::none())
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

/// The JSON of a 2xx answer [`send`] returned, scrubbed, and where its text
/// is not I-JSON, if it is not.
pub(crate) async fn read_json(
    response: reqwest::Response,
    key: Option<&ApiKey>,
) -> Result<(Value, Option<crate::json::IJsonError>), ModelError> {
    let status = response.status().as_u16();
    let scrub = |text: &str| key.map_or_else(|| text.to_string(), |k| k.scrub(text));
    let text = read_body(response).await.map_err(|e| scrubbed(e, &scrub))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|e| {
        ModelError::new(
            ErrorKind::MalformedResponse,
            format!("the response is not JSON: {e}"),
        )
        .with_status(status)
    })?;
    let not_ijson = crate::json::parse_ijson(&text).err();
    if let Some(key) = key {
        key.scrub_json(&mut v);
    }
    Ok((v, not_ijson))
}

/// Posts `body` and returns a 2xx response unread (its body may be a
/// stream); any other answer, or none, is the classified error.
pub(crate) async fn send(
    client: &reqwest::Client,
    wire: Wire,
    url: &str,
    headers: HeaderMap,
    auth: Option<(HeaderName, String, &ApiKey)>,
    body: &Value,
) -> Result<reqwest::Response, ModelError> {
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
    let key = auth.as_ref().map(|(_, _, key)| *key);
    if (300..400).contains(&status) {
        return Err(redirected(status, response.headers(), key));
    }
    if !(200..300).contains(&status) {
        let headers = response.headers().clone();
        let text = read_body(response).await.map_err(|e| scrubbed(e, &scrub))?;
        // Scrubbed before classification, which cuts the message.
        let text = key.map_or(text.clone(), |k| k.scrub_body(&text));
        return Err(scrubbed(
            classify::from_response(wire, status, &headers, &text),
            &scrub,
        ));
    }
    Ok(response)
}

/// Whether a 2xx answer is server-sent events (else it is one JSON body).
pub(crate) fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// A 3xx answer: an error naming the status and where it pointed, never
/// followed. `invalid_request` with `x-should-retry` forced off: the
/// configured `base_url` is wrong (or hostile), which neither a retry nor a
/// fallback to the same URL can fix.
fn redirected(status: u16, headers: &HeaderMap, key: Option<&ApiKey>) -> ModelError {
    let location = headers
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let shown = location.as_deref().map_or_else(
        || "no Location".to_string(),
        |l| {
            let l = shown_location(l);
            format!("Location: {}", key.map_or(l.clone(), |k| k.scrub(&l)))
        },
    );
    let mut e = ModelError::new(
        ErrorKind::InvalidRequest,
        format!(
            "HTTP {status} redirect ({shown}): model clients follow no redirects, so the API key never goes to another address; set base_url to the address that answers"
        ),
    )
    .with_status(status);
    e.should_retry = Some(false);
    e
}

/// A `Location` as an error may show it: without user info, query or
/// fragment (where tokens travel), at most 200 characters.
fn shown_location(location: &str) -> String {
    let shown = match reqwest::Url::parse(location) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => location
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    shown.chars().take(200).collect()
}

/// Largest response body read: a model turn is kilobytes; a provider (or a
/// proxy) streaming without end must not exhaust memory.
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;

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

pub(crate) fn scrubbed(mut e: ModelError, scrub: &impl Fn(&str) -> String) -> ModelError {
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
    fn a_redirect_is_a_caller_error_naming_a_scrubbed_location() {
        let key = ApiKey::new("sk-test-RedirectSecret-0123456789");
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LOCATION,
            HeaderValue::from_static(
                "http://user:pw@169.254.169.254/latest/sk-test-RedirectSecret-0123456789?token=abc#f",
            ),
        );
        let e = redirected(307, &headers, Some(&key));
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.status, Some(307));
        assert_eq!(e.should_retry, Some(false));
        assert!(
            e.message
                .contains("Location: http://169.254.169.254/latest/[redacted]"),
            "{}",
            e.message
        );
        for leaked in ["RedirectSecret", "token", "pw@"] {
            assert!(!e.message.contains(leaked), "{}", e.message);
        }
        let e = redirected(302, &HeaderMap::new(), None);
        assert!(
            e.message.contains("HTTP 302 redirect (no Location)"),
            "{}",
            e.message
        );
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

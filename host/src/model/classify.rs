//! Classification: a provider's status, headers and body, or a transport
//! failure, become one [`ErrorKind`] plus the hints the policies act on.
//!
//! Why one place: retry, fallback and the breaker all branch on the kind, so
//! the mapping from "what the wire said" to "what it means" must be made once
//! and tested once, for both wire formats. The table is the design's:
//! 429 `rate_limited`; 529/503 `overloaded`; 500/502/504 `server_error`;
//! 400 `invalid_request` unless the body marks `context_length` (Anthropic
//! "prompt is too long", OpenAI `context_length_exceeded`, LiteLLM's
//! `ContextWindowExceededError`, vLLM's "maximum context length", Ollama's
//! and llama.cpp's context-size messages, and 413) or
//! `content_policy`; 401/403 `auth`; 404 `not_found`.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::model::{ErrorKind, ModelError};

/// Which provider's error bodies to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Anthropic,
    OpenAi,
}

/// Longest provider message kept in an error.
const MAX_MESSAGE: usize = 300;

/// A non-success response -> a model error.
pub fn from_response(wire: Wire, status: u16, headers: &HeaderMap, body: &str) -> ModelError {
    let detail = ErrorBody::parse(body);
    let kind = kind_of(wire, status, &detail);
    let text = detail
        .message
        .clone()
        .unwrap_or_else(|| readable_line(body));
    let mut message = format!("HTTP {status}");
    if !text.is_empty() {
        message.push_str(": ");
        message.extend(text.chars().take(MAX_MESSAGE));
        if text.chars().count() > MAX_MESSAGE {
            message.push_str("...");
        }
    }
    let mut error = ModelError::new(kind, message)
        .with_status(status)
        .with_retry_after(retry_after(headers));
    error.should_retry = should_retry(headers);
    error
}

/// An error that arrived inside a stream whose status was 200 (Anthropic's
/// `error` event, an OpenAI-compatible server's `{"error": ...}` chunk):
/// the error's `type` (or `code`) stands for the status a non-streamed
/// answer would have had, and the same table applies. Anthropic's
/// `overloaded_error` is `overloaded`, as its 529 is; an unknown type is a
/// `server_error` (the provider failed mid-answer).
pub fn from_stream_error(wire: Wire, data: &str) -> ModelError {
    let detail = ErrorBody::parse(data);
    let status = match detail.kind.as_deref().or(detail.code.as_deref()) {
        Some("overloaded_error") => 529,
        Some("rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens") => 429,
        Some("authentication_error" | "invalid_api_key") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("invalid_request_error") => 400,
        Some("timeout_error") => 408,
        _ => 500,
    };
    let kind = kind_of(wire, status, &detail);
    let mut message = format!(
        "an error event mid-stream ({})",
        detail.kind.as_deref().unwrap_or("no type")
    );
    if let Some(text) = &detail.message {
        message.push_str(": ");
        message.extend(text.chars().take(MAX_MESSAGE));
    }
    ModelError::new(kind, message)
}

/// A body that is not the provider's error JSON (an HTML page from a proxy
/// or a load balancer, a stack trace) as one readable line: tags, scripts
/// and styles removed, entities for the common characters decoded,
/// whitespace collapsed. The caller caps its length.
fn readable_line(body: &str) -> String {
    let mut text = String::with_capacity(body.len().min(4096));
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        text.push(' ');
        let after = &rest[open..];
        // Skip the contents of script and style elements, not just the tags.
        let lower: String = after
            .chars()
            .take(7)
            .collect::<String>()
            .to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            after
                .to_ascii_lowercase()
                .find("</script>")
                .map(|i| i + "</script>".len())
        } else if lower.starts_with("<style") {
            after
                .to_ascii_lowercase()
                .find("</style>")
                .map(|i| i + "</style>".len())
        } else {
            after.find('>').map(|i| i + 1)
        };
        match skip_to {
            Some(n) => rest = &after[n..],
            None => {
                rest = "";
                break;
            }
        }
    }
    text.push_str(rest);
    let decoded = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn kind_of(wire: Wire, status: u16, body: &ErrorBody) -> ErrorKind {
    if body.is_context_length(wire) || status == 413 {
        return ErrorKind::ContextLength;
    }
    if body.is_content_policy(wire) {
        return ErrorKind::ContentPolicy;
    }
    // Anthropic reports overload in the body too (as `overloaded_error`).
    if body.kind.as_deref() == Some("overloaded_error") {
        return ErrorKind::Overloaded;
    }
    match status {
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        408 => ErrorKind::Timeout,
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        500..=599 => ErrorKind::ServerError,
        _ => ErrorKind::InvalidRequest,
    }
}

/// The parts of either provider's error JSON that carry meaning.
#[derive(Debug, Default)]
struct ErrorBody {
    /// Anthropic `error.type`, OpenAI `error.type`.
    kind: Option<String>,
    /// OpenAI `error.code`.
    code: Option<String>,
    message: Option<String>,
}

impl ErrorBody {
    fn parse(body: &str) -> ErrorBody {
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return ErrorBody::default();
        };
        let e = v.get("error").unwrap_or(&v);
        let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        ErrorBody {
            kind: s("type"),
            code: s("code"),
            message: s("message"),
        }
    }

    fn message_has(&self, needles: &[&str]) -> bool {
        let m = self.message.as_deref().unwrap_or("").to_ascii_lowercase();
        needles.iter().any(|n| m.contains(n))
    }

    fn is_context_length(&self, wire: Wire) -> bool {
        match wire {
            Wire::Anthropic => {
                self.kind.as_deref() == Some("request_too_large")
                    || self.message_has(&["prompt is too long"])
            }
            Wire::OpenAi => {
                // OpenAI's code; llama.cpp's type; then the messages of
                // LiteLLM, vLLM, Ollama and llama.cpp, whose codes are "400".
                self.code.as_deref() == Some("context_length_exceeded")
                    || self.kind.as_deref() == Some("exceed_context_size_error")
                    || self.message_has(&[
                        "maximum context length",
                        "context length exceeded",
                        "contextwindowexceedederror",
                        "context window exceeded",
                        "exceeds the context length",
                        "exceeds the available context size",
                    ])
            }
        }
    }

    fn is_content_policy(&self, wire: Wire) -> bool {
        match wire {
            Wire::Anthropic => self.message_has(&["content filtering policy", "usage policy"]),
            Wire::OpenAi => {
                matches!(
                    self.code.as_deref(),
                    Some("content_policy_violation" | "content_filter")
                ) || self.message_has(&["content management policy", "content policy"])
            }
        }
    }
}

/// `retry-after-ms` (Anthropic and OpenAI send it), else `Retry-After` as
/// seconds or an HTTP-date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_micros((ms * 1000.0) as u64));
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_millis((secs * 1000.0) as u64));
    }
    // IMF-fixdate, RFC 850 and asctime, as RFC 9110 requires readers to take.
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `x-should-retry: true|false`.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A transport failure (no usable response) -> a model error.
pub fn from_transport(e: &reqwest::Error) -> ModelError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_decode() || e.is_body() && !is_io(e) {
        ErrorKind::MalformedResponse
    } else {
        // Refused, reset, closed before the response: the wire failed.
        ErrorKind::Connection
    };
    ModelError::new(kind, describe(e))
}

fn is_io(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() || s.to_string().contains("connection") {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error and its causes on one line. The URL is shown without user
/// info or query: keys go in headers, but a base URL could carry one.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        text = text.replace(url.as_str(), &format!("{shown}{}", url.path()));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn classify(wire: Wire, status: u16, body: &str) -> ErrorKind {
        from_response(wire, status, &HeaderMap::new(), body).kind
    }

    #[test]
    fn statuses_map_as_the_design_says() {
        for wire in [Wire::Anthropic, Wire::OpenAi] {
            for (status, kind) in [
                (429, ErrorKind::RateLimited),
                (529, ErrorKind::Overloaded),
                (503, ErrorKind::Overloaded),
                (500, ErrorKind::ServerError),
                (502, ErrorKind::ServerError),
                (504, ErrorKind::ServerError),
                (400, ErrorKind::InvalidRequest),
                (413, ErrorKind::ContextLength),
                (401, ErrorKind::Auth),
                (403, ErrorKind::Auth),
                (404, ErrorKind::NotFound),
            ] {
                assert_eq!(classify(wire, status, "<html>"), kind, "{wire:?} {status}");
            }
        }
    }

    #[test]
    fn body_markers_refine_400() {
        let anthropic = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        assert_eq!(
            classify(Wire::Anthropic, 400, anthropic),
            ErrorKind::ContextLength
        );
        let openai = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert_eq!(
            classify(Wire::OpenAi, 400, openai),
            ErrorKind::ContextLength
        );
        let policy = r#"{"error":{"message":"Your request was rejected","type":"invalid_request_error","code":"content_policy_violation"}}"#;
        assert_eq!(
            classify(Wire::OpenAi, 400, policy),
            ErrorKind::ContentPolicy
        );
        let policy = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Output blocked by content filtering policy"}}"#;
        assert_eq!(
            classify(Wire::Anthropic, 400, policy),
            ErrorKind::ContentPolicy
        );
    }

    #[test]
    fn openai_compatible_context_length_spellings() {
        for (who, body) in [
            (
                "openai",
                r#"{"error":{"message":"Request too large.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            ),
            (
                "litellm",
                r#"{"error":{"message":"litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: OpenAIException - context window exceeded","type":null,"param":null,"code":"400"}}"#,
            ),
            (
                "vllm",
                r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#,
            ),
            (
                "ollama",
                r#"{"error":{"message":"the input length exceeds the context length","type":"api_error","param":null,"code":null}}"#,
            ),
            (
                "llama.cpp",
                r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}"#,
            ),
        ] {
            assert_eq!(
                classify(Wire::OpenAi, 400, body),
                ErrorKind::ContextLength,
                "{who}"
            );
        }
        let other = r#"{"error":{"message":"litellm.BadRequestError: unknown parameter","type":null,"param":null,"code":"400"}}"#;
        assert_eq!(
            classify(Wire::OpenAi, 400, other),
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn retry_after_prefers_milliseconds_and_reads_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(should_retry(&h), Some(false));
    }

    #[test]
    fn retry_after_reads_every_http_date_form() {
        // A date about a minute ahead, in each of RFC 9110's three forms.
        let at = SystemTime::now() + Duration::from_secs(61);
        let imf = httpdate::fmt_http_date(at);
        let (rfc850, asctime) = other_forms(&imf);
        for form in [imf.clone(), rfc850, asctime] {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_str(&form).unwrap());
            let wait = retry_after(&h).unwrap_or_else(|| panic!("`{form}` not read"));
            assert!(
                wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
                "`{form}`: {wait:?}"
            );
        }
        for junk in ["soon", "Sun, 06 Nov", "-5", "NaN"] {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_str(junk).unwrap());
            assert_eq!(retry_after(&h), None, "{junk}");
        }
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` -> (`Sunday, 06-Nov-94 08:49:37 GMT`,
    /// `Sun Nov  6 08:49:37 1994`).
    fn other_forms(imf: &str) -> (String, String) {
        let p: Vec<&str> = imf.split_whitespace().collect();
        let (day, date, month, year, time) = (p[0].trim_end_matches(','), p[1], p[2], p[3], p[4]);
        let long = match day {
            "Mon" => "Monday",
            "Tue" => "Tuesday",
            "Wed" => "Wednesday",
            "Thu" => "Thursday",
            "Fri" => "Friday",
            "Sat" => "Saturday",
            _ => "Sunday",
        };
        let rfc850 = format!("{long}, {date}-{month}-{} {time} GMT", &year[2..]);
        let asctime = format!(
            "{day} {month} {:>2} {time} {year}",
            date.trim_start_matches('0')
        );
        (rfc850, asctime)
    }

    /// Regression (issue 12): a proxy's HTML error page used to become a
    /// multi-kilobyte message of markup.
    #[test]
    fn html_error_pages_become_one_readable_line() {
        let page = format!(
            "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title>\n<style>body {{ color: red }}</style>\n<script>var x = '<b>';</script></head>\n<body>\n<h1>Bad Gateway</h1>\n<p>The proxy server received an invalid&nbsp;response &amp; gave up.</p>{}</body></html>",
            "<p>filler</p>".repeat(500)
        );
        let e = from_response(Wire::OpenAi, 502, &HeaderMap::new(), &page);
        assert_eq!(e.kind, ErrorKind::ServerError);
        assert!(
            e.message.starts_with("HTTP 502: 502 Bad Gateway Bad Gateway The proxy server received an invalid response & gave up. filler"),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains('<') && !e.message.contains('\n'),
            "{}",
            e.message
        );
        assert!(!e.message.contains("color"), "{}", e.message);
        assert!(e.message.ends_with("..."), "{}", e.message);
        assert!(e.message.chars().count() <= "HTTP 502: ".len() + MAX_MESSAGE + 3);
    }
}

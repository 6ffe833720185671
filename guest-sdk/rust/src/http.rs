//! Outgoing HTTP for tools: one blocking request over `wasi:http`, its
//! whole response. The host's policy decides where it may go (`allow_hosts`)
//! and adds the forwarded idempotency key to mutating requests of
//! `Idempotent` and `SideEffecting` tools ([`crate::Context::forwarded_key`]).
//!
//! Errors say how far the request got, because that decides what a caller
//! may do next: [`HttpError::NotSent`] reached no server (safe to send
//! again), [`HttpError::Broken`] may have (a connection cut after the
//! request went out: only a request the server dedups, by its idempotency
//! key, is safe to send again).

/// A request's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `POST`, ... (upper case).
    pub method: &'a str,
    /// An absolute `http(s)://` URL.
    pub url: &'a str,
    /// Extra headers, as (name, value).
    pub headers: Vec<(&'a str, String)>,
    /// The body (empty: none).
    pub body: Vec<u8>,
}

/// A whole response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Each header as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as UTF-8 text (invalid bytes replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How far a failed request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The policy refused it: nothing was sent.
    Denied(String),
    /// Not a request `wasi:http` can express (a bad URL or header).
    Invalid(String),
    /// It reached no server (no route, refused, DNS): safe to send again.
    NotSent(String),
    /// The connection failed after the request may have gone out.
    Broken(String),
    /// The response was unusable (over the host's cap, malformed).
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m)
            | HttpError::Invalid(m)
            | HttpError::NotSent(m)
            | HttpError::Broken(m)
            | HttpError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<HttpError> for crate::ToolError {
    /// A refusal is `capability_denied`; a network failure is transient;
    /// the rest failed.
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied(m) => crate::ToolError::capability_denied(m),
            HttpError::Invalid(m) => crate::ToolError::InvalidInput(m),
            HttpError::NotSent(m) | HttpError::Broken(m) => crate::ToolError::Transient(m),
            HttpError::Failed(m) => crate::ToolError::Failed(m),
        }
    }
}

/// Sends `request` and reads the whole response.
pub fn send(request: &Request<'_>) -> Result<Response, HttpError> {
    wasi::send(request)
}

#[cfg(target_os = "wasi")]
mod wasi {
    use super::{HttpError, Request, Response};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    pub(super) fn send(r: &Request<'_>) -> Result<Response, HttpError> {
        let url = r.url;
        let invalid = |what: &str| HttpError::Invalid(format!("{url}: {what}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("not absolute"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid("not http(s)")),
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        let fields = Fields::new();
        for (name, value) in &r.headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|_| invalid(&format!("header `{name}` is not allowed")))?;
        }
        let method = match r.method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let request = OutgoingRequest::new(fields);
        let set = request.set_method(&method).is_ok()
            && request.set_scheme(Some(&scheme)).is_ok()
            && request.set_authority(Some(authority)).is_ok()
            && request.set_path_with_query(Some(&path)).is_ok();
        if !set {
            return Err(invalid("not a valid request"));
        }
        let body = request
            .body()
            .map_err(|()| HttpError::Failed(format!("{url}: the body was taken")))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| error(url, e))?;
        {
            let stream = body
                .write()
                .map_err(|()| HttpError::Failed(format!("{url}: the body was taken")))?;
            for chunk in r.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| HttpError::Broken(format!("{url}: sending the body: {e:?}")))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|e| error(url, e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(error(url, e)),
            Some(Err(())) | None => return Err(HttpError::Broken(format!("{url}: no response"))),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| HttpError::Failed(format!("{url}: the body was taken")))?;
        let stream = incoming
            .stream()
            .map_err(|()| HttpError::Failed(format!("{url}: the body was taken")))?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match wasip2::http::types::http_error_code(&e) {
                        Some(code) => error(url, code),
                        None => HttpError::Broken(format!(
                            "{url}: reading the body failed: {}",
                            e.to_debug_string()
                        )),
                    });
                }
            }
        }
        // The stream is a child of the body: drop it first.
        drop(stream);
        drop(incoming);
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    /// How far a request that failed with `code` got.
    fn error(url: &str, code: ErrorCode) -> HttpError {
        let m = format!("{url}: {code:?}");
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied(format!(
                "{url}: this tool's policy does not allow the request"
            )),
            ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::DestinationIpProhibited
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => HttpError::NotSent(m),
            ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
                HttpError::Invalid(m)
            }
            ErrorCode::HttpResponseBodySize(_) => HttpError::Failed(m),
            _ => HttpError::Broken(m),
        }
    }
}

#[cfg(not(target_os = "wasi"))]
mod wasi {
    //! Natively there is no `wasi:http`: a tool's unit tests bring their
    //! own transport.

    use super::{HttpError, Request, Response};

    pub(super) fn send(r: &Request<'_>) -> Result<Response, HttpError> {
        Err(HttpError::NotSent(format!(
            "{}: wasi:http exists only in the wasm32-wasip2 build",
            r.url
        )))
    }
}

//! `http_fetch`: GETs a URL through `wasi:http` and returns the status and
//! the body as text.
//!
//! Redirects are followed here, in the guest, by issuing a new request for
//! each hop (at most [`MAX_REDIRECTS`]). That is deliberate: every hop then
//! passes through the host's egress policy as a request of its own, so a
//! listed host cannot redirect the tool to one that is not. The tool reaches
//! nothing unless its policy's `allow_hosts` lists the host; a refused
//! request is `capability_denied`.
//!
//! The redirect loop and URL handling are plain Rust over a [`Transport`],
//! unit-tested natively; the `wasi:http` transport exists only on WASI.

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

/// Hops followed before giving up; browsers allow about 20, an API needs few.
pub const MAX_REDIRECTS: usize = 5;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// An absolute `http://` or `https://` URL.
    pub url: String,
}

#[derive(Serialize, JsonSchema, Debug, PartialEq)]
pub struct Output {
    /// The final response's status code (after redirects).
    pub status: u16,
    /// The final response's body, decoded as UTF-8 (invalid bytes replaced).
    pub body: String,
}

/// An absolute URL, split the way `wasi:http` wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// `host` or `host:port` (IPv6 in brackets).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_with_query: String,
}

impl Url {
    /// Parses `http(s)://authority/path?query` (a fragment is dropped).
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = strip_prefix_ci(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "http://") {
            (false, rest)
        } else {
            return Err(format!("`{text}` is not an http:// or https:// URL"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        if authority.contains('@') {
            return Err(format!("`{text}`: credentials in URLs are not supported"));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("`{text}` has an invalid host"));
        }
        let path_with_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Url {
            https,
            authority: authority.to_string(),
            path_with_query,
        })
    }

    /// Resolves a `Location` header against this URL: absolute,
    /// scheme-relative (`//host/p`), absolute-path (`/p`) or relative (`p`).
    pub fn join(&self, location: &str) -> Result<Url, String> {
        let scheme = if self.https { "https" } else { "http" };
        if location.contains("://") {
            Url::parse(location)
        } else if let Some(rest) = location.strip_prefix("//") {
            Url::parse(&format!("{scheme}://{rest}"))
        } else if location.starts_with('/') {
            Url::parse(&format!("{scheme}://{}{location}", self.authority))
        } else {
            let path = self.path_with_query.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            Url::parse(&format!("{scheme}://{}{dir}{location}", self.authority))
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path_with_query)
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// One response, as the redirect loop needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Sends one GET. The WASI build uses `wasi:http`; tests use a fake.
pub trait Transport {
    fn get(&mut self, url: &Url) -> Result<Response, ToolError>;
}

/// GETs `url`, following up to [`MAX_REDIRECTS`] redirects as new requests.
pub fn fetch(transport: &mut impl Transport, url: &str) -> Result<Output, ToolError> {
    let mut url = Url::parse(url).map_err(ToolError::InvalidInput)?;
    for _ in 0..=MAX_REDIRECTS {
        let response = transport.get(&url)?;
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        match (redirect, &response.location) {
            (true, Some(location)) => {
                url = url
                    .join(location)
                    .map_err(|e| ToolError::Failed(format!("bad redirect from {url}: {e}")))?;
            }
            _ => {
                return Ok(Output {
                    status: response.status,
                    body: String::from_utf8_lossy(&response.body).into_owned(),
                });
            }
        }
    }
    Err(ToolError::Failed(format!(
        "more than {MAX_REDIRECTS} redirects, the last to {url}"
    )))
}

pub fn run(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    fetch(&mut transport::Wasi, &input.url)
}

toolhost_sdk::export_tool! {
    name: "http_fetch",
    description: "GETs an http(s) URL (following redirects) and returns the status and body.",
    effect: ReadOnly,
    run: run,
}

#[cfg(target_os = "wasi")]
mod transport {
    //! `wasi:http/outgoing-handler`, blocking: one request, its whole body.

    use super::{Response, ToolError, Transport, Url};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    pub struct Wasi;

    impl Transport for Wasi {
        fn get(&mut self, url: &Url) -> Result<Response, ToolError> {
            let request = OutgoingRequest::new(Fields::new());
            let scheme = if url.https {
                Scheme::Https
            } else {
                Scheme::Http
            };
            let set = request.set_method(&Method::Get).is_ok()
                && request.set_scheme(Some(&scheme)).is_ok()
                && request.set_authority(Some(&url.authority)).is_ok()
                && request
                    .set_path_with_query(Some(&url.path_with_query))
                    .is_ok();
            if !set {
                return Err(ToolError::InvalidInput(format!(
                    "`{url}` is not a valid request"
                )));
            }
            let pending = outgoing_handler::handle(request, None).map_err(|e| error(url, e))?;
            pending.subscribe().block();
            let response = match pending.get() {
                Some(Ok(Ok(response))) => response,
                Some(Ok(Err(e))) => return Err(error(url, e)),
                Some(Err(())) | None => {
                    return Err(ToolError::Failed(format!("{url}: no response")));
                }
            };
            let status = response.status();
            let location = response
                .headers()
                .get("location")
                .into_iter()
                .next()
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            let body = response
                .consume()
                .map_err(|()| ToolError::Failed(format!("{url}: the body was taken")))?;
            let stream = body
                .stream()
                .map_err(|()| ToolError::Failed(format!("{url}: the body was taken")))?;
            let mut bytes = Vec::new();
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(match wasip2::http::types::http_error_code(&e) {
                            Some(code) => error(url, code),
                            None => ToolError::Failed(format!(
                                "{url}: reading the body failed: {}",
                                e.to_debug_string()
                            )),
                        });
                    }
                }
            }
            // The stream is a child of the body: drop it first.
            drop(stream);
            drop(body);
            Ok(Response {
                status,
                location,
                body: bytes,
            })
        }
    }

    /// Maps a `wasi:http` error to the tool's error kinds.
    fn error(url: &Url, code: ErrorCode) -> ToolError {
        match code {
            ErrorCode::HttpRequestDenied => ToolError::capability_denied(format!(
                "{url}: this tool's policy does not allow the request"
            )),
            ErrorCode::HttpResponseBodySize(limit) => ToolError::Failed(format!(
                "{url}: the response body is larger than the host's cap{}",
                limit.map(|n| format!(" of {n} bytes")).unwrap_or_default()
            )),
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::DestinationUnavailable => ToolError::Transient(format!("{url}: {code:?}")),
            other => ToolError::Failed(format!("{url}: {other:?}")),
        }
    }
}

#[cfg(not(target_os = "wasi"))]
mod transport {
    //! Natively there is no `wasi:http`: unit tests bring their own transport.

    use super::{Response, ToolError, Transport, Url};

    pub struct Wasi;

    impl Transport for Wasi {
        fn get(&mut self, url: &Url) -> Result<Response, ToolError> {
            Err(ToolError::Failed(format!(
                "{url}: wasi:http exists only in the wasm32-wasip2 build"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a script of (URL, response) pairs and records requests.
    struct Script {
        replies: Vec<(String, Response)>,
        asked: Vec<String>,
    }

    impl Transport for Script {
        fn get(&mut self, url: &Url) -> Result<Response, ToolError> {
            self.asked.push(url.to_string());
            self.replies
                .iter()
                .find(|(u, _)| *u == url.to_string())
                .map(|(_, r)| r.clone())
                .ok_or_else(|| ToolError::capability_denied(format!("{url} not allowed")))
        }
    }

    fn redirect(to: &str) -> Response {
        Response {
            status: 302,
            location: Some(to.into()),
            body: vec![],
        }
    }

    fn ok(body: &str) -> Response {
        Response {
            status: 200,
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn parses_urls() {
        let u = Url::parse("HTTP://127.0.0.1:8080?q=1#frag").unwrap();
        assert_eq!(
            u,
            Url {
                https: false,
                authority: "127.0.0.1:8080".into(),
                path_with_query: "/?q=1".into()
            }
        );
        assert!(Url::parse("https://[::1]:443/a").unwrap().https);
        for bad in ["ftp://x/", "http://", "http://user:pw@host/", "/relative"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins_locations() {
        let base = Url::parse("http://a.test/dir/page?x=1").unwrap();
        let j = |l: &str| base.join(l).unwrap().to_string();
        assert_eq!(j("https://b.test/x"), "https://b.test/x");
        assert_eq!(j("//c.test/y"), "http://c.test/y");
        assert_eq!(j("/root"), "http://a.test/root");
        assert_eq!(j("sibling"), "http://a.test/dir/sibling");
    }

    #[test]
    fn every_redirect_hop_is_a_new_request() {
        let mut t = Script {
            replies: vec![
                ("http://a.test/".into(), redirect("/next")),
                ("http://a.test/next".into(), redirect("http://b.test/end")),
                ("http://b.test/end".into(), ok("done")),
            ],
            asked: vec![],
        };
        let out = fetch(&mut t, "http://a.test").unwrap();
        assert_eq!(
            out,
            Output {
                status: 200,
                body: "done".into()
            }
        );
        assert_eq!(
            t.asked,
            ["http://a.test/", "http://a.test/next", "http://b.test/end"]
        );
    }

    #[test]
    fn a_refused_hop_fails_the_fetch() {
        let mut t = Script {
            replies: vec![("http://a.test/".into(), redirect("http://evil.test/"))],
            asked: vec![],
        };
        let err = fetch(&mut t, "http://a.test/").unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed(m) if m.starts_with("capability_denied")),
            "{err:?}"
        );
    }

    #[test]
    fn redirect_loops_stop() {
        let mut t = Script {
            replies: vec![("http://a.test/".into(), redirect("/"))],
            asked: vec![],
        };
        let err = fetch(&mut t, "http://a.test/").unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed(m) if m.contains("redirects")),
            "{err:?}"
        );
        assert_eq!(t.asked.len(), MAX_REDIRECTS + 1);
    }
}

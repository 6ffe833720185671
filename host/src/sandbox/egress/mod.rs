//! Outgoing HTTP (`wasi:http`) under a tool's `allow_hosts`, safe against
//! server-side request forgery.
//!
//! wasmtime-wasi-http parses the guest's request; we replace only the part
//! that sends it ([`WasiHttpHooks::send_request`]), so every request a tool
//! makes, each redirect hop included (wasi:http never follows redirects by
//! itself: a guest that wants the next hop must send a new request), passes
//! three checks before a byte leaves:
//!
//! 1. the URL's host and port must match an `allow_hosts` pattern
//!    ([`allow::check_uri`]);
//! 2. the name is resolved here, and every address it resolves to must be
//!    public, unless the policy names that exact `host:port`
//!    ([`allow::check_addrs`]);
//! 3. the connection goes to one of those checked addresses, never to a name
//!    a library would resolve again ([`connect`]).
//!
//! A refused request fails in the guest with `HTTP-request-denied` and is
//! recorded in the call's [`EgressRecord`], so the call ends as
//! `capability_denied` even if the tool swallows the error. Response bodies
//! stop at `max_response_bytes` ([`body`]). Raw sockets (`wasi:sockets`)
//! stay disabled in the WASI context: HTTP through this module is the only
//! way out. TLS is rustls with the webpki roots; there is no OpenSSL.

mod allow;
mod body;
mod connect;
mod forward;
mod resolve;
mod special;

pub use allow::{Target, check_addrs, check_uri, is_internal};
pub use forward::DEFAULT_HEADER;
pub(crate) use forward::Forward;
pub use resolve::{Resolve, Resolving, StaticResolver, SystemResolver};
pub use special::{Reach, reach};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use rustls::pki_types::CertificateDer;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::HostPattern;

/// How long a TCP connect may take unless the guest asks for less. The call's
/// own deadline bounds everything else.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an outgoing request was not sent (or not completed).
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The URL's host and port match no `allow_hosts` pattern.
    #[error("{host}:{port} is not in this tool's allow_hosts")]
    NotAllowed { host: String, port: u16 },
    /// The name resolved to an internal address the policy does not open:
    /// an internal one needs an exact `host:port` entry, a link-local or
    /// metadata one the address literal itself.
    #[error(
        "{host}:{port} resolves to the internal address {addr}{}",
        if *link_local {
            " (link-local or cloud metadata); no host name reaches it, only a request to that address literal listed in allow_hosts"
        } else {
            "; only an exact `host:port` entry in allow_hosts opens it"
        }
    )]
    InternalAddress {
        host: String,
        port: u16,
        addr: SocketAddr,
        /// Link-local or metadata, not merely internal.
        link_local: bool,
    },
    /// Not an absolute http(s) URL, or one we refuse to send (credentials).
    #[error("invalid request URL: {0}")]
    BadUri(String),
    /// Name resolution failed.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    /// The name resolved to no address at all.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// Connecting to every checked address failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// Connecting took longer than the connect timeout.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// The TLS handshake failed (an untrusted certificate, say).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(hyper::Error),
    /// The response declared a body over the cap.
    #[error("the response body is over the {cap}-byte cap (max_response_bytes)")]
    BodyTooLarge { cap: u64 },
}

impl EgressError {
    /// Whether this is the policy saying no (as opposed to the network failing).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            EgressError::NotAllowed { .. } | EgressError::InternalAddress { .. }
        )
    }

    /// The `wasi:http` error code the guest sees.
    fn to_http(&self) -> HttpError {
        match self {
            EgressError::NotAllowed { .. } | EgressError::InternalAddress { .. } => {
                HttpError::HttpRequestDenied
            }
            EgressError::BadUri(_) => HttpError::HttpRequestUriInvalid,
            EgressError::Resolve(..) | EgressError::NoAddress(_) => HttpError::DnsError {
                rcode: Some("name does not resolve".into()),
                info_code: None,
            },
            EgressError::Connect(e) => match e.kind() {
                std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
                _ => HttpError::DestinationUnavailable,
            },
            EgressError::ConnectTimeout(_) => HttpError::ConnectionTimeout,
            EgressError::Tls(e) => {
                let bad_cert = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                if bad_cert {
                    HttpError::TlsCertificateError
                } else {
                    HttpError::TlsProtocolError
                }
            }
            EgressError::Http(_) => HttpError::HttpProtocolError,
            EgressError::BodyTooLarge { cap } => HttpError::HttpResponseBodySize(Some(*cap)),
        }
    }
}

/// A URL as error text and logs show it: scheme, host, port and path, never
/// the user info or the query string (either may carry a token).
pub(crate) fn shown(uri: &http::Uri) -> String {
    let mut out = String::new();
    if let Some(scheme) = uri.scheme_str() {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(authority) = uri.authority() {
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, hp)| hp);
        out.push_str(host_port);
    }
    out.push_str(uri.path());
    out
}

/// Host-wide egress settings, shared by every call of a sandbox.
#[derive(Clone)]
pub struct EgressOptions {
    /// Turns names into addresses; every address is checked before use.
    pub resolver: Arc<dyn Resolve>,
    /// The TLS client: webpki roots, plus any [`EgressOptions::trust`] added.
    pub tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for EgressOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressOptions").finish_non_exhaustive()
    }
}

impl Default for EgressOptions {
    /// The system resolver and the public web PKI.
    fn default() -> Self {
        EgressOptions {
            resolver: Arc::new(SystemResolver),
            // The webpki roots always form a valid store.
            tls: tls_config(&[]).expect("the webpki roots make a valid TLS config"),
        }
    }
}

impl EgressOptions {
    /// These options with `resolver` instead.
    pub fn with_resolver(mut self, resolver: impl Resolve + 'static) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }

    /// These options trusting `extra` root certificates besides the webpki
    /// roots (a private CA, or a test's self-signed certificate).
    pub fn trust(mut self, extra: &[CertificateDer<'static>]) -> Result<Self, rustls::Error> {
        self.tls = tls_config(extra)?;
        Ok(self)
    }
}

/// A rustls client config (ring provider, TLS 1.2 and 1.3, HTTP/1.1 ALPN)
/// trusting the webpki roots and `extra`.
pub fn tls_config(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots.add(cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What one call's outgoing requests ran into, shared between its store and
/// the request futures (which run detached from the store).
#[derive(Debug, Default)]
pub(crate) struct EgressRecord {
    denied: Mutex<Option<String>>,
    body_too_large: Mutex<Option<String>>,
}

impl EgressRecord {
    fn deny(&self, why: &EgressError) {
        tracing::info!(reason = %why, "outgoing request denied");
        let mut slot = lock(&self.denied);
        slot.get_or_insert_with(|| why.to_string());
    }

    fn body_too_large(&self, url: &str, cap: u64) {
        let mut slot = lock(&self.body_too_large);
        slot.get_or_insert_with(|| {
            format!("the HTTP response from {url} has a body over the {cap}-byte cap (max_response_bytes)")
        });
    }

    /// The first denial of the call, if any.
    pub(crate) fn denied(&self) -> Option<String> {
        lock(&self.denied).clone()
    }

    /// The first response that hit the body cap, if any.
    pub(crate) fn body_overflow(&self) -> Option<String> {
        lock(&self.body_too_large).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic while it was held leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One call's egress: its allow list and caps, and where it records what
/// happened. The `wasi:http` hooks of the call's store.
pub(crate) struct Egress {
    allow: Arc<[HostPattern]>,
    options: EgressOptions,
    max_response_bytes: u64,
    record: Arc<EgressRecord>,
    /// The idempotency key header this call's mutating requests carry.
    forward: Option<Forward>,
}

impl Egress {
    pub(crate) fn new(
        allow: Vec<HostPattern>,
        options: EgressOptions,
        max_response_bytes: u64,
        forward: Option<Forward>,
    ) -> Self {
        Egress {
            allow: allow.into(),
            options,
            max_response_bytes,
            record: Arc::default(),
            forward,
        }
    }

    pub(crate) fn record(&self) -> &EgressRecord {
        &self.record
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        // The URL check needs no I/O: a refused host is refused before the
        // request future even exists.
        let target = match check_uri(&self.allow, request.uri()) {
            Ok(t) => t,
            Err(e) => {
                if e.is_denial() {
                    self.record.deny(&e);
                }
                let code = e.to_http();
                return Box::new(async move { Err(code) });
            }
        };
        // Only a granted host ever sees the key.
        if let Some(forward) = &self.forward {
            forward.apply(&mut request);
        }
        let out = connect::Outgoing {
            allow: self.allow.clone(),
            target,
            options: self.options.clone(),
            record: self.record.clone(),
            max_response_bytes: self.max_response_bytes,
            connect_timeout: options
                .and_then(|o| o.connect_timeout)
                .map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT)),
        };
        let record = self.record.clone();
        Box::new(async move {
            connect::send(out, request).await.map_err(|e| {
                if e.is_denial() {
                    record.deny(&e);
                } else {
                    tracing::debug!(error = %e, "outgoing request failed");
                }
                e.to_http()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tls_config_builds_and_speaks_http1() {
        let options = EgressOptions::default();
        assert_eq!(options.tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn an_https_url_passes_the_policy_path() {
        let allow = vec![HostPattern::parse("api.example.com").unwrap()];
        let uri = "https://api.example.com/v1?q=1".parse().unwrap();
        let target = check_uri(&allow, &uri).unwrap();
        assert!(target.tls);
        assert_eq!(target.port, 443);
        // The same host over http on 443 is not the default http port.
        let uri = "http://api.example.com:443/".parse().unwrap();
        assert!(check_uri(&allow, &uri).is_err());
    }

    #[test]
    fn shown_urls_drop_credentials_and_queries() {
        let uri: http::Uri = "https://user:pw@api.example.com:8443/v1/x?token=s3cret#frag"
            .parse()
            .unwrap();
        assert_eq!(shown(&uri), "https://api.example.com:8443/v1/x");
        let allow = vec![HostPattern::parse("api.example.com").unwrap()];
        let e = check_uri(&allow, &uri).unwrap_err().to_string();
        assert!(!e.contains("pw") && !e.contains("s3cret"), "{e}");
        let uri: http::Uri = "ftp://h/p?key=s3cret".parse().unwrap();
        let e = check_uri(&allow, &uri).unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn denials_map_to_request_denied() {
        let e = EgressError::NotAllowed {
            host: "x".into(),
            port: 1,
        };
        assert!(e.is_denial());
        assert!(matches!(e.to_http(), HttpError::HttpRequestDenied));
        let e = EgressError::BodyTooLarge { cap: 5 };
        assert!(!e.is_denial());
        assert!(matches!(
            e.to_http(),
            HttpError::HttpResponseBodySize(Some(5))
        ));
    }
}

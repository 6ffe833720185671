//! A real HTTP(S) server on 127.0.0.1 for the egress tests, and a sandbox
//! helper with chosen policies.
//!
//! The server is deliberately tiny (read a request head, answer, close): it
//! serves fixed routes, counts the requests it gets (so a test can prove a
//! refused request never arrived), and can speak TLS with a self-signed
//! certificate made by rcgen that only the test trusts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use toolhost::config::ToolPolicy;
use toolhost::sandbox::{EgressOptions, Sandbox, SandboxOptions};

/// One canned answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body and its Content-Length.
    Ok(String),
    /// 302 to this Location.
    Redirect(String),
    /// 200 with `n` bytes of body, sent chunked (no Content-Length), so only
    /// the streaming cap can stop it.
    Chunked(usize),
    /// 200 with `n` bytes of body and a Content-Length saying so.
    Sized(usize),
}

/// A server on 127.0.0.1:<random port>, alive as long as the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl TestServer {
    /// Plain HTTP serving `routes` (path -> reply; anything else is 404).
    pub async fn http(routes: &[(&str, Reply)]) -> TestServer {
        TestServer::start(routes, None).await
    }

    /// HTTPS with `tls`'s certificate.
    pub async fn https(routes: &[(&str, Reply)], tls: &TestCert) -> TestServer {
        TestServer::start(routes, Some(tls.acceptor())).await
    }

    async fn start(routes: &[(&str, Reply)], tls: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let routes: Arc<BTreeMap<String, Reply>> = Arc::new(
            routes
                .iter()
                .map(|(p, r)| (p.to_string(), r.clone()))
                .collect(),
        );
        let counter = hits.clone();
        tokio::spawn(async move {
            // Bounded: a test makes a handful of requests.
            for _ in 0..64 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let routes = routes.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, &routes).await;
                            }
                        }
                        None => serve(stream, &routes).await,
                    }
                });
            }
        });
        TestServer { addr, hits }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `127.0.0.1:<port>`, as an `allow_hosts` entry.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, routes: &BTreeMap<String, Reply>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let response: Vec<u8> = match routes.get(&path) {
        Some(Reply::Ok(body)) => ok(body.as_bytes()),
        Some(Reply::Sized(n)) => ok(&vec![b'x'; *n]),
        Some(Reply::Redirect(to)) => format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        Some(Reply::Chunked(n)) => {
            let mut r =
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    .to_vec();
            let chunk = vec![b'y'; 8192];
            let mut left = *n;
            while left > 0 {
                let len = left.min(chunk.len());
                r.extend_from_slice(format!("{len:x}\r\n").as_bytes());
                r.extend_from_slice(&chunk[..len]);
                r.extend_from_slice(b"\r\n");
                left -= len;
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    // The client may hang up early (a body over its cap): not an error here.
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A self-signed certificate for the given names and 127.0.0.1.
pub struct TestCert {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TestCert {
    pub fn new(names: &[&str]) -> TestCert {
        let mut sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        sans.push("127.0.0.1".into());
        let certified = rcgen::generate_simple_self_signed(sans).unwrap();
        TestCert {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        }
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A sandbox over copies of the named example, hostile and testkit tools, with
/// `policies` and `egress` options.
pub async fn sandbox_with(
    tools: &[&str],
    policies: &[(&str, ToolPolicy)],
    egress: EgressOptions,
) -> Sandbox {
    let dir = tempfile::tempdir().unwrap().keep();
    for name in tools {
        let file = format!("{name}.wasm");
        let from = [
            crate::support::examples_dir(),
            crate::support::hostile_dir(),
            PathBuf::from(toolhost::sandbox::TESTKIT_DIR),
        ]
        .into_iter()
        .map(|d| d.join(&file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no built tool {name}"));
        std::fs::copy(from, dir.join(&file)).unwrap();
    }
    let mut options = SandboxOptions::for_dir(&dir);
    options.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
    options.policies = policies
        .iter()
        .map(|(n, p)| (n.to_string(), p.clone()))
        .collect();
    options.egress = egress;
    let sandbox = Sandbox::open(options).await.unwrap();
    assert!(
        sandbox.load_errors().is_empty(),
        "{:?}",
        sandbox.load_errors()
    );
    // The directory stays: a component is loaded on its first call (the
    // metadata cache describes it without reading it), so removing the
    // files here failed a later call whenever its load came after.
    sandbox
}

/// A policy allowing exactly these hosts.
pub fn allow(hosts: &[&str]) -> ToolPolicy {
    ToolPolicy {
        allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        ..ToolPolicy::default()
    }
}

//! Sending one checked request: resolve the name ourselves, check every
//! address, connect to a checked address (never re-resolving), then TLS
//! (rustls, server name from the URL) and HTTP/1.1 over that stream.
//!
//! Connecting to the address we checked, rather than handing the name to a
//! client library, is what makes the address check mean something: a second
//! lookup could answer differently (DNS rebinding).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::allow::{Target, check_addrs};
use super::body::CappedBody;
use super::{EgressError, EgressOptions, EgressRecord};
use crate::config::{HostPattern, RequestHost};

/// What [`send`] hands back to wasi-http: the response, and a future that
/// drives the rest of the connection while the guest reads the body.
pub(super) type Sent = (
    Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
);

/// Everything one request needs, owned so the future can outlive the store
/// borrow that created it.
pub(super) struct Outgoing {
    pub allow: Arc<[HostPattern]>,
    pub target: Target,
    pub options: EgressOptions,
    pub record: Arc<EgressRecord>,
    pub max_response_bytes: u64,
    pub connect_timeout: Duration,
}

/// Resolves, checks, connects and sends `request`.
pub(super) async fn send(
    out: Outgoing,
    mut request: Request<WasiBody>,
) -> Result<Sent, EgressError> {
    // Error text and logs never carry the query string: it may hold a token.
    let url = super::shown(request.uri());
    let addrs = resolve(&out).await?;
    check_addrs(&out.allow, &out.target, &addrs)?;
    let tcp = connect(&addrs, out.connect_timeout).await?;
    // The request line carries only the path: the authority went into Host.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = path
        .parse::<Uri>()
        .map_err(|e| EgressError::BadUri(e.to_string()))?;
    let method_is_head = request.method() == http::Method::HEAD;

    let response = if out.target.tls {
        let name = server_name(&out.target.host)?;
        let tls = tokio_rustls::TlsConnector::from(out.options.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(EgressError::Tls)?;
        exchange(tls, request).await?
    } else {
        exchange(tcp, request).await?
    };
    let (parts, incoming, io) = response;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if !method_is_head && declared.is_some_and(|n| n > out.max_response_bytes) {
        out.record.body_too_large(&url, out.max_response_bytes);
        return Err(EgressError::BodyTooLarge {
            cap: out.max_response_bytes,
        });
    }
    let body = CappedBody::new(incoming, out.max_response_bytes, url, out.record.clone());
    Ok((Response::from_parts(parts, body.boxed_unsync()), io))
}

async fn resolve(out: &Outgoing) -> Result<Vec<SocketAddr>, EgressError> {
    match &out.target.host {
        RequestHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, out.target.port)]),
        RequestHost::Name(name) => out
            .options
            .resolver
            .resolve(name, out.target.port)
            .await
            .map_err(|e| EgressError::Resolve(name.clone(), e)),
    }
}

/// Tries the checked addresses in order, each with its own `timeout`; the
/// first that answers wins. A refused or silent address moves on to the
/// next (a name with a dead IPv6 and a live IPv4 address still works); only
/// when every one failed does the request fail, as a timeout if the last
/// failure was one. The call's deadline bounds the whole loop.
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, EgressError> {
    let mut last = EgressError::Connect(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no address to connect to",
    ));
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = EgressError::Connect(e),
            Err(_) => last = EgressError::ConnectTimeout(*addr),
        }
    }
    Err(last)
}

fn server_name(host: &RequestHost) -> Result<ServerName<'static>, EgressError> {
    match host {
        RequestHost::Ip(ip) => Ok(ServerName::from(*ip)),
        RequestHost::Name(name) => ServerName::try_from(name.clone())
            .map_err(|e| EgressError::BadUri(format!("`{name}` is not a TLS server name: {e}"))),
    }
}

type Exchanged = (
    http::response::Parts,
    hyper::body::Incoming,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
);

/// HTTP/1.1 over `stream`: send the request while driving the connection,
/// then hand the connection's remaining work back as a future.
async fn exchange<S>(stream: S, request: Request<WasiBody>) -> Result<Exchanged, EgressError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream))
            .await
            .map_err(EgressError::Http)?;
    let mut conn = Box::pin(conn);
    let send = sender.send_request(request);
    tokio::pin!(send);
    let mut conn_done = false;
    let response = loop {
        tokio::select! {
            response = &mut send => break response.map_err(EgressError::Http)?,
            result = &mut conn, if !conn_done => {
                conn_done = true;
                result.map_err(EgressError::Http)?;
            }
        }
    };
    // One request per connection: with the sender gone, the connection
    // closes once the response body is read instead of idling for another.
    drop(sender);
    let io = async move {
        if !conn_done {
            conn.await.map_err(HttpError::Hyper)?;
        }
        Ok(())
    };
    let (parts, body) = response.into_parts();
    Ok((parts, body, Box::new(io)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A loopback listener whose accept queue is full: a further connect's
    /// SYN is dropped, so the connect hangs until its timeout.
    fn silent_listener(ip: &str) -> (tokio::net::TcpListener, Vec<std::net::TcpStream>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // Fill the backlog; nobody accepts these.
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                held.push(s);
            }
        }
        (listener, held)
    }

    #[tokio::test]
    async fn a_silent_address_moves_on_to_the_next() {
        let (silent, _held) = silent_listener("127.0.0.1");
        let port = silent.local_addr().unwrap().port();
        // A live server on another loopback address, same port.
        let live = match tokio::net::TcpListener::bind(("127.0.0.2", port)).await {
            Ok(l) => l,
            // The port is taken on 127.0.0.2 by chance: nothing to prove here.
            Err(_) => return,
        };
        let addrs: Vec<SocketAddr> = vec![silent.local_addr().unwrap(), live.local_addr().unwrap()];
        let start = Instant::now();
        let stream = connect(&addrs, Duration::from_millis(300))
            .await
            .expect("the second address answers");
        assert_eq!(stream.peer_addr().unwrap(), addrs[1]);
        assert!(start.elapsed() < Duration::from_secs(5));
        // Every address silent: the failure says it timed out.
        let e = connect(&addrs[..1], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, EgressError::ConnectTimeout(_)), "{e}");
    }

    #[tokio::test]
    async fn a_refused_address_moves_on_to_the_next() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = vec![closed_addr, live.local_addr().unwrap()];
        let stream = connect(&addrs, Duration::from_secs(2)).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addrs[1]);
    }
}

//! A loopback payment API: the reference for the example tool `pay`.
//!
//! Its semantics are the contract `pay` is written against (issue 19), and
//! what any Stripe-like API it is pointed at must do:
//!
//! - `POST /v1/charges`, body `{"amount": <int cents>, "currency": <str>,
//!   "reference": <str>}`, answers `200 {"id", "amount", "currency",
//!   "reference", "status": "succeeded"}`. A request with an
//!   `Idempotency-Key` the server has seen replays the first answer if its
//!   body is the same, and is `422` if it is not. Without the header every
//!   request is a new charge.
//! - `GET /v1/charges?idempotency_key=<v>` answers `200 {"data": [...]}`,
//!   the one charge made under that key, or none.
//! - Anything else is `404`.
//!
//! A charge is committed when its request has been read, before any answer
//! is written, as a real API commits before it replies. A test can script
//! faults for the first POST of a reference ([`Fault`]): hold the answer for
//! a while (a client killed meanwhile never reads it), commit and drop the
//! connection without answering, or stall it uncommitted and drop it (it
//! never took effect). Look-ups can be made to fail (`503`), so the
//! API cannot tell. Every request is logged (method, path,
//! the `Idempotency-Key` it carried), so the header tests can read exactly
//! what arrived, and a test can wait for a request to arrive
//! ([`PaymentServer::wait_for_post`]): the crash tests kill a client at
//! instants they observe on the server, not at guessed ones.
//!
//! The server is plain HTTP/1.1 (bodies by length or chunked), one request
//! per connection (`Connection: close`), on its own thread and runtime, so it outlives the test's child
//! processes and never waits on the test's own runtime.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with the first POST of a reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Commit and answer at once.
    None,
    /// Commit, then wait this long before answering.
    Hold(Duration),
    /// Commit, then close the connection without an answer.
    Drop,
    /// Hold the request this long without committing it, then close the
    /// connection: it never took effect (a gateway that lost it).
    Stall(Duration),
}

/// One request as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The `Idempotency-Key` header, if it carried one.
    pub idempotency_key: Option<String>,
    /// Every header, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body's `reference`, if it has one (a POST of a charge).
    pub reference: Option<String>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Charges in the order they were made.
    charges: Vec<Value>,
    /// Idempotency key -> (the request body's fields, the answer).
    by_key: HashMap<String, (Value, Value)>,
    faults: HashMap<String, Fault>,
    log: Vec<Logged>,
    /// Look-ups answer 503 while set (the API cannot tell).
    lookups_down: bool,
    /// Requests read and not yet answered or dropped (held ones included).
    open: usize,
}

/// The state, and a signal raised after each request is logged (and,
/// for a charge, committed or lost), and after each is done with.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
}

/// The server; stops when dropped.
pub struct PaymentServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PaymentServer {
    /// Listens on 127.0.0.1:<random port>.
    pub fn start() -> PaymentServer {
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let serving = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve(stream, serving.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the payment server starts");
        PaymentServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL `pay` takes as `api`.
    pub fn api(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `host:port`, for `allow_hosts`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The input of a `pay` call against this server: 500 cents in `usd`
    /// for `reference`.
    pub fn pay_input(&self, reference: &str) -> String {
        json!({"api": self.api(), "amount": 500, "currency": "usd", "reference": reference})
            .to_string()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits, woken by the server's signal, until `done` holds of the state
    /// or `limit` passes. Whether it holds.
    fn wait_until(&self, limit: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.state();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if done(&state) || left.is_zero() {
                return done(&state);
            }
            state = self
                .shared
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until `n` POSTs of `reference` have arrived (each committed,
    /// or lost by a `Stall`, before this returns), or `limit` passes.
    /// Whether they did.
    pub fn wait_for_post(&self, reference: &str, n: usize, limit: Duration) -> bool {
        self.wait_until(limit, |s| {
            s.log
                .iter()
                .filter(|l| l.method == "POST" && l.reference.as_deref() == Some(reference))
                .count()
                >= n
        })
    }

    /// Waits until no request is open (every held or stalled one answered
    /// or dropped), or `limit` passes. Whether none is.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        self.wait_until(limit, |s| s.open == 0)
    }

    /// Scripts the first POST of `reference`.
    pub fn fault(&self, reference: &str, fault: Fault) {
        self.state().faults.insert(reference.to_string(), fault);
    }

    /// Makes look-ups (`GET /v1/charges`) answer 503, or serve again.
    pub fn lookups_down(&self, down: bool) {
        self.state().lookups_down = down;
    }

    /// How many charges carry `reference`.
    pub fn charges_for(&self, reference: &str) -> usize {
        self.state()
            .charges
            .iter()
            .filter(|c| c["reference"] == reference)
            .count()
    }

    /// Every charge made, in order.
    pub fn charges(&self) -> Vec<Value> {
        self.state().charges.clone()
    }

    /// Every request that arrived, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }
}

impl Drop for PaymentServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request's head and body.
struct Parsed {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Option<Parsed> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        // Read until the last chunk's terminator, then decode.
        while !body.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 || body.len() > 1 << 20 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body)?;
    } else {
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while body.len() < length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Parsed {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// A chunked body's bytes (`size CRLF data CRLF`..., `0 CRLF CRLF`).
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// A request read and not yet done with: counted in `open` until dropped.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Open {
        shared.state.lock().unwrap_or_else(|p| p.into_inner()).open += 1;
        Open(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
        self.0.arrived.notify_all();
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let _open = Open::new(&shared);
    let reference = serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|v| v["reference"].as_str().map(str::to_string));
    let (status, body, fault) = {
        let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        s.log.push(Logged {
            method: request.method.clone(),
            path: request.path.clone(),
            idempotency_key: request.headers.get("idempotency-key").cloned(),
            headers: request.headers.clone(),
            reference,
        });
        answer(&mut s, &request)
    };
    shared.arrived.notify_all();
    match fault {
        Fault::Drop => return,
        Fault::Stall(d) => {
            tokio::time::sleep(d).await;
            return;
        }
        Fault::Hold(d) => tokio::time::sleep(d).await,
        Fault::None => {}
    }
    let text = body.to_string();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The API's semantics; the fault to apply on the way out.
fn answer(s: &mut State, r: &Parsed) -> (u16, Value, Fault) {
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/charges") => charge(s, r),
        ("GET", "/v1/charges") if s.lookups_down => {
            (503, json!({"error": "look-ups are down"}), Fault::None)
        }
        ("GET", "/v1/charges") => {
            let key = r
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("idempotency_key="))
                .unwrap_or_default();
            let data: Vec<Value> = s
                .by_key
                .get(key)
                .map(|(_, charge)| charge.clone())
                .into_iter()
                .collect();
            (200, json!({ "data": data }), Fault::None)
        }
        _ => (404, json!({"error": "no such route"}), Fault::None),
    }
}

fn charge(s: &mut State, r: &Parsed) -> (u16, Value, Fault) {
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return (400, json!({"error": "the body is not JSON"}), Fault::None);
    };
    let (Some(amount), Some(currency), Some(reference)) = (
        body["amount"].as_u64(),
        body["currency"].as_str(),
        body["reference"].as_str(),
    ) else {
        return (
            400,
            json!({"error": "amount, currency and reference are required"}),
            Fault::None,
        );
    };
    let fields = json!({"amount": amount, "currency": currency, "reference": reference});
    // A stalled request is never committed; the fault is spent.
    if s.faults
        .get(reference)
        .is_some_and(|f| matches!(f, Fault::Stall(_)))
    {
        let fault = s.faults.remove(reference).unwrap_or(Fault::None);
        return (503, json!({"error": "lost"}), fault);
    }
    let key = r.headers.get("idempotency-key").cloned();
    if let Some(key) = &key
        && let Some((first, answer)) = s.by_key.get(key)
    {
        if *first == fields {
            return (200, answer.clone(), Fault::None);
        }
        return (
            422,
            json!({"error": "this idempotency key was used with another body"}),
            Fault::None,
        );
    }
    s.next_id += 1;
    let charge = json!({
        "id": format!("ch_{}", s.next_id),
        "amount": amount,
        "currency": currency,
        "reference": reference,
        "status": "succeeded",
    });
    s.charges.push(charge.clone());
    if let Some(key) = key {
        s.by_key.insert(key, (fields, charge.clone()));
    }
    let fault = s.faults.remove(reference).unwrap_or(Fault::None);
    (200, charge, fault)
}

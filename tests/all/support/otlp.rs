//! A loopback OTLP/HTTP receiver: accepts `POST /v1/traces` (protobuf),
//! decodes each export with `opentelemetry-proto` and keeps the spans, so a
//! test can assert the span tree a real `toolhost` process exported. It can
//! also play a collector that never answers (`stuck`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

/// One exported span, flattened.
#[derive(Clone, Debug)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
    pub service: String,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver on 127.0.0.1; the thread lives as long as the test binary.
pub struct Receiver {
    pub base: String,
    /// The spans so far, and a signal raised whenever more arrive.
    spans: Arc<(Mutex<Vec<Span>>, Condvar)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

impl Receiver {
    /// A receiver that answers every export with 200; `stuck` never answers.
    pub fn start(stuck: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let spans: Arc<(Mutex<Vec<Span>>, Condvar)> = Arc::default();
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        if stuck {
                            std::thread::sleep(Duration::from_secs(600));
                            return;
                        }
                        let request = ExportTraceServiceRequest::decode(body.as_slice())
                            .expect("an OTLP protobuf export");
                        let mut out = kept.0.lock().unwrap();
                        for rs in request.resource_spans {
                            let service = rs
                                .resource
                                .iter()
                                .flat_map(|r| r.attributes.iter())
                                .find(|a| a.key == "service.name")
                                .map(|a| text(&a.value))
                                .unwrap_or_default();
                            for ss in rs.scope_spans {
                                for s in ss.spans {
                                    out.push(Span {
                                        name: s.name,
                                        trace_id: hex(&s.trace_id),
                                        span_id: hex(&s.span_id),
                                        parent_span_id: hex(&s.parent_span_id),
                                        attributes: s
                                            .attributes
                                            .iter()
                                            .map(|a| (a.key.clone(), text(&a.value)))
                                            .collect(),
                                        service: service.clone(),
                                    });
                                }
                            }
                        }
                        drop(out);
                        kept.1.notify_all();
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { base, spans }
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.0.lock().unwrap().clone()
    }

    /// Waits (bounded, 20 s) until the spans received satisfy `done`,
    /// woken by each export as it arrives; panics naming `what` otherwise.
    pub fn wait_until(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (lock, arrived) = &*self.spans;
        let mut spans = lock.lock().unwrap();
        while !done(&spans) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not in {:#?}", *spans);
            spans = arrived.wait_timeout(spans, left).unwrap().0;
        }
        spans.clone()
    }

    /// Waits (bounded) until a span named `name` has arrived.
    pub fn wait_for(&self, name: &str) -> Vec<Span> {
        self.wait_until(&format!("a span `{name}`"), |spans| {
            spans.iter().any(|s| s.name == name)
        })
    }
}

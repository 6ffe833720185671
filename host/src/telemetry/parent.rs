//! The parent of an MCP server span: the W3C trace context a client sent in
//! the request's `_meta` (`traceparent`, `tracestate`), as the MCP
//! specification's tracing convention carries it. Parsing is the SDK's own
//! [`TraceContextPropagator`]: a malformed value is no parent, never an
//! error the client sees.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;

/// The `_meta` keys read, in the W3C header names.
const KEYS: [&str; 2] = ["traceparent", "tracestate"];

/// A `_meta` object (or several: the params' and the request's, first
/// match wins) seen as a carrier of the W3C headers.
struct Meta<'a>(&'a [&'a serde_json::Map<String, Value>]);

impl Extractor for Meta<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|m| m.get(key).and_then(Value::as_str))
    }

    fn keys(&self) -> Vec<&str> {
        KEYS.into_iter().filter(|k| self.get(k).is_some()).collect()
    }
}

/// The remote parent named in `metas`, if any: an OpenTelemetry context
/// carrying the client's span (no parent when absent or malformed).
pub fn from_meta(metas: &[&serde_json::Map<String, Value>]) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
    let cx = TraceContextPropagator::new().extract(&Meta(metas));
    cx.span().span_context().is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn meta(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().expect("an object")
    }

    #[test]
    fn a_traceparent_in_meta_becomes_the_remote_parent() {
        let m = meta(serde_json::json!({
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "toolhost/idempotencyKey": "k"
        }));
        let cx = from_meta(&[&m]).expect("a parent");
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote() && sc.is_sampled());
    }

    #[test]
    fn a_missing_or_malformed_traceparent_is_no_parent() {
        let none = meta(serde_json::json!({}));
        assert!(from_meta(&[&none]).is_none());
        for bad in ["00-xyz-00f067aa0ba902b7-01", "garbage", ""] {
            let m = meta(serde_json::json!({ "traceparent": bad }));
            assert!(from_meta(&[&m]).is_none(), "{bad}");
        }
        let not_text = meta(serde_json::json!({ "traceparent": 7 }));
        assert!(from_meta(&[&not_text]).is_none());
    }
}

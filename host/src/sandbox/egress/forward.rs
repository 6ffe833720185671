//! The forwarded idempotency key: the header an `idempotent` or
//! `side-effecting` call's mutating requests carry to a granted host, so a
//! remote API that dedups by it (Stripe's does) sees a re-run of the call
//! as the request it already answered (design.md, "Exactly-once past the
//! sandbox wall"; decision 0084).
//!
//! The value is derived from the call's key and the endpoint by the SDK's
//! own source file (included below), so a tool's `reconcile` computes
//! exactly what the host sent. It is a credential of sorts (whoever has it
//! can replay the effect's answer), so it is marked sensitive and never
//! logged; the call's key itself never leaves the host in a header.

use http::{HeaderName, HeaderValue, Request};

use crate::config::{EffectName, ToolPolicy};

// The SDK's URL splitting is for guests (the host has a parsed URI).
#[allow(dead_code)]
#[path = "../../../../guest-sdk/rust/src/forwarded.rs"]
mod derivation;

/// The header name unless a policy names another.
pub const DEFAULT_HEADER: &str = "Idempotency-Key";

/// What one call adds to its mutating requests.
#[derive(Clone)]
pub(crate) struct Forward {
    header: HeaderName,
    call_key: String,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Forward")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Forward {
    /// The forwarding of a call of `effect` under `policy` with key
    /// `call_key`: none for `pure` and `read-only` tools (a read has no
    /// effect to dedup), for a call without a key, or when the policy's
    /// `idempotency_header` is `""`.
    pub(crate) fn for_call(
        effect: EffectName,
        policy: Option<&ToolPolicy>,
        call_key: &str,
    ) -> Option<Forward> {
        if !matches!(effect, EffectName::Idempotent | EffectName::SideEffecting)
            || call_key.is_empty()
        {
            return None;
        }
        let name = policy
            .and_then(|p| p.idempotency_header.as_deref())
            .unwrap_or(DEFAULT_HEADER);
        // The config check refused a name that is not a header name.
        let header = HeaderName::from_bytes(name.as_bytes()).ok()?;
        Some(Forward {
            header,
            call_key: call_key.to_string(),
        })
    }

    /// Adds the header to `request` if its method changes state and the
    /// guest did not set the header itself (its own value wins: it may
    /// speak an API whose keys it manages).
    pub(crate) fn apply<B>(&self, request: &mut Request<B>) {
        if !derivation::is_mutating(request.method().as_str())
            || request.headers().contains_key(&self.header)
        {
            return;
        }
        let uri = request.uri();
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return;
        };
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, hp)| hp);
        let origin = format!("{scheme}://{host_port}");
        let value = value_for(
            &self.call_key,
            request.method().as_str(),
            &origin,
            uri.path(),
        );
        // Hex is always a valid header value.
        let Ok(mut value) = HeaderValue::from_str(&value) else {
            return;
        };
        value.set_sensitive(true);
        request.headers_mut().insert(self.header.clone(), value);
    }
}

/// The header value for one request (the SDK's derivation).
pub(crate) fn value_for(call_key: &str, method: &str, origin: &str, path: &str) -> String {
    derivation::derive(call_key, method, origin, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn mutating_requests_get_the_derived_value_and_reads_get_none() {
        let f = Forward::for_call(EffectName::SideEffecting, None, "abc").unwrap();
        let mut post = request("POST", "http://127.0.0.1:9/v1/charges?x=1");
        f.apply(&mut post);
        let sent = post.headers()["idempotency-key"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            sent,
            value_for("abc", "POST", "http://127.0.0.1:9", "/v1/charges")
        );
        assert!(post.headers()["idempotency-key"].is_sensitive());
        let mut get = request("GET", "http://127.0.0.1:9/v1/charges");
        f.apply(&mut get);
        assert!(get.headers().is_empty());
    }

    #[test]
    fn a_guest_set_header_is_left_alone() {
        let f = Forward::for_call(EffectName::Idempotent, None, "abc").unwrap();
        let mut put = request("PUT", "http://h/x");
        put.headers_mut()
            .insert("Idempotency-Key", HeaderValue::from_static("mine"));
        f.apply(&mut put);
        assert_eq!(put.headers()["idempotency-key"], "mine");
    }

    #[test]
    fn reads_keyless_calls_and_an_empty_header_name_forward_nothing() {
        assert!(Forward::for_call(EffectName::Pure, None, "abc").is_none());
        assert!(Forward::for_call(EffectName::ReadOnly, None, "abc").is_none());
        assert!(Forward::for_call(EffectName::SideEffecting, None, "").is_none());
        let off = ToolPolicy {
            idempotency_header: Some(String::new()),
            ..ToolPolicy::default()
        };
        assert!(Forward::for_call(EffectName::SideEffecting, Some(&off), "abc").is_none());
        let other = ToolPolicy {
            idempotency_header: Some("X-Request-Key".into()),
            ..ToolPolicy::default()
        };
        let f = Forward::for_call(EffectName::SideEffecting, Some(&other), "abc").unwrap();
        let mut del = request("DELETE", "https://api.example.com/v1/x");
        f.apply(&mut del);
        assert!(del.headers().contains_key("x-request-key"));
        assert!(!format!("{f:?}").contains("abc"));
    }
}

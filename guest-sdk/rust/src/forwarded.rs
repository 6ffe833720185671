//! The forwarded idempotency key: the value of the `Idempotency-Key` header
//! the host adds to an `idempotent` or `side-effecting` tool's mutating
//! requests (design.md, "Exactly-once past the sandbox wall").
//!
//! One source for both sides: the SDK compiles it so a tool can compute the
//! value it sent (to look the effect up in `reconcile`), and the host
//! includes this very file (`#[path]`) to compute the value it adds. Two
//! copies could drift; one file cannot.
//!
//! The value is 32 hex characters of blake3 in derive-key mode (context
//! [`CONTEXT`]) over four length-prefixed parts: the call's idempotency key
//! (the hex text the tool gets in its context), the method in upper case,
//! the scheme and authority in lower case (`https://api.example.com:8443`)
//! and the path (`/` when empty; never the query). It is stable across
//! attempts and re-executions of one key, so a remote API that dedups by it
//! (Stripe's does) sees a re-run as the same request, and it differs per
//! endpoint and per key.

/// blake3's derive-key context for the header value.
pub const CONTEXT: &str = "toolhost idempotency-key header v1";

/// The methods that change the remote's state: only these carry the key.
pub fn is_mutating(method: &str) -> bool {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// The header value for a request of `method` to `origin` (`scheme://authority`)
/// and `path`, within the call whose key is `call_key`.
pub fn derive(call_key: &str, method: &str, origin: &str, path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let method = method.to_ascii_uppercase();
    let origin = origin.to_ascii_lowercase();
    let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
    for part in [call_key, method.as_str(), origin.as_str(), path] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let hex = hasher.finalize().to_hex();
    hex[..32].to_string()
}

/// An absolute `http(s)` URL's origin (`scheme://authority`, without any
/// user info) and path (without query or fragment); `None` otherwise.
pub fn split_url(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if authority.is_empty() {
        return None;
    }
    let tail = &rest[end..];
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    Some((format!("{scheme}://{authority}"), &tail[..path_end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_32_hex_and_differs_per_endpoint_method_and_key() {
        let a = derive("k1", "POST", "http://127.0.0.1:8080", "/v1/charges");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            a,
            derive("k1", "post", "HTTP://127.0.0.1:8080", "/v1/charges")
        );
        assert_ne!(
            a,
            derive("k2", "POST", "http://127.0.0.1:8080", "/v1/charges")
        );
        assert_ne!(
            a,
            derive("k1", "PUT", "http://127.0.0.1:8080", "/v1/charges")
        );
        assert_ne!(
            a,
            derive("k1", "POST", "http://127.0.0.1:8081", "/v1/charges")
        );
        assert_ne!(
            a,
            derive("k1", "POST", "http://127.0.0.1:8080", "/v1/refunds")
        );
        // Length prefixes keep the parts apart.
        assert_ne!(
            derive("ab", "POST", "http://h", "/c"),
            derive("a", "BPOST", "http://h", "/c")
        );
        assert_eq!(
            derive("k", "POST", "http://h", ""),
            derive("k", "POST", "http://h", "/")
        );
    }

    #[test]
    fn urls_split_into_origin_and_path() {
        assert_eq!(
            split_url("https://u:p@api.example.com:8443/v1/x?token=s#f"),
            Some(("https://api.example.com:8443".to_string(), "/v1/x"))
        );
        assert_eq!(
            split_url("http://h?q=1"),
            Some(("http://h".to_string(), ""))
        );
        assert_eq!(split_url("ftp://h/x"), None);
        assert_eq!(split_url("/relative"), None);
        assert_eq!(split_url("http:///x"), None);
    }

    #[test]
    fn only_state_changing_methods_mutate() {
        for m in ["POST", "put", "Patch", "DELETE"] {
            assert!(is_mutating(m), "{m}");
        }
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"] {
            assert!(!is_mutating(m), "{m}");
        }
    }
}

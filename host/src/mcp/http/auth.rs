//! The bearer token of a server bound beyond loopback.
//!
//! Only the token's blake3 digest is kept, and a presented token is compared
//! by digest: `blake3::Hash` compares in constant time, and comparing two
//! fixed-size digests also hides the secret's length, which a byte-by-byte
//! comparison of the tokens themselves would leak through its timing.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::mcp::ServeError;

/// Tokens shorter than this are refused: a guessable token on a public
/// interface is no protection. 16 bytes of `openssl rand -hex 16` is 32.
pub const MIN_TOKEN_LEN: usize = 16;

/// A bearer token, held as its digest.
#[derive(Clone)]
pub struct BearerToken {
    digest: blake3::Hash,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

impl BearerToken {
    /// The token in environment variable `var`.
    pub fn from_env(var: &str) -> Result<BearerToken, ServeError> {
        let bad = |problem| ServeError::BadToken {
            var: var.to_string(),
            problem,
        };
        let value = std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => bad("is not set"),
            std::env::VarError::NotUnicode(_) => bad("is not UTF-8"),
        })?;
        BearerToken::new(value.trim()).map_err(bad)
    }

    /// A token from its text.
    pub fn new(secret: &str) -> Result<BearerToken, &'static str> {
        if secret.len() < MIN_TOKEN_LEN {
            return Err("is shorter than 16 characters");
        }
        Ok(BearerToken {
            digest: blake3::hash(secret.as_bytes()),
        })
    }

    /// Whether `Authorization: Bearer <token>` carries this token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, presented)) = value.split_once(' ') else {
            return false;
        };
        // `==` on `blake3::Hash` is constant-time.
        scheme.eq_ignore_ascii_case("bearer")
            && blake3::hash(presented.trim().as_bytes()) == self.digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().expect("a header value"));
        h
    }

    #[test]
    fn admits_only_its_own_token() {
        let token = BearerToken::new("0123456789abcdef").expect("long enough");
        assert!(token.admits(&headers("Bearer 0123456789abcdef")));
        assert!(token.admits(&headers("bearer 0123456789abcdef")));
        assert!(!token.admits(&headers("Bearer 0123456789abcdeX")));
        assert!(!token.admits(&headers("Basic 0123456789abcdef")));
        assert!(!token.admits(&HeaderMap::new()));
        assert!(BearerToken::new("short").is_err());
        assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
    }
}

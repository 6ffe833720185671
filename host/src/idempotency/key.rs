//! Idempotency keys: blake3 over a length-prefixed, domain-separated encoding
//! of what makes two calls "the same call".
//!
//! The input enters as RFC 8785 canonical JSON (object keys sorted by UTF-16
//! code units, no insignificant whitespace, numbers as ECMAScript prints
//! IEEE-754 doubles), so `{"a":1.0, "b":2}` and `{ "b": 2, "a": 1 }` are one
//! call. The guest is handed this same canonical text (see `crate::json`), so two
//! inputs share a key only if the tool sees the same bytes. Every field is
//! prefixed with its length, so no two field lists can encode to the same
//! bytes, and the hash is keyed by a context string, so a key can never
//! collide with another blake3 use in the system.
//!
//! What a key covers depends on the effect (the contract's rule):
//!
//! - every key: the tool's name, the canonical input, the scope;
//! - `pure` and `read-only` keys also: the component digest and the grants
//!   digest ([`Build`]), because what they return depends on both;
//! - `idempotent` and `side-effecting` keys name the *effect*, not the build:
//!   a rebuilt tool or an edited config must not repeat a payment.
//!
//! Limits never enter a key: they decide only whether a call finishes, and a
//! call cut short by a limit is never stored as a success.

const KEY_CONTEXT: &str = "toolhost 2026-11-28 idempotency key v2";

/// What a pure or read-only result depends on besides its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Build<'a> {
    /// blake3 of the component's wasm bytes, hex.
    pub component_digest: &'a str,
    /// `sandbox::policy::grants_digest` of the tool's dirs, env and hosts.
    pub grants_digest: &'a str,
}

/// What identifies a call.
#[derive(Clone, Copy, Debug)]
pub struct KeyParts<'a> {
    pub tool: &'a str,
    /// The input as [`canonical_json`](crate::json::canonical_json).
    pub canonical_input: &'a str,
    /// The scope: an explicit key, an agent step, or empty.
    pub scope: &'a str,
    /// `Some` for pure and read-only tools, `None` for effects.
    pub build: Option<Build<'a>>,
}

/// The idempotency key of a call, 64 hex digits.
pub fn derive_key(parts: &KeyParts<'_>) -> String {
    let mut h = blake3::Hasher::new_derive_key(KEY_CONTEXT);
    let mut field = |f: &str| {
        h.update(&(f.len() as u64).to_le_bytes());
        h.update(f.as_bytes());
    };
    field(parts.tool);
    field(parts.canonical_input);
    field(parts.scope);
    match parts.build {
        None => field("effect"),
        Some(b) => {
            field("build");
            field(b.component_digest);
            field(b.grants_digest);
        }
    }
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::canonical_json;

    fn canon(text: &str) -> String {
        canonical_json(&serde_json::from_str(text).unwrap())
    }

    const BUILD: Build<'static> = Build {
        component_digest: "c0",
        grants_digest: "g0",
    };

    fn key(input: &str, scope: &str) -> String {
        let canonical = canon(input);
        derive_key(&KeyParts {
            tool: "calc",
            canonical_input: &canonical,
            scope,
            build: Some(BUILD),
        })
    }

    #[test]
    fn spelling_does_not_change_the_key_and_content_does() {
        assert_eq!(
            key(r#"{"a":1,"b":2}"#, ""),
            key(r#"{ "b" : 2.0, "a" : 1e0 }"#, "")
        );
        assert_eq!(key(r#"{"n":100}"#, ""), key(r#"{"n":1e2}"#, ""));
        assert_ne!(key(r#"{"a":1}"#, ""), key(r#"{"a":2}"#, ""));
        assert_ne!(key(r#"{"a":1}"#, ""), key(r#"{"a":1}"#, "explicit:k"));
        let base = KeyParts {
            tool: "calc",
            canonical_input: "{}",
            scope: "",
            build: Some(BUILD),
        };
        let k = derive_key(&base);
        assert_ne!(k, derive_key(&KeyParts { tool: "jq", ..base }));
        let rebuilt = Build {
            component_digest: "c1",
            ..BUILD
        };
        assert_ne!(
            k,
            derive_key(&KeyParts {
                build: Some(rebuilt),
                ..base
            })
        );
        let regranted = Build {
            grants_digest: "g1",
            ..BUILD
        };
        assert_ne!(
            k,
            derive_key(&KeyParts {
                build: Some(regranted),
                ..base
            })
        );
        // An effect's key leaves the build out, and differs from any build's.
        assert_ne!(
            k,
            derive_key(&KeyParts {
                build: None,
                ..base
            })
        );
        // Length prefixes: moving a boundary changes the key.
        assert_ne!(
            derive_key(&KeyParts {
                tool: "ab",
                canonical_input: "c",
                ..base
            }),
            derive_key(&KeyParts {
                tool: "a",
                canonical_input: "bc",
                ..base
            })
        );
        assert_eq!(k.len(), 64);
    }
}

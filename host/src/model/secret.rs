//! API keys: read from the environment variable the config names, kept in a
//! type whose `Debug` prints nothing of the value and which has no `Display`,
//! so a key cannot end up in a log line or an error by accident.

use std::fmt;

/// An API key. Only the HTTP layer reads the value, to set a header.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Reads `var`; `None` when it is unset or empty.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(ApiKey)
    }

    pub fn new(value: impl Into<String>) -> ApiKey {
        ApiKey(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with the key replaced in every form it could take there:
    /// providers and proxies echo keys back in 401 bodies, and those bodies
    /// become error messages. The forms: as is; percent-encoded (a key in a
    /// query string or a form body; the strict and the RFC 3986 encode sets,
    /// either hex case); and base64, standard and URL-safe (a basic-auth
    /// header `Basic base64(user:key)`, at any of the three alignments a
    /// prefix can give it). A key shorter than 4 bytes is not scrubbed, and
    /// an encoded fragment shorter than 8 characters is not either: either
    /// would match ordinary text, and no provider issues such keys.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        let mut out = text.to_string();
        for form in self.forms() {
            if (form == self.0 || form.len() >= MIN_SCRUBBED) && out.contains(&form) {
                out = out.replace(&form, "[redacted]");
            }
        }
        out
    }

    /// Every encoding of the key [`ApiKey::scrub`] removes, longest first
    /// (so a longer form is never cut short by a shorter one inside it).
    fn forms(&self) -> Vec<String> {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

        /// RFC 3986 unreserved characters stay as they are.
        const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let key = self.0.as_bytes();
        let mut forms = vec![self.0.clone()];
        for set in [NON_ALPHANUMERIC, COMPONENT] {
            let upper = utf8_percent_encode(&self.0, set).to_string();
            forms.push(lower_hex_escapes(&upper));
            forms.push(upper);
        }
        // In base64, a byte's characters depend on its neighbours within
        // its 3-byte group. For each alignment, encode only the key bytes
        // whose groups hold nothing else: those characters appear in the
        // encoding of any text with the key at that alignment.
        for lead in 0..3 {
            let start = (3 - lead) % 3;
            if start >= key.len() {
                continue;
            }
            let whole = (key.len() - start) / 3 * 3;
            let inner = &key[start..start + whole];
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                forms.push(engine.encode(inner));
            }
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        forms
    }
}

/// Shortest encoded form [`ApiKey::scrub`] removes.
const MIN_SCRUBBED: usize = 8;

/// `%2D` -> `%2d`: encoders differ in hex case.
fn lower_hex_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const KEY: &str = "sk-ant_api03-Very/Secret+Key=123";

    fn hidden(key: &ApiKey, text: &str) {
        let scrubbed = key.scrub(text);
        assert!(
            scrubbed.contains("[redacted]"),
            "nothing scrubbed: {scrubbed}"
        );
        assert!(
            !scrubbed.contains("Secret") && !scrubbed.contains("Very"),
            "leaked: {scrubbed}"
        );
    }

    #[test]
    fn scrubs_the_raw_key() {
        hidden(
            &ApiKey::new(KEY),
            &format!("Incorrect API key provided: {KEY}."),
        );
    }

    #[test]
    fn scrubs_the_url_encoded_key() {
        let key = ApiKey::new(KEY);
        // As a browser, curl and serde_urlencoded write it: unreserved kept.
        let component = "sk-ant_api03-Very%2FSecret%2BKey%3D123";
        hidden(&key, &format!("GET /v1/models?api_key={component} 401"));
        hidden(&key, "?key=sk-ant_api03-Very%2fSecret%2bKey%3d123");
        // Everything but letters and digits escaped.
        let strict = "sk%2Dant%5Fapi03%2DVery%2FSecret%2BKey%3D123";
        hidden(&key, &format!("key={strict}&x=1"));
    }

    #[test]
    fn scrubs_the_key_in_basic_auth_at_every_alignment() {
        let key = ApiKey::new(KEY);
        for user in ["", "u", "us", "user", "apikey"] {
            for engine in [&STANDARD, &URL_SAFE] {
                let header = format!("Basic {}", engine.encode(format!("{user}:{KEY}")));
                let scrubbed = key.scrub(&format!("echo: Authorization: {header}"));
                assert!(scrubbed.contains("[redacted]"), "{user:?}: {scrubbed}");
                // What remains after the redaction encodes at most the two
                // key bytes that share a group with the end of the text.
                let tail = scrubbed.rsplit("[redacted]").next().unwrap();
                assert!(
                    tail.trim_end_matches('=').len() <= 3,
                    "{user:?}: {scrubbed}"
                );
            }
            let reversed = format!("Basic {}", STANDARD.encode(format!("{KEY}:{user}")));
            assert!(key.scrub(&reversed).contains("[redacted]"), "{reversed}");
        }
    }

    #[test]
    fn short_keys_and_clean_text_are_left_alone() {
        assert_eq!(ApiKey::new("abc").scrub("abc abc"), "abc abc");
        let key = ApiKey::new(KEY);
        let text = "rate limited; retry in 3 s";
        assert_eq!(key.scrub(text), text);
    }

    #[test]
    fn debug_and_scrub_hide_the_value() {
        let key = ApiKey::new("sk-very-secret-123");
        assert!(!format!("{key:?}").contains("secret"));
        let body = "Incorrect API key provided: sk-very-secret-123.";
        assert_eq!(key.scrub(body), "Incorrect API key provided: [redacted].");
    }
}

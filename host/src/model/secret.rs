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
    ///
    /// Text may also arrive already cut (a provider or proxy that truncated
    /// its own echo): a piece of at least 8 characters of any form, ending
    /// the text (before a `...` or `…` that marks the cut) or starting it,
    /// is removed too. Scrub before cutting: a cut through a whole key
    /// leaves a piece no scrubber can recognise in the middle of the text.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        let forms = self.forms();
        let mut out = text.to_string();
        for form in &forms {
            if (*form == self.0 || form.len() >= MIN_SCRUBBED) && out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        redact_cut_pieces(&mut out, &forms);
        out
    }

    /// Every string in `v` (member names too) scrubbed: a provider's JSON
    /// may hold the key with escapes (`\/`, `\u002b`) that only parsing
    /// undoes, so a parsed body is scrubbed value by value.
    pub fn scrub_json(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                let clean = self.scrub(s);
                if clean != *s {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.scrub_json(i)),
            Value::Object(map) => {
                let dirty: Vec<String> = map
                    .keys()
                    .filter(|k| self.scrub(k) != **k)
                    .cloned()
                    .collect();
                for k in dirty {
                    if let Some(value) = map.remove(&k) {
                        map.insert(self.scrub(&k), value);
                    }
                }
                map.values_mut().for_each(|i| self.scrub_json(i));
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// A provider body, scrubbed: JSON value by value (then re-serialised),
    /// anything else as text.
    pub fn scrub_body(&self, body: &str) -> String {
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(mut v) => {
                self.scrub_json(&mut v);
                v.to_string()
            }
            Err(_) => self.scrub(body),
        }
    }

    /// A scrubber for text that arrives in pieces (a streamed answer shown
    /// as it comes): see [`PieceScrubber`].
    pub(crate) fn piece_scrubber(&self) -> PieceScrubber {
        let forms: Vec<String> = if self.0.len() < 4 {
            Vec::new()
        } else {
            self.forms()
                .into_iter()
                .filter(|f| *f == self.0 || f.len() >= MIN_SCRUBBED)
                .collect()
        };
        let hold = forms.iter().map(String::len).max().unwrap_or(1) - 1;
        PieceScrubber {
            forms,
            hold,
            pending: String::new(),
        }
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

/// Scrubs text that arrives in pieces, where a key may be split across
/// two of them. Each piece is appended to what is held; every whole form
/// of the key in it is replaced; then all but the last `hold` bytes (one
/// less than the longest form) are released. A form not yet whole must
/// start within those last bytes, so nothing released can be part of one.
/// [`PieceScrubber::finish`] releases the rest, scrubbed.
#[derive(Debug)]
pub(crate) struct PieceScrubber {
    forms: Vec<String>,
    hold: usize,
    pending: String,
}

impl PieceScrubber {
    /// Appends `piece`; returns what may be shown now (maybe nothing).
    pub fn push(&mut self, piece: &str) -> String {
        if self.forms.is_empty() {
            return piece.to_string();
        }
        self.pending.push_str(piece);
        for form in &self.forms {
            if self.pending.contains(form.as_str()) {
                self.pending = self.pending.replace(form.as_str(), REDACTED);
            }
        }
        let mut cut = self.pending.len().saturating_sub(self.hold);
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = self.pending.split_off(cut);
        std::mem::replace(&mut self.pending, rest)
    }

    /// The rest, scrubbed.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        let mut out = rest;
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        redact_cut_pieces(&mut out, &self.forms);
        out
    }
}

/// Shortest encoded form, or piece of a form at a cut, [`ApiKey::scrub`]
/// removes.
const MIN_SCRUBBED: usize = 8;

const REDACTED: &str = "[redacted]";

/// Removes a piece of a form (>= [`MIN_SCRUBBED`] characters) cut off at
/// either end of `text`: a prefix of a form ending the text (before a cut
/// marker), or a suffix of one starting it.
fn redact_cut_pieces(text: &mut String, forms: &[String]) {
    let body_end = text
        .strip_suffix("...")
        .or_else(|| text.strip_suffix('…'))
        .unwrap_or(text)
        .len();
    let longest_prefix = forms
        .iter()
        .filter_map(|f| {
            (MIN_SCRUBBED..f.len())
                .rev()
                .filter(|&n| f.is_char_boundary(n))
                .find(|&n| text[..body_end].ends_with(&f[..n]))
        })
        .max();
    if let Some(n) = longest_prefix {
        text.replace_range(body_end - n..body_end, REDACTED);
    }
    let longest_suffix = forms
        .iter()
        .filter_map(|f| {
            (MIN_SCRUBBED..f.len())
                .rev()
                .map(|n| f.len() - n)
                .filter(|&start| f.is_char_boundary(start))
                .find(|&start| text.starts_with(&f[start..]))
                .map(|start| f.len() - start)
        })
        .max();
    if let Some(n) = longest_suffix {
        text.replace_range(..n, REDACTED);
    }
}

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

    #[test]
    fn a_piece_of_the_key_at_a_cut_is_scrubbed() {
        let key = ApiKey::new(KEY);
        // A body cut by whoever sent it, with or without a marker.
        for cut in ["", "...", "…"] {
            let text = format!("<p>your key {}{cut}", &KEY[..12]);
            let scrubbed = key.scrub(&text);
            assert_eq!(scrubbed, format!("<p>your key [redacted]{cut}"));
        }
        // The tail of a key that starts a window of text.
        let scrubbed = key.scrub(&format!("{} was rejected", &KEY[10..]));
        assert_eq!(scrubbed, "[redacted] was rejected");
        // Seven characters are ordinary text.
        assert_eq!(key.scrub("ends sk-ant_"), "ends sk-ant_");
    }

    #[test]
    fn json_bodies_are_scrubbed_value_by_value() {
        let key = ApiKey::new(KEY);
        // `/` and `+` escaped as JSON allows: no raw occurrence in the text.
        let body = r#"{"error":{"message":"bad key sk-ant_api03-Very\/Secret\u002bKey=123"},"sk-ant_api03-Very\/Secret+Key=123":1}"#;
        assert!(!body.contains(KEY));
        let scrubbed = key.scrub_body(body);
        let v: serde_json::Value = serde_json::from_str(&scrubbed).unwrap();
        assert_eq!(v["error"]["message"], "bad key [redacted]");
        assert_eq!(v["[redacted]"], 1);
        assert_eq!(
            key.scrub_body(&format!("<b>{KEY}</b>")),
            "<b>[redacted]</b>"
        );
    }

    proptest::proptest! {
        /// Whatever surrounds the key, and wherever the text is cut after
        /// scrubbing, no 8-character piece of the key survives.
        #[test]
        fn no_piece_of_the_key_survives(
            key in "[A-Za-z0-9_+/=-]{20,60}",
            before in "[ -~]{0,40}",
            after in "[ -~]{0,40}",
            cut in 0usize..200,
            encoding in 0usize..4,
        ) {
            use base64::engine::general_purpose::{STANDARD, URL_SAFE};
            let api = ApiKey::new(key.clone());
            let shown = match encoding {
                0 => key.clone(),
                1 => percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC).to_string(),
                2 => STANDARD.encode(format!("{before}:{key}")),
                _ => URL_SAFE.encode(format!("{key}:{after}")),
            };
            let text = format!("{before}{shown}{after}");
            let scrubbed = api.scrub(&text);
            let cut: String = scrubbed.chars().take(cut).collect();
            for window in key.as_bytes().windows(8) {
                let piece = std::str::from_utf8(window).unwrap();
                // A piece also in the surroundings is not the key's.
                if text.replacen(&shown, "", 1).contains(piece) { continue; }
                if encoding == 0 {
                    proptest::prop_assert!(!cut.contains(piece), "{piece} in {cut}");
                }
            }
            proptest::prop_assert!(!scrubbed.contains(&shown) || shown.len() < 8);
        }

        /// A body cut before scrubbing (the order the scrubber cannot fix
        /// in the middle of a text) still loses the piece at its end.
        #[test]
        fn a_prefix_at_the_end_is_scrubbed(key in "[A-Za-z0-9_-]{20,60}", n in 8usize..20) {
            let api = ApiKey::new(key.clone());
            let text = format!("error: {}", &key[..n]);
            proptest::prop_assert_eq!(api.scrub(&text), "error: [redacted]");
        }

        /// A streamed answer that echoes the key, cut into pieces anywhere
        /// (two cuts, so the key can straddle three pieces): nothing shown
        /// holds the key, or a piece of 8 characters of it, and nothing but
        /// the key is lost.
        #[test]
        fn a_key_split_across_streamed_pieces_is_never_shown(
            key in "[A-Za-z0-9_-]{20,60}",
            a in 0usize..200,
            b in 0usize..200,
        ) {
            let api = ApiKey::new(key.clone());
            let text = format!("Here it is: {key} and here it is again: {key}. Done.");
            let (a, b) = (a.min(b) % text.len(), a.max(b) % text.len());
            let (a, b) = (a.min(b), a.max(b));
            let mut s = api.piece_scrubber();
            let mut shown = Vec::new();
            for piece in [&text[..a], &text[a..b], &text[b..]] {
                shown.push(s.push(piece));
            }
            shown.push(s.finish());
            let all: String = shown.concat();
            for piece in &shown {
                proptest::prop_assert!(!piece.contains(&key[..8]), "{piece}");
            }
            proptest::prop_assert_eq!(
                all,
                "Here it is: [redacted] and here it is again: [redacted]. Done."
            );
        }
    }
}

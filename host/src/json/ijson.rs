//! The one parse of a call's input: I-JSON (RFC 7493), strictly.
//!
//! Why not `serde_json::from_str`: the key is taken over the canonical form
//! of the parsed value, and the guest is handed that canonical text, so the
//! parse must refuse every input that canonical JSON cannot keep apart from
//! another one. serde_json keeps the *last* of two duplicate member names
//! (so `{"expr":"1+1","expr":"2+2"}` would share a key with `{"expr":"2+2"}`),
//! rounds decimals on a best-effort basis and never shows the literal, so it
//! cannot tell `9007199254740993` from `9007199254740992`. This parser sees
//! the text, and refuses, naming the JSON pointer of the offending value:
//!
//! - duplicate member names;
//! - integers above 2^53 in magnitude (pass them as strings): other parsers
//!   and the canonical form would silently change them;
//! - any number whose decimal value is not the shortest spelling of an IEEE
//!   double (more digits than a double holds, or out of range);
//! - lone surrogates in `\u` escapes (the raw text is UTF-8 already);
//! - nesting deeper than [`MAX_DEPTH`], and anything that is not JSON.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted (serde_json's own recursion limit).
pub const MAX_DEPTH: usize = 128;

/// The largest integer every I-JSON reader holds exactly: 2^53.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Why an input is not I-JSON. Shown to the caller as `invalid_input`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input is not I-JSON at {path}: {reason}")]
pub struct IJsonError {
    /// JSON pointer of the offending value (`/` for the top level).
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

/// Parses `text` as I-JSON.
pub fn parse_ijson(text: &str) -> Result<Value, IJsonError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        path: Vec::new(),
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    path: Vec<String>,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> IJsonError {
        let path = if self.path.is_empty() {
            "/".to_string()
        } else {
            self.path
                .iter()
                .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
                .collect()
        };
        IJsonError {
            path,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), IJsonError> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{}`", b as char)))
        }
    }

    fn unexpected(&self, wanted: &str) -> IJsonError {
        match self.peek() {
            None => self.err(format!("unexpected end of input, expected {wanted}")),
            Some(c) => self.err(format!(
                "unexpected `{}` at byte {}, expected {wanted}",
                c.escape_ascii(),
                self.i
            )),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, IJsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => {
                for (word, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(v);
                    }
                }
                Err(self.unexpected("a JSON value"))
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, IJsonError> {
        self.i += 1;
        let mut map = Map::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a member name"));
            }
            let name = self.string()?;
            self.path.push(name.clone());
            if map.contains_key(&name) {
                return Err(
                    self.err("duplicate member name (which one counts is undefined; send it once)")
                );
            }
            self.ws();
            self.expect(b':')?;
            self.ws();
            let v = self.value(depth + 1)?;
            self.path.pop();
            map.insert(name, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.unexpected("`,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, IJsonError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            self.path.push(items.len().to_string());
            let v = self.value(depth + 1)?;
            self.path.pop();
            items.push(v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, IJsonError> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u16::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.err("a `\\u` escape needs four hex digits"))?;
        self.i += 4;
        Ok(digits)
    }

    fn string(&mut self) -> Result<String, IJsonError> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain characters at once; the text is UTF-8.
            let start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // Splitting only at ASCII bytes keeps UTF-8 boundaries.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).expect("input is a str"));
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.escaped_char()?),
                        _ => return Err(self.err(format!("invalid escape `\\{}`", e as char))),
                    }
                }
                Some(_) => return Err(self.err("a control character inside a string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (a surrogate pair takes two).
    fn escaped_char(&mut self) -> Result<char, IJsonError> {
        let lone = "a lone surrogate in a `\\u` escape (not a Unicode character)";
        let hi = self.hex4()?;
        if (0xDC00..0xE000).contains(&hi) {
            return Err(self.err(lone));
        }
        if !(0xD800..0xDC00).contains(&hi) {
            return char::from_u32(hi.into()).ok_or_else(|| self.err(lone));
        }
        if !self.s[self.i..].starts_with(b"\\u") {
            return Err(self.err(lone));
        }
        self.i += 2;
        let lo = self.hex4()?;
        if !(0xDC00..0xE000).contains(&lo) {
            return Err(self.err(lone));
        }
        let c = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
        char::from_u32(c).ok_or_else(|| self.err(lone))
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, IJsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let int_len = self.digits();
        if int_len == 0 || (int_len > 1 && self.s[int_start] == b'0') {
            return Err(self.err("a malformed number"));
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integer = false;
            if self.digits() == 0 {
                return Err(self.err("a malformed number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            integer = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("a malformed number"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
        if integer {
            // Judged on the exact digits: 2^53 + 1 parses to the double 2^53.
            return match text.parse::<i64>() {
                Ok(n) if n.unsigned_abs() <= MAX_EXACT_INTEGER => Ok(Value::Number(n.into())),
                _ => Err(self.err(format!(
                    "the integer {text} is beyond 2^53, where JSON numbers stop being exact; pass it as a string"
                ))),
            };
        }
        // Rust's float parser rounds correctly (to nearest, ties to even).
        let f: f64 = text.parse().map_err(|_| self.err("a malformed number"))?;
        if !f.is_finite() {
            return Err(self.err(format!(
                "the number {text} is out of the range of an IEEE double; pass it as a string"
            )));
        }
        if !same_decimal(text, f) {
            return Err(self.err(format!(
                "the number {text} has more precision than an IEEE double holds; pass it as a string"
            )));
        }
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| self.err("a number that is not finite"))
    }
}

/// Whether the decimal literal `text` is exactly the shortest decimal of
/// the double `f` (trailing zeros and exponent spelling aside), i.e. the
/// double loses nothing the text said.
fn same_decimal(text: &str, f: f64) -> bool {
    if f == 0.0 {
        return text
            .trim_start_matches('-')
            .split(['e', 'E'])
            .next()
            .is_some_and(|m| m.bytes().all(|b| b == b'0' || b == b'.'));
    }
    let (digits, exp) = decimal(text);
    let shortest = format!("{:e}", f.abs());
    let (mantissa, e) = shortest.split_once('e').expect("`{:e}` has an exponent");
    let (sd, se) = decimal(&format!("{mantissa}e{e}"));
    digits == sd && exp == se
}

/// `(significant digits, exponent of the first digit)` of a decimal literal,
/// with leading and trailing zeros removed.
fn decimal(text: &str) -> (String, i64) {
    let text = text.trim_start_matches('-');
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(i64::MAX / 2)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    let lead = all.bytes().take_while(|b| *b == b'0').count();
    let significant = all[lead..].trim_end_matches('0').to_string();
    // The first significant digit sits `int.len() - lead - 1` places above
    // the units digit, shifted by the exponent.
    let point = int.len() as i64 - lead as i64 - 1 + exp;
    (significant, point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(text: &str) -> IJsonError {
        parse_ijson(text).expect_err(text)
    }

    #[test]
    fn plain_json_parses_as_serde_json_does() {
        for text in [
            r#"{"a":[1,2.5,-0.001,"x\u00e9\ud83d\ude00",true,false,null],"b":{}}"#,
            "  [ ]  ",
            "1e2",
            "0.1",
            "1.0",
            "9007199254740992",
            "1.7976931348623157e308",
            "5e-324",
            r#""\"\\\/\b\f\n\r\t""#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse_ijson(text).unwrap(), want, "{text}");
        }
        // serde_json reads `-0` as a float; both are canonically `0`.
        assert_eq!(
            crate::json::canonical_json(&parse_ijson("-0").unwrap()),
            "0"
        );
    }

    #[test]
    fn duplicate_names_are_refused_with_their_path() {
        let e = refused(r#"{"expr":"1+1","expr":"2+2"}"#);
        assert_eq!(e.path, "/expr");
        assert!(e.reason.contains("duplicate"), "{e}");
        let e = refused(r#"{"a":[{"x/y":{"k":1,"k":2}}]}"#);
        assert_eq!(e.path, "/a/0/x~1y/k");
    }

    #[test]
    fn numbers_beyond_a_double_are_refused() {
        let e = refused(r#"{"id":9007199254740993}"#);
        assert_eq!(e.path, "/id");
        assert!(e.reason.contains("pass it as a string"), "{e}");
        assert!(refused("-9007199254740993").reason.contains("2^53"));
        assert!(refused("18446744073709551616").reason.contains("2^53"));
        assert!(refused("1e400").reason.contains("range"));
        assert!(
            refused("1.00000000000000000001")
                .reason
                .contains("precision")
        );
        assert!(
            refused("0.30000000000000000001")
                .reason
                .contains("precision")
        );
        // Spellings of representable values are fine.
        assert_eq!(parse_ijson("1.50e1").unwrap(), json!(15.0));
        assert_eq!(parse_ijson("0.000100").unwrap(), json!(0.0001));
        assert_eq!(parse_ijson("-0.0e5").unwrap(), json!(-0.0));
    }

    #[test]
    fn lone_surrogates_are_refused() {
        assert_eq!(refused(r#"{"s":"\ud800"}"#).path, "/s");
        assert!(refused(r#""\udc00x""#).reason.contains("surrogate"));
        assert!(refused(r#""\ud800\u0041""#).reason.contains("surrogate"));
        assert_eq!(parse_ijson(r#""\ud83d\ude00""#).unwrap(), json!("😀"));
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "",
            "{",
            "[1,]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "tru",
            r#"{"a" 1}"#,
            "[1] x",
            "\"a\u{1}\"",
            r#""\x""#,
            "{1:2}",
        ] {
            refused(text);
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(refused(&deep).reason.contains("deeper"));
    }
}

//! `allow_hosts` entries: which hosts (and ports) a tool may send HTTP to.
//!
//! Four forms, all case-insensitive:
//!
//! | pattern | matches |
//! |---|---|
//! | `api.example.com` | that name, on the default ports (80 for http, 443 for https) |
//! | `*.example.org` | any name strictly under `example.org` (not `example.org` itself), default ports |
//! | `api.example.com:8443` | that name on that port only, either scheme |
//! | `127.0.0.1:8080`, `10.0.0.5`, `::1`, `[::1]:8080` | that address literal (port as above) |
//!
//! Why a pattern without a port means the default ports rather than any
//! port: a grant for a web API should not also open its host's SSH or
//! database ports. Why only a leading `*.` wildcard: anything looser
//! (`*example.com`, `api.*`) is easy to misread and easy to abuse.
//!
//! Parsing is strict: a scheme, a path, a port of 0 or an invalid label is a
//! config error, never a pattern that silently matches nothing.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// One parsed `allow_hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPattern {
    /// Which hosts.
    pub host: HostMatch,
    /// The one port allowed; `None` means the scheme's default port.
    pub port: Option<u16>,
}

/// The host half of a [`HostPattern`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// Exactly this name (lowercase, no trailing dot).
    Name(String),
    /// Any name ending in `.` + this suffix (lowercase).
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// The host a request names, as the policy compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestHost {
    /// A DNS name, lowercase, without a trailing dot.
    Name(String),
    /// An address literal.
    Ip(IpAddr),
}

impl RequestHost {
    /// Normalises a URI host: lowercase, no trailing dot, IPv6 unbracketed.
    pub fn parse(host: &str) -> RequestHost {
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return RequestHost::Ip(ip);
        }
        RequestHost::Name(host.trim_end_matches('.').to_ascii_lowercase())
    }
}

impl fmt::Display for RequestHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestHost::Name(n) => f.write_str(n),
            RequestHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            RequestHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl HostPattern {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| Err(format!("`{text}` is not a host pattern: {why}"));
        if text.is_empty() {
            return bad("it is empty");
        }
        if text.contains("://") {
            return bad("write the host without a scheme (`api.example.com`, not a URL)");
        }
        if text.contains(['/', '?', '#', '@']) || text.chars().any(char::is_whitespace) {
            return bad("only a host and an optional port are allowed");
        }
        // A bare IPv6 address has colons but no port.
        if let Ok(ip) = text.parse::<Ipv6Addr>() {
            return Ok(HostPattern {
                host: HostMatch::Ip(IpAddr::V6(ip)),
                port: None,
            });
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return bad("an unclosed `[`");
            };
            let Ok(ip) = inside.parse::<Ipv6Addr>() else {
                return bad("not an IPv6 address inside `[]`");
            };
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return bad("expected `:port` after `]`"),
                },
            };
            (HostMatch::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match text.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            };
            match host_match(host) {
                Ok(h) => (h, port),
                Err(why) => return bad(&why),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return bad("the port must be a number from 1 to 65535"),
                Ok(p) => Some(p),
            },
        };
        Ok(HostPattern { host, port })
    }

    /// Whether a request to `host:port` (`default_port` being the scheme's)
    /// is allowed by this pattern.
    pub fn matches(&self, host: &RequestHost, port: u16, default_port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => port == default_port,
        };
        port_ok
            && match (&self.host, host) {
                (HostMatch::Name(n), RequestHost::Name(h)) => n == h,
                (HostMatch::Subdomains(s), RequestHost::Name(h)) => h
                    .strip_suffix(s.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                (HostMatch::Ip(a), RequestHost::Ip(b)) => a == b,
                _ => false,
            }
    }

    /// Whether this pattern names exactly `host:port`: no wildcard, an
    /// explicit port. Only such a grant opens an internal address.
    pub fn is_exactly(&self, host: &RequestHost, port: u16) -> bool {
        self.port == Some(port)
            && match (&self.host, host) {
                (HostMatch::Name(n), RequestHost::Name(h)) => n == h,
                (HostMatch::Ip(a), RequestHost::Ip(b)) => a == b,
                _ => false,
            }
    }
}

fn host_match(host: &str) -> Result<HostMatch, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostMatch::Ip(ip));
    }
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        dns_name(suffix)?;
        if !suffix.contains('.') {
            return Err("a wildcard must sit above at least two labels (`*.example.org`)".into());
        }
        return Ok(HostMatch::Subdomains(suffix.to_string()));
    }
    if lower.contains('*') {
        return Err("`*` is only allowed as a leading `*.`".into());
    }
    dns_name(&lower)?;
    // `1.2.3` or `999.1.1.1` would be a name made of digits: almost surely a
    // mistyped address.
    if lower
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("not a valid IP address, and a name cannot end in a number".into());
    }
    Ok(HostMatch::Name(lower))
}

/// Checks a lowercase DNS name: labels of 1-63 `a-z0-9-`, not starting or
/// ending with `-`, 253 characters at most.
fn dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a host name has 1 to 253 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("`{label}` is not a valid DNS label"));
        }
    }
    Ok(())
}

impl fmt::Display for HostPattern {
    /// The canonical spelling: lowercase, IPv6 bracketed when a port follows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (HostMatch::Name(n), _) => f.write_str(n)?,
            (HostMatch::Subdomains(s), _) => write!(f, "*.{s}")?,
            (HostMatch::Ip(IpAddr::V6(ip)), Some(_)) => write!(f, "[{ip}]")?,
            (HostMatch::Ip(ip), _) => write!(f, "{ip}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn name(h: &str) -> RequestHost {
        RequestHost::parse(h)
    }

    #[test]
    fn parses_every_form_and_prints_it_canonically() {
        for (text, canonical) in [
            ("api.example.com", "api.example.com"),
            ("API.Example.COM.", "api.example.com"),
            ("*.example.org", "*.example.org"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("10.0.0.5", "10.0.0.5"),
            ("::1", "::1"),
            ("[::1]:8080", "[::1]:8080"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("localhost:3000", "localhost:3000"),
        ] {
            assert_eq!(p(text).to_string(), canonical, "{text}");
        }
    }

    #[test]
    fn refuses_malformed_patterns_saying_why() {
        for (text, why) in [
            ("", "empty"),
            ("http://api.example.com", "scheme"),
            ("api.example.com/v1", "only a host"),
            ("api.example.com:0", "port"),
            ("api.example.com:99999", "port"),
            ("api.example.com:http", "port"),
            ("*", "leading `*.`"),
            ("*.com", "two labels"),
            ("api.*.com", "leading"),
            ("-bad.example.com", "DNS label"),
            ("a..b", "DNS label"),
            ("[::1", "unclosed"),
            ("[nope]:80", "IPv6"),
            ("999.1.1.1", "IP address"),
            ("exa mple.com", "only a host"),
        ] {
            let e = HostPattern::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn a_pattern_without_port_means_the_default_port() {
        let api = p("api.example.com");
        assert!(api.matches(&name("api.example.com"), 443, 443));
        assert!(api.matches(&name("API.example.com."), 80, 80));
        assert!(!api.matches(&name("api.example.com"), 8080, 80));
        assert!(!api.matches(&name("example.com"), 443, 443));
        assert!(!api.matches(&name("api.example.com.evil.net"), 443, 443));
    }

    #[test]
    fn wildcards_match_strict_subdomains_only() {
        let w = p("*.example.org");
        assert!(w.matches(&name("a.example.org"), 443, 443));
        assert!(w.matches(&name("a.b.example.org"), 443, 443));
        assert!(!w.matches(&name("example.org"), 443, 443));
        assert!(!w.matches(&name("badexample.org"), 443, 443));
        assert!(!w.matches(&name("a.example.org.evil.net"), 443, 443));
    }

    #[test]
    fn ports_and_addresses_match_exactly() {
        let local = p("127.0.0.1:8080");
        assert!(local.matches(&name("127.0.0.1"), 8080, 80));
        assert!(!local.matches(&name("127.0.0.1"), 8081, 80));
        assert!(!local.matches(&name("localhost"), 8080, 80));
        assert!(p("[::1]:8080").matches(&name("[::1]"), 8080, 80));
        assert!(local.is_exactly(&name("127.0.0.1"), 8080));
        assert!(!p("127.0.0.1").is_exactly(&name("127.0.0.1"), 80));
        assert!(!p("*.example.org").is_exactly(&name("a.example.org"), 443));
        assert!(p("internal.test:9000").is_exactly(&name("internal.test"), 9000));
    }

    proptest::proptest! {
        /// Any text is a pattern or a reason, never a panic; a pattern
        /// survives its own printing.
        #[test]
        fn arbitrary_patterns_parse_or_explain(text in "\\PC{0,40}|[a-z0-9.*:\\[\\]-]{0,40}") {
            match HostPattern::parse(&text) {
                Ok(p) => proptest::prop_assert_eq!(HostPattern::parse(&p.to_string()), Ok(p)),
                Err(why) => proptest::prop_assert!(why.contains("not a host pattern")),
            }
        }

        /// Any request host normalises without a panic.
        #[test]
        fn arbitrary_request_hosts_normalise(text in "\\PC{0,40}") {
            let _ = RequestHost::parse(&text).to_string();
        }
    }
}

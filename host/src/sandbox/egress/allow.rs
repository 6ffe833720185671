//! The egress decisions, as pure functions: is this request's host listed,
//! and may these resolved addresses be connected to.
//!
//! Two checks, because a name is not an address. The first compares the
//! URL's host and port with `allow_hosts`. The second runs on every address
//! the name resolved to: an internal address (loopback, private, link-local
//! including the cloud metadata service at 169.254.169.254, and their IPv6
//! and IPv4-in-IPv6 forms) is refused unless the policy names exactly that
//! `host:port`. So `*.example.org` cannot be turned into a way into the
//! host's network by pointing `x.example.org` at 127.0.0.1, and every
//! resolved address is checked, not just the first, so a mixed answer
//! cannot sneak one through.

use std::net::{IpAddr, SocketAddr};

use http::Uri;
use http::uri::Scheme;

use super::EgressError;
use super::special::{Reach, reach};
use crate::config::{HostPattern, RequestHost};

/// Where a request goes, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL's host, normalised.
    pub host: RequestHost,
    /// The URL's port, or the scheme's default.
    pub port: u16,
    /// `https`.
    pub tls: bool,
}

/// Checks a request URL against `allow`: the host and port must be listed.
pub fn check_uri(allow: &[HostPattern], uri: &Uri) -> Result<Target, EgressError> {
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        _ => {
            return Err(EgressError::BadUri(format!(
                "`{}` is not http(s)",
                super::shown(uri)
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| EgressError::BadUri(format!("`{}` has no host", super::shown(uri))))?;
    if authority.as_str().contains('@') {
        return Err(EgressError::BadUri(format!(
            "`{}` carries credentials",
            super::shown(uri)
        )));
    }
    let default_port = if tls { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    let host = RequestHost::parse(authority.host());
    if allow.iter().any(|p| p.matches(&host, port, default_port)) {
        Ok(Target { host, port, tls })
    } else {
        Err(EgressError::NotAllowed {
            host: host.to_string(),
            port,
        })
    }
}

/// Checks every resolved address of `target`; all must pass, or none is used.
///
/// A public address always passes. An internal one (see [`Reach`]) passes
/// only under an exact `host:port` grant. A link-local or metadata address
/// passes only when the URL names that very address literal (which the URL
/// check admitted, so a literal pattern lists it): never through a name.
pub fn check_addrs(
    allow: &[HostPattern],
    target: &Target,
    addrs: &[SocketAddr],
) -> Result<(), EgressError> {
    if addrs.is_empty() {
        return Err(EgressError::NoAddress(target.host.to_string()));
    }
    let exact = allow
        .iter()
        .any(|p| p.is_exactly(&target.host, target.port));
    for addr in addrs {
        let refused = match reach(addr.ip()) {
            Reach::Public => false,
            Reach::Internal => !exact,
            Reach::LinkLocal => target.host != RequestHost::Ip(addr.ip()),
        };
        if refused {
            return Err(EgressError::InternalAddress {
                host: target.host.to_string(),
                port: target.port,
                addr: *addr,
                link_local: reach(addr.ip()) == Reach::LinkLocal,
            });
        }
    }
    Ok(())
}

/// Whether an address is anything but the public internet: every entry of
/// the IANA special-purpose registries that is not globally reachable,
/// multicast, link-local and metadata addresses, and IPv6 forms embedding
/// such an IPv4 address (see [`super::special`]).
pub fn is_internal(ip: IpAddr) -> bool {
    reach(ip) != Reach::Public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Vec<HostPattern> {
        list.iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect()
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn the_ranges_the_old_rules_missed_are_internal() {
        for ip in [
            "64:ff9b:1::a00:1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::ffff:0:7f00:1",
            "0.1.2.3",
            "192.0.0.192",
            "100.100.100.200",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn only_listed_hosts_and_ports_pass_the_url_check() {
        let a = allow(&["api.example.com", "127.0.0.1:8080", "*.example.org"]);
        let t = check_uri(&a, &uri("https://API.example.com/v1")).unwrap();
        assert_eq!((t.port, t.tls), (443, true));
        check_uri(&a, &uri("http://127.0.0.1:8080/")).unwrap();
        check_uri(&a, &uri("http://x.example.org/")).unwrap();
        for denied in [
            "http://127.0.0.1:8081/",
            "http://localhost:8080/",
            "https://api.example.com:8443/",
            "http://example.org/",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            let e = check_uri(&a, &uri(denied)).unwrap_err();
            assert!(matches!(e, EgressError::NotAllowed { .. }), "{denied}: {e}");
        }
        let e = check_uri(&a, &uri("ftp://api.example.com/")).unwrap_err();
        assert!(matches!(e, EgressError::BadUri(_)), "{e}");
    }

    #[test]
    fn internal_addresses_need_the_exact_grant() {
        let a = allow(&["*.example.org", "svc.example.org:9000", "api.example.com"]);
        // A wildcard-listed name pointing at loopback or metadata: refused.
        let t = check_uri(&a, &uri("http://x.example.org/")).unwrap();
        for bad in ["127.0.0.1:80", "169.254.169.254:80", "[::ffff:10.0.0.1]:80"] {
            let e = check_addrs(&a, &t, &addrs(&[bad])).unwrap_err();
            assert!(
                matches!(e, EgressError::InternalAddress { .. }),
                "{bad}: {e}"
            );
        }
        // One internal address among public ones spoils the answer.
        let e = check_addrs(&a, &t, &addrs(&["93.184.216.34:80", "10.0.0.1:80"]));
        assert!(e.is_err());
        check_addrs(&a, &t, &addrs(&["93.184.216.34:80"])).unwrap();
        // Named exactly with its port: the operator meant an internal service.
        let t = check_uri(&a, &uri("http://svc.example.org:9000/")).unwrap();
        check_addrs(&a, &t, &addrs(&["10.0.0.7:9000"])).unwrap();
        // An exact name without a port is not an exact host:port grant.
        let t = check_uri(&a, &uri("https://api.example.com/")).unwrap();
        assert!(check_addrs(&a, &t, &addrs(&["127.0.0.1:443"])).is_err());
        assert!(matches!(
            check_addrs(&a, &t, &[]),
            Err(EgressError::NoAddress(_))
        ));
    }

    #[test]
    fn a_name_never_reaches_link_local_or_metadata_addresses() {
        // Even an exact host:port grant of a name does not open metadata.
        let a = allow(&["meta.example.org:80", "169.254.169.254", "[fe80::1]:8080"]);
        let t = check_uri(&a, &uri("http://meta.example.org/")).unwrap();
        for bad in [
            "169.254.169.254:80",
            "[fd00:ec2::254]:80",
            "[fe80::1]:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[2002:a9fe:a9fe::]:80",
            "100.100.100.200:80",
        ] {
            let e = check_addrs(&a, &t, &addrs(&[bad])).unwrap_err();
            assert!(
                matches!(
                    e,
                    EgressError::InternalAddress {
                        link_local: true,
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
        // The same name may still reach a private address: that is internal,
        // not link-local, and the grant is exact.
        check_addrs(&a, &t, &addrs(&["10.0.0.7:80"])).unwrap();
        // The literal address, listed as a literal, is the one way in.
        let t = check_uri(&a, &uri("http://169.254.169.254/latest/meta-data/")).unwrap();
        check_addrs(&a, &t, &addrs(&["169.254.169.254:80"])).unwrap();
        let t = check_uri(&a, &uri("http://[fe80::1]:8080/")).unwrap();
        check_addrs(&a, &t, &addrs(&["[fe80::1]:8080"])).unwrap();
    }

    #[test]
    fn a_listed_loopback_literal_is_its_own_exact_grant() {
        let a = allow(&["127.0.0.1:8080"]);
        let t = check_uri(&a, &uri("http://127.0.0.1:8080/x")).unwrap();
        check_addrs(&a, &t, &addrs(&["127.0.0.1:8080"])).unwrap();
    }
}

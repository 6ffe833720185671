//! The IANA special-purpose address registries, as a table, and what each
//! entry means for a tool's outgoing request.
//!
//! Why a table: the standard library's `is_private`/`is_global` family is
//! partly unstable and does not say which registry entry an address hit, and
//! a hand-written chain of `||` tests misses entries without anyone noticing
//! (NAT64 local-use `64:ff9b:1::/48` and Teredo `2001::/32` were missed that
//! way). Here every entry of the IPv4 and IPv6 special-purpose registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>) is one row,
//! plus the multicast blocks, the deprecated IPv6 forms that still route on
//! some hosts (IPv4-compatible `::/96`, site-local `fec0::/10`) and the cloud
//! metadata addresses. The most specific row containing an address decides.
//! IPv6 outside the global unicast block `2000::/3` is unassigned or reserved
//! and never routed on the internet, so it is internal unless a row says
//! otherwise (the IPv4 translation forms).
//!
//! Each row has a [`Reach`]:
//! - `Public`: globally reachable by the registry ("Globally Reachable: True"),
//!   such as the AS112 and anycast blocks: treated like any public address.
//! - `Internal`: not globally reachable. A tool reaches it only through an
//!   exact `host:port` grant.
//! - `LinkLocal`: link-local and cloud metadata addresses. A host *name* never
//!   reaches them, whatever the grant: only a request to that very address
//!   literal, listed as such in `allow_hosts`. A DNS answer is not something
//!   an operator reviewed; an address literal in the config is.
//! - `Embedded`: a translation or tunnelling form that carries an IPv4
//!   address (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4): the
//!   embedded IPv4 address is classified instead, so `::ffff:127.0.0.1` is as
//!   internal as `127.0.0.1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an address means to the egress policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The public internet.
    Public,
    /// The host's own or a private network: needs an exact `host:port` grant.
    Internal,
    /// Link-local or a cloud metadata service: needs the literal address.
    LinkLocal,
}

/// How a row classifies the addresses inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Every address of the row has this reach.
    Is(Reach),
    /// The row embeds an IPv4 address at this bit offset (from the top of
    /// the 128-bit address); that address decides.
    Embedded { bit: u32 },
}

/// One registry entry: a prefix, where it comes from, and its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    /// The network: its top `len` bits are the prefix.
    pub(crate) net: IpAddr,
    pub(crate) len: u8,
    /// The registry's name for it.
    pub(crate) name: &'static str,
    pub(crate) rule: Rule,
}

use Reach::{Internal, LinkLocal, Public};

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str, rule: Rule) -> Row {
    Row {
        net: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        len,
        name,
        rule,
    }
}

const fn v6(seg: [u16; 8], len: u8, name: &'static str, rule: Rule) -> Row {
    Row {
        net: IpAddr::V6(Ipv6Addr::new(
            seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
        )),
        len,
        name,
        rule,
    }
}

const INTERNAL: Rule = Rule::Is(Internal);
const PUBLIC: Rule = Rule::Is(Public);
const LINK: Rule = Rule::Is(LinkLocal);

/// The IPv4 rows: the special-purpose registry, multicast, metadata.
pub(crate) const V4: &[Row] = &[
    v4(0, 0, 0, 0, 8, "\"this network\" (RFC 791)", INTERNAL),
    v4(10, 0, 0, 0, 8, "private-use (RFC 1918)", INTERNAL),
    v4(
        100,
        64,
        0,
        0,
        10,
        "shared address space (RFC 6598)",
        INTERNAL,
    ),
    v4(100, 100, 100, 200, 32, "Alibaba Cloud metadata", LINK),
    v4(127, 0, 0, 0, 8, "loopback (RFC 1122)", INTERNAL),
    v4(
        169,
        254,
        0,
        0,
        16,
        "link-local, cloud metadata (RFC 3927)",
        LINK,
    ),
    v4(172, 16, 0, 0, 12, "private-use (RFC 1918)", INTERNAL),
    v4(
        192,
        0,
        0,
        0,
        24,
        "IETF protocol assignments (RFC 6890)",
        INTERNAL,
    ),
    v4(
        192,
        0,
        0,
        9,
        32,
        "port control protocol anycast (RFC 7723)",
        PUBLIC,
    ),
    v4(
        192,
        0,
        0,
        10,
        32,
        "traversal using relays around NAT anycast (RFC 8155)",
        PUBLIC,
    ),
    v4(192, 0, 0, 192, 32, "Oracle Cloud metadata", LINK),
    v4(
        192,
        0,
        2,
        0,
        24,
        "documentation TEST-NET-1 (RFC 5737)",
        INTERNAL,
    ),
    v4(192, 31, 196, 0, 24, "AS112-v4 (RFC 7535)", PUBLIC),
    v4(192, 52, 193, 0, 24, "AMT (RFC 7450)", PUBLIC),
    v4(
        192,
        88,
        99,
        0,
        24,
        "deprecated 6to4 relay anycast (RFC 7526)",
        INTERNAL,
    ),
    v4(192, 168, 0, 0, 16, "private-use (RFC 1918)", INTERNAL),
    v4(
        192,
        175,
        48,
        0,
        24,
        "direct delegation AS112 service (RFC 7534)",
        PUBLIC,
    ),
    v4(198, 18, 0, 0, 15, "benchmarking (RFC 2544)", INTERNAL),
    v4(
        198,
        51,
        100,
        0,
        24,
        "documentation TEST-NET-2 (RFC 5737)",
        INTERNAL,
    ),
    v4(
        203,
        0,
        113,
        0,
        24,
        "documentation TEST-NET-3 (RFC 5737)",
        INTERNAL,
    ),
    v4(224, 0, 0, 0, 4, "multicast (RFC 5771)", INTERNAL),
    v4(240, 0, 0, 0, 4, "reserved (RFC 1112)", INTERNAL),
    v4(
        255,
        255,
        255,
        255,
        32,
        "limited broadcast (RFC 919)",
        INTERNAL,
    ),
];

/// The IPv6 rows: the special-purpose registry, multicast, the deprecated
/// forms, metadata.
pub(crate) const V6: &[Row] = &[
    v6(
        [0; 8],
        0,
        "outside global unicast, unassigned or reserved (RFC 4291)",
        INTERNAL,
    ),
    v6(
        [0x2000, 0, 0, 0, 0, 0, 0, 0],
        3,
        "global unicast (RFC 4291)",
        PUBLIC,
    ),
    v6([0; 8], 128, "unspecified (RFC 4291)", INTERNAL),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 1],
        128,
        "loopback (RFC 4291)",
        INTERNAL,
    ),
    v6(
        [0; 8],
        96,
        "IPv4-compatible, deprecated (RFC 4291)",
        Rule::Embedded { bit: 96 },
    ),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        "IPv4-mapped (RFC 4291)",
        Rule::Embedded { bit: 96 },
    ),
    v6(
        [0, 0, 0, 0, 0xffff, 0, 0, 0],
        96,
        "IPv4-translated (RFC 2765)",
        INTERNAL,
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-IPv6 translation (RFC 6052)",
        Rule::Embedded { bit: 96 },
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use IPv4/IPv6 translation (RFC 8215)",
        INTERNAL,
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "discard-only (RFC 6666)",
        INTERNAL,
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        "dummy IPv6 prefix (RFC 9780)",
        INTERNAL,
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (RFC 2928)",
        INTERNAL,
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        "Teredo (RFC 4380)",
        INTERNAL,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        "port control protocol anycast (RFC 7723)",
        PUBLIC,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        "traversal using relays around NAT anycast (RFC 8155)",
        PUBLIC,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        "DNS-SD service registration protocol anycast (RFC 9665)",
        PUBLIC,
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        "benchmarking (RFC 5180)",
        INTERNAL,
    ),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT (RFC 7450)", PUBLIC),
    v6(
        [0x2001, 4, 0x112, 0, 0, 0, 0, 0],
        48,
        "AS112-v6 (RFC 7535)",
        PUBLIC,
    ),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        "deprecated ORCHID (RFC 4843)",
        INTERNAL,
    ),
    v6(
        [0x2001, 0x20, 0, 0, 0, 0, 0, 0],
        28,
        "ORCHIDv2 (RFC 7343)",
        PUBLIC,
    ),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        "drone remote ID protocol entity tags (RFC 9374)",
        PUBLIC,
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation (RFC 3849)",
        INTERNAL,
    ),
    v6(
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        "6to4 (RFC 3056)",
        Rule::Embedded { bit: 16 },
    ),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "direct delegation AS112 service (RFC 7534)",
        PUBLIC,
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation (RFC 9637)",
        INTERNAL,
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing SIDs (RFC 9602)",
        INTERNAL,
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "unique-local (RFC 4193)",
        INTERNAL,
    ),
    v6(
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254],
        128,
        "AWS metadata (IPv6)",
        LINK,
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        "link-local unicast (RFC 4291)",
        LINK,
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local, deprecated (RFC 3879)",
        INTERNAL,
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        "multicast (RFC 4291)",
        INTERNAL,
    ),
];

impl Row {
    /// The first and last address of the row, as integers (IPv4 rows in 32
    /// bits, IPv6 rows in 128).
    pub(crate) fn bounds(&self) -> (u128, u128) {
        let (bits, width) = match self.net {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let host_bits = width - u32::from(self.len);
        let mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        (bits & !mask, bits | mask)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let n = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V4(a)) => u128::from(u32::from(a)),
            (IpAddr::V6(_), IpAddr::V6(a)) => u128::from(a),
            _ => return false,
        };
        let (lo, hi) = self.bounds();
        (lo..=hi).contains(&n)
    }
}

/// The most specific row containing `ip`, if any.
pub(crate) fn row(ip: IpAddr) -> Option<&'static Row> {
    let table = match ip {
        IpAddr::V4(_) => V4,
        IpAddr::V6(_) => V6,
    };
    table
        .iter()
        .filter(|r| r.contains(ip))
        .max_by_key(|r| r.len)
}

/// What `ip` means to the egress policy (see the module docs).
pub fn reach(ip: IpAddr) -> Reach {
    match row(ip) {
        None => Public,
        Some(r) => match r.rule {
            Rule::Is(reach) => reach,
            Rule::Embedded { bit } => {
                let IpAddr::V6(v6) = ip else {
                    // Only IPv6 rows embed an address.
                    return Internal;
                };
                let embedded = (u128::from(v6) >> (128 - 32 - bit)) as u32;
                reach(IpAddr::V4(Ipv4Addr::from(embedded)))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u128, v4: bool) -> IpAddr {
        if v4 {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(n))
        }
    }

    /// Whether row `inner` lies inside row `outer` (or is it).
    fn within(inner: &Row, outer: &Row) -> bool {
        let (a, b) = inner.bounds();
        let (c, d) = outer.bounds();
        inner.net.is_ipv4() == outer.net.is_ipv4() && c <= a && b <= d
    }

    /// Every row, at both of its edges and just past each: the edges belong
    /// to the row (or to a more specific row nested in it), the addresses
    /// just outside belong neither to it nor to anything nested in it.
    #[test]
    fn every_row_holds_its_edges_and_nothing_past_them() {
        for r in V4.iter().chain(V6) {
            let v4 = r.net.is_ipv4();
            let max = if v4 { u128::from(u32::MAX) } else { u128::MAX };
            let (lo, hi) = r.bounds();
            for inside in [lo, hi] {
                let hit = row(at(inside, v4)).expect("an edge is in the table");
                assert!(
                    within(hit, r),
                    "{} edge {} hit {}",
                    r.name,
                    at(inside, v4),
                    hit.name
                );
            }
            let outside = [lo.checked_sub(1), (hi < max).then(|| hi + 1)];
            for out in outside.into_iter().flatten() {
                let ip = at(out, v4);
                if let Some(hit) = row(ip) {
                    assert!(
                        !within(hit, r),
                        "{} just outside: {ip} hit {}",
                        r.name,
                        hit.name
                    );
                }
            }
        }
    }

    /// A fixed-reach row's edges have its reach, unless a nested row says
    /// otherwise at that very address.
    #[test]
    fn fixed_rows_classify_their_edges() {
        for r in V4.iter().chain(V6) {
            let Rule::Is(want) = r.rule else { continue };
            let (lo, hi) = r.bounds();
            for n in [lo, hi] {
                let ip = at(n, r.net.is_ipv4());
                if row(ip) == Some(r) {
                    assert_eq!(reach(ip), want, "{} at {ip}", r.name);
                }
            }
        }
    }

    fn r(s: &str) -> Reach {
        reach(s.parse().unwrap())
    }

    /// The edges that matter most, spelled out: each range's first and last
    /// address, and the public address just past it.
    #[test]
    fn named_edges() {
        let cases: &[(&str, Reach)] = &[
            ("0.0.0.0", Internal),
            ("0.255.255.255", Internal),
            ("1.0.0.0", Public),
            ("9.255.255.255", Public),
            ("10.0.0.0", Internal),
            ("10.255.255.255", Internal),
            ("11.0.0.0", Public),
            ("100.63.255.255", Public),
            ("100.64.0.0", Internal),
            ("100.127.255.255", Internal),
            ("100.128.0.0", Public),
            ("100.100.100.200", LinkLocal),
            ("126.255.255.255", Public),
            ("127.0.0.0", Internal),
            ("127.255.255.255", Internal),
            ("128.0.0.0", Public),
            ("169.253.255.255", Public),
            ("169.254.0.0", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("169.254.255.255", LinkLocal),
            ("169.255.0.0", Public),
            ("172.15.255.255", Public),
            ("172.16.0.0", Internal),
            ("172.31.255.255", Internal),
            ("172.32.0.0", Public),
            ("191.255.255.255", Public),
            ("192.0.0.0", Internal),
            ("192.0.0.9", Public),
            ("192.0.0.192", LinkLocal),
            ("192.0.0.255", Internal),
            ("192.0.1.0", Public),
            ("192.0.2.0", Internal),
            ("192.0.2.255", Internal),
            ("192.0.3.0", Public),
            ("192.88.99.0", Internal),
            ("192.88.100.0", Public),
            ("192.167.255.255", Public),
            ("192.168.0.0", Internal),
            ("192.168.255.255", Internal),
            ("192.169.0.0", Public),
            ("198.17.255.255", Public),
            ("198.18.0.0", Internal),
            ("198.19.255.255", Internal),
            ("198.20.0.0", Public),
            ("198.51.100.0", Internal),
            ("203.0.113.255", Internal),
            ("203.0.114.0", Public),
            ("223.255.255.255", Public),
            ("224.0.0.0", Internal),
            ("239.255.255.255", Internal),
            ("240.0.0.0", Internal),
            ("255.255.255.255", Internal),
            ("::", Internal),
            ("::1", Internal),
            ("::2", Internal),
            ("::127.0.0.1", Internal),
            ("::8.8.8.8", Public),
            ("::ffff:127.0.0.1", Internal),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:8.8.8.8", Public),
            ("::fffe:ffff:ffff", Internal),
            ("::1:0:0:0", Internal),
            ("::ffff:0:8.8.8.8", Internal),
            ("::ffff:0:0:0", Internal),
            ("::ffff:0:ffff:ffff", Internal),
            ("64:ff9b::7f00:1", Internal),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::808:808", Public),
            ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("64:ff9b:1::", Internal),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Internal),
            ("64:ff9b:2::", Internal),
            ("100::", Internal),
            ("100::1:0:0:0:1", Internal),
            ("100:0:0:2::", Internal),
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("2000::", Public),
            ("2001::", Internal),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("2001:1::1", Public),
            ("2001:1::4", Internal),
            ("2001:3::", Public),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("2001:200::", Public),
            ("2001:db8::", Internal),
            ("2001:db9::", Public),
            ("2002:7f00:1::", Internal),
            ("2002:a9fe:a9fe::", LinkLocal),
            ("2002:808:808::", Public),
            ("2003::", Public),
            ("2606:4700::1111", Public),
            ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
            ("3fff::", Internal),
            ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("3fff:1000::", Public),
            ("5f00::", Internal),
            ("5f01::", Internal),
            ("4000::", Internal),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("fc00::", Internal),
            ("fd00:ec2::254", LinkLocal),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("fe80::", LinkLocal),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
            ("fec0::", Internal),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
            ("ff00::", Internal),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Internal),
        ];
        for (ip, want) in cases {
            assert_eq!(r(ip), *want, "{ip}");
        }
    }
}

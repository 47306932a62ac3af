//! Which addresses a probe may connect to: none in the private, loopback, link-local, shared,
//! documentation, benchmarking, multicast or otherwise special ranges (IANA's IPv4 and IPv6 Special-
//! Purpose Address Registries, RFC 6890 and its updates), unless an `--allow` network holds them.
//! IPv6 must be global unicast (2000::/3) outside the special blocks; IPv4-mapped and -compatible
//! IPv6 addresses are judged as the IPv4 address they carry.

use std::net::{IpAddr, Ipv6Addr};

use crate::policy::Cidr;

/// The IPv4 ranges refused, with their names.
const V4: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\""),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGN)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.31.196.0/24", "AS112"),
    ("192.52.193.0/24", "AMT"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("192.175.48.0/24", "AS112"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
];

/// The IPv6 ranges refused inside 2000::/3, with their names.
const V6: &[(&str, &str)] = &[
    (
        "2001::/23",
        "IETF protocol assignments (Teredo, ORCHID, ...)",
    ),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("2620:4f:8000::/48", "AS112"),
    ("3fff::/20", "documentation"),
];

/// The networks `--allow` named: addresses in them may be probed whatever their range.
#[derive(Clone, Debug, Default)]
pub struct Allow(pub Vec<Cidr>);

impl Allow {
    /// `None` when `addr` may be probed, else why not (the range it is in).
    pub fn refuse(&self, addr: IpAddr) -> Option<String> {
        let addr = canonical(addr);
        if self.0.iter().any(|c| c.contains(addr)) {
            return None;
        }
        special(addr).map(|why| format!("{addr} is {why} (probe it with --allow)"))
    }
}

/// An IPv4-mapped or -compatible IPv6 address as its IPv4 address; others as they are.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            // ::a.b.c.d (deprecated, RFC 4291 §2.5.5.1); :: and ::1 stay IPv6.
            None if v6.segments()[..6] == [0; 6] && u128::from(v6) > 1 => {
                v6.to_ipv4().map_or(addr, IpAddr::V4)
            }
            None => addr,
        },
        v4 => v4,
    }
}

/// The special range `addr` is in, if any.
fn special(addr: IpAddr) -> Option<String> {
    let table = match addr {
        IpAddr::V4(_) => V4,
        IpAddr::V6(v6) => {
            if v6 == Ipv6Addr::LOCALHOST {
                return Some("loopback (::1)".into());
            }
            if v6.segments()[0] & 0xe000 != 0x2000 {
                return Some(match v6.segments()[0] {
                    0 => "unspecified or reserved (::/8)".into(),
                    s if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)".into(),
                    s if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)".into(),
                    s if s & 0xff00 == 0xff00 => "multicast (ff00::/8)".into(),
                    0x64 => "NAT64 (64:ff9b::/96, 64:ff9b:1::/48)".into(),
                    _ => "outside global unicast (2000::/3)".into(),
                });
            }
            V6
        }
    };
    table.iter().find_map(|(net, name)| {
        Cidr::parse(net)
            .ok()
            .filter(|c| c.contains(addr))
            .map(|_| format!("{name} ({net})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(allow: &[&str], addr: &str) -> bool {
        let allow = Allow(allow.iter().map(|c| Cidr::parse(c).unwrap()).collect());
        allow.refuse(addr.parse().unwrap()).is_some()
    }

    #[test]
    fn the_tables_parse() {
        for (net, _) in V4.iter().chain(V6) {
            assert!(Cidr::parse(net).is_ok(), "{net}");
        }
    }

    #[test]
    fn special_addresses_are_refused() {
        for a in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:c000:201::1",
            "3fff::1",
            "fc00::1",
            "fd00:200:1::2",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(refused(&[], a), "{a} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_probed() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
            "2606:4700::1111",
            "2a00:1450::1",
            "2001:200::1",
        ] {
            assert!(!refused(&[], a), "{a} should be allowed");
        }
    }

    #[test]
    fn allow_opens_only_its_networks() {
        assert!(!refused(&["10.200.1.0/24"], "10.200.1.2"));
        assert!(!refused(&["10.200.1.0/24"], "::ffff:10.200.1.2"));
        assert!(refused(&["10.200.1.0/24"], "10.200.2.2"));
        assert!(!refused(&["fd00:200:1::/64"], "fd00:200:1::2"));
        assert!(refused(&["fd00:200:1::/64"], "fd00:200:2::2"));
        assert!(!refused(&["127.0.0.1"], "127.0.0.1"));
    }
}

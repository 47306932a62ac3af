//! What a host, a port or a protocol is: numeric hosts in every spelling, expected apps per port.

use super::*;

/// Splits `ip:port`, `[ipv6]:port`, or a bare address into the address and the port, if any.
pub(super) fn split_endpoint(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix(':').and_then(port_number)),
            None => (s, None),
        };
    }
    if s.parse::<IpAddr>().is_ok() {
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((addr, p)) if !addr.contains(':') => match port_number(p) {
            Some(port) => (addr, Some(port)),
            None => (s, None),
        },
        _ => (s, None),
    }
}

pub(super) fn port_number(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// Whether an HTTP host (maybe with a port) or an SNI is an IP literal: the address and its form
/// (`dotted`, `ipv6`, `decimal`, `hex`, `octal`, `short`).
pub(super) fn ip_literal(host: &str) -> Option<(IpAddr, &'static str)> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (inner, tail) = rest.split_once(']')?;
        if !tail.is_empty() && tail.strip_prefix(':').and_then(port_number).is_none() {
            return None;
        }
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|a| (IpAddr::V6(a), "ipv6"));
    }
    if let Ok(a) = host.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(a), "ipv6"));
    }
    let name = match host.rsplit_once(':') {
        Some((name, p)) => {
            port_number(p)?;
            name
        }
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    inet_aton(name).map(|(a, form)| (IpAddr::V4(a), form))
}

/// IPv4 in every form `inet_aton` accepts: 1 to 4 parts, each decimal, `0x` hex or `0` octal,
/// the last part filling the bytes left.
pub(super) fn inet_aton(s: &str) -> Option<(Ipv4Addr, &'static str)> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let (mut hex, mut octal) = (false, false);
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) = if let Some(x) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
            hex = true;
            (x, 16)
        } else if let Some(o) = part.strip_prefix('0').filter(|o| !o.is_empty()) {
            octal = true;
            (o, 8)
        } else {
            (*part, 10)
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        values.push(u64::from_str_radix(digits, radix).ok()?);
    }
    let (last, init) = values.split_last()?;
    let mut addr: u64 = 0;
    for (i, v) in init.iter().enumerate() {
        if *v > 255 {
            return None;
        }
        addr |= v << (8 * (3 - i));
    }
    let bits = 8 * (5 - values.len());
    if *last >= 1u64 << bits {
        return None;
    }
    addr |= last;
    let form = if hex {
        "hex"
    } else if octal {
        "octal"
    } else if values.len() == 4 {
        "dotted"
    } else if values.len() == 1 {
        "decimal"
    } else {
        "short"
    };
    Some((Ipv4Addr::from(u32::try_from(addr).ok()?), form))
}

/// The app a destination port is for.
pub(super) fn expected_app(proto: &str, port: u16) -> Option<&'static str> {
    match (proto, port) {
        ("tcp", 80 | 8080) => Some("http"),
        ("tcp", 443) => Some("tls"),
        ("udp", 443) => Some("quic"),
        (_, 53) => Some("dns"),
        ("tcp", 21) => Some("ftp"),
        ("tcp", 22) => Some("ssh"),
        _ => None,
    }
}

/// The standard port of a tunnelling app.
pub(super) fn tunnel_port(app: &str) -> Option<u16> {
    match app {
        "ssh" => Some(22),
        "openvpn" => Some(1194),
        "wireguard" => Some(51820),
        "socks" => Some(1080),
        _ => None,
    }
}

/// When `app` on `proto/port` is listed: the app the port expects and the app's own port.
#[allow(clippy::type_complexity)]
pub(super) fn misfit(
    proto: &str,
    port: u16,
    app: &str,
) -> Option<(Option<&'static str>, Option<u16>)> {
    let expected = expected_app(proto, port);
    let own = tunnel_port(app);
    let listed = match own {
        Some(p) => p != port,
        None if app == "unknown" => port == 80 || port == 443,
        // A first payload that looks uniformly random (obfs4, Shadowsocks) fits no port.
        None if app == "encrypted" => true,
        None => expected.is_some_and(|e| e != app),
    };
    listed.then_some((expected, own))
}

/// Sort key putting addresses (with or without port) in numeric order, anything else after.
pub(super) fn addr_key(s: &str) -> (bool, Option<IpAddr>, Option<u16>, String) {
    let (addr, port) = split_endpoint(s);
    let ip = addr.parse::<IpAddr>().ok();
    (ip.is_none(), ip, port, s.to_string())
}

//! What a host string really names: a DNS name or an IP address, however the address is spelled,
//! and the host and URL patterns a policy matches them with.
//!
//! Contract: every function here is pure and never panics, whatever the input; all indexing is
//! bounds-checked (`get`, iterators, checked arithmetic). Input is untrusted text from a Host
//! header, a request target, an SNI or a policy file.
//!
//! Decisions, so that a filter sees what the connecting software will use:
//! - Only ASCII letters, digits, `-`, `_` and `.` make a name. Anything else (spaces, control
//!   bytes, `@`, `%`, `,`, non-ASCII, ...) makes the host invalid (`None`): RFC 3986's reg-name
//!   allows more, but no DNS name has those bytes and a filter must not guess what they mean.
//! - A name is lower-cased and loses one trailing dot (`Example.ORG.` names `example.org`). Labels
//!   are 1 to 63 bytes and the name at most 253 (RFC 1035 §2.3.4).
//! - A host whose last label is a number (all decimal digits, or `0x` and hex digits) is an IPv4
//!   address in the forms `inet_aton(3)` and browsers accept (WHATWG URL "ends in a number"):
//!   1 to 4 parts, each decimal, octal (leading `0`) or hex (`0x`), the last part filling the
//!   remaining bytes (`127.1` = 127.0.0.1, `3232235777` = 192.168.1.1). If that fails the host
//!   is invalid, not a name: `1.2.3.4.5` or `0x1g.0x2` reaches no DNS name a browser would look up.
//! - IPv6 is bracketed when a port may follow (`[2001:db8::1]:443`); bare (`2001:db8::1`, as some
//!   SNIs carry) when it has two colons or more, and then without a port. Zone ids (`fe80::1%eth0`,
//!   `[fe80::1%25eth0]`) are rejected: RFC 9110's host is RFC 3986's IP-literal, which has none,
//!   and an address without its zone would be a different host to a rule.
//! - An IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]`) names the IPv4 address, and is returned as
//!   one, so IPv4 rules see it.
//! - A port is decimal digits, at most 65535; an empty port (`example.org:`) is no port
//!   (RFC 3986 §3.2.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a host string names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Host {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// An IP address, however it was spelled.
    Ip(IpAddr),
}

/// Longest DNS name in text form, without the trailing dot (RFC 1035 §2.3.4: 255 octets on the
/// wire, which is 253 characters of text).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Splits an optional port off `s` and classifies the host: see the module documentation.
/// Returns `None` for an empty or invalid host, or an invalid port.
pub fn parse_host(s: &str) -> Option<(Host, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        // RFC 3986 §3.2.2: IP-literal = "[" ( IPv6address / IPvFuture ) "]", then [":" port].
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => parse_port(after.strip_prefix(':')?)?,
        };
        return Some((Host::Ip(parse_ipv6(inside)?), port));
    }
    let (host, port) = match s.bytes().filter(|&b| b == b':').count() {
        0 => (s, None),
        1 => {
            let (host, port) = s.split_once(':')?;
            (host, parse_port(port)?)
        }
        // Two colons or more: a bare IPv6 address (an SNI may carry one), which cannot have a port.
        _ => return Some((Host::Ip(parse_ipv6(s)?), None)),
    };
    Some((classify(host)?, port))
}

/// A port: decimal digits, at most 65535. `Some(None)` for the empty port.
fn parse_port(s: &str) -> Option<Option<u16>> {
    if s.is_empty() {
        return Some(None);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u16 = 0;
    for b in s.bytes() {
        value = value.checked_mul(10)?.checked_add(u16::from(b - b'0'))?;
    }
    Some(Some(value))
}

/// An IPv6 address without brackets or zone id; IPv4-mapped addresses become IPv4.
fn parse_ipv6(s: &str) -> Option<IpAddr> {
    // std's parser accepts exactly RFC 4291 §2.2 text, embedded IPv4 included, and nothing with a
    // `%zone`, which is what we want.
    let v6: Ipv6Addr = s.parse().ok()?;
    Some(v6.to_canonical())
}

/// A host without port: an IPv4 address in any `inet_aton` spelling, or a DNS name.
fn classify(host: &str) -> Option<Host> {
    // One trailing dot is the root label: `example.org.` is `example.org`, `127.0.0.1.` is an
    // address to browsers (WHATWG URL IPv4 parser drops one empty last part).
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_NAME_LEN {
        return None;
    }
    let last = host.rsplit('.').next().unwrap_or(host);
    if looks_numeric(last) {
        return parse_ipv4_any(host).map(|v4| Host::Ip(IpAddr::V4(v4)));
    }
    for label in host.split('.') {
        let valid_bytes = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > MAX_LABEL_LEN || !valid_bytes {
            return None;
        }
    }
    Some(Host::Name(host.to_ascii_lowercase()))
}

/// WHATWG URL "ends in a number": the last label is decimal digits, or `0x`/`0X` and hex digits
/// (none at all included: `0x` is zero).
fn looks_numeric(label: &str) -> bool {
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// IPv4 in the `inet_aton` forms: `a.b.c.d`, `a.b.c` (c is 16 bits), `a.b` (b is 24 bits), `a`
/// (32 bits); each part decimal, octal with a leading `0`, or hex with `0x`.
fn parse_ipv4_any(s: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u64; 4];
    let mut count = 0usize;
    for part in s.split('.') {
        let slot = parts.get_mut(count)?; // a fifth part: invalid
        *slot = parse_ipv4_part(part)?;
        count += 1;
    }
    let (last, leading) = parts.get(..count)?.split_last()?;
    if leading.iter().any(|&p| p > 255) {
        return None;
    }
    // The last part fills the bytes the leading parts left: 32 - 8 * leading bits.
    let last_bits = 32 - 8 * u32::try_from(leading.len()).ok()?;
    if *last >> last_bits != 0 {
        return None;
    }
    let mut value = *last;
    for (i, &p) in leading.iter().enumerate() {
        value |= p << (24 - 8 * u32::try_from(i).ok()?);
    }
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

/// One part of an `inet_aton` address. Empty parts are invalid; values are capped well below
/// overflow by failing past `u32::MAX`.
fn parse_ipv4_part(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (part.get(1..)?, 8)
        } else {
            (part, 10)
        };
    if part.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = u64::from(c.to_digit(radix)?);
        value = value.checked_mul(u64::from(radix))?.checked_add(d)?;
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(value)
}

/// One entry of a host list.
///
/// - `example.org`: exactly that name.
/// - `*.example.org`: the subdomains of `example.org` (`www.example.org`, `a.b.example.org`),
///   **not** `example.org` itself.
/// - `.example.org`: `example.org` and its subdomains (the Squid/Shorewall habit).
/// - an address in any spelling [`parse_host`] accepts (`192.168.1.1`, `[2001:db8::1]`,
///   `2001:db8::1`, `127.1`): that address, whatever spelling the traffic uses.
///
/// Names are compared case-insensitively and without a trailing dot. A pattern never matches a
/// name against an address: `*.1.2.3.4` is rejected, and `example.org` does not match the address
/// it resolves to. Ports are not part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Exact(Host),
    /// Strict subdomains of the name.
    Subdomains(String),
    /// The name and its subdomains.
    NameAndSubdomains(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let (kind, rest) = if let Some(rest) = s.strip_prefix("*.") {
            (Some(false), rest)
        } else if let Some(rest) = s.strip_prefix('.') {
            (Some(true), rest)
        } else {
            (None, s)
        };
        if rest.contains('*') {
            return Err(format!(
                "host pattern {s:?}: '*' is allowed only as a leading \"*.\""
            ));
        }
        let (host, port) =
            parse_host(rest).ok_or_else(|| format!("host pattern {s:?}: not a valid host"))?;
        if port.is_some() {
            return Err(format!("host pattern {s:?}: a host pattern has no port"));
        }
        let kind = match (kind, host) {
            (None, host) => PatternKind::Exact(host),
            (Some(with_name), Host::Name(name)) => {
                if with_name {
                    PatternKind::NameAndSubdomains(name)
                } else {
                    PatternKind::Subdomains(name)
                }
            }
            (Some(_), Host::Ip(_)) => {
                return Err(format!("host pattern {s:?}: an address has no subdomains"));
            }
        };
        Ok(HostPattern { kind })
    }

    pub fn matches(&self, host: &Host) -> bool {
        match (&self.kind, host) {
            (PatternKind::Exact(want), host) => want == host,
            (PatternKind::Subdomains(suffix), Host::Name(name)) => is_subdomain(name, suffix),
            (PatternKind::NameAndSubdomains(suffix), Host::Name(name)) => {
                name == suffix || is_subdomain(name, suffix)
            }
            (_, Host::Ip(_)) => false,
        }
    }
}

/// Whether `name` is a strict subdomain of `suffix`: it ends with `.suffix`.
fn is_subdomain(name: &str, suffix: &str) -> bool {
    match name.strip_suffix(suffix) {
        Some(head) => head.len() > 1 && head.ends_with('.'),
        None => false,
    }
}

/// A URL pattern, matched against a request's path and query.
///
/// - Without `*`: a case-insensitive substring (`gateway.dll?` matches `/x/GATEWAY.DLL?a=1`).
/// - With `*`: a case-insensitive glob over the **whole** path and query; `*` matches any run of
///   bytes, `/` included; every other byte is literal (`/*/gateway.dll?*`).
///
/// Both sides are normalized first by decoding percent-encoded unreserved characters
/// (RFC 3986 §6.2.2.2: `%41` and `A` are the same URI), so `/%67ateway.dll?` cannot slip past
/// `gateway.dll?`. Other percent-encodings (`%2F`, `%3F`, ...) change the meaning and are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    kind: UrlKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlKind {
    Substring(Vec<u8>),
    /// The pieces between the `*`s, in order: the first anchored at the start, the last at the end.
    Glob(Vec<Vec<u8>>),
}

impl UrlPattern {
    pub fn parse(s: &str) -> Result<UrlPattern, String> {
        if s.is_empty() {
            return Err("URL pattern: empty".to_string());
        }
        if s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "URL pattern {s:?}: spaces and control characters never occur in a request target"
            ));
        }
        let normalized = normalize_url(s.as_bytes());
        let kind = if normalized.contains(&b'*') {
            UrlKind::Glob(
                normalized
                    .split(|&b| b == b'*')
                    .map(<[u8]>::to_vec)
                    .collect(),
            )
        } else {
            UrlKind::Substring(normalized)
        };
        Ok(UrlPattern { kind })
    }

    pub fn matches(&self, path_and_query: &str) -> bool {
        let text = normalize_url(path_and_query.as_bytes());
        match &self.kind {
            UrlKind::Substring(needle) => find(&text, needle).is_some(),
            UrlKind::Glob(pieces) => glob_matches(pieces, &text),
        }
    }
}

/// ASCII lower-case, with `%XX` of unreserved characters decoded (RFC 3986 §2.3, §6.2.2.2).
fn normalize_url(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%'
            && let (Some(hi), Some(lo)) = (s.get(i + 1), s.get(i + 2))
            && let (Some(hi), Some(lo)) = (hex_value(*hi), hex_value(*lo))
        {
            let decoded = hi << 4 | lo;
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                out.push(decoded.to_ascii_lowercase());
                i += 3;
                continue;
            }
        }
        out.push(b.to_ascii_lowercase());
        i += 1;
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Position of the first occurrence of `needle` in `haystack`; an empty needle is at 0.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whole-text glob match. With only `*` as a wildcard, taking each middle piece at its leftmost
/// occurrence is never worse than a later one, so no backtracking is needed.
fn glob_matches(pieces: &[Vec<u8>], text: &[u8]) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return text == first.as_slice(); // no '*' at all: cannot happen for a Glob, but exact
    };
    let Some(after_first) = text.strip_prefix(first.as_slice()) else {
        return false;
    };
    let Some(mut inner) = after_first.strip_suffix(last.as_slice()) else {
        return false;
    };
    for piece in middle {
        match find(inner, piece) {
            Some(at) => match inner.get(at + piece.len()..) {
                Some(tail) => inner = tail,
                None => return false,
            },
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `s` names an IP address, in any spelling [`parse_host`] accepts.
    fn is_numeric(s: &str) -> bool {
        matches!(parse_host(s), Some((Host::Ip(_), _)))
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Host {
        Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    fn v6(s: &str) -> Host {
        Host::Ip(IpAddr::V6(s.parse().unwrap()))
    }

    fn name(s: &str) -> Host {
        Host::Name(s.to_string())
    }

    fn host(s: &str) -> Option<Host> {
        parse_host(s).map(|(h, _)| h)
    }

    #[test]
    fn names() {
        assert_eq!(parse_host("example.org"), Some((name("example.org"), None)));
        assert_eq!(
            parse_host("Example.ORG.:8080"),
            Some((name("example.org"), Some(8080)))
        );
        assert_eq!(parse_host("localhost"), Some((name("localhost"), None)));
        assert_eq!(
            parse_host("_dmarc.x-y.example"),
            Some((name("_dmarc.x-y.example"), None))
        );
        // Not numbers: the last label decides.
        assert_eq!(
            host("1.2.3.4.example.org"),
            Some(name("1.2.3.4.example.org"))
        );
        assert_eq!(host("0x.example"), Some(name("0x.example")));
        assert_eq!(host("123abc"), Some(name("123abc")));
        assert_eq!(host("0x7g"), Some(name("0x7g")));
        assert_eq!(host("abc.0xz"), Some(name("abc.0xz")));
        assert_eq!(host("1e3"), Some(name("1e3")));
    }

    #[test]
    fn invalid_hosts() {
        for s in [
            "",
            ".",
            ":80",
            "example.org..",
            "a..b",
            ".example.org",
            "exa mple.org",
            " example.org",
            "example.org ",
            "exam\tple.org",
            "exa\0mple.org",
            "user@example.org",
            "example.org@evil.example",
            "ex%61mple.org",
            "a,b",
            "a/b",
            "ex\u{e4}mple.org",
            "\u{ff11}\u{ff12}\u{ff17}.0.0.1",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[example.org]",
            "[v1.fe]",
            "[1.2.3.4]",
            "2001:db8::1:80:zz",
            "1.2.3.4.5",
            "1.2.3.256",
            "256.1",
            "1.16777216",
            "4294967296",
            "08",
            "0x1g.0x2",
            "1..2",
            "example.1",
            "example.0x10",
        ] {
            assert_eq!(parse_host(s), None, "{s:?}");
        }
        let long_label = "a".repeat(64);
        assert_eq!(parse_host(&format!("{long_label}.org")), None);
        let long_name = ["abcdefghi"; 26].join(".");
        assert_eq!(long_name.len(), 259);
        assert_eq!(parse_host(&long_name), None);
        assert!(parse_host(&"a".repeat(63)).is_some());
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_host("example.org:0"),
            Some((name("example.org"), Some(0)))
        );
        assert_eq!(
            parse_host("example.org:65535"),
            Some((name("example.org"), Some(65535)))
        );
        assert_eq!(
            parse_host("example.org:00080"),
            Some((name("example.org"), Some(80)))
        );
        assert_eq!(
            parse_host("example.org:"),
            Some((name("example.org"), None))
        );
        assert_eq!(parse_host("[::1]:"), Some((v6("::1"), None)));
        assert_eq!(parse_host("example.org:65536"), None);
        assert_eq!(parse_host("example.org:99999999999999999999"), None);
        assert_eq!(parse_host("example.org:-1"), None);
        assert_eq!(parse_host("example.org:+80"), None);
        assert_eq!(parse_host("example.org: 80"), None);
        assert_eq!(parse_host("example.org:0x50"), None);
        assert_eq!(
            parse_host("192.168.1.1:8080"),
            Some((v4(192, 168, 1, 1), Some(8080)))
        );
        assert_eq!(
            parse_host("[2001:db8::1]:443"),
            Some((v6("2001:db8::1"), Some(443)))
        );
        assert_eq!(parse_host("[2001:db8::1]"), Some((v6("2001:db8::1"), None)));
    }

    #[test]
    fn dotted_quad_and_odd_ipv4_forms() {
        assert_eq!(host("192.168.1.1"), Some(v4(192, 168, 1, 1)));
        assert_eq!(host("192.168.1.1."), Some(v4(192, 168, 1, 1)));
        assert_eq!(host("0.0.0.0"), Some(v4(0, 0, 0, 0)));
        // One number: 32 bits.
        assert_eq!(host("3232235777"), Some(v4(192, 168, 1, 1)));
        assert_eq!(host("4294967295"), Some(v4(255, 255, 255, 255)));
        assert_eq!(host("0"), Some(v4(0, 0, 0, 0)));
        // Hex, whole or per part, either case of 0x.
        assert_eq!(host("0x7f000001"), Some(v4(127, 0, 0, 1)));
        assert_eq!(host("0X7F000001"), Some(v4(127, 0, 0, 1)));
        assert_eq!(host("0x7f.0.0.1"), Some(v4(127, 0, 0, 1)));
        assert_eq!(host("0xc0.0xa8.0x01.0x01"), Some(v4(192, 168, 1, 1)));
        assert_eq!(host("0x.0x.0x.0x1"), Some(v4(0, 0, 0, 1)));
        // Octal parts.
        assert_eq!(host("0177.0.0.1"), Some(v4(127, 0, 0, 1)));
        assert_eq!(host("0300.0250.01.01"), Some(v4(192, 168, 1, 1)));
        assert_eq!(host("017700000001"), Some(v4(127, 0, 0, 1)));
        assert_eq!(host("00"), Some(v4(0, 0, 0, 0)));
        // Short forms: the last part fills the rest.
        assert_eq!(host("127.1"), Some(v4(127, 0, 0, 1)));
        assert_eq!(host("10.1.2"), Some(v4(10, 1, 0, 2)));
        assert_eq!(host("10.1.65535"), Some(v4(10, 1, 255, 255)));
        assert_eq!(host("10.16777215"), Some(v4(10, 255, 255, 255)));
        assert_eq!(host("192.0xa80101"), Some(v4(192, 168, 1, 1)));
        // Mixed, with a port.
        assert_eq!(
            parse_host("0x7f.1:8080"),
            Some((v4(127, 0, 0, 1), Some(8080)))
        );
        for s in [
            "3232235777",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "127.1",
            "10.1.2",
            "[::1]",
            "::1",
        ] {
            assert!(is_numeric(s), "{s}");
        }
        for s in [
            "1.2.3.4.example.org",
            "0x.example",
            "123abc",
            "example.org",
            "",
            "1.2.3.4.5",
        ] {
            assert!(!is_numeric(s), "{s}");
        }
    }

    #[test]
    fn ipv6() {
        assert_eq!(parse_host("2001:db8::1"), Some((v6("2001:db8::1"), None)));
        assert_eq!(parse_host("::1"), Some((v6("::1"), None)));
        assert_eq!(host("[2001:DB8::1]"), Some(v6("2001:db8::1")));
        // Mapped IPv4 names the IPv4 address.
        assert_eq!(host("[::ffff:127.0.0.1]"), Some(v4(127, 0, 0, 1)));
        assert_eq!(host("::ffff:7f00:1"), Some(v4(127, 0, 0, 1)));
        // Zone ids are rejected, bracketed or not, raw or percent-encoded.
        assert_eq!(parse_host("fe80::1%eth0"), None);
        assert_eq!(parse_host("[fe80::1%eth0]"), None);
        assert_eq!(parse_host("[fe80::1%25eth0]:80"), None);
        // A bare IPv6 address cannot carry a port: the last group is part of the address.
        assert_eq!(
            parse_host("2001:db8::1:443"),
            Some((v6("2001:db8::1:443"), None))
        );
    }

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("Example.org").unwrap();
        assert!(exact.matches(&name("example.org")));
        assert!(!exact.matches(&name("www.example.org")));
        assert!(!exact.matches(&name("badexample.org")));

        let subs = HostPattern::parse("*.example.org").unwrap();
        assert!(subs.matches(&name("www.example.org")));
        assert!(subs.matches(&name("a.b.example.org")));
        assert!(!subs.matches(&name("example.org")));
        assert!(!subs.matches(&name("badexample.org")));
        assert!(!subs.matches(&name("example.org.evil")));

        let both = HostPattern::parse(".EXAMPLE.org.").unwrap();
        assert!(both.matches(&name("example.org")));
        assert!(both.matches(&name("www.example.org")));
        assert!(!both.matches(&name("badexample.org")));

        // Addresses, in any spelling, on either side.
        let ip = HostPattern::parse("127.0.0.1").unwrap();
        assert!(ip.matches(&host("0x7f000001").unwrap()));
        assert!(ip.matches(&host("127.1").unwrap()));
        assert!(ip.matches(&host("[::ffff:127.0.0.1]").unwrap()));
        assert!(!ip.matches(&name("localhost")));
        let ip = HostPattern::parse("0177.1").unwrap();
        assert!(ip.matches(&v4(127, 0, 0, 1)));
        let ip6 = HostPattern::parse("[2001:db8::1]").unwrap();
        assert!(ip6.matches(&v6("2001:db8:0::1")));
        assert_eq!(HostPattern::parse("2001:db8::1"), Ok(ip6));
        assert!(
            !HostPattern::parse("1.2.3.4.example.org")
                .unwrap()
                .matches(&v4(1, 2, 3, 4))
        );

        for bad in [
            "",
            "*",
            "*.",
            ".",
            "**.example.org",
            "www.*.org",
            "*example.org",
            "example.*",
            "*.1.2.3.4",
            ".10.0.0.1",
            "example.org:80",
            "[::1]:80",
            "exa mple.org",
            "a@b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn url_substring_patterns() {
        let p = UrlPattern::parse("gateway.dll?").unwrap();
        assert!(p.matches("/gateway.dll?Action=open"));
        assert!(p.matches("/x/GATEWAY.DLL?"));
        assert!(p.matches("/x/%67ateway%2Edll?")); // percent-encoded unreserved characters
        assert!(!p.matches("/gateway.dll"));
        assert!(!p.matches("/gateway%2Fdll?"));
        assert!(!p.matches(""));
        let p = UrlPattern::parse("%7Euser").unwrap();
        assert!(p.matches("/~USER/x"));
        let p = UrlPattern::parse("/a%2fb").unwrap();
        assert!(p.matches("/a%2Fb"));
        assert!(!p.matches("/a/b"));
        // A lone or broken '%' is literal.
        let p = UrlPattern::parse("100%").unwrap();
        assert!(p.matches("/100%"));
        assert!(p.matches("/100%zz"));
        assert!(!p.matches("/100"));
    }

    #[test]
    fn url_glob_patterns() {
        let p = UrlPattern::parse("/*/gateway.dll?*").unwrap();
        assert!(p.matches("/x/gateway.dll?a"));
        assert!(p.matches("/a/b/c/Gateway.dll?"));
        assert!(!p.matches("/gateway.dll?a")); // needs a segment before
        assert!(!p.matches("x/y/gateway.dll?")); // anchored at the start
        assert!(!p.matches("/x/gateway.dll"));

        let p = UrlPattern::parse("*.exe").unwrap();
        assert!(p.matches("/setup.EXE"));
        assert!(!p.matches("/setup.exe?x=1")); // anchored at the end

        let p = UrlPattern::parse("*").unwrap();
        assert!(p.matches(""));
        assert!(p.matches("/anything"));

        let p = UrlPattern::parse("/a*a*a").unwrap();
        assert!(p.matches("/aaa"));
        assert!(p.matches("/a-a-a"));
        assert!(!p.matches("/aa")); // prefix and suffix must not overlap
        assert!(!p.matches("/a"));

        let p = UrlPattern::parse("/x**y").unwrap();
        assert!(p.matches("/xy"));
        assert!(p.matches("/x/z/y"));

        let p = UrlPattern::parse("*ab*cd*").unwrap();
        assert!(p.matches("/abcd"));
        assert!(p.matches("/cdab/abxcd"));
        assert!(!p.matches("/cdab"));

        for bad in ["", "a b", "a\tb", "\r\n"] {
            assert!(UrlPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for s in [
            "%", "%%", "%4", "[", "]", "[]", "[:]", ":", "::", ":::", "0x", "0x.", "\u{fffd}",
        ] {
            let _ = parse_host(s);
            let _ = HostPattern::parse(s);
            if let Ok(p) = UrlPattern::parse(s) {
                let _ = p.matches(s);
            }
        }
    }
}

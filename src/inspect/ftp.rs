//! Data channels announced on an FTP control connection: the server's 227 (PASV) and 229 (EPSV)
//! replies, the client's PORT and EPRT commands.
//!
//! Contract: every function here is pure and never panics, whatever the bytes; all indexing is
//! bounds-checked and numbers are parsed with overflow checks. Out-of-range numbers (an address
//! byte or a port byte above 255, port 0, a port above 65535) reject the line.
//!
//! Decisions, erring towards reading what the most lenient peer would act on, so that a bounce
//! (PORT to a third party) is seen whatever the spelling:
//! - Lines end at LF; the CR of CRLF is removed. RFC 959 says CRLF, but servers accept a bare LF.
//! - Command names are case-insensitive (RFC 959 §5.3.1: `port` is `PORT`).
//! - The six numbers of a 227 reply or a PORT command may have spaces before each number and
//!   anything after the sixth, as `sscanf("%u,%u,%u,%u,%u,%u")`-based peers read them.
//! - The IPv4 address of EPRT is read like `inet_aton` (vsftpd uses it): `|1|127.1|80|` is
//!   127.0.0.1. IPv6 zone ids are rejected. An IPv4-mapped IPv6 address is returned as IPv4.
//! - Addresses are returned as announced, `0.0.0.0` included; whether to trust a 227 address
//!   that differs from the control connection's is the caller's decision.
//! - Telnet IAC sequences on the control connection are not interpreted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::host::{Host, parse_host};

/// Which line announced a data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Server reply 227 to PASV: the client connects to `addr:port`.
    Pasv,
    /// Server reply 229 to EPSV: the client connects to the control connection's server at `port`.
    Epsv,
    /// Client command PORT: the server connects to `addr:port`.
    Port,
    /// Client command EPRT: the server connects to `addr:port`.
    Eprt,
}

/// A data channel endpoint announced on the control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChannel {
    pub kind: Announce,
    /// `None` for EPSV: the same host as the control connection's server.
    pub addr: Option<IpAddr>,
    /// Never 0.
    pub port: u16,
}

/// Reads a server reply line (without or with its line end): a 227 "Entering Passive Mode
/// (h1,h2,h3,h4,p1,p2)" (RFC 959 §4.1.2) or a 229 "Entering Extended Passive Mode (|||port|)"
/// (RFC 2428 §3). `None` for any other line.
pub fn parse_server_line(line: &[u8]) -> Option<DataChannel> {
    let line = strip_line_end(line);
    let (code, text) = line.split_at_checked(3)?;
    // RFC 959 §4.2: the code is followed by SP, or by '-' on the first line of a multi-line reply.
    if !matches!(text.first(), Some(b' ' | b'-')) {
        return None;
    }
    match code {
        b"227" => {
            // RFC 1123 §4.1.2.6: the tuple may come without parentheses, so the client must scan
            // the text for it; take the first place where six numbers parse.
            let (addr, port) = (0..text.len())
                .filter(|&i| starts_number(text, i))
                .find_map(|i| text.get(i..).and_then(parse_tuple))?;
            Some(DataChannel {
                kind: Announce::Pasv,
                addr: Some(IpAddr::V4(addr)),
                port,
            })
        }
        b"229" => {
            let port = (0..text.len()).find_map(|i| text.get(i..).and_then(parse_epsv_port))?;
            Some(DataChannel {
                kind: Announce::Epsv,
                addr: None,
                port,
            })
        }
        _ => None,
    }
}

/// Reads a client command line (without or with its line end): "PORT h1,h2,h3,h4,p1,p2"
/// (RFC 959 §4.1.2) or "EPRT |1|132.235.1.2|6275|" / "EPRT |2|::1|6275|" (RFC 2428 §2).
/// `None` for any other line.
pub fn parse_client_line(line: &[u8]) -> Option<DataChannel> {
    let line = strip_line_end(line);
    let (command, rest) = line.split_at_checked(4)?;
    // RFC 959 §5.3: the command, then SP before its argument.
    let arg = rest.strip_prefix(b" ")?;
    if command.eq_ignore_ascii_case(b"PORT") {
        let (addr, port) = parse_tuple(arg)?;
        Some(DataChannel {
            kind: Announce::Port,
            addr: Some(IpAddr::V4(addr)),
            port,
        })
    } else if command.eq_ignore_ascii_case(b"EPRT") {
        let (addr, port) = parse_eprt_arg(arg)?;
        Some(DataChannel {
            kind: Announce::Eprt,
            addr: Some(addr),
            port,
        })
    } else {
        None
    }
}

/// Splits `payload` into LF-terminated lines, each without its LF and without the CR of a CRLF.
/// Returns the lines and the length of the unterminated tail, which the caller keeps and puts in
/// front of the next segment of the same direction.
pub fn lines(payload: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut rest = payload;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        let (line, tail) = rest.split_at_checked(lf).unwrap_or((rest, &[]));
        out.push(line.strip_suffix(b"\r").unwrap_or(line));
        rest = tail.get(1..).unwrap_or_default();
    }
    (out, rest.len())
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether a number starts at `i`: a digit not preceded by a digit.
fn starts_number(text: &[u8], i: usize) -> bool {
    let is_digit = text.get(i).is_some_and(u8::is_ascii_digit);
    let after_digit = i
        .checked_sub(1)
        .and_then(|p| text.get(p))
        .is_some_and(u8::is_ascii_digit);
    is_digit && !after_digit
}

/// Six comma-separated numbers `h1,h2,h3,h4,p1,p2` at the start of `s`, each at most 255 and
/// optionally preceded by spaces; the port `p1 * 256 + p2` must not be 0. What follows is ignored.
fn parse_tuple(s: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let mut values = [0u8; 6];
    let mut rest = s;
    for (i, slot) in values.iter_mut().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(b",")?;
        }
        let digits_at = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
        let (value, after) = parse_decimal(rest.get(digits_at..)?, 255)?;
        *slot = u8::try_from(value).ok()?;
        rest = after;
    }
    let [a, b, c, d, p1, p2] = values;
    let port = u16::from_be_bytes([p1, p2]);
    (port != 0).then_some((Ipv4Addr::new(a, b, c, d), port))
}

/// A run of decimal digits at the start of `s`, at most `max`, and what follows it.
fn parse_decimal(s: &[u8], max: u32) -> Option<(u32, &[u8])> {
    let len = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let (digits, rest) = s.split_at_checked(len)?;
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for &b in digits {
        value = value.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
        if value > max {
            return None;
        }
    }
    Some((value, rest))
}

/// RFC 2428 §2: the delimiter is any of ASCII 33 to 126; '|' is usual. Letters and digits would
/// make the fields ambiguous and no implementation uses them, so they are refused.
fn is_delimiter(b: u8) -> bool {
    (33..=126).contains(&b) && !b.is_ascii_alphanumeric()
}

/// RFC 2428 §3: `<d><d><d><tcp-port><d>` at the start of `s` (the net-prt and net-addr fields are
/// empty in a 229 reply), with the same delimiter throughout.
fn parse_epsv_port(s: &[u8]) -> Option<u16> {
    let [d, d2, d3, rest @ ..] = s else {
        return None;
    };
    if !is_delimiter(*d) || d2 != d || d3 != d {
        return None;
    }
    let (port, after) = parse_decimal(rest, u32::from(u16::MAX))?;
    if after.first() != Some(d) || port == 0 {
        return None;
    }
    u16::try_from(port).ok()
}

/// RFC 2428 §2: `<d><net-prt><d><net-addr><d><tcp-port><d>`, net-prt 1 (IPv4) or 2 (IPv6).
fn parse_eprt_arg(arg: &[u8]) -> Option<(IpAddr, u16)> {
    let (&d, rest) = arg.split_first()?;
    if !is_delimiter(d) {
        return None;
    }
    let mut fields = rest.split(|&b| b == d);
    let (proto, addr, port) = (fields.next()?, fields.next()?, fields.next()?);
    fields.next()?; // the closing delimiter must be there
    let addr = std::str::from_utf8(addr).ok()?;
    let addr = match proto {
        b"1" => match parse_host(addr)? {
            (Host::Ip(IpAddr::V4(v4)), None) => IpAddr::V4(v4),
            _ => return None,
        },
        b"2" => addr.parse::<Ipv6Addr>().ok()?.to_canonical(),
        _ => return None,
    };
    let (port, after) = parse_decimal(port, u32::from(u16::MAX))?;
    if !after.is_empty() || port == 0 {
        return None;
    }
    Some((addr, u16::try_from(port).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan(kind: Announce, addr: Option<&str>, port: u16) -> Option<DataChannel> {
        Some(DataChannel {
            kind,
            addr: addr.map(|a| a.parse().unwrap()),
            port,
        })
    }

    #[test]
    fn pasv_replies() {
        let want = chan(Announce::Pasv, Some("172.23.0.2"), 21001);
        assert_eq!(
            parse_server_line(b"227 Entering Passive Mode (172,23,0,2,82,9)."),
            want
        );
        assert_eq!(
            parse_server_line(b"227 Entering Passive Mode (172,23,0,2,82,9).\r\n"),
            want
        );
        // RFC 1123 §4.1.2.6: no parentheses, other texts, spaces.
        assert_eq!(
            parse_server_line(b"227 Entering Passive Mode 172,23,0,2,82,9"),
            want
        );
        assert_eq!(parse_server_line(b"227 =172,23,0,2,82,9"), want);
        assert_eq!(
            parse_server_line(b"227 Passive (172, 23, 0, 2, 82, 9)"),
            want
        );
        assert_eq!(parse_server_line(b"227-Passive (172,23,0,2,82,9)"), want);
        // Digits before the tuple that do not start one are skipped.
        assert_eq!(parse_server_line(b"227 Mode 2 ok (172,23,0,2,82,9)"), want);
        assert_eq!(parse_server_line(b"227 1,2,3 (172,23,0,2,82,9)"), want);
        assert_eq!(
            parse_server_line(b"227 (0,0,0,0,0,1)"),
            chan(Announce::Pasv, Some("0.0.0.0"), 1)
        );
        assert_eq!(
            parse_server_line(b"227 (255,255,255,255,255,255)"),
            chan(Announce::Pasv, Some("255.255.255.255"), 65535)
        );
        assert_eq!(
            parse_server_line(b"227 (010,001,000,001,000,080)"),
            chan(Announce::Pasv, Some("10.1.0.1"), 80)
        );
        for bad in [
            &b"227 Entering Passive Mode (256,23,0,2,82,9)"[..],
            b"227 Entering Passive Mode (172,23,0,2,82,256)",
            b"227 Entering Passive Mode (172,23,0,2,0,0)",
            b"227 Entering Passive Mode (172,23,0,2,82)",
            b"227 Entering Passive Mode (172,23,0,2,82,)",
            b"227 Entering Passive Mode (172,23,0,-2,82,9)",
            b"227 (99999999999999999999,1,1,1,1,1)",
            b"227 Entering Passive Mode",
            b"227",
            b"227(172,23,0,2,82,9)",
            b"200 (172,23,0,2,82,9)",
            b"2",
            b"",
        ] {
            assert_eq!(
                parse_server_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn epsv_replies() {
        let want = chan(Announce::Epsv, None, 6446);
        assert_eq!(
            parse_server_line(b"229 Entering Extended Passive Mode (|||6446|)"),
            want
        );
        assert_eq!(
            parse_server_line(b"229 Entering Extended Passive Mode (|||6446|)\r\n"),
            want
        );
        assert_eq!(parse_server_line(b"229 EPSV ok (!!!6446!)"), want);
        assert_eq!(parse_server_line(b"229 |||6446|"), want);
        assert_eq!(
            parse_server_line(b"229 (|||65535|)"),
            chan(Announce::Epsv, None, 65535)
        );
        for bad in [
            &b"229 Entering Extended Passive Mode (|||0|)"[..],
            b"229 Entering Extended Passive Mode (|||65536|)",
            b"229 Entering Extended Passive Mode (|||6446)",
            b"229 Entering Extended Passive Mode (||6446|)",
            b"229 Entering Extended Passive Mode (|!|6446|)",
            b"229 Entering Extended Passive Mode (|||6446!)",
            b"229 Entering Extended Passive Mode (|||x|)",
            b"229 Entering Extended Passive Mode (aaa6446a)",
            b"229 Entering Extended Passive Mode (|1|1.2.3.4|6446|)",
            b"229 Entering Extended Passive Mode (   6446 )",
            b"228 Entering Extended Passive Mode (|||6446|)",
        ] {
            assert_eq!(
                parse_server_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn port_commands() {
        let want = chan(Announce::Port, Some("172.23.0.3"), 44671);
        assert_eq!(parse_client_line(b"PORT 172,23,0,3,174,127"), want);
        assert_eq!(parse_client_line(b"PORT 172,23,0,3,174,127\r\n"), want);
        assert_eq!(parse_client_line(b"port 172,23,0,3,174,127"), want);
        assert_eq!(parse_client_line(b"PORT  172, 23,0,3,174,127 "), want);
        assert_eq!(
            parse_client_line(b"PORT 2,2,2,3,0,80"),
            chan(Announce::Port, Some("2.2.2.3"), 80)
        );
        for bad in [
            &b"PORT 172,23,0,3,174"[..],
            b"PORT 172,23,0,3,174,256",
            b"PORT 172,23,0,300,174,127",
            b"PORT 172,23,0,3,0,0",
            b"PORT 172;23;0;3;174;127",
            b"PORT",
            b"PORT ",
            b"PORT172,23,0,3,174,127",
            b"PASV",
            b"PORTS 1,2,3,4,5,6",
            b"XPORT 1,2,3,4,5,6",
            b"",
        ] {
            assert_eq!(
                parse_client_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn eprt_commands() {
        assert_eq!(
            parse_client_line(b"EPRT |1|132.235.1.2|6275|"),
            chan(Announce::Eprt, Some("132.235.1.2"), 6275)
        );
        assert_eq!(
            parse_client_line(b"eprt |2|1080::8:800:200C:417A|5282|\r\n"),
            chan(Announce::Eprt, Some("1080::8:800:200c:417a"), 5282)
        );
        assert_eq!(
            parse_client_line(b"EPRT !2!::1!21!"),
            chan(Announce::Eprt, Some("::1"), 21)
        );
        // inet_aton spellings and mapped addresses name IPv4 addresses.
        assert_eq!(
            parse_client_line(b"EPRT |1|127.1|80|"),
            chan(Announce::Eprt, Some("127.0.0.1"), 80)
        );
        assert_eq!(
            parse_client_line(b"EPRT |2|::ffff:10.0.0.1|80|"),
            chan(Announce::Eprt, Some("10.0.0.1"), 80)
        );
        for bad in [
            &b"EPRT |1|132.235.1.2|6275"[..],
            b"EPRT |1|132.235.1.2|0|",
            b"EPRT |1|132.235.1.2|65536|",
            b"EPRT |1|132.235.1.2|62x75|",
            b"EPRT |1|::1|6275|",
            b"EPRT |2|132.235.1.2|6275|",
            b"EPRT |3|132.235.1.2|6275|",
            b"EPRT |1|example.org|6275|",
            b"EPRT |1|1.2.3.4:80|6275|",
            b"EPRT |2|fe80::1%eth0|6275|",
            b"EPRT |1|256.1.1.1|6275|",
            b"EPRT 1132.235.1.216275",
            b"EPRT a1a132.235.1.2a6275a",
            b"EPRT ||||",
            b"EPRT |",
            b"EPRT",
        ] {
            assert_eq!(
                parse_client_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn splitting_lines() {
        let (l, tail) = lines(b"USER a\r\nPASS b\r\nPO");
        assert_eq!((l, tail), (vec![&b"USER a"[..], b"PASS b"], 2));
        let (l, tail) = lines(b"PORT 1,2,3,4,5,6\n\r\n");
        assert_eq!((l, tail), (vec![&b"PORT 1,2,3,4,5,6"[..], b""], 0));
        let (l, tail) = lines(b"");
        assert_eq!((l.len(), tail), (0, 0));
        let (l, tail) = lines(b"no end\r");
        assert_eq!((l.len(), tail), (0, 7));
        let (l, tail) = lines(b"a\r\r\n");
        assert_eq!((l, tail), (vec![&b"a\r"[..]], 0));
    }

    #[test]
    fn never_panics_on_mutations() {
        let bases: [&[u8]; 4] = [
            b"227 Entering Passive Mode (172,23,0,2,82,9).\r\n",
            b"229 Entering Extended Passive Mode (|||6446|)\r\n",
            b"PORT 172,23,0,3,174,127\r\n",
            b"EPRT |2|::1|6275|\r\n",
        ];
        for base in bases {
            for i in 0..base.len() {
                for s in [0u8, b' ', b',', b'|', b'9', b'\n', 0xff] {
                    let mut m = base.to_vec();
                    m[i] = s;
                    for bytes in [&m[..], &m[..i]] {
                        let _ = parse_server_line(bytes);
                        let _ = parse_client_line(bytes);
                        let _ = lines(bytes);
                    }
                }
            }
        }
    }
}

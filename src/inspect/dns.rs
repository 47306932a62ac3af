//! DNS queries: the question of a query message (RFC 1035 §4.1), over UDP or TCP.
//!
//! Promise: no input panics, and the work is bounded by the message's length (a name is read label by
//! label, at most 255 octets of it, and every compression pointer must point before the label that
//! holds it, so pointer loops end). Only what a policy and the DNS log need is read: the header's id,
//! QR and OPCODE bits and QDCOUNT, and the first question's name and type.
//!
//! Why not a crate: hickory-proto parses whole messages into owned records (far more code than the one
//! question we read), and the small crates (simple-dns, dns-parser) build a typed name that the tunnel
//! tools' labels (raw bytes, base32/64/128) must pass first; what we need is the exact octets of each
//! label, in the master-file text form below, and a parser whose bounds we can state.
//!
//! A name's text: labels joined by `.`, lower-cased; inside a label, ASCII letters, digits, `-` and `_`
//! stand for themselves and every other octet is written `\DDD` (its decimal value, RFC 1035 §5.1), so
//! a label holding a `.` never reads as two. The root name is `.`.

use serde::{Deserialize, Serialize};

/// The first question of a DNS query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub id: u16,
    /// The name in text form (see the module docs), without the trailing dot.
    pub name: String,
    /// The labels' lengths on the wire, leftmost first (the root's empty label not included).
    pub label_lens: Vec<u8>,
    pub qtype: u16,
    /// The other questions' names and types, when QDCOUNT is more than 1 (servers seldom answer
    /// those, but a tunnel's own server reads what it likes): a policy must see them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<(String, u16)>,
}

/// Questions read in one message at most; a query with more is malformed to us.
const MAX_QUESTIONS: u16 = 16;

/// Why a message is not a query we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// More bytes could complete it (TCP: the length prefix announces more than arrived).
    Incomplete,
    /// A response, or an opcode other than QUERY, or no question.
    NotQuery,
    /// Cut short, a label type that is not defined, a pointer that does not point back, a name longer
    /// than 255 octets.
    Malformed,
}

/// RFC 1035 §4.1.1: the header is 12 octets.
const HEADER: usize = 12;
/// RFC 1035 §2.3.4: a name is at most 255 octets on the wire, length octets included.
const MAX_NAME: usize = 255;

/// Reads a query sent over UDP: the datagram is the message.
pub fn parse_query(msg: &[u8]) -> Result<Query, DnsError> {
    let header = msg.get(..HEADER).ok_or(DnsError::Malformed)?;
    let id = u16::from_be_bytes([header[0], header[1]]);
    let flags = header[2];
    // QR (bit 7) is 0 in a query; OPCODE (bits 6-3) 0 is a standard QUERY.
    if flags & 0x80 != 0 || (flags >> 3) & 0x0f != 0 {
        return Err(DnsError::NotQuery);
    }
    let count = u16::from_be_bytes([header[4], header[5]]);
    if count == 0 {
        return Err(DnsError::NotQuery);
    }
    if count > MAX_QUESTIONS {
        return Err(DnsError::Malformed);
    }
    let (name, label_lens, qtype, mut at) = read_question(msg, HEADER)?;
    let mut more = Vec::new();
    for _ in 1..count {
        let (name, _, qtype, end) = read_question(msg, at)?;
        more.push((name, qtype));
        at = end;
    }
    Ok(Query {
        id,
        name,
        label_lens,
        qtype,
        more,
    })
}

/// One question at `at`: its name, labels' lengths, QTYPE, and where the next begins.
fn read_question(msg: &[u8], at: usize) -> Result<(String, Vec<u8>, u16, usize), DnsError> {
    let (name, label_lens, end) = read_name(msg, at)?;
    // QTYPE, then QCLASS (RFC 1035 §4.1.2), which must be there too.
    let qtype = msg
        .get(end..end + 4)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsError::Malformed)?;
    Ok((name, label_lens, qtype, end + 4))
}

/// Reads the first query of a TCP stream: a two-octet length, then the message (RFC 1035 §4.2.2).
pub fn parse_tcp_query(stream: &[u8]) -> Result<Query, DnsError> {
    let len = match stream.get(..2) {
        Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
        None => return Err(DnsError::Incomplete),
    };
    match stream.get(2..2 + len) {
        Some(msg) => parse_query(msg),
        None => Err(DnsError::Incomplete),
    }
}

/// Reads the name at `at`: its text, its labels' lengths, and the offset just past it where it
/// started (past the first pointer, if it has one).
fn read_name(msg: &[u8], at: usize) -> Result<(String, Vec<u8>, usize), DnsError> {
    let mut text = String::new();
    let mut lens = Vec::new();
    let mut pos = at;
    let mut end = None;
    let mut wire = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Malformed)?;
        match len & 0xc0 {
            0x00 => {}
            // RFC 1035 §4.1.4: a pointer, 14 bits of offset. It must point before itself, so each
            // pointer followed moves strictly backwards and the walk ends.
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(DnsError::Malformed)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= pos {
                    return Err(DnsError::Malformed);
                }
                end.get_or_insert(pos + 2);
                pos = target;
                continue;
            }
            // 0x40 and 0x80: extended label types (RFC 6891 §5 deprecates the only one defined).
            _ => return Err(DnsError::Malformed),
        }
        wire += 1 + usize::from(len);
        if wire > MAX_NAME {
            return Err(DnsError::Malformed);
        }
        if len == 0 {
            let end = end.unwrap_or(pos + 1);
            if text.is_empty() {
                text.push('.');
            }
            return Ok((text, lens, end));
        }
        let label = msg
            .get(pos + 1..pos + 1 + usize::from(len))
            .ok_or(DnsError::Malformed)?;
        if !text.is_empty() {
            text.push('.');
        }
        push_label(&mut text, label);
        lens.push(len);
        pos += 1 + usize::from(len);
    }
}

fn push_label(text: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            text.push(char::from(b.to_ascii_lowercase()));
        } else {
            text.push_str(&format!("\\{b:03}"));
        }
    }
}

/// RR type mnemonics for `qtype=` and the logs (RFC 1035 §3.2.2, RFC 3596, RFC 2782, RFC 6891, RFC
/// 4034, RFC 9460, RFC 8659).
const TYPES: [(&str, u16); 22] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("NULL", 10),
    ("WKS", 11),
    ("PTR", 12),
    ("HINFO", 13),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("SRV", 33),
    ("NAPTR", 35),
    ("OPT", 41),
    ("DS", 43),
    ("RRSIG", 46),
    ("DNSKEY", 48),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("AXFR", 252),
    ("ANY", 255),
    ("CAA", 257),
];

/// The mnemonic of an RR type, or `TYPEnnn` (RFC 3597 §5).
pub fn type_name(qtype: u16) -> String {
    TYPES
        .iter()
        .find(|(_, n)| *n == qtype)
        .map(|(name, _)| (*name).to_string())
        .unwrap_or_else(|| format!("TYPE{qtype}"))
}

/// An RR type from its mnemonic (case-insensitive), `TYPEnnn`, or a decimal number.
pub fn parse_type(s: &str) -> Option<u16> {
    if let Some((_, n)) = TYPES.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)) {
        return Some(*n);
    }
    let digits = match s.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("TYPE") => &s[4..],
        _ => s,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query of the-tcpdump-group's dns_udp.pcap (frame 1: www.tcpdump.org, type 1, as tshark
    /// shows it in ../shared/pcaps-real/truth/dns_udp.pcap.txt), written out by hand.
    fn www_tcpdump_org() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["www", "tcpdump", "org"] {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[test]
    fn reads_the_question() {
        let q = parse_query(&www_tcpdump_org()).unwrap();
        assert_eq!(q.name, "www.tcpdump.org");
        assert_eq!(q.qtype, 1);
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.label_lens, [3, 7, 3]);
        let mut tcp = vec![0, www_tcpdump_org().len() as u8];
        tcp.extend(www_tcpdump_org());
        assert_eq!(parse_tcp_query(&tcp), Ok(q));
        assert_eq!(
            parse_tcp_query(&tcp[..tcp.len() - 1]),
            Err(DnsError::Incomplete)
        );
    }

    #[test]
    fn every_prefix_is_an_error_not_a_panic() {
        let m = www_tcpdump_org();
        for n in 0..m.len() {
            assert_eq!(parse_query(&m[..n]), Err(DnsError::Malformed), "{n}");
        }
    }

    #[test]
    fn responses_and_other_opcodes_are_not_queries() {
        let mut m = www_tcpdump_org();
        m[2] = 0x81;
        assert_eq!(parse_query(&m), Err(DnsError::NotQuery));
        m[2] = 0x28; // opcode 5, UPDATE
        assert_eq!(parse_query(&m), Err(DnsError::NotQuery));
        let mut none = www_tcpdump_org();
        none[5] = 0;
        assert_eq!(parse_query(&none), Err(DnsError::NotQuery));
    }

    #[test]
    fn pointers_must_point_back() {
        // A pointer to itself, and two that point at each other: loops the parser must refuse.
        let mut m = www_tcpdump_org()[..12].to_vec();
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m), Err(DnsError::Malformed));
        let mut m = www_tcpdump_org()[..12].to_vec();
        m.extend_from_slice(&[1, b'a', 0xc0, 16, 0xc0, 12, 0, 1]);
        assert_eq!(parse_query(&m), Err(DnsError::Malformed));
        // A pointer back to a name before it is followed (as in a response's answers).
        let mut m = www_tcpdump_org();
        let first = m.len();
        m.extend_from_slice(&[1, b'x', 0xc0, 12]);
        let (name, lens, end) = read_name(&m, first).unwrap();
        assert_eq!(
            (name.as_str(), lens, end),
            ("x.www.tcpdump.org", vec![1, 3, 7, 3], first + 4)
        );
    }

    #[test]
    fn odd_octets_are_escaped_and_names_are_bounded() {
        let mut m = www_tcpdump_org()[..12].to_vec();
        m.extend_from_slice(&[3, b'a', b'.', 0xff, 3, b'O', b'r', b'G', 0, 0, 10, 0, 1]);
        let q = parse_query(&m).unwrap();
        assert_eq!(q.name, "a\\046\\255.org");
        assert_eq!(q.qtype, 10);
        // Five 63-octet labels are 320 octets: over RFC 1035's 255.
        let mut long = www_tcpdump_org()[..12].to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&long), Err(DnsError::Malformed));
    }

    #[test]
    fn every_question_is_read() {
        // QDCOUNT 2: a harmless first question and a second one for a tunnel's domain.
        let mut m = www_tcpdump_org();
        m[5] = 2;
        m.extend_from_slice(&[1, b'x', 1, b't', 0, 0, 10, 0, 1]);
        let q = parse_query(&m).unwrap();
        assert_eq!(q.name, "www.tcpdump.org");
        assert_eq!(q.more, [("x.t".to_string(), 10)]);
        // A count the message does not hold is malformed, not a query of fewer questions.
        m[5] = 3;
        assert_eq!(parse_query(&m), Err(DnsError::Malformed));
    }

    #[test]
    fn type_names_and_numbers() {
        assert_eq!(parse_type("null"), Some(10));
        assert_eq!(parse_type("TXT"), Some(16));
        assert_eq!(parse_type("TYPE65"), Some(65));
        assert_eq!(parse_type("99"), Some(99));
        assert_eq!(parse_type("bogus"), None);
        assert_eq!(parse_type("70000"), None);
        assert_eq!(type_name(10), "NULL");
        assert_eq!(type_name(99), "TYPE99");
    }
}

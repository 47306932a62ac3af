//! Which application protocol a client speaks, from the first payload bytes of its flow.
//!
//! Contract: [`detect`] never panics on any input: untrusted bytes are read with bounds-checked
//! `get`, never indexed. No IO, no clock, no state: the same bytes always give the same answer.
//!
//! Each protocol has a signature, a test on the first bytes that says `Match`, `No`, or `Partial`
//! (the bytes so far are a strict prefix of something that would match). [`detect`] returns the
//! first matching protocol in a fixed order, else [`Detection::NeedMore`] when the flow is TCP and
//! some signature is still partial, else [`App::Encrypted`] when the bytes look uniformly random
//! (see [`looks_encrypted`]), else [`App::Unknown`]. A UDP datagram is whole, so UDP is never
//! `NeedMore`. No signature needs more than [`DECIDE_BY`] bytes: past that, TCP is decided too.
//!
//! Signatures are deliberately strict (exact lengths, reserved bits, plausible counts): a wrong
//! name is worse for a filter than `Unknown`, and a client that tunnels through an allowed
//! protocol must not be able to look like it cheaply. What is not recognised:
//! - SOCKS5 clients that pipeline anything but a SOCKS5 request after the greeting, SOCKS4 clients
//!   that send data before the reply;
//! - a TCP flow caught mid-stream (a server's response or TLS application data as the first bytes);
//! - HTTP methods outside RFC 9110 §9 (WebDAV etc.), SSLv2-format hellos, DTLS, QUIC versions other
//!   than 1, 2, the IETF drafts and version negotiation.

use super::tls;

/// Past this many client bytes, a TCP flow is decided even if a signature could still match.
/// The longest signature, an OpenVPN hard reset over TCP, fits (2 + 1280 bytes).
pub const DECIDE_BY: usize = 2048;

/// OpenVPN control packet length bounds: 14 bytes is a hard reset with no tls-auth (opcode, session
/// id, empty ack array, packet id); a tls-crypt-v2 V3 reset carries a wrapped key of ≤ 1024 bytes.
const OPENVPN_MIN_LEN: usize = 14;
const OPENVPN_MAX_LEN: usize = 1280;
/// Bounds of a client's first DNS message over TCP: header, root name, type and class at least; a
/// query (even an UPDATE) of more than 4 KiB is not what a client opens a connection with, and the
/// bound keeps text protocols from reading as a length prefix ("GE" is 18245).
const DNS_TCP_MIN_LEN: usize = 17;
const DNS_TCP_MAX_LEN: usize = 4096;

/// An application protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum App {
    Http,
    Tls,
    Ssh,
    OpenVpn,
    WireGuard,
    Socks,
    Quic,
    Dns,
    Ftp,
    /// No known protocol, and the first payload looks uniformly random ([`looks_encrypted`]).
    Encrypted,
    Unknown,
}

impl App {
    /// Every value, in declaration order.
    pub const ALL: [App; 11] = [
        App::Http,
        App::Tls,
        App::Ssh,
        App::OpenVpn,
        App::WireGuard,
        App::Socks,
        App::Quic,
        App::Dns,
        App::Ftp,
        App::Encrypted,
        App::Unknown,
    ];

    /// A stable lower-case name, for policies, reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            App::Http => "http",
            App::Tls => "tls",
            App::Ssh => "ssh",
            App::OpenVpn => "openvpn",
            App::WireGuard => "wireguard",
            App::Socks => "socks",
            App::Quic => "quic",
            App::Dns => "dns",
            App::Ftp => "ftp",
            App::Encrypted => "encrypted",
            App::Unknown => "unknown",
        }
    }

    /// The app whose [`App::name`] this is, ignoring ASCII case.
    pub(crate) fn from_name(name: &str) -> Option<App> {
        App::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

/// The transport the payload came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// The outcome of [`detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    App(App),
    /// TCP only: the bytes so far are a strict prefix of some signature; call again with more.
    NeedMore,
}

/// How far a signature matches the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Match,
    /// A strict prefix of a match: more bytes could make it one.
    Partial,
    No,
}

impl Sig {
    /// The best of several alternatives.
    fn any(sigs: impl IntoIterator<Item = Sig>) -> Sig {
        let mut best = Sig::No;
        for s in sigs {
            match s {
                Sig::Match => return Sig::Match,
                Sig::Partial => best = Sig::Partial,
                Sig::No => {}
            }
        }
        best
    }

    fn from_bool(ok: bool) -> Sig {
        if ok { Sig::Match } else { Sig::No }
    }
}

/// A signature test: the client's bytes, and the server's first payload if it spoke first.
type Signature = fn(&[u8], Option<&[u8]>) -> Sig;

/// What protocol the client speaks, from the client's first payload bytes (TCP: the stream so far
/// from the start; UDP: the first datagram). `server_first` is the server's first payload if it
/// spoke first (SSH servers send their banner first, FTP servers send "220 ").
pub fn detect(t: Transport, client: &[u8], server_first: Option<&[u8]>) -> Detection {
    let sigs: &[(App, Signature)] = match t {
        Transport::Tcp => &[
            (App::Ssh, ssh),
            (App::Tls, tls_record),
            (App::Http, http),
            (App::Dns, dns_tcp),
            (App::Socks, socks),
            (App::OpenVpn, openvpn_tcp),
            (App::Ftp, ftp),
        ],
        Transport::Udp => &[
            (App::Quic, quic),
            (App::WireGuard, wireguard),
            (App::Dns, dns_udp),
            (App::OpenVpn, openvpn_udp),
        ],
    };
    let mut partial = false;
    for (app, sig) in sigs {
        match sig(client, server_first) {
            Sig::Match => return Detection::App(*app),
            Sig::Partial => partial = true,
            Sig::No => {}
        }
    }
    if partial && t == Transport::Tcp && client.len() < DECIDE_BY {
        Detection::NeedMore
    } else if looks_encrypted(client) {
        Detection::App(App::Encrypted)
    } else {
        Detection::App(App::Unknown)
    }
}

/// Fewer bytes than this say too little about their randomness: never [`App::Encrypted`]. (Ours, not
/// the Great Firewall's: one random byte has exactly 4 bits set a quarter of the time.)
pub const ENCRYPTED_MIN_LEN: usize = 16;
/// Wu et al. Ex1: an average of at most 3.4 or at least 4.6 set bits per byte is exempt (in tenths).
const POPCOUNT_LOW_TENTHS: usize = 34;
const POPCOUNT_HIGH_TENTHS: usize = 46;
/// Wu et al. Ex2: the first 6 bytes printable ASCII are exempt.
const PRINTABLE_PREFIX: usize = 6;
/// Wu et al. Ex4: more than 20 contiguous printable ASCII bytes are exempt.
const PRINTABLE_RUN: usize = 20;

/// Whether a first payload that no signature matched looks fully encrypted: the passive rule the
/// Great Firewall of China was measured to apply to the first data packet of a connection (Wu et
/// al., "How the Great Firewall of China Detects and Blocks Fully Encrypted Traffic", USENIX Security
/// 2023, §4, Algorithm 1). The bytes are exempt, and so not `encrypted`, when any of these holds:
///
/// - Ex1: the average number of set bits per byte is at most 3.4 or at least 4.6 (random bytes
///   average 4);
/// - Ex2: the first 6 bytes are printable ASCII (0x20 to 0x7e);
/// - Ex3: more than half of the bytes are printable ASCII;
/// - Ex4: more than 20 contiguous bytes are printable ASCII;
/// - Ex5: they start like a known protocol: every signature of [`detect`] is tried first, and a TLS
///   record header of any content type (20 to 23, version 3.0 to 3.4) is exempt too, as it is for
///   the Great Firewall, so a TLS connection caught in its middle is not called encrypted.
///
/// outgate adds one rule of its own: fewer than [`ENCRYPTED_MIN_LEN`] bytes are exempt. The rule
/// sees only bytes, so a QUIC connection caught in its middle (short-header packets) or another
/// encrypted protocol without a signature here looks the same as obfs4 or Shadowsocks.
pub fn looks_encrypted(b: &[u8]) -> bool {
    let len = b.len();
    if len < ENCRYPTED_MIN_LEN {
        return false;
    }
    let ones: usize = b.iter().map(|x| x.count_ones() as usize).sum();
    // Ex1, in integers: ones / len <= 3.4  <=>  10 * ones <= 34 * len.
    if ones * 10 <= POPCOUNT_LOW_TENTHS * len || ones * 10 >= POPCOUNT_HIGH_TENTHS * len {
        return false;
    }
    let printable = |x: &u8| (0x20..=0x7e).contains(x);
    if b.iter().take(PRINTABLE_PREFIX).all(printable) {
        return false;
    }
    if b.iter().filter(|x| printable(x)).count() * 2 > len {
        return false;
    }
    let mut run = 0usize;
    for x in b {
        run = if printable(x) { run + 1 } else { 0 };
        if run > PRINTABLE_RUN {
            return false;
        }
    }
    let tls_header = matches!(b, [20..=23, 3, 0..=4, ..]);
    !tls_header
}

/// `bytes` against a literal: `Match` if it starts with it, `Partial` if it is a strict prefix.
fn literal(bytes: &[u8], lit: &[u8]) -> Sig {
    if bytes.starts_with(lit) {
        Sig::Match
    } else if lit.starts_with(bytes) {
        Sig::Partial
    } else {
        Sig::No
    }
}

/// Like [`literal`], ignoring ASCII case.
fn literal_nocase(bytes: &[u8], lit: &[u8]) -> Sig {
    let n = bytes.len().min(lit.len());
    let (Some(head), Some(lit_head)) = (bytes.get(..n), lit.get(..n)) else {
        return Sig::No;
    };
    if !head.eq_ignore_ascii_case(lit_head) {
        Sig::No
    } else if n == lit.len() {
        Sig::Match
    } else {
        Sig::Partial
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?)? {
        &[hi, lo] => Some(u16::from_be_bytes([hi, lo])),
        _ => None,
    }
}

/// A two-byte big-endian length prefix within `min..=max`: the length, or `Err(Partial)` while the
/// bytes so far could still make one (a lone first byte small enough), or `Err(No)`.
fn length_prefix(b: &[u8], min: usize, max: usize) -> Result<usize, Sig> {
    match (b.first(), be16(b, 0)) {
        (_, Some(len)) if (min..=max).contains(&usize::from(len)) => Ok(usize::from(len)),
        (_, Some(_)) => Err(Sig::No),
        (Some(&hi), None) if usize::from(hi) << 8 > max => Err(Sig::No),
        _ => Err(Sig::Partial),
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    match b.get(at..at.checked_add(4)?)? {
        &[a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
        _ => None,
    }
}

/// RFC 4253 §4.2: both sides send an identification string starting "SSH-"; the client sends it
/// first thing, the server may send other lines before it, so only its first bytes are trusted when
/// they are the banner.
fn ssh(client: &[u8], server_first: Option<&[u8]>) -> Sig {
    if server_first.is_some_and(|s| s.starts_with(b"SSH-")) {
        return Sig::Match;
    }
    literal(client, b"SSH-")
}

/// RFC 8446 §5.1: a TLSPlaintext header: handshake (22), legacy_record_version 0x0300 to 0x0304,
/// and a length from 1 to 2^14 + 2048 (RFC 5246 §6.2.3).
fn tls_record(client: &[u8], _: Option<&[u8]>) -> Sig {
    if !tls::looks_like_tls(client) && !client.is_empty() {
        return Sig::No;
    }
    match be16(client, 3) {
        None => Sig::Partial,
        Some(len) => Sig::from_bool(len != 0 && usize::from(len) <= tls::MAX_RECORD_LEN),
    }
}

/// RFC 9110 §9.1 request methods (§9.3 defines these, RFC 5789 adds PATCH), each followed by the
/// single space of a request-line (RFC 9112 §3).
const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
];

/// RFC 9113 §3.4: the HTTP/2 connection preface of a client with prior knowledge.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/1.x request line's method and space, or the HTTP/2 preface. Read the way a lenient
/// server reads it, so that no request a server would serve escapes detection: empty lines before
/// the request line are skipped (RFC 9112 §2.2 lets servers ignore them), and the method's case is
/// ignored although RFC 9110 §9.1 makes it case-sensitive (`http::parse_request` reads `get` too).
fn http(client: &[u8], _: Option<&[u8]>) -> Sig {
    let start = client.iter().position(|&b| b != b'\r' && b != b'\n');
    let Some(request) = start.and_then(|i| client.get(i..)) else {
        // Only line ends so far: a request line may still come.
        return Sig::Partial;
    };
    Sig::any(
        HTTP_METHODS
            .iter()
            .map(|m| literal_nocase(request, m))
            .chain(std::iter::once(literal(request, HTTP2_PREFACE))),
    )
}

/// RFC 1035 §4.1.1 header and §4.1.2 first question of a query, as far as `m` goes (`Partial` when
/// `m` ends before the question does).
fn dns_message(m: &[u8]) -> Sig {
    // §4.1.1: flags byte 2 is QR(1) OPCODE(4) AA TC RD. A client sends queries (QR = 0) with
    // opcode QUERY (0), IQUERY (1, obsolete), STATUS (2), NOTIFY (4, RFC 1996) or UPDATE (5,
    // RFC 2136).
    if let Some(&flags) = m.get(2) {
        let opcode = (flags >> 3) & 0x0f;
        if flags & 0x80 != 0 || !matches!(opcode, 0 | 1 | 2 | 4 | 5) {
            return Sig::No;
        }
    }
    // QDCOUNT: one question in practice; a few more are tolerated, none or many are not DNS.
    match be16(m, 4) {
        None => return Sig::Partial,
        Some(n) if !(1..=16).contains(&n) => return Sig::No,
        Some(_) => {}
    }
    // §3.1 / §4.1.2: QNAME is a sequence of labels of 1..=63 bytes ending with the root's zero
    // length, ≤ 255 bytes in all. A compression pointer (§4.1.4, top bits 11) in the first name
    // could only point into the header, and the 01/10 prefixes are reserved: neither is DNS here.
    let mut pos = 12usize;
    loop {
        let Some(&len) = m.get(pos) else {
            return Sig::Partial;
        };
        if len == 0 {
            break;
        }
        if len > 63 {
            return Sig::No;
        }
        pos += 1 + usize::from(len);
        if pos - 12 >= 255 {
            return Sig::No;
        }
    }
    // QTYPE (any) and QCLASS: IN (1), CH (3), HS (4), NONE (254, RFC 2136), ANY (255); mDNS sets the
    // top bit to ask for a unicast reply (RFC 6762 §5.4).
    match be16(m, pos + 3) {
        None => Sig::Partial,
        Some(class) => Sig::from_bool(matches!(class & 0x7fff, 1 | 3 | 4 | 254 | 255)),
    }
}

/// RFC 1035 §4.2.1: a DNS query in one UDP datagram.
fn dns_udp(client: &[u8], _: Option<&[u8]>) -> Sig {
    match dns_message(client) {
        Sig::Partial => Sig::No,
        s => s,
    }
}

/// RFC 1035 §4.2.2 (RFC 7766 §8): over TCP each message is preceded by its two-byte length.
fn dns_tcp(client: &[u8], _: Option<&[u8]>) -> Sig {
    let len = match length_prefix(client, DNS_TCP_MIN_LEN, DNS_TCP_MAX_LEN) {
        Ok(len) => len,
        Err(sig) => return sig,
    };
    let msg = client.get(2..).unwrap_or_default();
    match msg.get(..len) {
        // The whole message is here: the question must fit in it.
        Some(whole) => match dns_message(whole) {
            Sig::Partial => Sig::No,
            s => s,
        },
        None => dns_message(msg),
    }
}

/// SOCKS5 (RFC 1928 §3) greeting, or a SOCKS4 / SOCKS4a request (the SOCKS4 protocol description
/// by Ying-Da Lee, and its 4A extension). Either client then waits for the server, so nothing may
/// follow, except a pipelined SOCKS5 request (RFC 1928 §4).
fn socks(client: &[u8], _: Option<&[u8]>) -> Sig {
    match client.first() {
        None => Sig::Partial,
        Some(5) => socks5(client),
        Some(4) => socks4(client),
        Some(_) => Sig::No,
    }
}

/// VER(5) NMETHODS(1..=255) METHODS: 0xFF means "no acceptable methods" and is never offered.
fn socks5(c: &[u8]) -> Sig {
    let Some(&n) = c.get(1) else {
        return Sig::Partial;
    };
    if n == 0 {
        return Sig::No;
    }
    let end = 2 + usize::from(n);
    let methods = c.get(2..end.min(c.len())).unwrap_or_default();
    if methods.contains(&0xff) {
        return Sig::No;
    }
    let Some(rest) = c.get(end..) else {
        return Sig::Partial;
    };
    if rest.is_empty() {
        return Sig::Match;
    }
    // RFC 1928 §4: VER(5) CMD(1 CONNECT, 2 BIND, 3 UDP ASSOCIATE) RSV(0) ATYP(1, 3, 4).
    let request_ok = rest.first().is_none_or(|&v| v == 5)
        && rest.get(1).is_none_or(|&c| (1..=3).contains(&c))
        && rest.get(2).is_none_or(|&r| r == 0)
        && rest.get(3).is_none_or(|&a| matches!(a, 1 | 3 | 4));
    match (request_ok, rest.len() >= 4) {
        (false, _) => Sig::No,
        (true, true) => Sig::Match,
        (true, false) => Sig::Partial,
    }
}

/// VN(4) CD(1 CONNECT, 2 BIND) DSTPORT(2) DSTIP(4) USERID NUL; SOCKS4a: DSTIP 0.0.0.x with x ≠ 0,
/// then the host name and NUL. User id and host name are bounded by 255 bytes each here.
fn socks4(c: &[u8]) -> Sig {
    if c.get(1).is_some_and(|&cd| cd != 1 && cd != 2) {
        return Sig::No;
    }
    let Some(ip) = c.get(4..8) else {
        return Sig::Partial;
    };
    let socks4a = matches!(ip, [0, 0, 0, x] if *x != 0);
    let fields = if socks4a { 2 } else { 1 };
    let mut pos = 8usize;
    for _ in 0..fields {
        let rest = c.get(pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == 0) {
            Some(n) if n <= 255 => pos += n + 1,
            Some(_) => return Sig::No,
            None if rest.len() <= 255 => return Sig::Partial,
            None => return Sig::No,
        }
    }
    Sig::from_bool(pos == c.len())
}

/// OpenVPN's packet opcode byte (openvpn `ssl_pkt.h`, and "OpenVPN protocol" in its doxygen
/// docs): opcode in the high 5 bits, key id in the low 3. A session starts with the client's
/// P_CONTROL_HARD_RESET_CLIENT_V1 (1), _V2 (7) or _V3 (10), always on key id 0.
fn openvpn_reset_opcode(b: u8) -> bool {
    matches!(b >> 3, 1 | 7 | 10) && b & 0x07 == 0
}

/// OpenVPN over TCP: each packet is preceded by its two-byte length. Match once the whole first
/// packet is here.
fn openvpn_tcp(client: &[u8], _: Option<&[u8]>) -> Sig {
    let len = match length_prefix(client, OPENVPN_MIN_LEN, OPENVPN_MAX_LEN) {
        Ok(len) => len,
        Err(sig) => return sig,
    };
    match client.get(2) {
        None => Sig::Partial,
        Some(&op) if !openvpn_reset_opcode(op) => Sig::No,
        Some(_) if client.len() >= 2 + len => Sig::Match,
        Some(_) => Sig::Partial,
    }
}

/// OpenVPN over UDP: the opcode byte first, and a control packet's length.
fn openvpn_udp(client: &[u8], _: Option<&[u8]>) -> Sig {
    let len_ok = (OPENVPN_MIN_LEN..=OPENVPN_MAX_LEN).contains(&client.len());
    Sig::from_bool(len_ok && client.first().is_some_and(|&op| openvpn_reset_opcode(op)))
}

/// WireGuard (whitepaper §5.4): a message type byte and three reserved zero bytes, then a fixed
/// length per type: initiation (1) 148, response (2) 92, cookie reply (3) 64, transport data (4)
/// at least 32 (16 bytes of header, 16 of Poly1305 tag for an empty keepalive).
fn wireguard(client: &[u8], _: Option<&[u8]>) -> Sig {
    let (Some(&ty), Some(&[0, 0, 0])) = (client.first(), client.get(1..4)) else {
        return Sig::No;
    };
    Sig::from_bool(match ty {
        1 => client.len() == 148,
        2 => client.len() == 92,
        3 => client.len() == 64,
        4 => client.len() >= 32,
        _ => false,
    })
}

/// QUIC long header (RFC 9000 §17.2, invariants in RFC 8999 §5.1): Header Form (0x80) and Fixed
/// Bit (0x40) set, a version of QUIC v1 (1), QUIC v2 (0x6b3343cf, RFC 9369 §3.1), an IETF draft
/// (0xff0000xx), or 0 for Version Negotiation (§17.2.1), then connection ids of at most 20 bytes in
/// these versions (§17.2), both present.
fn quic(client: &[u8], _: Option<&[u8]>) -> Sig {
    let (Some(&first), Some(version)) = (client.first(), be32(client, 1)) else {
        return Sig::No;
    };
    let known = matches!(version, 0 | 1 | 0x6b33_43cf) || version & 0xffff_ff00 == 0xff00_0000;
    if first & 0xc0 != 0xc0 || !known {
        return Sig::No;
    }
    let Some(&dcid_len) = client.get(5) else {
        return Sig::No;
    };
    let scid_at = 6 + usize::from(dcid_len);
    let Some(&scid_len) = client.get(scid_at) else {
        return Sig::No;
    };
    let ids_ok = version == 0 || (dcid_len <= 20 && scid_len <= 20);
    Sig::from_bool(ids_ok && client.len() > scid_at + usize::from(scid_len))
}

/// RFC 959 §4.2: the server greets with reply 220 ("220 " or, multi-line, "220-"), and the client's
/// first command (§5.3, case-insensitive) is one an FTP client starts with: USER, ACCT (RFC 959),
/// AUTH (RFC 2228), FEAT, OPTS (RFC 2389), HOST (RFC 7151), LANG (RFC 2640), SYST, CLNT; followed
/// by a space or the end of the line. SMTP also greets with 220, but its clients start with EHLO.
fn ftp(client: &[u8], server_first: Option<&[u8]>) -> Sig {
    let greeting = match server_first {
        None => return Sig::No,
        Some(s) => Sig::any([literal(s, b"220 "), literal(s, b"220-")]),
    };
    if greeting == Sig::No {
        return Sig::No;
    }
    const COMMANDS: [&[u8]; 9] = [
        b"USER", b"ACCT", b"AUTH", b"FEAT", b"OPTS", b"HOST", b"LANG", b"SYST", b"CLNT",
    ];
    let command = Sig::any(COMMANDS.iter().map(|cmd| {
        let word = literal_nocase(client, cmd);
        if word != Sig::Match {
            return word;
        }
        match client.get(cmd.len()) {
            None => Sig::Partial,
            Some(b' ' | b'\r' | b'\n') => Sig::Match,
            Some(_) => Sig::No,
        }
    }));
    match (greeting, command) {
        (_, Sig::No) => Sig::No,
        (Sig::Match, c) => c,
        _ => Sig::Partial,
    }
}

#[cfg(test)]
mod tests;

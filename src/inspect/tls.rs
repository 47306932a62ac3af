//! TLS ClientHello: the server name, ALPN list, versions and ECH flag a client sends in the clear, and
//! the lists a fingerprint reads (cipher suites, extension types, signature algorithms: see `ja4`).
//!
//! Contract: [`parse_client_hello`] and [`looks_like_tls`] never panic on any input: every read of
//! untrusted bytes is a bounds-checked `get` (through a small cursor type), never an index, and every length
//! field is checked against the bytes that hold it. No IO, no clock, no global state. Memory is
//! bounded: at most one handshake message of [`MAX_HELLO_LEN`] bytes is copied.
//!
//! The input is the client's TCP byte stream from the start of the flow, as far as it has arrived
//! (the caller reassembles segments in sequence order). The ClientHello may be fragmented over
//! several handshake records (RFC 8446 §5.1) and records over segments; a strict prefix of a valid
//! hello is always [`TlsError::Incomplete`], so the caller can wait for more bytes and call again.
//!
//! Strictness, chosen for a filter (an attacker who hides a name from us must not get through
//! because we were lenient; a hello we reject is one policy can drop):
//! - A record other than handshake (22) before the hello is complete, a zero-length record, a
//!   record longer than [`MAX_RECORD_LEN`], a handshake message other than ClientHello (1), one
//!   longer than [`MAX_HELLO_LEN`], or bytes after the hello in the record that completes it, are
//!   [`TlsError::Malformed`]. Only the first record decides [`TlsError::NotTls`].
//! - Any length field that disagrees with its container, and a duplicated extension, are
//!   `Malformed`.
//! - server_name must hold exactly one entry, of type host_name, and that name must be a plausible
//!   DNS name: 1 to 253 bytes of ASCII letters, digits, `-`, `_` and `.`, in non-empty labels of at
//!   most 63 bytes (so no leading, trailing or doubled dot). Anything else (a NUL, a space, UTF-8, an
//!   IPv6 literal) is an evasion attempt or a broken client and is `Malformed`, not silently
//!   dropped: a hello whose name we cannot state must not pass as a hello without a name. IPv4
//!   literals pass the character test and are returned as they are. The name is lower-cased.
//! - ALPN protocol names are opaque bytes (RFC 7301 §3.1); they are returned as strings with
//!   non-UTF-8 bytes replaced by U+FFFD.
//! - SSLv2-format hellos (first byte with the high bit set) are `NotTls`.

use std::fmt;

/// Largest record fragment accepted: 2^14 + 2048, TLSCiphertext's bound (RFC 5246 §6.2.3). A
/// plaintext handshake record may not exceed 2^14 (RFC 8446 §5.1); the slack tolerates old stacks.
pub const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Largest ClientHello body accepted. The field is 24-bit; real hellos, post-quantum key shares
/// included, stay far below this.
pub const MAX_HELLO_LEN: usize = 64 * 1024;

/// RFC 8446 §5.1: ContentType handshake.
const CONTENT_HANDSHAKE: u8 = 22;
/// RFC 8446 §4: HandshakeType client_hello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;

/// RFC 8446 §4.2 extension types.
pub(crate) const EXT_SERVER_NAME: u16 = 0;
const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
pub(crate) const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// draft-ietf-tls-esni §5 (TLS Encrypted Client Hello): encrypted_client_hello.
const EXT_ECH: u16 = 0xfe0d;

/// What a ClientHello says in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientHello {
    /// The server_name extension's host_name, lower-cased; `None` when the extension is absent.
    pub sni: Option<String>,
    /// The ALPN protocol names in the client's order; empty when the extension is absent.
    pub alpn: Vec<String>,
    /// The encrypted_client_hello extension (0xfe0d) is present: `sni` is then the outer name.
    pub ech: bool,
    /// ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// The supported_versions extension's list, GREASE values included; empty when absent.
    pub supported_versions: Vec<u16>,
    /// The cipher suites in the client's order, GREASE values (RFC 8701) included.
    #[serde(default)]
    pub cipher_suites: Vec<u16>,
    /// The extension types in the client's order, GREASE values included; empty when the hello has
    /// no extensions block.
    #[serde(default)]
    pub extensions: Vec<u16>,
    /// The signature_algorithms extension's list (RFC 8446 §4.2.3) in the client's order; empty
    /// when absent.
    #[serde(default)]
    pub signature_algorithms: Vec<u16>,
    /// The first ALPN protocol name as sent (`alpn` holds it as text); empty when there is no ALPN.
    #[serde(default)]
    pub alpn_first: Vec<u8>,
}

/// Why no ClientHello could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsError {
    /// The bytes so far are a strict prefix of a valid hello: more of the client's stream is needed.
    Incomplete,
    /// The stream does not start with a TLS handshake record.
    NotTls,
    /// It starts like TLS but breaks the protocol (or this module's stricter rules, see above).
    Malformed,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsError::Incomplete => "incomplete TLS ClientHello",
            TlsError::NotTls => "not TLS",
            TlsError::Malformed => "malformed TLS ClientHello",
        })
    }
}

impl std::error::Error for TlsError {}

/// Cheap test on the first bytes: could this be the start of a TLS handshake record? Checks the
/// content type (22) and the record version (0x0300 to 0x0304) as far as `first` goes; an empty
/// slice is `false` (there is nothing to go on).
pub fn looks_like_tls(first: &[u8]) -> bool {
    !first.is_empty() && header_prefix_ok(first)
}

/// RFC 8446 §5.1: TLSPlaintext is type(1) legacy_record_version(2) length(2). Checks the bytes of
/// a record header that are present: handshake type, major version 3, minor 0 (SSL 3.0) to 4.
fn header_prefix_ok(h: &[u8]) -> bool {
    h.first().is_none_or(|&t| t == CONTENT_HANDSHAKE)
        && h.get(1).is_none_or(|&v| v == 3)
        && h.get(2).is_none_or(|&v| v <= 4)
}

/// Parses the ClientHello at the start of the client's stream.
///
/// `stream` is the client's TCP payload from the start of the flow, concatenated in sequence order
/// (the caller reassembles TCP segments). The ClientHello may be split across several TLS records
/// (RFC 8446 §5.1: handshake messages may be fragmented over records) and across segments. Bytes
/// after the record that completes the hello (ChangeCipherSpec, early data) are not looked at.
pub fn parse_client_hello(stream: &[u8]) -> Result<ClientHello, TlsError> {
    // The handshake message (header and body), gathered from the records' fragments.
    let mut msg: Vec<u8> = Vec::new();
    // Its full length, header included, once its header has been read.
    let mut msg_len: Option<usize> = None;
    let mut pos = 0usize;
    let mut first = true;
    loop {
        let rest = stream.get(pos..).unwrap_or_default();
        let header = rest.get(..RECORD_HEADER_LEN).unwrap_or(rest);
        if !header_prefix_ok(header) {
            return Err(if first {
                TlsError::NotTls
            } else {
                TlsError::Malformed
            });
        }
        let (Some(&hi), Some(&lo)) = (rest.get(3), rest.get(4)) else {
            return Err(TlsError::Incomplete);
        };
        let record_len = usize::from(u16::from_be_bytes([hi, lo]));
        // RFC 8446 §5.1: no zero-length handshake fragments; the length MUST NOT exceed 2^14
        // (RFC 5246 §6.2.3 allows 2^14 + 2048 for ciphertext, our tolerance).
        if record_len == 0 || record_len > MAX_RECORD_LEN {
            return Err(TlsError::Malformed);
        }
        let body = rest.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let fragment = body.get(..record_len).unwrap_or(body);
        let mut frag = fragment;
        while !frag.is_empty() {
            let want = match msg_len {
                Some(n) => n,
                None => HANDSHAKE_HEADER_LEN,
            };
            let take = want.saturating_sub(msg.len()).min(frag.len());
            let (now, later) = frag.split_at_checked(take).unwrap_or((frag, &[]));
            msg.extend_from_slice(now);
            frag = later;
            if msg_len.is_none() && msg.len() == HANDSHAKE_HEADER_LEN {
                msg_len = Some(handshake_header(&msg)?);
            }
            if msg_len == Some(msg.len()) {
                // RFC 8446 §5.1: a record completing the hello may not carry more: the next
                // handshake message a client sends (Finished, EndOfEarlyData) is encrypted, and a
                // second ClientHello only follows a HelloRetryRequest.
                if !frag.is_empty() || fragment.len() < record_len {
                    return Err(TlsError::Malformed);
                }
                let body = msg.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default();
                return parse_body(body);
            }
        }
        if fragment.len() < record_len {
            return Err(TlsError::Incomplete);
        }
        pos = pos.saturating_add(RECORD_HEADER_LEN + record_len);
        first = false;
    }
}

/// Parses a ClientHello from a bare handshake message (header and body), without the record layer:
/// QUIC carries the handshake in CRYPTO frames (RFC 9001 §4). A strict prefix of the message is
/// [`TlsError::Incomplete`]; bytes past its declared end are [`TlsError::Malformed`].
pub fn parse_handshake(msg: &[u8]) -> Result<ClientHello, TlsError> {
    let header = msg
        .get(..HANDSHAKE_HEADER_LEN)
        .ok_or(TlsError::Incomplete)?;
    let len = handshake_header(header)?;
    match msg.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(TlsError::Incomplete),
        std::cmp::Ordering::Greater => Err(TlsError::Malformed),
        std::cmp::Ordering::Equal => {
            parse_body(msg.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default())
        }
    }
}

/// RFC 8446 §4: Handshake is msg_type(1) length(3); returns the message's full length.
fn handshake_header(h: &[u8]) -> Result<usize, TlsError> {
    let mut r = Reader::new(h);
    let msg_type = r.u8()?;
    let len = r.u24()?;
    if msg_type != HANDSHAKE_CLIENT_HELLO || len > MAX_HELLO_LEN {
        return Err(TlsError::Malformed);
    }
    Ok(HANDSHAKE_HEADER_LEN + len)
}

/// The ClientHello body: RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2 for hellos without extensions).
fn parse_body(body: &[u8]) -> Result<ClientHello, TlsError> {
    let mut r = Reader::new(body);
    let mut hello = ClientHello {
        legacy_version: r.u16()?,
        ..ClientHello::default()
    };
    r.take(32)?; // random
    // legacy_session_id<0..32>
    if r.vec8()?.len() > 32 {
        return Err(TlsError::Malformed);
    }
    // cipher_suites<2..2^16-2>: two-byte values.
    let suites = r.vec16()?;
    hello.cipher_suites = u16_list(suites)?;
    // legacy_compression_methods<1..2^8-1>
    if r.vec8()?.is_empty() {
        return Err(TlsError::Malformed);
    }
    // RFC 5246 §7.4.1.2: a TLS 1.2 (or older) client may send no extensions at all.
    if r.is_empty() {
        return Ok(hello);
    }
    let extensions = r.vec16()?;
    r.end()?;

    let mut seen: Vec<u16> = Vec::new();
    let mut er = Reader::new(extensions);
    while !er.is_empty() {
        let ext_type = er.u16()?;
        let data = er.vec16()?;
        seen.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => hello.sni = Some(parse_server_name(data)?),
            EXT_ALPN => {
                let names = parse_alpn(data)?;
                hello.alpn_first = names.first().map(|n| n.to_vec()).unwrap_or_default();
                hello.alpn = names
                    .iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect();
            }
            EXT_SIGNATURE_ALGORITHMS => {
                hello.signature_algorithms = parse_signature_algorithms(data)?
            }
            EXT_SUPPORTED_VERSIONS => hello.supported_versions = parse_supported_versions(data)?,
            EXT_ECH => hello.ech = true,
            _ => {}
        }
    }
    hello.extensions = seen.clone();
    // RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type in a given
    // extension block." Checked after the loop (sorting keeps it O(n log n) for hostile counts).
    seen.sort_unstable();
    if seen.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(TlsError::Malformed);
    }
    Ok(hello)
}

/// RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>, each entry name_type(1) and, for
/// host_name (0), HostName<1..2^16-1>. "The ServerNameList MUST NOT contain more than one name of
/// the same name_type"; host_name is the only type defined, and an entry of an unknown type cannot
/// be skipped (its encoding is not known), so exactly one host_name entry is accepted.
fn parse_server_name(data: &[u8]) -> Result<String, TlsError> {
    let mut r = Reader::new(data);
    let list = r.vec16()?;
    r.end()?;
    let mut lr = Reader::new(list);
    if lr.u8()? != 0 {
        return Err(TlsError::Malformed);
    }
    let name = lr.vec16()?;
    lr.end()?;
    dns_name(name).ok_or(TlsError::Malformed)
}

/// A plausible DNS host name, lower-cased (RFC 6066 §3: "HostName" is a fully qualified DNS
/// hostname without a trailing dot, in ASCII; RFC 1035 §2.3.4: labels ≤ 63, names ≤ 253 as text).
/// `_` is allowed because real service names use it.
fn dns_name(name: &[u8]) -> Option<String> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    for label in name.split(|&b| b == b'.') {
        let ok_chars = label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return None;
        }
    }
    let text = std::str::from_utf8(name).ok()?;
    Some(text.to_ascii_lowercase())
}

/// RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, ProtocolName opaque<1..2^8-1>.
fn parse_alpn(data: &[u8]) -> Result<Vec<&[u8]>, TlsError> {
    let mut r = Reader::new(data);
    let list = r.vec16()?;
    r.end()?;
    if list.is_empty() {
        return Err(TlsError::Malformed);
    }
    let mut lr = Reader::new(list);
    let mut names = Vec::new();
    while !lr.is_empty() {
        let name = lr.vec8()?;
        if name.is_empty() {
            return Err(TlsError::Malformed);
        }
        names.push(name);
    }
    Ok(names)
}

/// RFC 8446 §4.2.3: SignatureScheme supported_signature_algorithms<2..2^16-2>.
fn parse_signature_algorithms(data: &[u8]) -> Result<Vec<u16>, TlsError> {
    let mut r = Reader::new(data);
    let list = r.vec16()?;
    r.end()?;
    u16_list(list)
}

/// A non-empty list of two-byte values (cipher suites, signature schemes).
fn u16_list(list: &[u8]) -> Result<Vec<u16>, TlsError> {
    if list.is_empty() || !list.len().is_multiple_of(2) {
        return Err(TlsError::Malformed);
    }
    let mut lr = Reader::new(list);
    let mut values = Vec::with_capacity(list.len() / 2);
    while !lr.is_empty() {
        values.push(lr.u16()?);
    }
    Ok(values)
}

/// RFC 8446 §4.2.1: in a ClientHello, ProtocolVersion versions<2..254>.
fn parse_supported_versions(data: &[u8]) -> Result<Vec<u16>, TlsError> {
    let mut r = Reader::new(data);
    let list = r.vec8()?;
    r.end()?;
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(TlsError::Malformed);
    }
    let mut lr = Reader::new(list);
    let mut versions = Vec::with_capacity(list.len() / 2);
    while !lr.is_empty() {
        versions.push(lr.u16()?);
    }
    Ok(versions)
}

/// A bounds-checked cursor over a complete structure: running short is `Malformed`.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The structure must end here.
    fn end(&self) -> Result<(), TlsError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(TlsError::Malformed)
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TlsError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(TlsError::Malformed)?;
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, TlsError> {
        let b = self.take(1)?;
        b.first().copied().ok_or(TlsError::Malformed)
    }

    fn u16(&mut self) -> Result<u16, TlsError> {
        let b = self.take(2)?;
        match *b {
            [hi, lo] => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(TlsError::Malformed),
        }
    }

    fn u24(&mut self) -> Result<usize, TlsError> {
        let b = self.take(3)?;
        match *b {
            [a, b, c] => Ok(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)),
            _ => Err(TlsError::Malformed),
        }
    }

    /// An opaque vector with a one-byte length (RFC 8446 §3.4).
    fn vec8(&mut self) -> Result<&'a [u8], TlsError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// An opaque vector with a two-byte length (RFC 8446 §3.4).
    fn vec16(&mut self) -> Result<&'a [u8], TlsError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wraps a handshake message in one record.
    fn record(fragment: &[u8]) -> Vec<u8> {
        let mut out = vec![22, 3, 1];
        out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
        out.extend_from_slice(fragment);
        out
    }

    /// Wraps a handshake message in records cut at `cuts` (offsets into the message).
    fn records(msg: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&msg.len())) {
            out.extend(record(&msg[start..cut]));
            start = cut;
        }
        out
    }

    /// A handshake message (type 1) around `body`.
    fn handshake(body: &[u8]) -> Vec<u8> {
        let mut out = vec![1];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(body);
        out
    }

    fn ext(ext_type: u16, data: &[u8]) -> Vec<u8> {
        let mut out = ext_type.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn sni_ext(name: &[u8]) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend(entry);
        ext(0, &list)
    }

    /// A ClientHello body with the given extensions block contents (None: no block at all).
    fn body(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut out = vec![0x03, 0x03];
        out.extend_from_slice(&[0xab; 32]); // random
        out.extend_from_slice(&[32]);
        out.extend_from_slice(&[0x11; 32]); // session id
        out.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // two suites
        out.extend_from_slice(&[0x01, 0x00]); // null compression
        if let Some(e) = extensions {
            out.extend_from_slice(&(e.len() as u16).to_be_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    /// A TLS 1.3-style hello: SNI, ALPN h2 + http/1.1, supported_versions (GREASE, 1.3, 1.2).
    const HELLO_EXTS: &[u8] = &[
        0x00, 0x00, 0x00, 0x13, // server_name, 19 bytes
        0x00, 0x11, 0x00, 0x00, 0x0e, b'W', b'w', b'w', b'.', b'E', b'x', b'a', b'm', b'p', b'l',
        b'e', b'.', b'o', b'r', // list 17, host_name, 14: "Www.Example.or"
        0x00, 0x10, 0x00, 0x0e, // ALPN, 14 bytes
        0x00, 0x0c, 0x02, b'h', b'2', 0x08, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1', 0x00,
        0x2b, 0x00, 0x07, // supported_versions, 7 bytes
        0x06, 0x1a, 0x1a, 0x03, 0x04, 0x03, 0x03, //
        0x00, 0x17, 0x00, 0x00, // extended_master_secret, empty
    ];

    fn hello_msg() -> Vec<u8> {
        handshake(&body(Some(HELLO_EXTS)))
    }

    fn expected() -> ClientHello {
        ClientHello {
            sni: Some("www.example.or".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            ech: false,
            legacy_version: 0x0303,
            supported_versions: vec![0x1a1a, 0x0304, 0x0303],
            cipher_suites: vec![0x1301, 0xc02f],
            extensions: vec![0, 16, 43, 23],
            signature_algorithms: Vec::new(),
            alpn_first: b"h2".to_vec(),
        }
    }

    #[test]
    fn one_record() {
        let stream = record(&hello_msg());
        assert_eq!(parse_client_hello(&stream), Ok(expected()));
        // Whatever follows the hello's record (ChangeCipherSpec, early data) is not looked at.
        let mut more = stream.clone();
        more.extend_from_slice(&[20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xde, 0xad]);
        assert_eq!(parse_client_hello(&more), Ok(expected()));
    }

    #[test]
    fn a_bare_handshake_message() {
        let msg = hello_msg();
        assert_eq!(parse_handshake(&msg), Ok(expected()));
        for n in 0..msg.len() {
            assert_eq!(parse_handshake(&msg[..n]), Err(TlsError::Incomplete));
        }
        let mut more = msg.clone();
        more.push(0);
        assert_eq!(parse_handshake(&more), Err(TlsError::Malformed));
        assert_eq!(parse_handshake(&record(&msg)), Err(TlsError::Malformed));
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let msg = hello_msg();
        for stream in [
            record(&msg),
            records(&msg, &[2]),
            records(&msg, &[4, 60]),
            records(&msg, &[1, 2, 3, 90, 91]),
        ] {
            assert_eq!(parse_client_hello(&stream), Ok(expected()));
            for n in 0..stream.len() {
                assert_eq!(
                    parse_client_hello(&stream[..n]),
                    Err(TlsError::Incomplete),
                    "prefix of {n} bytes"
                );
            }
        }
    }

    #[test]
    fn split_into_two_and_three_records() {
        let msg = hello_msg();
        for cut in 1..msg.len() {
            assert_eq!(
                parse_client_hello(&records(&msg, &[cut])),
                Ok(expected()),
                "cut at {cut}"
            );
        }
        for (a, b) in [
            (1, 2),
            (3, 4),
            (4, 5),
            (10, 100),
            (50, 51),
            (2, msg.len() - 1),
        ] {
            assert_eq!(parse_client_hello(&records(&msg, &[a, b])), Ok(expected()));
        }
    }

    #[test]
    fn literal_two_record_hello() {
        // A minimal hello with no extensions, its 4-byte handshake header in a record of its own.
        let stream: &[u8] = &[
            0x16, 0x03, 0x01, 0x00, 0x04, // record: handshake, 4 bytes
            0x01, 0x00, 0x00, 0x29, // ClientHello, 41 bytes
            0x16, 0x03, 0x01, 0x00, 0x29, // record: handshake, 41 bytes
            0x03, 0x01, // TLS 1.0
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
            24, 25, 26, 27, 28, 29, 30, 31,   // random
            0x00, // no session id
            0x00, 0x02, 0x00, 0x2f, // one suite
            0x01, 0x00, // null compression
        ];
        let hello = parse_client_hello(stream).unwrap();
        assert_eq!(
            hello,
            ClientHello {
                legacy_version: 0x0301,
                cipher_suites: vec![0x002f],
                ..ClientHello::default()
            }
        );
    }

    #[test]
    fn no_sni() {
        let exts = ext(0x0017, &[]);
        let hello = parse_client_hello(&record(&handshake(&body(Some(&exts))))).unwrap();
        assert_eq!(hello.sni, None);
        assert!(hello.alpn.is_empty() && hello.supported_versions.is_empty() && !hello.ech);
        // An empty extensions block is allowed too (RFC 8446 says <8..>, older stacks send 0).
        let hello = parse_client_hello(&record(&handshake(&body(Some(&[]))))).unwrap();
        assert_eq!(hello.sni, None);
    }

    #[test]
    fn ech_with_outer_sni() {
        let mut exts = sni_ext(b"public.example.com");
        // ECHClientHello: outer(0), cipher suite, config id, enc, payload (contents not checked).
        exts.extend(ext(
            0xfe0d,
            &[
                0x00, 0x00, 0x01, 0x00, 0x01, 0x2a, 0x00, 0x02, 0xaa, 0xbb, 0x00, 0x01, 0xcc,
            ],
        ));
        let hello = parse_client_hello(&record(&handshake(&body(Some(&exts))))).unwrap();
        assert!(hello.ech);
        assert_eq!(hello.sni.as_deref(), Some("public.example.com"));
    }

    #[test]
    fn not_tls() {
        for s in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"SSH-2.0-x\r\n",
            &[0x17, 0x03, 0x03, 0x00, 0x10],
            &[0x16, 0x02],
            &[0x16, 0x03, 0x05],
            &[0x80, 0x2e, 0x01, 0x00, 0x02], // SSLv2-format hello
            &[0x00],
        ] {
            assert_eq!(parse_client_hello(s), Err(TlsError::NotTls), "{s:02x?}");
            assert!(!looks_like_tls(s));
        }
        assert!(looks_like_tls(&[0x16]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!looks_like_tls(&[]));
    }

    #[test]
    fn record_level_malformed() {
        let msg = hello_msg();
        // A non-handshake record before the hello is complete.
        let mut s = record(&msg[..10]);
        s.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
        assert_eq!(parse_client_hello(&s), Err(TlsError::Malformed));
        // ... detected from its first byte.
        assert_eq!(parse_client_hello(&s[..16]), Err(TlsError::Malformed));
        // A zero-length record; an oversized one.
        assert_eq!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            Err(TlsError::Malformed)
        );
        assert_eq!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x48, 0x01]),
            Err(TlsError::Malformed)
        );
        // A ServerHello (type 2).
        assert_eq!(
            parse_client_hello(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
            Err(TlsError::Malformed)
        );
        // A 16 MiB - 1 handshake length.
        assert_eq!(
            parse_client_hello(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff]),
            Err(TlsError::Malformed)
        );
        // The record completing the hello says it holds more than the hello.
        let mut s = vec![0x16, 0x03, 0x01];
        s.extend_from_slice(&(msg.len() as u16 + 1).to_be_bytes());
        s.extend_from_slice(&msg);
        assert_eq!(parse_client_hello(&s), Err(TlsError::Malformed));
    }

    fn with_exts(exts: &[u8]) -> Result<ClientHello, TlsError> {
        parse_client_hello(&record(&handshake(&body(Some(exts)))))
    }

    #[test]
    fn duplicate_extensions_are_malformed() {
        let mut exts = ext(0x0017, &[]);
        exts.extend(ext(0x0017, &[]));
        assert_eq!(with_exts(&exts), Err(TlsError::Malformed));
        let mut exts = sni_ext(b"a.example");
        exts.extend(sni_ext(b"b.example"));
        assert_eq!(with_exts(&exts), Err(TlsError::Malformed));
    }

    #[test]
    fn server_name_rules() {
        assert_eq!(
            with_exts(&sni_ext(b"API.Example.COM"))
                .unwrap()
                .sni
                .as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            with_exts(&sni_ext(b"_srv.x-y.example"))
                .unwrap()
                .sni
                .as_deref(),
            Some("_srv.x-y.example")
        );
        let long_ok = [
            b"a".repeat(63),
            b"b".repeat(63),
            b"c".repeat(63),
            b"d".repeat(61),
        ]
        .join(&b'.');
        assert_eq!(long_ok.len(), 253);
        assert!(with_exts(&sni_ext(&long_ok)).is_ok());
        for bad in [
            &b"evil.com\0.good.com"[..],
            b"evil.com good.com",
            b"",
            b".example.com",
            b"example.com.",
            b"a..b",
            b"caf\xc3\xa9.example",
            b"[::1]",
            &[b'a'; 64],
        ] {
            assert_eq!(
                with_exts(&sni_ext(bad)),
                Err(TlsError::Malformed),
                "{bad:?}"
            );
        }
        let mut too_long = long_ok.clone();
        too_long.extend_from_slice(b"e");
        assert_eq!(with_exts(&sni_ext(&too_long)), Err(TlsError::Malformed));
        // Two entries in one list; an unknown name_type; an empty list; list length too long.
        let two = ext(0, &[0, 10, 0, 0, 1, b'a', 0, 0, 2, b'b', b'c']);
        let other_type = ext(0, &[0, 4, 1, 0, 1, b'a']);
        let empty_list = ext(0, &[0, 0]);
        let overlong = ext(0, &[0, 9, 0, 0, 1, b'a']);
        for e in [two, other_type, empty_list, overlong, ext(0, &[])] {
            assert_eq!(with_exts(&e), Err(TlsError::Malformed), "{e:02x?}");
        }
    }

    #[test]
    fn alpn_and_versions_rules() {
        for e in [
            ext(16, &[0, 0]),                // empty list
            ext(16, &[0, 1, 0]),             // empty name
            ext(16, &[0, 3, 2, b'h']),       // name runs out
            ext(16, &[0, 2, 2, b'h', b'2']), // name runs past the list
            ext(43, &[3, 3, 4, 3]),          // odd list
            ext(43, &[0]),                   // empty list
            ext(43, &[2, 3, 4, 0]),          // trailing byte
            ext(13, &[0, 0]),                // no signature algorithm
            ext(13, &[0, 3, 4, 3, 8]),       // odd list
            ext(13, &[0, 2, 4, 3, 8]),       // trailing byte
        ] {
            assert_eq!(with_exts(&e), Err(TlsError::Malformed), "{e:02x?}");
        }
        let h = with_exts(&ext(16, &[0, 3, 2, 0xff, b'2'])).unwrap();
        assert_eq!(h.alpn, vec!["\u{fffd}2".to_string()]);
    }

    #[test]
    fn fingerprint_lists_in_the_clients_order() {
        let mut exts = ext(0x3a3a, &[]); // GREASE
        exts.extend(ext(13, &[0, 6, 0x08, 0x04, 0x04, 0x03, 0x0a, 0x0a]));
        exts.extend(ext(16, &[0, 6, 2, 0xba, 0xad, 2, b'h', b'2']));
        exts.extend(sni_ext(b"a.example"));
        let h = with_exts(&exts).unwrap();
        assert_eq!(h.extensions, [0x3a3a, 13, 16, 0]);
        assert_eq!(h.signature_algorithms, [0x0804, 0x0403, 0x0a0a]);
        assert_eq!(h.cipher_suites, [0x1301, 0xc02f]);
        assert_eq!(h.alpn_first, [0xba, 0xad]);
        assert_eq!(h.alpn, ["\u{fffd}\u{fffd}", "h2"]);
    }

    #[test]
    fn body_length_rules() {
        let good = body(Some(HELLO_EXTS));
        // Trailing byte after the extensions block.
        let mut b = good.clone();
        b.push(0);
        assert_eq!(
            parse_client_hello(&record(&handshake(&b))),
            Err(TlsError::Malformed)
        );
        // Truncated at every length: each is a complete but short message, hence Malformed.
        for n in 0..good.len() {
            let r = parse_client_hello(&record(&handshake(&good[..n])));
            // Cut right after the compression methods it is a valid extension-less hello.
            if n == 2 + 32 + 33 + 6 + 2 {
                assert!(r.is_ok());
            } else {
                assert_eq!(r, Err(TlsError::Malformed), "body cut at {n}");
            }
        }
        // Session id longer than 32; odd cipher suite length; no compression methods.
        let mut b = good.clone();
        b[34] = 33;
        assert_eq!(
            parse_client_hello(&record(&handshake(&b))),
            Err(TlsError::Malformed)
        );
        let mut b = good.clone();
        b[2 + 32 + 33 + 1] = 3;
        assert_eq!(
            parse_client_hello(&record(&handshake(&b))),
            Err(TlsError::Malformed)
        );
        let mut b = good;
        b[2 + 32 + 33 + 6] = 0;
        assert_eq!(
            parse_client_hello(&record(&handshake(&b))),
            Err(TlsError::Malformed)
        );
    }

    /// A simple deterministic generator (xorshift), so the test needs no dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn bit_flips_and_garbage_never_panic() {
        let msg = hello_msg();
        let base = records(&msg, &[7, 50]);
        for i in 0..base.len() {
            for bit in 0..8 {
                let mut s = base.clone();
                s[i] ^= 1 << bit;
                let _ = parse_client_hello(&s);
                let _ = looks_like_tls(&s);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut s = base.clone();
            for _ in 0..(xorshift(&mut state) % 6 + 1) {
                let r = xorshift(&mut state);
                let i = (r as usize) % s.len();
                s[i] = (r >> 32) as u8;
            }
            let cut = (xorshift(&mut state) as usize) % (s.len() + 1);
            let _ = parse_client_hello(&s[..cut]);
        }
        for _ in 0..20_000 {
            let len = (xorshift(&mut state) % 64) as usize;
            let mut s: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            if let Some(b) = s.first_mut() {
                *b = 22;
            }
            let _ = parse_client_hello(&s);
        }
    }
}

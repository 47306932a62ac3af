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
mod tests;

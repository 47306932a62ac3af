//! QUIC: the TLS ClientHello a client sends in its Initial packets, decrypted and read.
//!
//! Contract: [`parse_client_hello`] never panics on any input: every read of untrusted bytes is a
//! bounds-checked `get`, every length is checked against the bytes that hold it. No IO, no clock, no
//! state: the same datagrams always give the same answer. Work and memory are bounded: at most
//! [`MAX_DATAGRAMS`] datagrams are read, at most [`MAX_PIECES`] CRYPTO frames kept, and the CRYPTO
//! stream may not reach past [`MAX_CRYPTO_LEN`] bytes (so the gaps between the frames are bounded too).
//!
//! Initial packets are protected with keys anyone can derive from the Destination Connection ID of
//! the client's first Initial (RFC 9001 §5.2; QUIC v2, RFC 9369 §3.3, changes the salt, the labels and
//! the type bits): this module removes header protection (AES-128-ECB mask, RFC 9001 §5.4), decrypts
//! (AES-128-GCM, §5.3), reads the frames (RFC 9000 §12.4), puts the CRYPTO frames in offset order
//! across packets (coalesced in one datagram or not, §12.2) and datagrams (in any order), and hands
//! the handshake message to the TLS parser ([`tls::parse_handshake`]). A ClientHello with a
//! post-quantum key share (Chrome's, say) spans two or more datagrams.
//!
//! Strictness, chosen as the server would read the same packets, or stricter (a name that a server
//! would not see must not be the one a policy decides on):
//! - Datagrams are read in the order given; packets without an Initial of the version (0-RTT,
//!   Handshake, ones whose Destination Connection ID differs from the first of their datagram, RFC
//!   9000 §12.2) are skipped.
//! - The client's first Initial must sit in a datagram of at least [`MIN_DATAGRAM_LEN`] bytes and must
//!   decrypt; later Initials that do not decrypt, or whose datagram is short, are skipped, as a server
//!   discards them (RFC 9000 §14.1 for the size, §12.2 for packets it cannot process).
//! - A decrypted packet with reserved bits set, no frame, or a frame other than PADDING, PING, ACK,
//!   CRYPTO and CONNECTION_CLOSE is [`QuicError::Malformed`] (RFC 9000 §17.2, §12.4), and so are
//!   CRYPTO bytes sent twice with different contents (§2.2 allows treating it as a violation; which copy
//!   a server keeps is not known) and CRYPTO bytes past the end of the ClientHello.
//! - A long header of another version (IETF drafts, version negotiation) is
//!   [`QuicError::NotInitial`]: QUIC, but not read.

mod frames;
mod packet;
#[cfg(test)]
mod tests;

use std::fmt;

use super::tls::{self, ClientHello, TlsError};
use frames::{Piece, crypto_pieces};
use packet::{Keys, Kind, Secrets, Version, long_header};

/// Datagrams read at most; a ClientHello still incomplete after them is `Malformed`. Real hellos take one,
/// or two with a post-quantum key share.
pub const MAX_DATAGRAMS: usize = 32;
/// CRYPTO frames kept at most, across all packets (a client may cut its hello into many small frames).
pub const MAX_PIECES: usize = 256;
/// The CRYPTO stream may not reach past this: the largest ClientHello the TLS parser accepts.
pub const MAX_CRYPTO_LEN: usize = 4 + tls::MAX_HELLO_LEN;
/// RFC 9000 §14.1: a server discards a client's Initial packet in a smaller UDP payload.
pub const MIN_DATAGRAM_LEN: usize = 1200;

/// Why no ClientHello could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuicError {
    /// The Initials so far hold a strict part of a valid hello: more datagrams are needed.
    Incomplete,
    /// A QUIC long header of a version whose Initials are not read here.
    NotInitial,
    /// An Initial that does not decrypt or breaks the protocol (or this module's rules, see above).
    Malformed,
}

impl fmt::Display for QuicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuicError::Incomplete => "incomplete QUIC ClientHello",
            QuicError::NotInitial => "not a QUIC v1 or v2 Initial",
            QuicError::Malformed => "malformed QUIC Initial",
        })
    }
}

impl std::error::Error for QuicError {}

/// Reads the ClientHello from a client's first datagrams (UDP payloads), in arrival order.
pub fn parse_client_hello<D: AsRef<[u8]>>(datagrams: &[D]) -> Result<ClientHello, QuicError> {
    let first = datagrams.first().map(AsRef::as_ref).unwrap_or_default();
    let version = first
        .get(1..5)
        .and_then(|v| v.try_into().ok())
        .map(u32::from_be_bytes);
    if version.and_then(Version::of).is_none() {
        return Err(QuicError::NotInitial);
    }
    let mut initials = Initials::default();
    for d in datagrams.iter().take(MAX_DATAGRAMS) {
        initials.datagram(d.as_ref())?;
    }
    match initials.reassemble() {
        Err(QuicError::Incomplete) if datagrams.len() >= MAX_DATAGRAMS => Err(QuicError::Malformed),
        r => r,
    }
}

/// Reads the ClientHello from the payloads of decrypted Initial packets (their frames), in order, as
/// [`parse_client_hello`] does once it has opened them. Public for the fuzz target (`fuzz/`), which
/// reaches the frames, the CRYPTO reassembly and the hello this way without building the encryption
/// around them.
pub fn parse_decrypted<D: AsRef<[u8]>>(plaintexts: &[D]) -> Result<ClientHello, QuicError> {
    let mut initials = Initials::default();
    for p in plaintexts.iter().take(MAX_DATAGRAMS) {
        initials.plaintext(p.as_ref())?;
    }
    initials.reassemble()
}

/// The Initial packets read so far.
#[derive(Default)]
struct Initials {
    /// The version and keys of the client's first Initial.
    keys: Option<(Version, Keys)>,
    /// The largest packet number opened (RFC 9000 §A.3 decodes the next against it).
    largest: Option<u64>,
    pieces: Vec<Piece>,
}

impl Initials {
    /// Reads the packets of one datagram (RFC 9000 §12.2: several may be coalesced in it).
    fn datagram(&mut self, d: &[u8]) -> Result<(), QuicError> {
        let mut rest = d;
        let mut dcid: Option<&[u8]> = None;
        while !rest.is_empty() {
            let Some(h) = long_header(rest) else {
                // A datagram's first packet must read; after it, padding or a short header packet
                // ends the datagram.
                return match (dcid, &self.keys) {
                    (None, None) => Err(QuicError::Malformed),
                    _ => Ok(()),
                };
            };
            let (packet, after) = rest.split_at_checked(h.len).ok_or(QuicError::Malformed)?;
            rest = after;
            if *dcid.get_or_insert(h.dcid) != h.dcid || h.kind != Kind::Initial {
                continue;
            }
            if self.keys.is_none() {
                if d.len() < MIN_DATAGRAM_LEN {
                    return Err(QuicError::Malformed);
                }
                let keys = Secrets::initial(h.version, h.dcid, b"client in")
                    .as_ref()
                    .and_then(Keys::new)
                    .ok_or(QuicError::Malformed)?;
                self.keys = Some((h.version, keys));
            }
            let Some((version, keys)) = &self.keys else {
                continue;
            };
            if *version != h.version {
                continue;
            }
            if d.len() < MIN_DATAGRAM_LEN {
                return Ok(());
            }
            let Some(opened) = keys.open(packet, &h, self.largest) else {
                if self.largest.is_none() {
                    return Err(QuicError::Malformed);
                }
                continue;
            };
            if !opened.reserved_bits_clear() {
                return Err(QuicError::Malformed);
            }
            self.largest = Some(self.largest.map_or(opened.pn, |l| l.max(opened.pn)));
            self.plaintext(&opened.plaintext)?;
        }
        Ok(())
    }

    /// Takes the CRYPTO frames of one decrypted Initial packet.
    fn plaintext(&mut self, plaintext: &[u8]) -> Result<(), QuicError> {
        crypto_pieces(plaintext, &mut self.pieces).map_err(|_| QuicError::Malformed)?;
        if self.pieces.len() > MAX_PIECES {
            return Err(QuicError::Malformed);
        }
        Ok(())
    }

    /// Puts the CRYPTO pieces in offset order and reads the ClientHello from the bytes they hold
    /// from offset 0 on.
    fn reassemble(&self) -> Result<ClientHello, QuicError> {
        let end = self
            .pieces
            .iter()
            .map(|(offset, data)| offset.saturating_add(data.len() as u64))
            .max()
            .unwrap_or(0);
        let end = usize::try_from(end)
            .ok()
            .filter(|&e| e <= MAX_CRYPTO_LEN)
            .ok_or(QuicError::Malformed)?;
        let mut stream = vec![0u8; end];
        let mut have = vec![false; end];
        for (offset, data) in &self.pieces {
            let start = usize::try_from(*offset).map_err(|_| QuicError::Malformed)?;
            let range = start..start + data.len();
            let (Some(bytes), Some(held)) = (stream.get_mut(range.clone()), have.get_mut(range))
            else {
                return Err(QuicError::Malformed);
            };
            for ((b, h), &new) in bytes.iter_mut().zip(held.iter_mut()).zip(data) {
                if *h && *b != new {
                    return Err(QuicError::Malformed);
                }
                *b = new;
                *h = true;
            }
        }
        let prefix = have.iter().position(|h| !h).unwrap_or(end);
        let contiguous = stream.get(..prefix).unwrap_or_default();
        match tls::parse_handshake(contiguous) {
            Ok(hello) if prefix == end => Ok(hello),
            // The hello is complete and more bytes follow a gap: a client's Initials carry only it.
            Ok(_) => Err(QuicError::Malformed),
            Err(TlsError::Incomplete) => match declared_len(contiguous) {
                Some(len) if end > len => Err(QuicError::Malformed),
                _ => Err(QuicError::Incomplete),
            },
            Err(_) => Err(QuicError::Malformed),
        }
    }
}

/// The full length of the handshake message whose header starts `stream`, once the header is there.
fn declared_len(stream: &[u8]) -> Option<usize> {
    match *stream.get(..4)? {
        [_, a, b, c] => Some(4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))),
        _ => None,
    }
}

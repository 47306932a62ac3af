//! One client Initial packet: the long header (RFC 9000 §17.2), the Initial keys (RFC 9001 §5.2; QUIC v2's
//! salt and labels, RFC 9369 §3.3), header protection (RFC 9001 §5.4) and payload protection (§5.3).
//!
//! Every read of the packet is a bounds-checked `get`; a packet that runs short is `None`, never a panic.

use aes::Aes128;
use aes::cipher::BlockCipherEncrypt;
use aes_gcm::aead::{Nonce, Tag};
use aes_gcm::{AeadInOut, Aes128Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;

/// RFC 9000 §15: QUIC version 1.
pub(super) const VERSION_1: u32 = 1;
/// RFC 9369 §3.1: QUIC version 2.
pub(super) const VERSION_2: u32 = 0x6b33_43cf;

/// RFC 9000 §17.2: connection IDs of at most 20 bytes in these versions.
const MAX_CID_LEN: usize = 20;
/// RFC 9001 §5.4.2: the header protection sample is 16 bytes, taken 4 bytes after the packet number's start.
const SAMPLE_LEN: usize = 16;
const SAMPLE_OFFSET: usize = 4;
/// RFC 9001 §5.3: AEAD_AES_128_GCM's tag.
const TAG_LEN: usize = 16;

/// A QUIC version whose Initial packets this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Version {
    V1,
    V2,
}

/// The long header packet types of RFC 9000 §17.2, whatever their bits in a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

impl Version {
    pub(super) fn of(wire: u32) -> Option<Version> {
        match wire {
            VERSION_1 => Some(Version::V1),
            VERSION_2 => Some(Version::V2),
            _ => None,
        }
    }

    /// RFC 9001 §5.2 (v1) and RFC 9369 §3.3.1 (v2).
    fn initial_salt(self) -> [u8; 20] {
        match self {
            Version::V1 => [
                0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a,
            ],
            Version::V2 => [
                0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26,
                0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
            ],
        }
    }

    /// The labels of the packet protection key, IV and header protection key (RFC 9001 §5.1 and
    /// §5.4; RFC 9369 §3.3.2).
    fn labels(self) -> [&'static [u8]; 3] {
        match self {
            Version::V1 => [b"quic key", b"quic iv", b"quic hp"],
            Version::V2 => [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
        }
    }

    /// The two type bits of the first byte (RFC 9000 §17.2 Table 5; RFC 9369 §3.2 for v2).
    fn kind(self, bits: u8) -> Kind {
        match (self, bits & 3) {
            (Version::V1, 0) | (Version::V2, 1) => Kind::Initial,
            (Version::V1, 1) | (Version::V2, 2) => Kind::ZeroRtt,
            (Version::V1, 2) | (Version::V2, 3) => Kind::Handshake,
            _ => Kind::Retry,
        }
    }
}

/// The secrets of one direction's Initial packets, as bytes (RFC 9001 §5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Secrets {
    pub(super) secret: [u8; 32],
    pub(super) key: [u8; 16],
    pub(super) iv: [u8; 12],
    pub(super) hp: [u8; 16],
}

impl Secrets {
    /// `side` is `b"client in"` or `b"server in"`; `dcid` is the Destination Connection ID of the
    /// client's first Initial packet.
    pub(super) fn initial(version: Version, dcid: &[u8], side: &[u8]) -> Option<Secrets> {
        let (_, initial) = Hkdf::<Sha256>::extract(Some(&version.initial_salt()), dcid);
        let secret: [u8; 32] = expand_label(&initial, side)?;
        let this = Hkdf::<Sha256>::from_prk(&secret).ok()?;
        let [key, iv, hp] = version.labels();
        Some(Secrets {
            secret,
            key: expand_label(&this, key)?,
            iv: expand_label(&this, iv)?,
            hp: expand_label(&this, hp)?,
        })
    }
}

/// RFC 8446 §7.1: HKDF-Expand-Label(secret, label, "", N), the label prefixed with "tls13 ".
fn expand_label<const N: usize>(hk: &Hkdf<Sha256>, label: &[u8]) -> Option<[u8; N]> {
    let len = u16::try_from(N).ok()?.to_be_bytes();
    let label_len = u8::try_from(label.len() + 6).ok()?;
    let mut out = [0u8; N];
    hk.expand_multi_info(&[&len, &[label_len], b"tls13 ", label, &[0]], &mut out)
        .ok()?;
    Some(out)
}

/// The client's Initial keys, ready to open packets.
pub(super) struct Keys {
    pub(super) aead: Aes128Gcm,
    pub(super) iv: [u8; 12],
    pub(super) hp: Aes128,
}

impl Keys {
    pub(super) fn new(s: &Secrets) -> Option<Keys> {
        Some(Keys {
            aead: Aes128Gcm::new_from_slice(&s.key).ok()?,
            iv: s.iv,
            hp: Aes128::new_from_slice(&s.hp).ok()?,
        })
    }

    /// RFC 9001 §5.4.3: AES-ECB of the sample; the first 5 bytes are the mask.
    pub(super) fn mask(&self, sample: &[u8]) -> Option<[u8; 5]> {
        let mut block = aes::Block::try_from(sample).ok()?;
        self.hp.encrypt_block(&mut block);
        let mut mask = [0u8; 5];
        mask.copy_from_slice(block.get(..5)?);
        Some(mask)
    }

    /// Removes header protection and decrypts `packet` (exactly one packet, `h` its header).
    /// `largest` is the largest packet number opened so far in this space (RFC 9000 §A.3). `None`
    /// when the packet is too short to sample or does not authenticate.
    pub(super) fn open(&self, packet: &[u8], h: &Header, largest: Option<u64>) -> Option<Opened> {
        let sample_at = h.pn_offset + SAMPLE_OFFSET;
        let mask = self.mask(packet.get(sample_at..sample_at + SAMPLE_LEN)?)?;
        let [m0, pn_mask @ ..] = mask;
        // RFC 9001 §5.4.1: a long header protects the low four bits of the first byte.
        let first = packet.first()? ^ (m0 & 0x0f);
        let pn_len = usize::from(first & 0x03) + 1;
        let body_at = h.pn_offset + pn_len;
        let mut header = packet.get(..body_at)?.to_vec();
        if let Some(b) = header.first_mut() {
            *b = first;
        }
        let mut truncated = 0u64;
        for (b, m) in header.get_mut(h.pn_offset..)?.iter_mut().zip(pn_mask) {
            *b ^= m;
            truncated = truncated << 8 | u64::from(*b);
        }
        let pn = decode_packet_number(largest, truncated, pn_len * 8);
        let mut nonce = self.iv;
        for (n, p) in nonce.iter_mut().rev().zip(pn.to_le_bytes()) {
            *n ^= p;
        }
        let body = packet.get(body_at..)?;
        let (ciphertext, tag) = body.split_at_checked(body.len().checked_sub(TAG_LEN)?)?;
        let mut plaintext = ciphertext.to_vec();
        self.aead
            .decrypt_inout_detached(
                &Nonce::<Aes128Gcm>::from(nonce),
                &header,
                plaintext.as_mut_slice().into(),
                &Tag::<Aes128Gcm>::try_from(tag).ok()?,
            )
            .ok()?;
        Some(Opened {
            first,
            pn,
            plaintext,
        })
    }
}

/// A packet with its protection removed.
pub(super) struct Opened {
    /// The first byte without header protection.
    pub(super) first: u8,
    pub(super) pn: u64,
    pub(super) plaintext: Vec<u8>,
}

impl Opened {
    /// RFC 9000 §17.2: the Reserved Bits (0x0c) must be zero once protection is removed.
    pub(super) fn reserved_bits_clear(&self) -> bool {
        self.first & 0x0c == 0
    }
}

/// RFC 9000 §A.3: the full packet number from its truncated encoding of `bits` bits.
fn decode_packet_number(largest: Option<u64>, truncated: u64, bits: usize) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let win = 1u64 << bits;
    let hwin = win / 2;
    let candidate = (expected & !(win - 1)) | truncated;
    if candidate.saturating_add(hwin) <= expected && candidate < (1u64 << 62) - win {
        candidate + win
    } else if candidate > expected.saturating_add(hwin) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// A long header packet's fields, as far as this module needs them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header<'a> {
    pub(super) version: Version,
    pub(super) kind: Kind,
    pub(super) dcid: &'a [u8],
    /// Where the (protected) packet number starts.
    pub(super) pn_offset: usize,
    /// The packet's length, header included: the next coalesced packet starts there.
    pub(super) len: usize,
}

/// Reads the long header at the start of `d` (RFC 9000 §17.2, §17.2.2 for the Initial's token). `None`
/// when it is not a long header of QUIC v1 or v2 with a Length field (Retry and Version Negotiation
/// have none), or when its fields run past the datagram.
pub(super) fn long_header(d: &[u8]) -> Option<Header<'_>> {
    let first = *d.first()?;
    // Header Form and Fixed Bit (RFC 9000 §17.2: a packet with the Fixed Bit clear is discarded).
    if first & 0xc0 != 0xc0 {
        return None;
    }
    let mut r = Cursor { d, pos: 1 };
    let version = Version::of(u32::from_be_bytes(r.take(4)?.try_into().ok()?))?;
    let kind = version.kind(first >> 4);
    let dcid_len = usize::from(r.u8()?);
    let dcid = r.take(dcid_len)?;
    let scid_len = usize::from(r.u8()?);
    r.take(scid_len)?;
    if dcid_len > MAX_CID_LEN || scid_len > MAX_CID_LEN {
        return None;
    }
    match kind {
        Kind::Retry => return None,
        Kind::Initial => {
            let token_len = usize::try_from(r.varint()?).ok()?;
            r.take(token_len)?;
        }
        Kind::ZeroRtt | Kind::Handshake => {}
    }
    let length = usize::try_from(r.varint()?).ok()?;
    let pn_offset = r.pos;
    let len = pn_offset.checked_add(length)?;
    if len > d.len() {
        return None;
    }
    Some(Header {
        version,
        kind,
        dcid,
        pn_offset,
        len,
    })
}

/// A bounds-checked reader: running short is `None`.
pub(super) struct Cursor<'a> {
    pub(super) d: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.d.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.d.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    /// Moves past the zero bytes that follow.
    pub(super) fn skip_zeros(&mut self) {
        let rest = self.d.get(self.pos..).unwrap_or_default();
        self.pos += rest.iter().take_while(|&&b| b == 0).count();
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    /// RFC 9000 §16: a variable-length integer, its length in the two high bits of its first byte.
    pub(super) fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let len = 1usize << (first >> 6);
        let mut v = u64::from(first & 0x3f);
        for &b in self.take(len - 1)? {
            v = v << 8 | u64::from(b);
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_numbers_decode_as_rfc_9000_a3_says() {
        // RFC 9000 §A.3's example: largest 0xa82f30ea, 16-bit 0x9b32 decodes to 0xa82f9b32.
        assert_eq!(
            decode_packet_number(Some(0xa82f_30ea), 0x9b32, 16),
            0xa82f_9b32
        );
        assert_eq!(decode_packet_number(None, 2, 32), 2);
        assert_eq!(decode_packet_number(Some(0xff), 0x01, 8), 0x101);
    }

    #[test]
    fn varints_read_as_rfc_9000_a1_says() {
        // RFC 9000 §A.1's examples.
        for (bytes, want) in [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c][..],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            (&[0x40, 0x25], 37),
        ] {
            assert_eq!(Cursor { d: bytes, pos: 0 }.varint(), Some(want));
            assert_eq!(
                Cursor {
                    d: &bytes[..bytes.len() - 1],
                    pos: 0
                }
                .varint(),
                None
            );
        }
    }
}

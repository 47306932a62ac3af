//! The frames of a decrypted Initial packet (RFC 9000 §12.4, §19), and the CRYPTO stream they carry.

use super::packet::Cursor;

/// RFC 9000 §19 frame types that may appear in an Initial packet (§12.4 Table 3, §12.5).
const PADDING: u8 = 0x00;
const PING: u8 = 0x01;
const ACK: u8 = 0x02;
const ACK_ECN: u8 = 0x03;
const CRYPTO: u8 = 0x06;
/// CONNECTION_CLOSE of the QUIC layer; the application's (0x1d) may not appear in an Initial (§12.5).
const CONNECTION_CLOSE: u8 = 0x1c;

/// A piece of the CRYPTO stream: its offset and bytes.
pub(super) type Piece = (u64, Vec<u8>);

/// Why a packet's frames are a protocol violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Violation;

/// Reads the frames of one decrypted Initial packet and appends its CRYPTO pieces to `pieces`.
/// RFC 9000 §12.4: a packet holds at least one frame, frames of other types are a PROTOCOL_VIOLATION
/// in an Initial, and a frame that runs past the packet is a FRAME_ENCODING_ERROR.
pub(super) fn crypto_pieces(plaintext: &[u8], pieces: &mut Vec<Piece>) -> Result<(), Violation> {
    if plaintext.is_empty() {
        return Err(Violation);
    }
    let mut r = Cursor {
        d: plaintext,
        pos: 0,
    };
    while !r.is_empty() {
        // Every type allowed here is below 0x40, so its shortest encoding is one byte (§12.4); a
        // longer encoding or any other type is a violation.
        match r.u8().ok_or(Violation)? {
            // A run of PADDING (most of a client's Initial) is skipped at once.
            PADDING => r.skip_zeros(),
            PING => {}
            ty @ (ACK | ACK_ECN) => ack(&mut r, ty == ACK_ECN).ok_or(Violation)?,
            CRYPTO => {
                let offset = r.varint().ok_or(Violation)?;
                let len = r.varint().ok_or(Violation)?;
                let data = r
                    .take(usize::try_from(len).map_err(|_| Violation)?)
                    .ok_or(Violation)?;
                // §19.6: the stream's largest offset may not exceed 2^62 - 1.
                if offset.saturating_add(len) >= 1 << 62 {
                    return Err(Violation);
                }
                pieces.push((offset, data.to_vec()));
            }
            CONNECTION_CLOSE => {
                r.varint().ok_or(Violation)?; // error code
                r.varint().ok_or(Violation)?; // frame type
                let reason = r.varint().ok_or(Violation)?;
                r.take(usize::try_from(reason).map_err(|_| Violation)?)
                    .ok_or(Violation)?;
            }
            _ => return Err(Violation),
        }
    }
    Ok(())
}

/// RFC 9000 §19.3: Largest Acknowledged, ACK Delay, ACK Range Count, First ACK Range, then the ranges
/// (Gap, ACK Range Length), then with type 0x03 the three ECN counts. Each range reads at least two
/// bytes, so a hostile count ends with the packet.
fn ack(r: &mut Cursor<'_>, ecn: bool) -> Option<()> {
    r.varint()?;
    r.varint()?;
    let ranges = r.varint()?;
    r.varint()?;
    for _ in 0..ranges {
        r.varint()?;
        r.varint()?;
    }
    if ecn {
        for _ in 0..3 {
            r.varint()?;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(plaintext: &[u8]) -> Result<Vec<Piece>, Violation> {
        let mut pieces = Vec::new();
        crypto_pieces(plaintext, &mut pieces).map(|()| pieces)
    }

    #[test]
    fn frames_allowed_in_an_initial() {
        let frames = [
            &[0x00, 0x00, 0x01][..],                           // PADDING, PADDING, PING
            &[0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x01],       // ACK with one more range
            &[0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03], // ACK with ECN counts
            &[0x1c, 0x0a, 0x06, 0x02, b'n', b'o'],             // CONNECTION_CLOSE "no"
            &[0x06, 0x40, 0x10, 0x03, b'a', b'b', b'c', 0x00], // CRYPTO at 16, then PADDING
        ]
        .concat();
        assert_eq!(read(&frames), Ok(vec![(16, b"abc".to_vec())]));
    }

    #[test]
    fn other_frames_and_short_frames_are_violations() {
        for bad in [
            &[][..],                         // no frame at all
            &[0x08, 0x00],                   // STREAM
            &[0x1d, 0x00, 0x00],             // the application's CONNECTION_CLOSE
            &[0x40, 0x01],                   // PING in a two-byte encoding
            &[0x06, 0x00, 0x05, b'a'],       // CRYPTO longer than the packet
            &[0x02, 0x00, 0x00, 0x05, 0x00], // ACK ranges missing
            &[
                0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, b'a',
            ], // past 2^62 - 1
        ] {
            assert_eq!(read(bad), Err(Violation), "{bad:02x?}");
        }
    }
}

//! pcapng: sections, interfaces and packet blocks (Enhanced, Simple, obsolete Packet).

use super::*;

/// Bounds what a hostile file can make us hold for one section.
const MAX_INTERFACES: usize = 65_536;

const SHB_TYPE: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a]; // the same in both byte orders
const IDB_TYPE: u64 = 1;
const PB_TYPE: u64 = 2; // obsolete, but old files have it
const SPB_TYPE: u64 = 3;
const EPB_TYPE: u64 = 6;

#[derive(Clone, Copy, Debug)]
pub(super) struct Interface {
    link: LinkType,
    snaplen: u32,
    /// `if_tsresol`: 10^-n s per tick, or 2^-n if bit 7 is set.
    tsresol: u8,
    /// `if_tsoffset`, seconds; signed per the spec (pcap-file reads it as u64).
    tsoffset: i64,
}

impl CaptureReader {
    pub(super) fn next_pcapng(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        loop {
            (self.current, self.start) = (self.next_number, self.offset);
            let mut head = [0u8; 8];
            match self.read_fill(&mut head)? {
                0 => return Ok(None),
                8 => {}
                got => return Err(self.truncated("a pcapng block header", 8, got)),
            }
            if head[..4] == SHB_TYPE {
                self.read_section(head)?;
                continue;
            }
            let order = self.order;
            let len = self.block_len(&head)?;
            match order.uint(&head, 0, 4).unwrap_or_default() {
                IDB_TYPE => {
                    self.read_block(head, len, "an interface description block")?;
                    self.add_interface()?;
                }
                block_type @ (EPB_TYPE | PB_TYPE | SPB_TYPE) => {
                    let number = self.next_number;
                    self.next_number += 1;
                    self.read_block(head, len, "a packet block")?;
                    return self.packet_block(block_type, number).map(Some);
                }
                _ => self.skip_block(len)?,
            }
        }
    }

    /// Reads the rest of a Section Header Block whose first 8 bytes are `head`: a new section,
    /// possibly in the other byte order, whose interface ids start again from 0.
    pub(super) fn read_section(&mut self, head: [u8; 8]) -> Result<(), CaptureError> {
        let mut start = [0u8; 16];
        start[..8].copy_from_slice(&head);
        let got = self.read_fill(&mut start[8..])?;
        if got < 8 {
            return Err(self.truncated("a pcapng section header", 8, got));
        }
        self.order = match start[8..12] {
            [0x1a, 0x2b, 0x3c, 0x4d] => Order::Big,
            [0x4d, 0x3c, 0x2b, 0x1a] => Order::Little,
            _ => return Err(self.corrupt("pcapng section header with a bad byte-order magic")),
        };
        let len = self.block_len(&head)?;
        let major = self.order.uint(&start, 12, 2).unwrap_or_default();
        if major != 1 || len < 28 {
            let detail =
                format!("unsupported pcapng section header (version {major}, {len} bytes)");
            return Err(self.corrupt(detail));
        }
        self.read_exactly(&start, len - 16, MAX_BLOCK_LEN, "a pcapng section header")?;
        self.check_trailer(len)?;
        self.interfaces.clear();
        Ok(())
    }

    /// Decodes the Interface Description Block in `buf` into the section's interface list.
    fn add_interface(&mut self) -> Result<(), CaptureError> {
        let order = self.order;
        let body = self
            .buf
            .get(8..self.buf.len().saturating_sub(4))
            .unwrap_or_default();
        let mut iface = Interface {
            link: LinkType::Other(0),
            snaplen: 0,
            tsresol: 6,
            tsoffset: 0,
        };
        let parsed = (|| {
            iface.link = LinkType::from_linktype(order.uint(body, 0, 2)? as u32);
            iface.snaplen = order.u32(body, 4)?;
            // Options (code, length, value padded to 4): the two that set the time scale must be
            // well formed; the others are ignored, whatever they hold, as Wireshark does.
            let mut at = 8;
            while let (Some(code), Some(len)) =
                (order.uint(body, at, 2), order.uint(body, at + 2, 2))
            {
                let len = len as usize;
                match (code, len) {
                    (0, _) => break,
                    (9, 1) => iface.tsresol = *body.get(at + 4)?,
                    (14, 8) => iface.tsoffset = order.uint(body, at + 4, 8)? as i64,
                    (9 | 14, _) => return None,
                    _ => {}
                }
                at += 4 + len.next_multiple_of(4);
            }
            Some(())
        })();
        if parsed.is_none() {
            return Err(self.corrupt("malformed interface description block"));
        }
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(self.corrupt(format!(
                "more than {MAX_INTERFACES} interfaces in a section"
            )));
        }
        self.interfaces.push(iface);
        Ok(())
    }

    /// Decodes the EPB, PB or SPB in `buf`.
    fn packet_block(&mut self, block_type: u64, number: u64) -> Result<Record<'_>, CaptureError> {
        let (order, buf) = (self.order, &self.buf);
        let body = buf.get(8..buf.len().saturating_sub(4)).unwrap_or_default();
        let field = |at, len| {
            order
                .uint(body, at, len)
                .ok_or_else(|| self.corrupt("packet block too short for its header"))
        };
        let (iface_id, header_len) = match block_type {
            EPB_TYPE => (field(0, 4)?, 20),
            PB_TYPE => (field(0, 2)?, 20),
            _ => (0, 4),
        };
        let iface = self.interfaces.get(iface_id as usize).ok_or_else(|| {
            let n = self.interfaces.len();
            self.corrupt(format!(
                "packet on interface {iface_id}, but the section describes {n} interface(s)"
            ))
        })?;
        let room = body.len().saturating_sub(header_len);
        let (ts, captured, orig_len) = if block_type == SPB_TYPE {
            // No captured length: the packet was cut to the snaplen, and what follows is padding.
            let orig_len = field(0, 4)?;
            let snaplen = if iface.snaplen == 0 {
                u32::MAX
            } else {
                iface.snaplen
            };
            (self.last_ts, orig_len.min(u64::from(snaplen)), orig_len)
        } else {
            let ticks = field(4, 4)? << 32 | field(8, 4)?;
            let resol = iface.tsresol;
            let nanos = ticks_to_nanos(ticks, resol, iface.tsoffset).ok_or_else(|| {
                self.corrupt(format!(
                    "timestamp {ticks} (if_tsresol {resol:#04x}) out of range"
                ))
            })?;
            let captured = field(12, 4)?;
            if captured > room as u64 {
                return Err(self.corrupt(format!(
                    "captured length {captured} exceeds the block ({room} bytes)"
                )));
            }
            (Timestamp::from_nanos(nanos), captured, field(16, 4)?)
        };
        let (start, link, orig_len) = (8 + header_len, iface.link, orig_len as u32);
        let data = start..start + (captured as usize).min(room);
        self.last_ts = ts;
        self.done = false;
        let data = self.buf.get(data).unwrap_or_default();
        Ok(Record {
            number,
            ts,
            link,
            data,
            orig_len,
        })
    }

    /// The block's total length, from the header; a bad one loses the framing.
    fn block_len(&self, head: &[u8; 8]) -> Result<u64, CaptureError> {
        match self.order.uint(head, 4, 4) {
            Some(len) if len >= 12 && len.is_multiple_of(4) => Ok(len),
            len => Err(self.corrupt(format!("invalid pcapng block length {}", len.unwrap_or(0)))),
        }
    }

    /// Reads the block whose first 8 bytes are `head` into `buf`.
    fn read_block(&mut self, head: [u8; 8], len: u64, what: &str) -> Result<(), CaptureError> {
        self.read_exactly(&head, len - 8, MAX_BLOCK_LEN, what)?;
        self.check_trailer(len)
    }

    /// Streams past a block we do not decode, checking that the file holds all of it.
    fn skip_block(&mut self, len: u64) -> Result<(), CaptureError> {
        let body = len - 12;
        let skipped = io::copy(&mut (&mut self.input).take(body), &mut io::sink());
        let skipped = skipped.map_err(|e| self.io(e))?;
        self.offset += skipped;
        let mut trailer = [0u8; 4];
        let got = if skipped == body {
            self.read_fill(&mut trailer)?
        } else {
            0
        };
        if got < 4 {
            return Err(self.truncated("a pcapng block", len - 8, skipped as usize + got));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&trailer);
        self.check_trailer(len)
    }

    /// Every pcapng block ends with a copy of its length (now the last 4 bytes of `buf`).
    fn check_trailer(&self, len: u64) -> Result<(), CaptureError> {
        match self
            .order
            .uint(&self.buf, self.buf.len().saturating_sub(4), 4)
        {
            Some(trailer) if trailer == len => Ok(()),
            trailer => Err(self.corrupt(format!(
                "pcapng block length fields disagree ({len} at start, {} at end)",
                trailer.unwrap_or(0)
            ))),
        }
    }
}

/// A pcapng timestamp (`ticks` of `tsresol`, plus `offset_secs`) in nanoseconds since the epoch;
/// `None` if a `Timestamp` cannot hold it.
pub(super) fn ticks_to_nanos(ticks: u64, tsresol: u8, offset_secs: i64) -> Option<u64> {
    let ticks = u128::from(ticks);
    let exp = u32::from(tsresol & 0x7f);
    let nanos = if tsresol & 0x80 != 0 {
        // 2^-exp s per tick: exp <= 127 keeps the shift in range, and the product fits.
        (ticks * u128::from(NANOS_PER_SEC)) >> exp
    } else if exp <= 9 {
        ticks * 10u128.pow(9 - exp)
    } else {
        // Finer than a nanosecond; a divisor beyond u128 leaves nothing.
        10u128.checked_pow(exp - 9).map_or(0, |div| ticks / div)
    };
    let total = i128::try_from(nanos).ok()? + i128::from(offset_secs) * i128::from(NANOS_PER_SEC);
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::capture::tests::{Item, put16, put32, read_bytes};

    struct Ng {
        big: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
            let padded = body.len().next_multiple_of(4);
            let len = (padded + 12) as u32;
            put32(&mut self.out, self.big, block_type);
            put32(&mut self.out, self.big, len);
            self.out.extend_from_slice(body);
            self.out.resize(self.out.len() + padded - body.len(), 0);
            put32(&mut self.out, self.big, len);
            self
        }
        fn shb(&mut self, big: bool) -> &mut Self {
            self.big = big;
            let mut body = Vec::new();
            put32(&mut body, big, 0x1a2b_3c4d);
            put16(&mut body, big, 1);
            put16(&mut body, big, 0);
            body.extend([0xff; 8]);
            self.block(0x0a0d_0d0a, &body)
        }
        fn idb(&mut self, linktype: u16, snaplen: u32, options: &[(u16, &[u8])]) -> &mut Self {
            let big = self.big;
            let mut body = Vec::new();
            put16(&mut body, big, linktype);
            put16(&mut body, big, 0);
            put32(&mut body, big, snaplen);
            for (code, value) in options {
                put16(&mut body, big, *code);
                put16(&mut body, big, value.len() as u16);
                body.extend_from_slice(value);
                body.resize(body.len().next_multiple_of(4), 0);
            }
            body.extend([0; 4]); // opt_endofopt
            self.block(1, &body)
        }
        fn epb(&mut self, iface: u32, ticks: u64, data: &[u8], orig_len: u32) -> &mut Self {
            let big = self.big;
            let mut body = Vec::new();
            for v in [
                iface,
                (ticks >> 32) as u32,
                ticks as u32,
                data.len() as u32,
                orig_len,
            ] {
                put32(&mut body, big, v);
            }
            body.extend_from_slice(data);
            self.block(6, &body)
        }
        fn spb(&mut self, orig_len: u32, data: &[u8]) -> &mut Self {
            let mut body = Vec::new();
            put32(&mut body, self.big, orig_len);
            body.extend_from_slice(data);
            self.block(3, &body)
        }
    }

    fn ng(big: bool) -> Ng {
        let mut ng = Ng {
            big,
            out: Vec::new(),
        };
        ng.shb(big);
        ng
    }

    #[test]
    fn pcapng_sections_interfaces_and_timestamps() {
        let mut ng = ng(true);
        let tsoffset = if ng.big {
            1_000u64.to_be_bytes()
        } else {
            1_000u64.to_le_bytes()
        };
        ng.idb(1, 0, &[(2, b"eth\xff0"), (10, &[0; 4])]) // non-UTF-8 name, if_tzone: both fine
            .idb(101, 0, &[(9, &[9]), (14, &tsoffset)])
            .block(4, &[0; 8]) // name resolution block: skipped
            .epb(0, 1_600_000_000_123_456, b"first", 70)
            .block(0x0bad_cafe, &[1, 2, 3])
            .epb(1, 1_600_000_000_987_654_321, b"second", 6)
            .spb(3, b"spb-with-padding")
            .shb(false) // new section: interface list starts again
            .idb(0, 0, &[(9, &[0x80 | 20])])
            .epb(0, 3 << 20, b"x", 1)
            .epb(1, 0, b"no such interface", 17)
            .epb(0, 0, b"not read: the first error ends reading", 0);
        let items = read_bytes(&ng.out).unwrap();
        let want: Vec<Item> = vec![
            Ok((
                1,
                1_600_000_000_123_456_000,
                LinkType::Ethernet,
                b"first".to_vec(),
                70,
            )),
            Ok((
                2,
                1_600_001_000_987_654_321,
                LinkType::Raw,
                b"second".to_vec(),
                6,
            )),
            Ok((
                3,
                1_600_001_000_987_654_321,
                LinkType::Ethernet,
                b"spb".to_vec(),
                3,
            )),
            Ok((4, 3_000_000_000, LinkType::Null, b"x".to_vec(), 1)),
            Err("record 5: packet on interface 1, but the section describes 1 interface(s) (at byte 360)".into()),
        ];
        assert_eq!(items, want);
    }

    #[test]
    fn pcapng_damage() {
        // SPB without any interface.
        let mut bad = ng(false);
        bad.spb(1, b"x");
        assert_eq!(
            read_bytes(&bad.out).unwrap(),
            vec![Err(
                "record 1: packet on interface 0, but the section describes 0 interface(s) (at byte 28)".into()
            )]
        );
        // Captured length larger than the block.
        let mut bad = ng(false);
        bad.idb(1, 0, &[]).epb(0, 0, b"abcd", 4).epb(0, 0, b"ok", 2);
        let at = bad.out.len() - 36 - 36 + 20; // captured_len of the first EPB
        bad.out[at] = 200;
        let items = read_bytes(&bad.out).unwrap();
        let want = "record 1: captured length 200 exceeds the block (4 bytes) (at byte 52)";
        assert_eq!(items, vec![Err(want.to_string())]);
        // Trailer disagreeing with the header: framing is lost, reading stops.
        let mut bad = ng(false);
        bad.idb(1, 0, &[]).epb(0, 0, b"abcd", 4).epb(0, 0, b"ok", 2);
        let at = bad.out.len() - 36 - 4;
        bad.out[at] = 0x99;
        let items = read_bytes(&bad.out).unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0].as_ref().unwrap_err().starts_with(
            "record 1: pcapng block length fields disagree (36 at start, 153 at end)"
        ));
        // Truncated inside a packet block, and inside a skipped block.
        let mut good = ng(false);
        good.idb(1, 0, &[]).epb(0, 0, b"abcd", 4);
        let items = read_bytes(&good.out[..good.out.len() - 6]).unwrap();
        assert_eq!(items, vec![Err("record 1: truncated in the middle of a packet block (needed 28 bytes, file ends after 22)".into())]);
        let mut skip = ng(false);
        skip.block(0x0bad, &[0; 40]);
        let items = read_bytes(&skip.out[..skip.out.len() - 10]).unwrap();
        assert_eq!(items, vec![Err("record 1: truncated in the middle of a pcapng block (needed 44 bytes, file ends after 34)".into())]);
        // Huge block length.
        let mut huge = ng(false);
        huge.epb(0, 0, b"", 0);
        let at = huge.out.len() - 32 + 4;
        huge.out[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(
            read_bytes(&huge.out).unwrap()[0]
                .as_ref()
                .unwrap_err()
                .contains("(needed 4294967272 bytes, file ends after 24)")
        );
        // Bad options in an IDB, wrong if_tsresol size.
        let mut bad = ng(false);
        bad.idb(1, 0, &[(9, &[6, 6])]).epb(0, 0, b"", 0);
        assert!(
            read_bytes(&bad.out).unwrap()[0]
                .as_ref()
                .unwrap_err()
                .contains("malformed interface description block")
        );
    }

    #[test]
    fn tick_conversion() {
        assert_eq!(ticks_to_nanos(5, 6, 0), Some(5_000));
        assert_eq!(ticks_to_nanos(5, 9, 0), Some(5));
        assert_eq!(ticks_to_nanos(5_000, 12, 0), Some(5));
        assert_eq!(ticks_to_nanos(1 << 30, 0x80 | 30, 0), Some(1_000_000_000));
        assert_eq!(ticks_to_nanos(7, 0, -7), Some(0));
        assert_eq!(ticks_to_nanos(7, 0, -8), None);
        assert_eq!(ticks_to_nanos(u64::MAX, 0, 0), None);
        assert_eq!(ticks_to_nanos(u64::MAX, 127, i64::MAX), None);
        assert_eq!(ticks_to_nanos(u64::MAX, 0xff, 0), Some(0));
        assert_eq!(ticks_to_nanos(u64::MAX, 127, 0), Some(0));
    }
}

//! Classic pcap: the file header, and records handed out in place from the read buffer.

use pcap_file::pcap::PcapHeader;
use pcap_file::{Endianness, TsResolution};

use super::*;

#[derive(Clone, Copy, Debug)]
pub(super) struct PcapFormat {
    order: Order,
    frac_to_nanos: u64,
    link: LinkType,
    minor_version: u16,
}

impl PcapFormat {
    /// A record header's (time, bytes captured, length on the wire).
    fn record_header(&self, head: &[u8; 16]) -> (Timestamp, u32, u32) {
        let field = |at| self.order.u32(head, at).unwrap_or_default();
        let (secs, frac, mut incl_len, mut orig_len) = (field(0), field(4), field(8), field(12));
        // Before 2.3 libpcap wrote the two lengths the other way round; 2.3 files can be either.
        let minor = self.minor_version;
        if minor < 3 || (minor == 3 && incl_len > orig_len) {
            std::mem::swap(&mut incl_len, &mut orig_len);
        }
        // A fraction of 1 s or more is carried over, as libpcap and Wireshark do.
        let ts = u64::from(secs) * NANOS_PER_SEC + u64::from(frac) * self.frac_to_nanos;
        (Timestamp::from_nanos(ts), incl_len, orig_len)
    }
}

impl CaptureReader {
    pub(super) fn read_pcap_header(&mut self, magic: &[u8]) -> Result<PcapFormat, CaptureError> {
        let mut head = [0u8; 24];
        head[..4].copy_from_slice(magic);
        let got = self.read_fill(&mut head[4..])?;
        if got < 20 {
            return Err(self.truncated("the file header", 24, 4 + got));
        }
        let (_, header) = PcapHeader::from_slice(&head).map_err(|e| self.corrupt(e))?;
        let (major, minor) = (header.version_major, header.version_minor);
        if major != 2 {
            return Err(self.corrupt(format!("unsupported pcap version {major}.{minor}")));
        }
        Ok(PcapFormat {
            order: match header.endianness {
                Endianness::Big => Order::Big,
                Endianness::Little => Order::Little,
            },
            frac_to_nanos: match header.ts_resolution {
                TsResolution::MicroSecond => 1_000,
                TsResolution::NanoSecond => 1,
            },
            // The upper bits carry FCS information (libpcap's LT_LINKTYPE).
            link: LinkType::from_linktype(u32::from(header.datalink) & 0xffff),
            minor_version: minor,
        })
    }

    pub(super) fn next_pcap(
        &mut self,
        format: PcapFormat,
    ) -> Result<Option<Record<'_>>, CaptureError> {
        // The previous record was read in place: it is done with now.
        self.input.consume(std::mem::take(&mut self.in_place));
        let number = self.next_number;
        (self.current, self.start) = (number, self.offset);
        // An error here (EINTR on a pipe, say) is left to the path below, which retries or reports it.
        if self.input.buffer().is_empty() {
            let _ = self.input.fill_buf();
        }
        // A record wholly in the read buffer is handed out from there, without a copy.
        if let Some(&head) = self.input.buffer().first_chunk::<16>() {
            let (ts, incl_len, orig_len) = format.record_header(&head);
            let len = incl_len as usize;
            if len <= MAX_PACKET_LEN && 16 + len <= self.input.buffer().len() {
                let end = 16 + len;
                (self.next_number, self.offset) = (number + 1, self.offset + end as u64);
                (self.in_place, self.done) = (end, false);
                return Ok(Some(Record {
                    number,
                    ts,
                    link: format.link,
                    data: self.input.buffer().get(16..end).unwrap_or_default(),
                    orig_len,
                }));
            }
        }
        let mut head = [0u8; 16];
        match self.read_fill(&mut head)? {
            0 => return Ok(None),
            16 => self.next_number += 1,
            got => return Err(self.truncated("a packet record header", 16, got)),
        }
        let (ts, incl_len, orig_len) = format.record_header(&head);
        self.read_exactly(&[], u64::from(incl_len), MAX_PACKET_LEN, "a packet record")?;
        self.done = false;
        let data = self.buf.as_slice();
        Ok(Some(Record {
            number,
            ts,
            link: format.link,
            data,
            orig_len,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::capture::tests::{put16, put32, read_bytes};

    fn pcap(big: bool, nano: bool, version: (u16, u16), linktype: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put32(&mut out, big, if nano { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        put16(&mut out, big, version.0);
        put16(&mut out, big, version.1);
        for v in [0, 0, 65535, linktype] {
            put32(&mut out, big, v);
        }
        out
    }

    fn pcap_record(out: &mut Vec<u8>, big: bool, fields: [u32; 4], data: &[u8]) {
        for v in fields {
            put32(out, big, v);
        }
        out.extend_from_slice(data);
    }

    #[test]
    fn pcap_byte_orders_resolutions_and_link_types() {
        for (big, nano) in [(false, false), (false, true), (true, false), (true, true)] {
            for (code, link) in [
                (1, LinkType::Ethernet),
                (12, LinkType::Raw),
                (14, LinkType::Raw),
            ]
            .into_iter()
            .chain([
                (101, LinkType::Raw),
                (228, LinkType::Ipv4),
                (229, LinkType::Ipv6),
            ])
            .chain([(113, LinkType::LinuxSll), (276, LinkType::LinuxSll2)])
            .chain([
                (0, LinkType::Null),
                (108, LinkType::Loop),
                (147, LinkType::Other(147)),
            ]) {
                let mut bytes = pcap(big, nano, (2, 4), code);
                let frac = if nano { 123_456_789 } else { 123_456 };
                pcap_record(&mut bytes, big, [1_600_000_000, frac, 3, 60], b"abc");
                pcap_record(&mut bytes, big, [1_600_000_001, 0, 0, 0], b"");
                let items = read_bytes(&bytes).unwrap();
                let want_ns =
                    1_600_000_000_000_000_000 + if nano { 123_456_789 } else { 123_456_000 };
                assert_eq!(items[0], Ok((1, want_ns, link, b"abc".to_vec(), 60)));
                assert_eq!(
                    items[1],
                    Ok((2, 1_600_000_001_000_000_000, link, vec![], 0))
                );
                assert_eq!(items.len(), 2);
            }
        }
    }

    #[test]
    fn pcap_quirks_accepted_like_libpcap() {
        // Link type with FCS bits set, fraction >= 1 s, orig_len > snaplen, incl_len > orig_len.
        let mut bytes = pcap(false, true, (2, 4), 0x4000_0000 | 229);
        pcap_record(&mut bytes, false, [10, 1_500_000_000, 2, 99_999], b"`\0");
        pcap_record(&mut bytes, false, [10, 0, 2, 1], b"`\0");
        let items = read_bytes(&bytes).unwrap();
        assert_eq!(
            items[0],
            Ok((1, 11_500_000_000, LinkType::Ipv6, b"`\0".to_vec(), 99_999))
        );
        assert_eq!(
            items[1],
            Ok((2, 10_000_000_000, LinkType::Ipv6, b"`\0".to_vec(), 1))
        );
        // Before 2.3 the two length fields were the other way round; 2.3 swaps when implausible.
        for version in [(2, 2), (2, 3)] {
            let mut bytes = pcap(true, false, version, 1);
            pcap_record(&mut bytes, true, [0, 0, 1500, 2], b"ab");
            let items = read_bytes(&bytes).unwrap();
            assert_eq!(
                items,
                vec![Ok((1, 0, LinkType::Ethernet, b"ab".to_vec(), 1500))]
            );
        }
        let mut bytes = pcap(true, false, (2, 3), 1);
        pcap_record(&mut bytes, true, [0, 0, 2, 1500], b"ab");
        assert_eq!(read_bytes(&bytes).unwrap()[0].as_ref().unwrap().4, 1500);
    }

    #[test]
    fn pcap_damage_is_reported_with_the_record_number() {
        let mut bytes = pcap(false, false, (2, 4), 1);
        pcap_record(&mut bytes, false, [0, 0, 2, 2], b"ab");
        let mut cut = bytes.clone();
        pcap_record(&mut cut, false, [0, 0, 100, 100], &[0; 10]);
        let items = read_bytes(&cut).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1],
            Err("record 2: truncated in the middle of a packet record (needed 100 bytes, file ends after 10)".into())
        );
        let mut cut = bytes.clone();
        cut.extend_from_slice(&[0; 5]);
        assert_eq!(
            read_bytes(&cut).unwrap()[1],
            Err("record 2: truncated in the middle of a packet record header (needed 16 bytes, file ends after 5)".into())
        );
        // A huge length in a small file: no allocation, reported as truncation.
        let mut cut = bytes.clone();
        pcap_record(&mut cut, false, [0, 0, u32::MAX, u32::MAX], &[0; 10]);
        assert_eq!(
            read_bytes(&cut).unwrap()[1],
            Err(format!(
                "record 2: truncated in the middle of a packet record (needed {} bytes, file ends after 10)",
                u32::MAX
            ))
        );
        // A length over the limit in a file that does hold that much.
        let mut big = bytes.clone();
        let len = MAX_PACKET_LEN as u32 + 1;
        pcap_record(&mut big, false, [0, 0, len, len], &vec![0; len as usize]);
        let items = read_bytes(&big).unwrap();
        assert_eq!(
            items[1],
            Err(format!(
                "record 2: a packet record of {len} bytes exceeds the 262144-byte limit (at byte 42)"
            ))
        );
        assert_eq!(items.len(), 2, "nothing is read after a framing error");
        // The file header itself.
        let err = read_bytes(&bytes[..20]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "record 1: truncated in the middle of the file header (needed 24 bytes, file ends after 20)"
        );
        let mut bad_version = bytes.clone();
        bad_version[4] = 3;
        assert!(
            read_bytes(&bad_version)
                .unwrap_err()
                .to_string()
                .contains("unsupported pcap version 3.4")
        );
    }
}

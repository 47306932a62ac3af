//! Writing replay output as a classic pcap file: nanosecond timestamps, LINKTYPE_RAW (101); and the
//! synthetic benchmark traffic ([`crate::bench::synthetic`]) in Ethernet frames, LINKTYPE_ETHERNET (1).
//!
//! Contract: never panics; replay output stores each packet as its IP packet only, because the inputs
//! may mix link types and a pcap file has one. Packets that a pcap file cannot represent (longer than
//! the snaplen, or timestamps after 2106) are refused with `WriteError::Packet` rather than being
//! silently altered. Nothing is guaranteed on disk until `finish` returns `Ok`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use super::capture::MAX_PACKET_LEN;
use crate::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{}: cannot create: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("{}: write error: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The packet cannot be stored in this format; the file is still usable.
    #[error("{}: cannot store packet: {detail}", path.display())]
    Packet { path: PathBuf, detail: String },
}

/// A pcap file being written.
pub(crate) struct CaptureWriter {
    path: PathBuf,
    pcap: PcapWriter<BufWriter<File>>,
}

impl CaptureWriter {
    /// Creates (or truncates) `path` and writes the header of a pcap file of IP packets.
    pub fn create(path: &Path) -> Result<Self, WriteError> {
        Self::create_link(path, DataLink::RAW)
    }

    /// Creates (or truncates) `path` and writes the header of a pcap file of Ethernet frames: then
    /// [`CaptureWriter::write`] takes whole frames.
    pub(crate) fn create_ethernet(path: &Path) -> Result<Self, WriteError> {
        Self::create_link(path, DataLink::ETHERNET)
    }

    fn create_link(path: &Path, datalink: DataLink) -> Result<Self, WriteError> {
        let file = File::create(path).map_err(|source| WriteError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            // Our reader's limit, so whatever it read can be written back.
            snaplen: MAX_PACKET_LEN as u32,
            datalink,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
        };
        let pcap =
            PcapWriter::with_header(BufWriter::new(file), header).map_err(|e| error(path, e))?;
        Ok(CaptureWriter {
            path: path.to_path_buf(),
            pcap,
        })
    }

    /// Appends one IP packet (a frame in an Ethernet file). `orig_len` is its length on the wire
    /// counted from the same start (the caller subtracts the link header it stripped); if smaller than `ip.len()` it is raised
    /// to it, since pcap cannot record more bytes than the packet had.
    pub fn write(&mut self, ts: Timestamp, ip: &[u8], orig_len: u32) -> Result<(), WriteError> {
        let refuse = |detail: String| WriteError::Packet {
            path: self.path.clone(),
            detail,
        };
        let captured = u32::try_from(ip.len())
            .ok()
            .filter(|&len| len as usize <= MAX_PACKET_LEN)
            .ok_or_else(|| {
                refuse(format!(
                    "{} bytes exceed the {MAX_PACKET_LEN}-byte snaplen",
                    ip.len()
                ))
            })?;
        // pcap-file would refuse these with a less helpful message.
        if ts.as_nanos() / 1_000_000_000 > u64::from(u32::MAX) {
            return Err(refuse(format!(
                "timestamp {} ns is after 2106, beyond pcap's 32-bit seconds",
                ts.as_nanos()
            )));
        }
        let packet = PcapPacket::new(
            Duration::from_nanos(ts.as_nanos()),
            orig_len.max(captured),
            ip,
        );
        self.pcap
            .write_packet(&packet)
            .map(|_| ())
            .map_err(|e| error(&self.path, e))
    }

    /// Flushes buffered packets to the file.
    pub fn finish(self) -> Result<(), WriteError> {
        self.pcap
            .into_writer()
            .flush()
            .map_err(|source| WriteError::Io {
                path: self.path,
                source,
            })
    }
}

fn error(path: &Path, err: PcapError) -> WriteError {
    let path = path.to_path_buf();
    match err {
        PcapError::IoError(source) => WriteError::Io { path, source },
        other => WriteError::Packet {
            path,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::capture::{CaptureReader, LinkType};

    #[test]
    fn written_packets_read_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pcap");
        let packets: Vec<(u64, Vec<u8>, u32)> = vec![
            (1_700_000_000_123_456_789, vec![0x45, 0, 0, 20, 1, 2, 3], 7),
            (1_700_000_000_123_456_790, vec![0x60; 40], 1500), // captured part of a longer packet
            (0, vec![0x45], 0),                                // orig_len understated: raised to 1
            (4_294_967_295_999_999_999, vec![], 0),            // last representable instant
            (5, vec![0x45; MAX_PACKET_LEN], MAX_PACKET_LEN as u32),
        ];
        let mut writer = CaptureWriter::create(&path).unwrap();
        for (ts, ip, orig_len) in &packets {
            writer
                .write(Timestamp::from_nanos(*ts), ip, *orig_len)
                .unwrap();
        }
        writer.finish().unwrap();

        let bytes = std::fs::read(&path).unwrap();
        let header: [u8; 4] = bytes[..4].try_into().unwrap();
        assert_eq!(u32::from_ne_bytes(header), 0xa1b2_3c4d, "nanosecond magic");
        let linktype: [u8; 4] = bytes[20..24].try_into().unwrap();
        assert_eq!(u32::from_ne_bytes(linktype), 101);

        let mut reader = CaptureReader::open(&path).unwrap();
        for (i, (ts, ip, orig_len)) in packets.iter().enumerate() {
            let record = reader.next_record().unwrap().unwrap();
            assert_eq!(record.number, i as u64 + 1);
            assert_eq!(record.ts, Timestamp::from_nanos(*ts));
            assert_eq!(record.link, LinkType::Raw);
            assert_eq!(record.data, &ip[..]);
            assert_eq!(record.orig_len, (*orig_len).max(ip.len() as u32));
        }
        assert!(reader.next_record().is_none());
    }

    #[test]
    fn unrepresentable_packets_are_refused_and_the_file_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pcap");
        let mut writer = CaptureWriter::create(&path).unwrap();
        let err = writer
            .write(Timestamp::from_nanos(0), &vec![0x45; MAX_PACKET_LEN + 1], 0)
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("cannot store packet: 262145 bytes exceed the 262144-byte snaplen"),
            "{err}"
        );
        let err = writer
            .write(Timestamp::from_secs(1 << 32), &[0x45], 1)
            .unwrap_err();
        assert!(matches!(err, WriteError::Packet { .. }), "{err}");
        writer.write(Timestamp::from_secs(1), &[0x45], 1).unwrap();
        writer.finish().unwrap();
        let mut reader = CaptureReader::open(&path).unwrap();
        assert_eq!(reader.next_record().unwrap().unwrap().data, [0x45]);
        assert!(reader.next_record().is_none());

        let err = CaptureWriter::create(&dir.path().join("missing/out.pcap"))
            .err()
            .unwrap();
        assert!(matches!(err, WriteError::Create { .. }));
        assert!(
            err.to_string()
                .contains("missing/out.pcap: cannot create: "),
            "{err}"
        );
    }
}

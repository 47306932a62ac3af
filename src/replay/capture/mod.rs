//! Reading packet records out of capture files (classic pcap and pcapng), streaming.
//!
//! Contract: never panics on any input, and never buffers more than [`MAX_BLOCK_LEN`] bytes
//! whatever a length field says (longer records are `Corrupt`, or truncated if the file ends
//! first); files are streamed, so captures of any size can be read. Records are numbered from 1,
//! counting every packet record (pcap record; pcapng Enhanced, Simple or obsolete Packet Block),
//! corrupt ones included; an error in a non-packet block carries the number the next packet record
//! would have had. The first error ends the reading: `next_record` returns `None` after it, as
//! callers stop there anyway and a damaged file's framing cannot be trusted.
//!
//! pcap-file decodes only the pcap file header here. Records and pcapng blocks are decoded below
//! because pcap-file 2.0.0 rejects records that libpcap and Wireshark read (orig_len > snaplen,
//! fraction >= 1 s), ignores pre-2.3 swapped lengths, returns raw pcapng tick counts as
//! nanoseconds, keeps SPB padding as packet bytes, fails a whole IDB on an `if_tzone` option or a
//! non-UTF-8 name, and its readers allocate 8 MB up front and report an oversized record as EOF.
//!
//! Here: the reader, its errors and the bounded reading all formats share; `pcap` decodes classic
//! pcap (records handed out in place from the read buffer), `pcapng` its sections and blocks.

use std::fmt::Display;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub use super::link::LinkType;
use crate::Timestamp;
use pcap::PcapFormat;
use pcapng::Interface;

mod pcap;
mod pcapng;

/// Largest packet accepted (Wireshark's limit for ordinary link types).
pub const MAX_PACKET_LEN: usize = 256 * 1024;
/// The file is read this much at a time; the records wholly inside are handed out from it.
const READ_BUFFER: usize = 64 * 1024;
/// Largest pcapng block buffered: a maximal packet plus its block header and options. Blocks we
/// do not decode are streamed past whatever their size.
pub const MAX_BLOCK_LEN: usize = MAX_PACKET_LEN + 64 * 1024;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// One packet record; `data` borrows the reader's buffer until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// 1-based number of the record in the file, counting every packet record.
    pub number: u64,
    pub ts: Timestamp,
    pub link: LinkType,
    /// The captured bytes, possibly fewer than `orig_len`.
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}: cannot open: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{}: not a pcap or pcapng capture file", path.display())]
    NotACapture { path: PathBuf },
    /// The file is damaged at `record`, including truncation in the middle of a record.
    #[error("record {record}: {detail}")]
    Corrupt { record: u64, detail: String },
    #[error("record {record}: read error: {source}")]
    Io { record: u64, source: io::Error },
}

impl CaptureError {
    /// The record number the error is about, if it is about one.
    pub fn record(&self) -> Option<u64> {
        match self {
            CaptureError::Corrupt { record, .. } | CaptureError::Io { record, .. } => Some(*record),
            CaptureError::Open { .. } | CaptureError::NotACapture { .. } => None,
        }
    }
}

/// Byte order of a file's (or pcapng section's) header fields.
#[derive(Clone, Copy, Debug)]
enum Order {
    Big,
    Little,
}

impl Order {
    /// The `len`-byte unsigned integer at `at`, or `None` past the end of `bytes`.
    fn uint(self, bytes: &[u8], at: usize, len: usize) -> Option<u64> {
        let bytes = bytes.get(at..at.checked_add(len)?)?;
        let push = |acc: u64, byte: &u8| acc << 8 | u64::from(*byte);
        Some(match self {
            Order::Big => bytes.iter().fold(0, push),
            Order::Little => bytes.iter().rev().fold(0, push),
        })
    }

    fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        self.uint(bytes, at, 4).map(|v| v as u32)
    }
}

/// Streams packet records out of a pcap or pcapng file.
pub struct CaptureReader {
    input: BufReader<File>,
    /// Bytes of `input`'s buffer the last record was handed out from, consumed at the next read.
    in_place: usize,
    /// File size, to tell an oversized record from one cut short by the end of the file.
    file_len: Option<u64>,
    /// Bytes consumed so far, for error details.
    offset: u64,
    /// Number the next packet record gets.
    next_number: u64,
    /// Number errors are reported against: the packet record being read, else the next one's.
    current: u64,
    /// Where the record or block being read starts, for error details.
    start: u64,
    /// Record or block being decoded; never longer than `MAX_BLOCK_LEN`.
    buf: Vec<u8>,
    /// `None` for pcapng.
    pcap: Option<PcapFormat>,
    /// pcapng: the current section's byte order and interfaces.
    order: Order,
    interfaces: Vec<Interface>,
    /// Simple Packet Blocks carry no time; they get the previous packet's.
    last_ts: Timestamp,
    /// Set by the end of the file and by any error.
    done: bool,
}

impl CaptureReader {
    /// Opens `path` and reads its file header (pcap) or first section header (pcapng).
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let path_buf = || path.to_path_buf();
        let open_err = |source| CaptureError::Open {
            path: path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let mut reader = CaptureReader {
            input: BufReader::with_capacity(READ_BUFFER, file),
            in_place: 0,
            file_len: meta.is_file().then_some(meta.len()),
            offset: 0,
            next_number: 1,
            current: 1,
            start: 0,
            buf: Vec::new(),
            pcap: None,
            order: Order::Little,
            interfaces: Vec::new(),
            last_ts: Timestamp::default(),
            done: false,
        };
        let mut head = [0u8; 8];
        let got = reader.read_fill(&mut head[..4])?;
        match head[..4] {
            _ if got < 4 => return Err(CaptureError::NotACapture { path: path_buf() }),
            [0xa1, 0xb2, 0xc3 | 0x3c, 0xd4 | 0x4d] | [0xd4 | 0x4d, 0xc3 | 0x3c, 0xb2, 0xa1] => {
                reader.pcap = Some(reader.read_pcap_header(&head[..4])?);
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                let got = reader.read_fill(&mut head[4..])?;
                if got < 4 {
                    return Err(reader.truncated("a pcapng section header", 4, got));
                }
                reader.read_section(head)?;
            }
            _ => return Err(CaptureError::NotACapture { path: path_buf() }),
        }
        Ok(reader)
    }

    /// The next packet record; `None` at the end of the file and after an error.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        if self.done {
            return None;
        }
        // Cleared only by a record read whole: the end of the file or an error finishes reading.
        self.done = true;
        match self.pcap {
            Some(format) => self.next_pcap(format).transpose(),
            None => self.next_pcapng().transpose(),
        }
    }

    /// Fills `buf` with `prefix` (already read) and the next `need` bytes of the file.
    fn read_exactly(
        &mut self,
        prefix: &[u8],
        need: u64,
        limit: usize,
        what: &str,
    ) -> Result<(), CaptureError> {
        let total = need + prefix.len() as u64;
        if total > limit as u64 {
            return Err(
                match self.file_len.map(|len| len.saturating_sub(self.offset)) {
                    Some(left) if left < need => self.truncated(what, need, left as usize),
                    _ => self.corrupt(format!(
                        "{what} of {total} bytes exceeds the {limit}-byte limit"
                    )),
                },
            );
        }
        self.buf.clear();
        self.buf.extend_from_slice(prefix);
        self.buf.resize(total as usize, 0);
        let got = fill(
            &mut self.input,
            self.buf.get_mut(prefix.len()..).unwrap_or_default(),
        );
        let got = got.map_err(|e| self.io(e))?;
        self.offset += got as u64;
        if (got as u64) < need {
            return Err(self.truncated(what, need, got));
        }
        Ok(())
    }

    /// Reads until `buf` is full or the file ends; returns the count read.
    fn read_fill(&mut self, buf: &mut [u8]) -> Result<usize, CaptureError> {
        let got = fill(&mut self.input, buf).map_err(|e| self.io(e))?;
        self.offset += got as u64;
        Ok(got)
    }

    fn truncated(&self, what: &str, need: u64, got: usize) -> CaptureError {
        let detail = format!(
            "truncated in the middle of {what} (needed {need} bytes, file ends after {got})"
        );
        CaptureError::Corrupt {
            record: self.current,
            detail,
        }
    }

    fn corrupt(&self, detail: impl Display) -> CaptureError {
        let detail = format!("{detail} (at byte {})", self.start);
        CaptureError::Corrupt {
            record: self.current,
            detail,
        }
    }

    fn io(&self, source: io::Error) -> CaptureError {
        CaptureError::Io {
            record: self.current,
            source,
        }
    }
}

/// Like `read_exact`, but says how much was read when the input ends early.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(buf.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests;

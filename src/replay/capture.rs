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

use std::fmt::Display;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapHeader;
use pcap_file::{Endianness, TsResolution};

pub use super::link::LinkType;
use crate::Timestamp;

/// Largest packet accepted (Wireshark's limit for ordinary link types).
pub const MAX_PACKET_LEN: usize = 256 * 1024;
/// The file is read this much at a time; the records wholly inside are handed out from it.
const READ_BUFFER: usize = 64 * 1024;
/// Largest pcapng block buffered: a maximal packet plus its block header and options. Blocks we
/// do not decode are streamed past whatever their size.
pub const MAX_BLOCK_LEN: usize = MAX_PACKET_LEN + 64 * 1024;
/// Bounds what a hostile file can make us hold for one section.
const MAX_INTERFACES: usize = 65_536;
const NANOS_PER_SEC: u64 = 1_000_000_000;

const SHB_TYPE: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a]; // the same in both byte orders
const IDB_TYPE: u64 = 1;
const PB_TYPE: u64 = 2; // obsolete, but old files have it
const SPB_TYPE: u64 = 3;
const EPB_TYPE: u64 = 6;

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

#[derive(Clone, Copy, Debug)]
struct PcapFormat {
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

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    /// `if_tsresol`: 10^-n s per tick, or 2^-n if bit 7 is set.
    tsresol: u8,
    /// `if_tsoffset`, seconds; signed per the spec (pcap-file reads it as u64).
    tsoffset: i64,
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

    fn read_pcap_header(&mut self, magic: &[u8]) -> Result<PcapFormat, CaptureError> {
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

    fn next_pcap(&mut self, format: PcapFormat) -> Result<Option<Record<'_>>, CaptureError> {
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

    fn next_pcapng(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
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
    fn read_section(&mut self, head: [u8; 8]) -> Result<(), CaptureError> {
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

/// A pcapng timestamp (`ticks` of `tsresol`, plus `offset_secs`) in nanoseconds since the epoch;
/// `None` if a `Timestamp` cannot hold it.
fn ticks_to_nanos(ticks: u64, tsresol: u8, offset_secs: i64) -> Option<u64> {
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
    use std::io::Write as _;

    /// An owned copy of a record, or the error that ended (or interrupted) reading.
    type Item = Result<(u64, u64, LinkType, Vec<u8>, u32), String>;

    fn read_all(path: &Path) -> Result<Vec<Item>, CaptureError> {
        let mut reader = CaptureReader::open(path)?;
        let mut items = Vec::new();
        while let Some(next) = reader.next_record() {
            items.push(match next {
                Ok(r) => Ok((
                    r.number,
                    r.ts.as_nanos(),
                    r.link,
                    r.data.to_vec(),
                    r.orig_len,
                )),
                Err(e) => Err(e.to_string()),
            });
            assert!(items.len() < 1_000_000, "reader does not terminate");
        }
        Ok(items)
    }

    fn read_bytes(bytes: &[u8]) -> Result<Vec<Item>, CaptureError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        read_all(file.path())
    }

    fn put16(out: &mut Vec<u8>, big: bool, v: u16) {
        out.extend(if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }
    fn put32(out: &mut Vec<u8>, big: bool, v: u32) {
        out.extend(if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

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

    #[test]
    fn open_errors_name_the_file() {
        for bytes in [&b""[..], b"abc", b"GET / HTTP/1.1\r\n"] {
            let err = read_bytes(bytes).unwrap_err();
            assert!(matches!(err, CaptureError::NotACapture { .. }), "{err}");
            assert!(
                err.to_string()
                    .ends_with(": not a pcap or pcapng capture file")
            );
            assert_eq!(err.record(), None);
        }
        let err = CaptureReader::open(Path::new("/nonexistent/x.pcap"))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/x.pcap: cannot open: "),
            "{err}"
        );
    }

    /// Builds pcapng files block by block.
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

    /// The shared real captures, read in place (they must not be copied into the project); `None` (a
    /// skip) without `../shared`, except in CI.
    fn real_captures(test: &str) -> Option<(PathBuf, Vec<PathBuf>)> {
        let dir = crate::testutil::shared_captures(test)?;
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        files.sort();
        Some((dir, files))
    }

    #[test]
    fn real_captures_read_to_the_end_with_the_right_counts() {
        let Some((dir, files)) =
            real_captures("real_captures_read_to_the_end_with_the_right_counts")
        else {
            return;
        };
        let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
        assert!(files.len() >= 40);
        for path in files {
            let name = path.file_name().unwrap().to_str().unwrap();
            let truth = std::fs::read_to_string(dir.join(format!("truth/{name}.txt"))).unwrap();
            let want: usize = truth
                .lines()
                .find_map(|l| l.trim().strip_prefix("Number of packets:"))
                .map(|n| n.trim().parse().unwrap())
                .unwrap();
            let listed: usize = manifest
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}\t")))
                .map(|l| {
                    l.split('\t')
                        .nth(5)
                        .unwrap()
                        .split(' ')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .unwrap();
            assert_eq!(want, listed, "{name}: truth and manifest disagree");
            let items = read_all(&path).unwrap();
            let records: Vec<_> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
            assert_eq!(records.len(), want, "{name}");
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r.0, i as u64 + 1, "{name}");
                let secs = r.1 / 1_000_000_000;
                assert!(
                    (946_684_800..1_893_456_000).contains(&secs),
                    "{name} #{}: {secs}",
                    r.0
                );
                assert!(r.3.len() <= r.4 as usize, "{name} #{}", r.0);
            }
            let errors: Vec<_> = items.iter().filter_map(|i| i.as_ref().err()).collect();
            if name == "truncated_file_mid_packet.pcap" {
                assert_eq!(
                    errors,
                    [
                        "record 2: truncated in the middle of a packet record header (needed 16 bytes, file ends after 2)"
                    ]
                );
                assert!(items.last().unwrap().is_err());
            } else {
                assert!(errors.is_empty(), "{name}: {errors:?}");
            }
        }
    }

    /// Reads whatever `bytes` hold; only a panic or a runaway loop fails.
    fn survive(file: &Path, bytes: &[u8], full_count: usize) {
        std::fs::write(file, bytes).unwrap();
        if let Ok(items) = read_all(file) {
            let records = items.iter().filter(|i| i.is_ok()).count();
            assert!(records <= full_count + bytes.len() / 16);
            for item in items.iter().flatten() {
                let _ = super::super::link::network_layer(item.2, &item.3);
            }
        }
    }

    #[test]
    fn every_prefix_and_random_damage_of_real_captures() {
        let Some((dir, _)) = real_captures("every_prefix_and_random_damage_of_real_captures")
        else {
            return;
        };
        let scratch = tempfile::NamedTempFile::new().unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (name, stride) in [
            ("truncated_file_mid_packet.pcap", 1),
            ("dns_udp.pcap", 1),
            ("http_connect_simple_null.pcap", 1),
            ("ipv6_frag_tcp_rawip6.pcap", 1),
            ("pcapng_2idb_ether_and_null.pcapng", 1),
            ("http_get_numeric_host_port_rawip.pcapng", 1),
            ("tls13_sni_client_only.pcapng", 1),
            ("http_two_interfaces.pcapng", 7),
            ("tls_quic_many_sni_22ifaces.pcapng", 997),
        ] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let full = read_all(&dir.join(name)).unwrap().len();
            for len in (0..=bytes.len()).step_by(stride) {
                survive(scratch.path(), &bytes[..len], full);
            }
            for _ in 0..300 {
                let mut damaged = bytes.clone();
                for _ in 0..=random() % 4 {
                    let at = (random() % damaged.len() as u64) as usize;
                    damaged[at] = random() as u8;
                }
                survive(scratch.path(), &damaged, full);
            }
        }
    }

    /// Cross-check against pcap-file's own readers wherever they manage to read a file: same bytes,
    /// same lengths, and timestamps that agree once pcap-file's raw pcapng ticks are scaled.
    #[test]
    fn real_captures_agree_with_pcap_file() {
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption as Opt;
        use pcap_file::pcapng::{Block, PcapNgReader};
        let Some((_, files)) = real_captures("real_captures_agree_with_pcap_file") else {
            return;
        };
        let mut compared = 0;
        for path in files {
            let ours: Vec<_> = read_all(&path).unwrap().into_iter().flatten().collect();
            let mut theirs = Vec::new();
            let file = File::open(&path).unwrap();
            if path.extension().unwrap() == "pcap" {
                let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
                while let Some(Ok(p)) = reader.next_packet() {
                    theirs.push((p.timestamp.as_nanos() as u64, p.data.to_vec(), p.orig_len));
                }
            } else {
                let mut reader = PcapNgReader::new(file).unwrap();
                let mut scale = Vec::new();
                while let Some(Ok(block)) = reader.next_block() {
                    match block {
                        Block::SectionHeader(_) => scale.clear(),
                        Block::InterfaceDescription(idb) => {
                            scale.push(idb.options.iter().fold((6, 0), |(r, o), opt| match opt {
                                Opt::IfTsResol(r) => (*r, o),
                                Opt::IfTsOffset(o) => (r, *o as i64),
                                _ => (r, o),
                            }))
                        }
                        Block::EnhancedPacket(epb) => {
                            let (resol, offset) = scale[epb.interface_id as usize];
                            let raw = epb.timestamp.as_nanos() as u64; // really a tick count
                            let ts = ticks_to_nanos(raw, resol, offset).unwrap();
                            theirs.push((ts, epb.data.to_vec(), epb.original_len));
                        }
                        _ => {}
                    }
                }
            }
            if theirs.len() != ours.len() {
                eprintln!(
                    "{}: pcap-file read {} of {} records",
                    path.display(),
                    theirs.len(),
                    ours.len()
                );
                continue;
            }
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(
                    (a.1, &a.3, a.4),
                    (b.0, &b.1, b.2),
                    "{} #{}",
                    path.display(),
                    a.0
                );
            }
            compared += 1;
        }
        assert!(compared >= 35, "{compared}");
    }
}

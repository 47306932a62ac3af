//! Capture files: records, their headers, writing pcap.

use super::*;

pub(crate) struct Rec {
    pub(crate) ts: u64,
    pub(crate) iface: u32,
    pub(crate) orig_len: u32,
    pub(crate) data: Vec<u8>,
}

/// Packets of one capture, each with an absolute timestamp in ns.
#[derive(Default)]
pub(crate) struct Cap {
    pub(crate) recs: Vec<Rec>,
}

impl Cap {
    pub(crate) fn add(&mut self, ts: u64, data: Vec<u8>) {
        self.add_on(0, ts, data);
    }

    pub(crate) fn add_on(&mut self, iface: u32, ts: u64, data: Vec<u8>) {
        let orig_len = data.len() as u32;
        self.recs.push(Rec {
            ts,
            iface,
            orig_len,
            data,
        });
    }

    /// Records only the first `keep` bytes; orig_len stays the full length.
    pub(crate) fn add_cut(&mut self, ts: u64, mut data: Vec<u8>, keep: usize) {
        let orig_len = data.len() as u32;
        data.truncate(keep);
        self.recs.push(Rec {
            ts,
            iface: 0,
            orig_len,
            data,
        });
    }

    /// Puts packets in time order (stable: equal times keep insertion order).
    pub(crate) fn sort(&mut self) {
        self.recs.sort_by_key(|r| r.ts);
    }
}

pub(crate) fn pcap_header(
    datalink: DataLink,
    endianness: Endianness,
    res: TsResolution,
) -> PcapHeader {
    PcapHeader {
        snaplen: SNAPLEN,
        datalink,
        ts_resolution: res,
        endianness,
        ..Default::default()
    }
}

pub(crate) fn write_pcap(path: &Path, header: PcapHeader, cap: &Cap) -> Res<usize> {
    let mut w = PcapWriter::with_header(BufWriter::new(File::create(path)?), header)?;
    for r in &cap.recs {
        if header.ts_resolution == TsResolution::MicroSecond && r.ts % US != 0 {
            return Err(format!("{}: timestamp {} is not whole µs", path.display(), r.ts).into());
        }
        let pkt = PcapPacket::new(Duration::from_nanos(r.ts), r.orig_len, &r.data);
        w.write_packet(&pkt)?;
    }
    w.into_writer().flush()?;
    Ok(cap.recs.len())
}

pub(crate) fn write_eth_pcap(path: &Path, cap: &Cap) -> Res<usize> {
    let header = pcap_header(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
    );
    write_pcap(path, header, cap)
}

//! Damaged captures through the library reader and through `outgate replay`: truncated, wrong magic,
//! absurd lengths, unknown link types, pcapng block lengths that lie, zero-length blocks, interfaces
//! that do not exist. Each is a clear error naming the record (and the file, from the CLI), nothing
//! is read past the end, and nothing is allocated from a length field (the CLI runs in a limited
//! address space).

use std::path::Path;

use outgate::replay::capture::{CaptureError, CaptureReader};

use crate::{outgate_limited, stderr};

fn le32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A little-endian microsecond pcap header with `snaplen` and `linktype`.
fn pcap(snaplen: u32, linktype: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4, 0x0004_0002, 0, 0, snaplen, linktype] {
        le32(&mut out, v);
    }
    out
}

fn pcap_record(out: &mut Vec<u8>, incl_len: u32, orig_len: u32, data: &[u8]) {
    for v in [1_600_000_000, 0, incl_len, orig_len] {
        le32(out, v);
    }
    out.extend_from_slice(data);
}

/// A pcapng block with `len` in its header (and trailer), whatever the body's real size.
fn block(out: &mut Vec<u8>, block_type: u32, body: &[u8], len: Option<u32>) {
    let padded = body.len().next_multiple_of(4);
    let len = len.unwrap_or((padded + 12) as u32);
    le32(out, block_type);
    le32(out, len);
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
    le32(out, len);
}

fn shb() -> Vec<u8> {
    let mut body = Vec::new();
    le32(&mut body, 0x1a2b_3c4d);
    body.extend_from_slice(&[1, 0, 0, 0]);
    body.extend_from_slice(&[0xff; 8]);
    let mut out = Vec::new();
    block(&mut out, 0x0a0d_0d0a, &body, None);
    out
}

fn idb(out: &mut Vec<u8>, linktype: u16, snaplen: u32) {
    let mut body = linktype.to_le_bytes().to_vec();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&snaplen.to_le_bytes());
    block(out, 1, &body, None);
}

fn epb_body(iface: u32, captured: u32, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for v in [iface, 0x0005_b000, 0, captured, data.len() as u32] {
        le32(&mut body, v);
    }
    body.extend_from_slice(data);
    body
}

/// An IPv4 UDP packet to port 53 (28 bytes), for link type raw (101).
const IP: [u8; 28] = [
    0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 192, 0, 2, 1, 0x30, 0x39, 0, 53, 0, 8,
    0, 0,
];

/// A valid pcap and a valid pcapng, three packets each, for the prefix test.
fn good_files() -> [Vec<u8>; 2] {
    let mut p = pcap(65535, 101);
    for n in 1..=3u8 {
        let mut ip = IP;
        ip[5] = n;
        pcap_record(&mut p, 28, 28, &ip);
    }
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    for n in 1..=3u8 {
        let mut ip = IP;
        ip[5] = n;
        block(&mut ng, 6, &epb_body(0, 28, &ip), None);
    }
    [p, ng]
}

/// The records a file gives as (number, data), and the error that ended reading, if any.
type Read = (Vec<(u64, Vec<u8>)>, Option<CaptureError>);

fn read(path: &Path) -> Result<Read, CaptureError> {
    let mut reader = CaptureReader::open(path)?;
    let (mut records, mut error) = (Vec::new(), None);
    while let Some(next) = reader.next_record() {
        match next {
            Ok(r) => records.push((r.number, r.data.to_vec())),
            Err(e) => error = Some(e),
        }
        assert!(records.len() < 1000, "reading does not end");
    }
    Ok((records, error))
}

fn read_bytes(dir: &Path, bytes: &[u8]) -> Result<Read, CaptureError> {
    let path = dir.join("c");
    std::fs::write(&path, bytes).unwrap();
    read(&path)
}

/// Every prefix of a good pcap and pcapng: the records read are exactly the whole file's first ones
/// (nothing past the end is made up), and a record cut short is an error naming its number.
#[test]
fn every_prefix_of_a_capture_reads_what_is_there_and_names_the_cut_record() {
    let dir = tempfile::tempdir().unwrap();
    for good in good_files() {
        let (whole, error) = read_bytes(dir.path(), &good).unwrap();
        assert!(error.is_none() && whole.len() == 3);
        for len in 0..good.len() {
            let Ok((records, error)) = read_bytes(dir.path(), &good[..len]) else {
                continue; // too short for a file header: "not a capture" or a header error
            };
            assert_eq!(records[..], whole[..records.len()], "prefix {len}");
            if let Some(e) = error {
                assert_eq!(
                    e.record(),
                    Some(records.len() as u64 + 1),
                    "prefix {len}: {e}"
                );
                assert!(e.to_string().contains("truncated"), "prefix {len}: {e}");
            }
        }
    }
}

/// (what, file bytes, what the error must say)
fn hostile_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    let mut p = pcap(u32::MAX, 101);
    pcap_record(&mut p, 28, 28, &IP);
    pcap_record(&mut p, 0xffff_fff0, 0xffff_fff0, &IP);
    out.push((
        "pcap: snaplen and captured length of 4 GB",
        p,
        "record 2: truncated in the middle of a packet record (needed 4294967280 bytes",
    ));
    let mut p = pcap(65535, 101);
    pcap_record(&mut p, 300_000, 300_000, &vec![0; 300_000]);
    out.push((
        "pcap: a record over the limit in a file that holds it",
        p,
        "record 1: a packet record of 300000 bytes exceeds the 262144-byte limit (at byte 24)",
    ));
    let mut p = pcap(65535, 101);
    p[4] = 9;
    out.push((
        "pcap: version 9",
        p,
        "record 1: unsupported pcap version 9.4",
    ));
    let p = pcap(65535, 101)[..17].to_vec();
    out.push((
        "pcap: header cut",
        p,
        "record 1: truncated in the middle of the file header",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, u32::MAX);
    block(&mut ng, 6, &epb_body(0, u32::MAX, &IP), None);
    out.push((
        "pcapng: snaplen and captured length of 4 GB",
        ng,
        "record 1: captured length 4294967295 exceeds the block (28 bytes)",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    block(&mut ng, 6, &epb_body(0, 28, &IP), Some(0xffff_fff0));
    out.push((
        "pcapng: a block length of 4 GB",
        ng,
        "record 1: truncated in the middle of a packet block (needed 4294967272 bytes",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    block(&mut ng, 6, &epb_body(0, 28, &IP), Some(16));
    out.push((
        "pcapng: a block length shorter than the block",
        ng,
        "record 1: pcapng block length fields disagree (16 at start, ",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    block(&mut ng, 6, &epb_body(0, 28, &IP), Some(62));
    out.push((
        "pcapng: a block length not a multiple of 4",
        ng,
        "record 1: invalid pcapng block length 62",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    block(&mut ng, 6, &epb_body(0, 28, &IP), Some(0));
    out.push((
        "pcapng: a zero-length block",
        ng,
        "record 1: invalid pcapng block length 0",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    let mut epb = Vec::new();
    block(&mut epb, 6, &epb_body(0, 28, &IP), None);
    let at = epb.len() - 4;
    epb[at] ^= 0x40;
    ng.extend_from_slice(&epb);
    out.push((
        "pcapng: trailer disagrees with the header",
        ng,
        "record 1: pcapng block length fields disagree",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    block(&mut ng, 6, &epb_body(0, 28, &IP), None);
    block(&mut ng, 6, &epb_body(7, 28, &IP), None);
    out.push((
        "pcapng: an interface that does not exist",
        ng,
        "record 2: packet on interface 7, but the section describes 1 interface(s)",
    ));
    let mut ng = shb();
    ng[8] = 0x99;
    out.push((
        "pcapng: section header with a bad byte-order magic",
        ng,
        "record 1: pcapng section header with a bad byte-order magic",
    ));
    let mut ng = shb();
    idb(&mut ng, 101, 0);
    let cut = ng.len() - 3;
    ng.truncate(cut);
    out.push((
        "pcapng: cut in an interface block",
        ng,
        "record 1: truncated in the middle of an interface description block",
    ));
    out
}

/// The library: each hostile file reads its good records, then one error that says what is wrong.
#[test]
fn hostile_captures_are_errors_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes, want) in hostile_files() {
        let got = match read_bytes(dir.path(), &bytes) {
            Ok((_, Some(e))) | Err(e) => e.to_string(),
            Ok((records, None)) => panic!("{what}: no error after {} records", records.len()),
        };
        assert!(got.contains(want), "{what}: {got}");
    }
}

/// `outgate replay`: exit 1, the file and the record named on stderr; the packets before the damage
/// still replayed; within a 512 MiB address space (a 4 GB allocation would abort it).
#[test]
fn replay_of_hostile_captures_exits_1_naming_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, bytes, want)) in hostile_files().into_iter().enumerate() {
        let path = dir.path().join(format!("hostile{i}.pcap"));
        std::fs::write(&path, &bytes).unwrap();
        let path = path.to_str().unwrap();
        let out = outgate_limited(&["replay", "--workers", "1", path]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains(&format!("{path}: {want}")),
            "{what}: the file and the record are not named: {err}"
        );
    }
}

#[test]
fn replay_of_files_that_are_not_captures_names_them() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("empty", &b""[..]),
        ("text", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("swapped-magic", &[0xd4, 0xc3, 0xb2, 0xa2, 0, 0, 0, 0]),
        ("binary", &[0xff; 4096]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let path = path.to_str().unwrap();
        let out = outgate_limited(&["replay", path]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(
            stderr(&out).contains(&format!("{path}: not a pcap or pcapng capture file")),
            "{name}: {}",
            stderr(&out)
        );
    }
}

/// Link types outgate does not read are counted per type, not errors: the replay exits 0.
#[test]
fn unknown_link_types_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pcap(65535, 147);
    pcap_record(&mut p, 28, 28, &IP);
    pcap_record(&mut p, 28, 28, &IP);
    let mut ng = shb();
    idb(&mut ng, 0xfffe, 0);
    idb(&mut ng, 101, 0);
    block(&mut ng, 6, &epb_body(0, 28, &IP), None);
    block(&mut ng, 6, &epb_body(1, 28, &IP), None);
    for (name, bytes, records, unsupported) in [("user0.pcap", p, 2, 2), ("ng.pcapng", ng, 2, 1)] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = outgate_limited(&["replay", "--format", "json", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["unsupported"]["total"], unsupported, "{name}: {json}");
        assert_eq!(json["records"], records, "{name}: {json}");
    }
}

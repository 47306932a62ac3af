//! Reading whole files: open errors, and the shared real captures read to the end and damaged.

use super::pcapng::ticks_to_nanos;
use super::*;
use std::io::Write as _;

/// An owned copy of a record, or the error that ended (or interrupted) reading.
pub(super) type Item = Result<(u64, u64, LinkType, Vec<u8>, u32), String>;

pub(super) fn read_all(path: &Path) -> Result<Vec<Item>, CaptureError> {
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

pub(super) fn read_bytes(bytes: &[u8]) -> Result<Vec<Item>, CaptureError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    read_all(file.path())
}

pub(super) fn put16(out: &mut Vec<u8>, big: bool, v: u16) {
    out.extend(if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    });
}
pub(super) fn put32(out: &mut Vec<u8>, big: bool, v: u32) {
    out.extend(if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    });
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
    let Some((dir, files)) = real_captures("real_captures_read_to_the_end_with_the_right_counts")
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
    let Some((dir, _)) = real_captures("every_prefix_and_random_damage_of_real_captures") else {
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

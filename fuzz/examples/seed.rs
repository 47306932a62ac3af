//! Writes the seed corpora of the fuzz targets from captures, policies and logs; `fuzz/seed.sh` runs
//! it. Only small pieces of each input are written (a few packets, payloads, a capture's first bytes),
//! so no capture is copied whole.
//!
//! Usage: seed OUT_DIR [--policy FILE]... [--log FILE]... [--conntrack-tests FILE] CAPTURE...

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use outgate::packet::{Packet, Transport};
use outgate::replay::capture::CaptureReader;
use outgate::replay::link::network_layer;

/// Packets per engine seed, and engine seeds per capture.
const ENGINE_PACKETS: usize = 24;
const ENGINE_SEEDS: usize = 3;
/// Longest packet kept in an engine or netlink seed.
const MAX_PACKET: usize = 1600;
/// A capture seed is the file's first bytes.
const CAPTURE_PREFIX: usize = 4096;
/// Payload seeds kept per capture and inspector.
const PAYLOADS: usize = 8;
/// Lines of a log per report seed.
const LOG_LINES: usize = 12;

struct Out {
    dir: PathBuf,
    seen: HashSet<(String, Vec<u8>)>,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        if bytes.is_empty() || !self.seen.insert((target.to_string(), bytes.to_vec())) {
            return;
        }
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).expect("creating the corpus directory");
        let mut path = dir.join(name);
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = dir.join(format!("{name}-{n}"));
        }
        std::fs::write(&path, bytes).expect("writing a seed");
    }
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or("x".into(), |s| s.to_string_lossy().into_owned())
}

/// An NFQNL_MSG_PACKET message as the kernel sends it for `ip`.
fn nfqueue_msg(id: u32, ip: &[u8]) -> Vec<u8> {
    fn attr(b: &mut Vec<u8>, ty: u16, data: &[u8]) {
        b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(data);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
    }
    let family = if ip.first().is_some_and(|v| v >> 4 == 6) {
        10
    } else {
        2
    };
    let mut b = vec![0u8; 16];
    b[4..6].copy_from_slice(&0x0300u16.to_ne_bytes()); // NFQNL_MSG_PACKET
    b.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg, queue 0
    let mut hdr = id.to_be_bytes().to_vec();
    hdr.extend_from_slice(&(if family == 10 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    hdr.push(3); // NF_INET_LOCAL_OUT
    attr(&mut b, 1, &hdr);
    attr(&mut b, 3, &7u32.to_be_bytes());
    attr(&mut b, 10, ip);
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b
}

fn capture(out: &mut Out, path: &Path) {
    let name = stem(path);
    if let Ok(bytes) = std::fs::read(path) {
        out.put("capture", &name, &bytes[..bytes.len().min(CAPTURE_PREFIX)]);
    }
    let Ok(mut reader) = CaptureReader::open(path) else {
        return;
    };
    let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
    while let Some(Ok(rec)) = reader.next_record() {
        if let Ok(ip) = network_layer(rec.link, rec.data) {
            packets.push((rec.ts.as_nanos(), ip[..ip.len().min(MAX_PACKET)].to_vec()));
        }
        if packets.len() >= ENGINE_PACKETS * ENGINE_SEEDS * 4 {
            break;
        }
    }
    // Engine: runs of consecutive packets, the clock as the capture had it.
    for (i, run) in packets
        .chunks(ENGINE_PACKETS)
        .take(ENGINE_SEEDS)
        .enumerate()
    {
        let mut seed = vec![0u8];
        let mut last = run.first().map_or(0, |p| p.0);
        for (ts, ip) in run {
            let dt_ms = ts.saturating_sub(last) / 1_000_000;
            last = *ts;
            let dt = if dt_ms < 1280 {
                (dt_ms / 10) as u8
            } else {
                0x80 | (dt_ms / 10_000).min(0x7f) as u8
            };
            seed.extend_from_slice(&(ip.len() as u16).to_le_bytes());
            seed.push(dt);
            seed.extend_from_slice(ip);
        }
        out.put("engine", &format!("{name}-{i}"), &seed);
    }
    // Netlink: the first packets, each as the kernel would queue it, then a few to a datagram.
    let msgs: Vec<Vec<u8>> = packets
        .iter()
        .take(6)
        .enumerate()
        .map(|(i, p)| nfqueue_msg(i as u32 + 1, &p.1))
        .collect();
    for (i, m) in msgs.iter().take(2).enumerate() {
        out.put("netlink", &format!("{name}-{i}"), m);
    }
    out.put("netlink", &format!("{name}-batch"), &msgs.concat());
    // Inspectors: the payloads by what they look like or the port they go to.
    let mut counts = [0usize; 4];
    for (_, ip) in &packets {
        let Ok(p) = Packet::parse(ip) else { continue };
        if p.payload.is_empty() {
            continue;
        }
        let (udp, sport, dport) = match p.transport {
            Transport::Tcp { sport, dport, .. } => (false, sport, dport),
            Transport::Udp { sport, dport } => (true, sport, dport),
            _ => continue,
        };
        let pl = p.payload;
        let mut put = |k: usize, target: &str, bytes: &[u8]| {
            if counts[k] < PAYLOADS {
                counts[k] += 1;
                out.put(target, &format!("{name}-{sport}-{dport}"), bytes);
            }
        };
        if !udp
            && (dport == 80
                || dport == 8080
                || pl.starts_with(b"GET ")
                || pl.starts_with(b"POST ")
                || pl.starts_with(b"CONNECT "))
        {
            put(0, "http", pl);
        }
        if !udp && pl.first() == Some(&0x16) {
            put(1, "tls", pl);
        }
        if !udp && (sport == 21 || dport == 21) {
            put(2, "ftp", pl);
        }
        let mut d = vec![u8::from(udp), 0];
        d.extend_from_slice(pl);
        put(3, "detect", &d);
    }
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: seed OUT_DIR [--policy F]... [--log F]... CAPTURE..."),
    );
    let mut out = Out {
        dir,
        seen: HashSet::new(),
    };
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--policy") => {
                let p = PathBuf::from(args.next().expect("--policy FILE"));
                let text = std::fs::read(&p).expect("reading a policy");
                out.put("policy", &stem(&p), &text);
            }
            Some("--log") => {
                let p = PathBuf::from(args.next().expect("--log FILE"));
                let text = std::fs::read_to_string(&p).expect("reading a log");
                let lines: Vec<&str> = text.lines().collect();
                for (i, chunk) in lines.chunks(LOG_LINES).take(3).enumerate() {
                    out.put(
                        "report",
                        &format!("{}-{i}", stem(&p)),
                        (chunk.join("\n") + "\n").as_bytes(),
                    );
                }
            }
            Some("--conntrack-tests") => {
                // The real dump datagram in the conntrack unit tests, as hex in `const DUMP`.
                let p = PathBuf::from(args.next().expect("--conntrack-tests FILE"));
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let Some(start) = text.find("const DUMP: &str = concat!(") else {
                    continue;
                };
                let body = &text[start..];
                let body = &body[..body.find(");").unwrap_or(body.len())];
                let hex: String = body.split('"').skip(1).step_by(2).collect();
                let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect();
                if let Some(b) = bytes {
                    out.put("netlink", "conntrack-dump", &b);
                }
            }
            _ => capture(&mut out, Path::new(&a)),
        }
    }
}

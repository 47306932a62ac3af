//! The inspectors against captures written by others (`../shared/pcaps-real`, read in place):
//! the first HTTP request of every TCP flow, and every FTP data-channel announcement, agree with
//! what tshark dissected (`truth/<file>.txt`).
//!
//! Each flow's client bytes are its TCP payloads in capture order, retransmissions (a sequence
//! number already seen) dropped, fed to the parser one segment at a time as the filter will.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use common::{captures, real_dir};
use outgate::inspect::ftp::{self, Announce};
use outgate::inspect::host::parse_host;
use outgate::inspect::http::{Evasion, HttpError, Request, parse_request};
use outgate::packet::{Packet, Transport};
use outgate::replay::capture::CaptureReader;
use outgate::replay::link::network_layer;

/// The rows of one `## title` section of a capture's truth file, split at ` | `.
fn truth_rows(file: &Path, title: &str) -> Vec<Vec<String>> {
    let name = file.file_name().unwrap().to_string_lossy();
    let path = real_dir().join("truth").join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip_while(|l| !l.starts_with(title))
        .skip(1)
        .take_while(|l| !l.starts_with("##"))
        .filter(|l| !l.trim().is_empty() && l.trim() != "(none)")
        .map(|l| l.trim().split(" | ").map(str::to_string).collect())
        .collect()
}

type FlowKey = (IpAddr, u16, IpAddr, u16);

/// One TCP segment with payload.
struct Segment {
    frame: u64,
    key: FlowKey,
    /// The outermost IP addresses, which tshark's columns show for tunnelled packets.
    shown: (IpAddr, IpAddr),
    seq: u32,
    payload: Vec<u8>,
}

/// The IP packet to read: the inner IPv6 packet of 6in4 (IPv4 protocol 41), else `ip` itself.
fn innermost(ip: &[u8]) -> &[u8] {
    if ip.first().map(|b| b >> 4) == Some(4) && ip.get(9) == Some(&41) {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if let Some(inner) = ip.get(ihl..) {
            return innermost(inner);
        }
    }
    ip
}

/// The TCP header and what follows, found by walking the IP header (and IPv6 extension headers).
fn tcp_bytes(ip: &[u8]) -> Option<&[u8]> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            (*ip.get(9)? == 6).then(|| ip.get(ihl..)).flatten()
        }
        6 => {
            let (mut next, mut at) = (*ip.get(6)?, 40usize);
            loop {
                match next {
                    6 => return ip.get(at..),
                    0 | 43 | 60 => {
                        next = *ip.get(at)?;
                        at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
                    }
                    44 => {
                        next = *ip.get(at)?;
                        at += 8;
                    }
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

fn segments(file: &Path) -> Vec<Segment> {
    let mut reader = CaptureReader::open(file).unwrap();
    let mut out = Vec::new();
    while let Some(record) = reader.next_record() {
        let Ok(record) = record else { break };
        let Ok(net) = network_layer(record.link, record.data) else {
            continue;
        };
        let ip = innermost(net);
        let Ok(packet) = Packet::parse(ip) else {
            continue;
        };
        let Transport::Tcp { sport, dport, .. } = packet.transport else {
            continue;
        };
        let Some(seq) = tcp_bytes(ip).and_then(|t| t.get(4..8)) else {
            continue;
        };
        if packet.payload.is_empty() {
            continue;
        }
        let outer = Packet::parse(net).map_or((packet.src, packet.dst), |p| (p.src, p.dst));
        out.push(Segment {
            frame: record.number,
            key: (packet.src, sport, packet.dst, dport),
            shown: outer,
            seq: u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]),
            payload: packet.payload.to_vec(),
        });
    }
    out
}

/// Per flow direction: the frame at which the head became decidable and what it was.
/// Per flow direction: the frame at which the head became decidable, what it was, and the
/// addresses tshark shows for the flow.
type Decided = HashMap<FlowKey, (u64, Result<Request, HttpError>, (IpAddr, IpAddr))>;

fn first_requests(file: &Path) -> Decided {
    let mut bufs: HashMap<FlowKey, (Vec<u8>, HashSet<u32>)> = HashMap::new();
    let mut decided = HashMap::new();
    for seg in segments(file) {
        if decided.contains_key(&seg.key) {
            continue;
        }
        let (buf, seen) = bufs.entry(seg.key).or_default();
        if !seen.insert(seg.seq) {
            continue; // a retransmission
        }
        buf.extend_from_slice(&seg.payload);
        match parse_request(buf) {
            Err(HttpError::Incomplete) => {}
            result => {
                decided.insert(seg.key, (seg.frame, result, seg.shown));
            }
        }
    }
    decided
}

/// Requests tshark does not list, and why: (capture, frame, reason).
const TSHARK_MISSES: [(&str, u64, &str); 1] = [(
    "ipv4_bad_optlen_in_tcp_session.pcap",
    4,
    "`REQ /malformed-decode HTTP/1.0` to port 443: tshark dissects 443 as TLS, not HTTP",
)];

#[test]
fn first_http_request_of_each_flow_agrees_with_tshark() {
    if !common::shared("first_http_request_of_each_flow_agrees_with_tshark") {
        return;
    }
    let mut compared = 0;
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let rows = truth_rows(&file, "## HTTP requests");
        let decided = first_requests(&file);
        let mut explained = HashSet::new();
        for (key, (frame, result, shown)) in &decided {
            let Ok(req) = result else {
                // Other protocols are NotHttp; nothing in these captures is a broken HTTP head.
                assert_ne!(
                    *result,
                    Err(HttpError::Malformed),
                    "{name}: frame {frame}: {key:?}"
                );
                continue;
            };
            // tshark lists a request at the frame that completes its body; the head is enough for
            // us, so ours may come earlier: take tshark's first request of the flow from our frame.
            let row = rows
                .iter()
                .filter(|r| {
                    r[1] == shown.0.to_string()
                        && r[2] == shown.1.to_string()
                        && r[3] == key.3.to_string()
                        && r[0].parse::<u64>().unwrap() >= *frame
                        && !explained.contains(&r[0])
                })
                .min_by_key(|r| r[0].parse::<u64>().unwrap());
            let Some(row) = row else {
                let known = TSHARK_MISSES
                    .iter()
                    .any(|(f, n, _)| *f == name && n == frame);
                assert!(
                    known,
                    "{name}: frame {frame}: {req:?}: tshark lists no request"
                );
                continue;
            };
            let ctx = format!("{name}: frame {frame} (tshark's {})", row[0]);
            assert_eq!(row[4], req.method, "{ctx}: method");
            assert_eq!(row[6], req.target, "{ctx}: URI");
            match row[5].as_str() {
                // tshark's Host column is the Host field; ours is the effective host, which is the
                // Host field's for these requests (origin-form, or CONNECT with the same authority).
                "-" => assert!(req.evasions.contains(&Evasion::NoHost), "{ctx}: {req:?}"),
                host => {
                    let (want_host, want_port) = parse_host(host).unwrap();
                    assert_eq!(
                        (&req.host, req.port),
                        (&Some(want_host), want_port),
                        "{ctx}: Host"
                    );
                }
            }
            assert_eq!(
                row[8],
                req.user_agent.as_deref().unwrap_or("-"),
                "{ctx}: User-Agent"
            );
            explained.insert(row[0].clone());
            compared += 1;
            eprintln!(
                "{ctx}: {} {} host={:?} port={:?} evasions={:?}",
                req.method, req.target, req.host, req.port, req.evasions
            );
        }
        // tshark's other rows are later requests of a flow whose first one we read (keep-alive,
        // or a request inside a CONNECT tunnel).
        for row in rows.iter().filter(|r| !explained.contains(&r[0])) {
            let frame: u64 = row[0].parse().unwrap();
            let later = decided.iter().any(|(key, (first, result, shown))| {
                result.is_ok()
                    && *first < frame
                    && row[1] == shown.0.to_string()
                    && row[2] == shown.1.to_string()
                    && row[3] == key.3.to_string()
            });
            assert!(
                later,
                "{name}: tshark's request at frame {frame} was not read: {row:?}"
            );
        }
    }
    assert!(compared >= 11, "compared only {compared} first requests");
}

#[test]
fn ftp_announcements_agree_with_tshark() {
    if !common::shared("ftp_announcements_agree_with_tshark") {
        return;
    }
    let mut compared = 0;
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let rows = truth_rows(&file, "## FTP control");
        // What we read: (frame, line text, endpoint in tshark's spelling) for each complete line.
        let mut read: Vec<(u64, String, Option<String>)> = Vec::new();
        let mut state: HashMap<FlowKey, (Vec<u8>, HashSet<u32>)> = HashMap::new();
        for seg in segments(&file) {
            if seg.key.1 != 21 && seg.key.3 != 21 {
                continue;
            }
            let (tail, seen) = state.entry(seg.key).or_default();
            if !seen.insert(seg.seq) {
                continue;
            }
            tail.extend_from_slice(&seg.payload);
            let (lines, rest) = ftp::lines(tail);
            for line in lines {
                let from_server = seg.key.1 == 21;
                let chan = if from_server {
                    ftp::parse_server_line(line)
                } else {
                    ftp::parse_client_line(line)
                };
                let endpoint = chan.map(|c| {
                    let side = match c.kind {
                        Announce::Pasv | Announce::Epsv => "passive",
                        Announce::Port | Announce::Eprt => "active",
                    };
                    // EPSV: the control connection's server, which sent the reply.
                    let addr = c.addr.unwrap_or(seg.key.0);
                    format!("{side}={addr}:{}", c.port)
                });
                read.push((
                    seg.frame,
                    String::from_utf8_lossy(line).into_owned(),
                    endpoint,
                ));
            }
            let keep = tail.len() - rest;
            tail.drain(..keep);
        }
        for row in &rows {
            let frame: u64 = row[0].parse().unwrap();
            let ours = read
                .iter()
                .find(|(f, text, _)| *f == frame && *text == row[3])
                .unwrap_or_else(|| panic!("{name}: frame {frame}: line {:?} not read", row[3]));
            let want = (row[4] != "-").then(|| row[4].clone());
            assert_eq!(ours.2, want, "{name}: frame {frame}: {:?}", row[3]);
            compared += usize::from(want.is_some());
        }
        // And nothing tshark did not see as an announcement.
        for (frame, text, endpoint) in &read {
            if endpoint.is_some() {
                assert!(
                    rows.iter()
                        .any(|r| r[0] == frame.to_string() && r[3] == *text),
                    "{name}: frame {frame}: {text:?} read as {endpoint:?}, not in tshark's list"
                );
            }
        }
    }
    assert_eq!(
        compared,
        3 + 3 + 2,
        "the 227 and PORT lines of the three FTP captures"
    );
}

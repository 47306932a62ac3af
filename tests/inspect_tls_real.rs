//! The inspectors against captures written by others (`../shared/pcaps-real`, read in place), with
//! tshark's dissection in `truth/<file>.txt` as the reference:
//! - every TLS-over-TCP ClientHello tshark lists is parsed, with the same SNI, ALPN, versions and ECH
//!   flag, and no hello is found that tshark does not list;
//! - the app detected from each TCP/UDP flow's first client payload agrees with tshark's `app=`
//!   wherever that is http, tls, ssh, dns, quic, wg or ftp, except the flows listed in
//!   [`DETECT_EXCEPTIONS`], each with its reason.
//!
//! QUIC ClientHellos (tshark's `QUIC` rows) travel in encrypted Initial packets (RFC 9001 §5.2): they are
//! compared in `inspect_quic_real.rs`, through the engine, which decrypts them.
//!
//! Flows are rebuilt here the simple way: the client is the sender of the flow's first packet;
//! each direction's TCP payload is concatenated in capture order, retransmitted bytes (by sequence
//! number, read from the raw TCP header) dropped. IP-in-IP, 6in4 and GRE are unwrapped, so flows
//! are the innermost ones, like tshark's.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use common::{captures, real_dir};
use outgate::inspect::detect::{App, Detection, Transport, detect};
use outgate::inspect::tls::{ClientHello, parse_client_hello};
use outgate::packet::{Packet, Transport as L4};
use outgate::replay::capture::CaptureReader;
use outgate::replay::link::network_layer;

/// Flows where detection and tshark disagree, for a reason: (capture, client, server, reason).
const DETECT_EXCEPTIONS: &[(&str, &str, &str, &str)] = &[
    (
        "http_two_interfaces.pcapng",
        "192.168.1.146:80",
        "192.168.1.103:1044",
        "only the server's side of this connection is in the capture: its first payload is an \
         HTTP response, which tshark calls http; a client's first bytes never are",
    ),
    (
        "ipv6_in_ipv4_6in4.pcap",
        "2604:a880:1:20::224:b001:993",
        "2001:470:1f17:13f:6d69:c72:7313:616f:56381",
        "caught mid-connection: the first packet is the server's TLS application data (0x17), \
         which tshark calls tls; a connection's first client bytes are a handshake record",
    ),
    (
        "ipv6_in_ipv4_6in4.pcap",
        "2604:a880:1:20::224:b001:993",
        "2001:470:1f17:13f:6d69:c72:7313:616f:35610",
        "caught mid-connection, as the flow above",
    ),
];

/// Keep this much of each direction: far more than any first flight.
const STREAM_CAP: usize = 256 * 1024;

#[derive(Default)]
struct Side {
    stream: Vec<u8>,
    /// Where each segment (or datagram) ends in `stream`.
    ends: Vec<usize>,
    next_seq: Option<u32>,
    /// Capture order of this side's first payload.
    first_at: Option<u64>,
}

impl Side {
    fn push(&mut self, at: u64, seq: Option<u32>, data: &[u8]) {
        if data.is_empty() || self.stream.len() >= STREAM_CAP {
            return;
        }
        let mut data = data;
        if let (Some(seq), Some(next)) = (seq, self.next_seq) {
            let ahead = seq.wrapping_sub(next) as i32;
            if ahead < 0 {
                // Starts before what we have: a retransmission, perhaps with new bytes at its end.
                let old = ahead.unsigned_abs() as usize;
                if old >= data.len() {
                    return;
                }
                data = &data[old..];
            }
        }
        if let Some(seq) = seq {
            let len = data.len() as u32;
            let start = match self.next_seq {
                Some(next) if seq.wrapping_sub(next) as i32 <= 0 => next,
                _ => seq,
            };
            self.next_seq = Some(start.wrapping_add(len));
        }
        self.first_at.get_or_insert(at);
        self.stream.extend_from_slice(data);
        self.ends.push(self.stream.len());
    }

    fn first(&self) -> Option<&[u8]> {
        self.ends.first().map(|&e| &self.stream[..e])
    }
}

struct Flow {
    tcp: bool,
    client: SocketAddr,
    server: SocketAddr,
    /// Outer (source, destination) pairs of the client's packets, outermost first.
    outer: Vec<(IpAddr, IpAddr)>,
    c: Side,
    s: Side,
}

impl Flow {
    /// The server's first payload if it came before the client's.
    fn server_first(&self) -> Option<&[u8]> {
        match (self.s.first_at, self.c.first_at) {
            (Some(s), Some(c)) if s < c => self.s.first(),
            (Some(_), None) => self.s.first(),
            _ => None,
        }
    }

    fn detection(&self) -> Detection {
        let t = if self.tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let server = self.server_first();
        if !self.tcp {
            return detect(t, self.c.first().unwrap_or_default(), server);
        }
        let mut d = detect(t, &[], server);
        for &end in &self.c.ends {
            if d != Detection::NeedMore {
                break;
            }
            d = detect(t, &self.c.stream[..end], server);
        }
        d
    }
}

/// Offset of the transport header in an IPv4/IPv6 packet, past IPv6 extension headers.
fn l4_offset(ip: &[u8]) -> Option<usize> {
    match ip.first()? >> 4 {
        4 => Some(usize::from(ip[0] & 0x0f) * 4),
        6 => {
            let (mut next, mut off) = (*ip.get(6)?, 40usize);
            loop {
                match next {
                    0 | 43 | 60 => {
                        next = *ip.get(off)?;
                        off += (usize::from(*ip.get(off + 1)?) + 1) * 8;
                    }
                    44 => {
                        next = *ip.get(off)?;
                        off += 8;
                    }
                    _ => return Some(off),
                }
            }
        }
        _ => None,
    }
}

/// The innermost IP packet: IPv4/IPv6 in IP (protocols 4, 41) and GRE (47; RFC 2784, RFC 2890
/// optional fields) are unwrapped. Returns it with the outer (source, destination) pairs.
fn innermost(ip: &[u8]) -> (&[u8], Vec<(IpAddr, IpAddr)>) {
    let mut cur = ip;
    let mut outer = Vec::new();
    while let Ok(p) = Packet::parse(cur) {
        if p.fragment.is_some() {
            break;
        }
        let Some(inner) = l4_offset(cur).and_then(|o| cur.get(o..)) else {
            break;
        };
        let inner = match p.ip_proto {
            4 | 41 => inner,
            47 => {
                let Some(&[f0, _, p0, p1]) = inner.get(..4) else {
                    break;
                };
                if ![0x0800, 0x86dd].contains(&u16::from_be_bytes([p0, p1])) {
                    break;
                }
                let optional = [0x80u8, 0x20, 0x10]
                    .iter()
                    .filter(|&&b| f0 & b != 0)
                    .count();
                let Some(rest) = inner.get(4 + 4 * optional..) else {
                    break;
                };
                rest
            }
            _ => break,
        };
        outer.push((p.src, p.dst));
        cur = inner;
    }
    (cur, outer)
}

/// Reads a capture into flows, in order of first packet.
fn flows_of(file: &Path) -> Vec<Flow> {
    let mut reader = CaptureReader::open(file).unwrap_or_else(|e| panic!("{e}"));
    let mut flows: Vec<Flow> = Vec::new();
    let mut index: BTreeMap<(bool, SocketAddr, SocketAddr), usize> = BTreeMap::new();
    let mut at = 0u64;
    while let Some(Ok(rec)) = reader.next_record() {
        at += 1;
        let Ok(ip) = network_layer(rec.link, rec.data) else {
            continue;
        };
        let (ip, outer) = innermost(ip);
        let Ok(p) = Packet::parse(ip) else { continue };
        if p.fragment.is_some_and(|f| f.offset != 0 || f.more) {
            continue;
        }
        let (tcp, sport, dport) = match p.transport {
            L4::Tcp { sport, dport, .. } => (true, sport, dport),
            L4::Udp { sport, dport } => (false, sport, dport),
            _ => continue,
        };
        let (src, dst) = (SocketAddr::new(p.src, sport), SocketAddr::new(p.dst, dport));
        let key = (tcp, src.min(dst), src.max(dst));
        let i = *index.entry(key).or_insert_with(|| {
            flows.push(Flow {
                tcp,
                client: src,
                server: dst,
                outer: outer.clone(),
                c: Side::default(),
                s: Side::default(),
            });
            flows.len() - 1
        });
        let flow = &mut flows[i];
        let seq = if tcp {
            l4_offset(ip)
                .and_then(|o| ip.get(o + 4..o + 8))
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            None
        };
        let side = if src == flow.client {
            &mut flow.c
        } else {
            &mut flow.s
        };
        if !tcp && !side.ends.is_empty() {
            continue; // UDP: the first datagram of each side is all we look at
        }
        side.push(at, seq, p.payload);
    }
    flows
}

/// One section of a truth file: its lines, and how many it says it left out (`... N more`).
fn section<'a>(truth: &'a str, title: &str) -> (Vec<&'a str>, usize) {
    let mut lines = Vec::new();
    let mut more = 0;
    let mut inside = false;
    for line in truth.lines() {
        if line.starts_with("## ") {
            inside = line.starts_with(title);
            continue;
        }
        let t = line.trim();
        if !inside || t.is_empty() || t == "(none)" {
            continue;
        }
        if let Some(n) = t.strip_prefix("... ").and_then(|r| r.split(' ').next()) {
            more += n.parse::<usize>().unwrap();
            continue;
        }
        lines.push(t);
    }
    (lines, more)
}

fn endpoint(s: &str) -> SocketAddr {
    let (ip, port) = s.rsplit_once(':').unwrap();
    SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap())
}

/// The stream a TLS inspector would look at: past an HTTP CONNECT request's header, if any (the
/// caller sees through the proxy tunnel; RFC 9110 §9.3.6).
fn tls_stream(flow: &Flow) -> &[u8] {
    let s = &flow.c.stream[..];
    if !s.starts_with(b"CONNECT ") {
        return s;
    }
    match s.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &s[i + 4..],
        None => &[],
    }
}

fn hex_versions(v: &[u16]) -> String {
    let list: Vec<String> = v.iter().map(|v| format!("0x{v:04x}")).collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join("|")
    }
}

/// A hello as tshark's row writes it: legacy_version | supported_versions | SNI | ALPN | ECH.
fn as_row(h: &ClientHello) -> String {
    let alpn = if h.alpn.is_empty() {
        "-".to_string()
    } else {
        h.alpn.join("|")
    };
    format!(
        "0x{:04x} | {} | {} | {} | {}",
        h.legacy_version,
        hex_versions(&h.supported_versions),
        h.sni.as_deref().unwrap_or("(no SNI)"),
        alpn,
        if h.ech { "ECH" } else { "-" }
    )
}

#[test]
fn client_hellos_match_tshark() {
    if !common::shared("client_hellos_match_tshark") {
        return;
    }
    let mut compared = 0;
    let mut failures = Vec::new();
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let truth =
            std::fs::read_to_string(real_dir().join("truth").join(format!("{name}.txt"))).unwrap();
        let (rows, more) = section(&truth, "## TLS/QUIC ClientHello");
        // (src ip, dst ip, dport, the rest of the row)
        let mut want: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|r| r.split(" | ").map(str::trim).collect::<Vec<_>>())
            .filter(|c| c.get(1) == Some(&"TLS/TCP"))
            .map(|c| (c[2].into(), c[3].into(), c[4].into(), c[5..].join(" | ")))
            .collect();
        let quic_rows = rows.iter().filter(|r| r.contains(" | QUIC | ")).count();
        let mut extra = Vec::new();
        for flow in flows_of(&file).iter().filter(|f| f.tcp) {
            let hello = match parse_client_hello(tls_stream(flow)) {
                Ok(h) => h,
                Err(e) => {
                    if flow.c.stream.first() == Some(&0x16) {
                        eprintln!("{name}: {} -> {}: {e:?}", flow.client, flow.server);
                    }
                    continue;
                }
            };
            let row = as_row(&hello);
            let port = flow.server.port().to_string();
            let mut keys = vec![(flow.client.ip(), flow.server.ip())];
            keys.extend(flow.outer.iter().copied());
            let hit = want.iter().position(|(s, d, p, r)| {
                *p == port
                    && *r == row
                    && keys
                        .iter()
                        .any(|(ks, kd)| ks.to_string() == *s && kd.to_string() == *d)
            });
            match hit {
                Some(i) => {
                    want.remove(i);
                    compared += 1;
                }
                None => extra.push(format!("{} -> {}: {row}", flow.client, flow.server)),
            }
        }
        for (s, d, p, r) in &want {
            failures.push(format!("{name}: tshark's {s} -> {d}:{p} {r} not found"));
        }
        // A truncated list names only its first rows: what we found beyond them must fit in the
        // count it left out (QUIC rows are not TCP hellos).
        if extra.len() > more {
            for e in &extra {
                failures.push(format!("{name}: found {e}, which tshark does not list"));
            }
        } else if !extra.is_empty() {
            eprintln!(
                "{name}: {} hellos beyond the {} rows listed (the list leaves out {more}, \
                 {quic_rows} listed rows are QUIC):",
                extra.len(),
                rows.len()
            );
            for e in &extra {
                eprintln!("  {e}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 45, "only {compared} hellos compared");
    eprintln!("{compared} TLS/TCP ClientHellos agree with tshark");
}

/// tshark's `app=` as the app the client's first bytes should show, for the protocols compared.
fn expected_app(layers: &str) -> Option<App> {
    let has = |p: &str| layers.split(',').any(|l| l == p);
    if has("quic") {
        Some(App::Quic)
    } else if has("http") {
        // `http,tls` is CONNECT then TLS inside, `ocsp,http` OCSP over HTTP: the first bytes are
        // HTTP either way.
        Some(App::Http)
    } else if has("tls") {
        Some(App::Tls)
    } else if has("ssh") {
        Some(App::Ssh)
    } else if has("dns") {
        Some(App::Dns)
    } else if has("wg") {
        Some(App::WireGuard)
    } else if has("ftp") {
        Some(App::Ftp)
    } else {
        None
    }
}

#[test]
fn detection_matches_tshark() {
    if !common::shared("detection_matches_tshark") {
        return;
    }
    let mut compared = 0;
    let mut failures = Vec::new();
    let mut exceptions_seen = Vec::new();
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let truth =
            std::fs::read_to_string(real_dir().join("truth").join(format!("{name}.txt"))).unwrap();
        let flows = flows_of(&file);
        let (lines, _) = section(&truth, "## flows");
        // tshark may list a flow twice (two passes of the same packets); each pair once.
        let mut want: BTreeMap<(bool, SocketAddr, SocketAddr), App> = BTreeMap::new();
        for line in lines {
            let f: Vec<&str> = line.split_whitespace().collect();
            let tcp = match f.first() {
                Some(&"TCP") => true,
                Some(&"UDP") => false,
                _ => continue,
            };
            let Some(app) = f
                .iter()
                .find_map(|w| w.strip_prefix("app="))
                .and_then(expected_app)
            else {
                continue;
            };
            want.insert((tcp, endpoint(f[1]), endpoint(f[3])), app);
        }
        for ((tcp, client, server), app) in want {
            let Some(flow) = flows
                .iter()
                .find(|f| f.tcp == tcp && f.client == client && f.server == server)
            else {
                failures.push(format!("{name}: flow {client} -> {server} not rebuilt"));
                continue;
            };
            let got = flow.detection();
            compared += 1;
            let exception = DETECT_EXCEPTIONS
                .iter()
                .find(|(f, c, s, _)| *f == name && endpoint(c) == client && endpoint(s) == server);
            match (got == Detection::App(app), exception) {
                (true, None) => {}
                (false, Some(e)) => {
                    eprintln!("{name}: {client} -> {server}: tshark {app:?}, ours {got:?}: {}", e.3);
                    exceptions_seen.push(e);
                }
                (true, Some(_)) => failures.push(format!(
                    "{name}: {client} -> {server} is listed as an exception but agrees"
                )),
                (false, None) => failures.push(format!(
                    "{name}: {client} -> {server}: tshark {app:?}, ours {got:?}; first bytes {:02x?}",
                    &flow.c.stream[..flow.c.stream.len().min(24)]
                )),
            }
        }
    }
    assert_eq!(
        exceptions_seen.len(),
        DETECT_EXCEPTIONS.len(),
        "exceptions not met"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 100, "only {compared} flows compared");
    eprintln!(
        "{compared} flows compared with tshark, {} documented exceptions",
        exceptions_seen.len()
    );
}

/// Every prefix of every flow's first client bytes: the inspectors never panic, and a strict
/// prefix of a hello that parses is `Incomplete`.
#[test]
fn real_prefixes() {
    if !common::shared("real_prefixes") {
        return;
    }
    use outgate::inspect::tls::TlsError;
    for file in captures() {
        for flow in flows_of(&file) {
            let s = &flow.c.stream[..flow.c.stream.len().min(4096)];
            let whole = parse_client_hello(s);
            for n in 0..=s.len() {
                let r = parse_client_hello(&s[..n]);
                if whole.is_ok() && r.is_err() {
                    assert_eq!(r, Err(TlsError::Incomplete), "{}", file.display());
                }
                let t = if flow.tcp {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let _ = detect(t, &s[..n], flow.s.first());
            }
        }
    }
}

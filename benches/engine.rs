//! The hot path in isolation: parsing (IPv4/IPv6, TCP/UDP, a truncated header), deciding a known flow,
//! deciding a new flow on a port rule, on an HTTP Host and on a TLS server name (over TCP, and in a QUIC
//! Initial, which is decrypted first).
//!
//! `cargo bench --bench engine`; figures and machine in BENCHMARKS.md. The flow table alone:
//! `benches/flow_table.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::{PacketBuilder, PacketBuilderStep};
use outgate::packet::Packet;
use outgate::{Engine, Policy, Timestamp};

fn tcp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [198, 18, 0, 1], 64)
        .tcp(sport, dport, 1, 64_000)
        .ack(1)
        .write(&mut out, payload)
        .expect("build packet");
    out
}

fn build(b: PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("build packet");
    out
}

fn parse(c: &mut Criterion) {
    let v6 = || PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64);
    let mut udp4 = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [198, 18, 0, 1], 64)
        .udp(40_000, 53)
        .write(&mut udp4, &[0u8; 40])
        .expect("build packet");
    let mut udp6 = Vec::new();
    v6().udp(40_000, 53)
        .write(&mut udp6, &[0u8; 40])
        .expect("build packet");
    let tcp4 = tcp(40_000, 443, &[0u8; 512]);
    // Cut inside the TCP header (a short snaplen): its ports are read, its flags are not.
    let truncated = tcp4[..30].to_vec();
    let cases = [
        ("parse_tcp_ipv4", tcp4.clone()),
        ("parse_udp_ipv4", udp4),
        (
            "parse_tcp_ipv6",
            build(v6().tcp(40_000, 443, 1, 64_000).ack(1), &[0u8; 512]),
        ),
        ("parse_udp_ipv6", udp6),
        ("parse_truncated_tcp_ipv4", truncated),
    ];
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    for (name, pkt) in cases {
        g.bench_function(name, |b| b.iter(|| Packet::parse(black_box(&pkt))));
    }
    g.finish();
}

/// A TLS record holding a ClientHello that names `server` (RFC 8446 §4.1.2, RFC 6066 §3).
fn client_hello(server: &str) -> Vec<u8> {
    let name = server.as_bytes();
    let n = name.len() as u16;
    let mut sni = vec![0, 0]; // server_name
    sni.extend_from_slice(&(n + 5).to_be_bytes());
    sni.extend_from_slice(&(n + 3).to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&n.to_be_bytes());
    sni.extend_from_slice(name);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]); // random
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]); // session id, one suite, null compression
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// New flows decided by their first payload: each is a SYN then the client's first data segment
/// (decided there); one element is one flow (two packets).
fn decide_payload(c: &mut Criterion) {
    let policy = "policy loc net DROP\n\
                  ACCEPT loc net tcp 80 host=www.example.org\n\
                  ACCEPT loc net tcp 443 sni=www.example.org\n\
                  ACCEPT loc net udp 443 sni=example.com\n";
    let engine = Engine::new(Policy::compile("bench", policy).expect("bench policy"));
    let http = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: bench\r\n\r\n".to_vec();
    let tls = client_hello("www.example.org");
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    for (name, dport, payload) in [
        ("new_flow_http_host", 80, http),
        ("new_flow_tls_sni", 443, tls),
    ] {
        let flows: Vec<[Vec<u8>; 2]> = (0..20_000u16)
            .map(|i| {
                let sport = 10_000 + i;
                let syn = PacketBuilder::ipv4([10, 0, 0, 2], [198, 18, 0, 1], 64)
                    .tcp(sport, dport, 99, 64_000)
                    .syn();
                let data = PacketBuilder::ipv4([10, 0, 0, 2], [198, 18, 0, 1], 64)
                    .tcp(sport, dport, 100, 64_000)
                    .ack(1);
                [build(syn, &[]), build(data, &payload)]
            })
            .collect();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| payload_flows(&engine, &flows, iters))
        });
    }
    // A QUIC flow whose first datagram is RFC 9001 §A.2's client Initial (1,200 bytes; its ClientHello
    // names example.com): keys derived, header protection removed, AES-128-GCM decrypted, the hello read.
    let initial: String = include_str!("../src/inspect/quic/rfc9001_a2_client_initial.hex")
        .split_whitespace()
        .collect();
    let initial: Vec<u8> = (0..initial.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&initial[i..i + 2], 16).expect("hex"))
        .collect();
    let flows: Vec<Vec<u8>> = (0..20_000u16)
        .map(|i| {
            let mut out = Vec::new();
            PacketBuilder::ipv4([10, 0, 0, 2], [198, 18, 0, 1], 64)
                .udp(10_000 + i, 443)
                .write(&mut out, &initial)
                .expect("build packet");
            out
        })
        .collect();
    g.bench_function("new_flow_quic_sni", |b| {
        b.iter_custom(|iters| new_flows(&engine, &flows, iters, false))
    });
    g.finish();
}

/// Decides `iters` flows of two packets, a fresh table for every pass over `flows`.
fn payload_flows(engine: &Engine, flows: &[[Vec<u8>; 2]], iters: u64) -> Duration {
    let mut left = iters as usize;
    let mut total = Duration::ZERO;
    while left > 0 {
        let n = left.min(flows.len());
        let mut table = engine.new_flow_table();
        let now = Timestamp::from_secs(1);
        let start = Instant::now();
        for (i, [syn, data]) in flows[..n].iter().enumerate() {
            engine.decide(&mut table, syn, now, 2 * i as u64);
            black_box(engine.decide(&mut table, data, now, 2 * i as u64 + 1));
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn decide(c: &mut Criterion) {
    let engine = Engine::new(Policy::builtin());
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));

    // A flow already in the table: the path every packet after the first takes.
    let pkt = tcp(40_000, 443, &[0u8; 512]);
    let mut table = engine.new_flow_table();
    engine.decide(&mut table, &pkt, Timestamp::from_secs(1), 0);
    g.bench_function("known_flow", |b| {
        b.iter(|| engine.decide(&mut table, black_box(&pkt), Timestamp::from_secs(1), 1))
    });

    // A new flow each time, decided by a port rule (`ACCEPT loc net 443`) and inserted into the table;
    // then the same for a port no rule names, which the zone pair's policy decides.
    // `_growing`: into a fresh table that grows as they come.
    for (name, dport, room) in [
        ("new_flow_port_rule", 443, true),
        ("new_flow_default_policy", 8080, true),
        ("new_flow_port_rule_growing", 443, false),
    ] {
        let flows: Vec<Vec<u8>> = (0..50_000u16)
            .map(|i| tcp(10_000 + i, dport, &[]))
            .collect();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| new_flows(&engine, &flows, iters, room))
        });
    }
    g.finish();
}

/// Decides `iters` first packets, a fresh table for every pass over `flows` (set up outside the clock).
/// `room`: the table has already held as many flows, which expired, so it has its room (a table in its
/// steady state, as live and in a long replay); else it grows as the flows come, and the time includes
/// its growth (allocation, first touch of the memory, moving the entries).
fn new_flows(engine: &Engine, flows: &[Vec<u8>], iters: u64, room: bool) -> Duration {
    let mut left = iters as usize;
    let mut total = Duration::ZERO;
    // Past every idle timeout of the flows decided at 1 s.
    let later = Timestamp::from_secs(1_000_000);
    while left > 0 {
        let n = left.min(flows.len());
        let mut table = engine.new_flow_table();
        let mut now = Timestamp::from_secs(1);
        if room {
            for (i, pkt) in flows[..n].iter().enumerate() {
                engine.decide(&mut table, pkt, now, i as u64);
            }
            table.sweep(later);
            now = later;
        }
        let start = Instant::now();
        for (i, pkt) in flows[..n].iter().enumerate() {
            black_box(engine.decide(&mut table, pkt, now, i as u64));
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

criterion_group!(benches, parse, decide, decide_payload);
criterion_main!(benches);

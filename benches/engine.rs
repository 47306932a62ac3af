//! The hot path in isolation: parsing, deciding a known flow, deciding a new flow on a port rule.
//!
//! `cargo bench --bench engine`; figures and machine in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
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

fn parse(c: &mut Criterion) {
    let pkt = tcp(40_000, 443, &[0u8; 512]);
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_tcp_ipv4", |b| {
        b.iter(|| Packet::parse(black_box(&pkt)))
    });
    g.finish();
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

criterion_group!(benches, parse, decide);
criterion_main!(benches);

//! The flow table alone (no parsing, no policy): looking a known flow up and inserting a new one, in a
//! table holding 10,000 and 1,000,000 flows. At 1M the table (about 220 MB) is far beyond the caches,
//! so a lookup pays its cache misses; at 10k it fits in them.
//!
//! `cargo bench --bench flow_table`; figures and machine in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outgate::flow::{FlowConfig, FlowKey, FlowTable};
use outgate::packet::Packet;
use outgate::{Decision, Reason, Timestamp, Verdict};

const ACCEPT: Decision = Decision::new(Verdict::Accept, Reason::Policy(0));

/// An IPv4 TCP SYN whose source address and port are the `i`-th of 2^40: each `i` is a flow.
fn syn(i: u64) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&40u16.to_be_bytes());
    b[8] = 64;
    b[9] = 6;
    b[12] = 10;
    b[13..16].copy_from_slice(&(i >> 16).to_be_bytes()[5..8]);
    b[16..20].copy_from_slice(&[198, 18, 0, 1]);
    b[20..22].copy_from_slice(&(i as u16).to_be_bytes());
    b[22..24].copy_from_slice(&443u16.to_be_bytes());
    b[24..28].copy_from_slice(&(i as u32).to_be_bytes());
    b[32] = 0x50;
    b[33] = 0x02;
    b
}

/// Packets of `n` distinct flows, parsed, with their keys.
fn flows(bytes: &[[u8; 40]]) -> Vec<(Packet<'_>, (FlowKey, outgate::flow::Side))> {
    bytes
        .iter()
        .filter_map(|b| {
            let p = Packet::parse(b).ok()?;
            let key = FlowKey::of(&p)?;
            Some((p, key))
        })
        .collect()
}

fn table(max: usize) -> FlowTable {
    FlowTable::new(FlowConfig {
        max_flows: max,
        ..FlowConfig::default()
    })
}

fn bench(c: &mut Criterion) {
    let now = Timestamp::from_secs(1);
    for (label, n) in [("10k", 10_000u64), ("1m", 1_000_000)] {
        let mut g = c.benchmark_group("flow_table");
        g.throughput(Throughput::Elements(1));
        if n > 100_000 {
            g.sample_size(10);
        }
        // n flows in the table, and as many more that are not (for the insertions).
        let bytes: Vec<[u8; 40]> = (0..2 * n).map(syn).collect();
        let all = flows(&bytes);
        let (known, fresh) = all.split_at(n as usize);
        let mut t = table(4 * n as usize);
        for (i, (p, key)) in known.iter().enumerate() {
            t.decide_or_insert(p, *key, now, i as u64, |_| (ACCEPT, key.1));
        }
        // A known flow's later packet, the flows taken in a scattered order (a stride prime to n).
        let stride = 7_919;
        g.bench_function(format!("lookup_{label}"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + stride) % known.len();
                let (p, key) = &known[i];
                black_box(t.decide_or_insert(p, *key, now, 0, |_| (ACCEPT, key.1)))
            })
        });
        // A new flow into a table already holding n flows: a copy of the table per pass of n
        // insertions (set up outside the clock), so that it holds between n and 2n.
        g.bench_function(format!("insert_{label}"), |b| {
            b.iter_custom(|iters| insert(known, fresh, n as usize, iters))
        });
        g.finish();
    }
}

fn insert(
    known: &[(Packet<'_>, (FlowKey, outgate::flow::Side))],
    fresh: &[(Packet<'_>, (FlowKey, outgate::flow::Side))],
    n: usize,
    iters: u64,
) -> Duration {
    let now = Timestamp::from_secs(1);
    let mut left = iters as usize;
    let mut total = Duration::ZERO;
    while left > 0 {
        let k = left.min(fresh.len());
        let mut t = table(4 * n);
        for (i, (p, key)) in known.iter().enumerate() {
            t.decide_or_insert(p, *key, now, i as u64, |_| (ACCEPT, key.1));
        }
        let start = Instant::now();
        for (i, (p, key)) in fresh[..k].iter().enumerate() {
            black_box(t.decide_or_insert(p, *key, now, i as u64, |_| (ACCEPT, key.1)));
        }
        total += start.elapsed();
        left -= k;
    }
    total
}

criterion_group!(benches, bench);
criterion_main!(benches);

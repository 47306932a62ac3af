//! Replay throughput by worker count: the whole pipeline (read, unwrap, dispatch, decide, count).
//!
//! `cargo bench --bench replay`. The capture (200,000 Ethernet packets over 20,000 flows, the office
//! mix of `outgate::bench::synthetic`, as `outgate bench --synthetic 200000` replays) is written once to
//! a temporary directory; `outgate bench` runs the same sweep from the command line, and the 1M-packet
//! comparison with tcpdump is `benches/replay_vs_tcpdump.sh`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outgate::bench::synthetic::{self, SyntheticConfig};
use outgate::replay::{ReplayConfig, replay};
use outgate::{Engine, Policy};

const PACKETS: u64 = 200_000;

fn by_workers(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let capture = dir.path().join("bench.pcap");
    synthetic::write_capture(&capture, SyntheticConfig::new(PACKETS)).expect("write capture");
    let engine = Engine::new(Policy::builtin());
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PACKETS));
    for workers in [1, 2, 4] {
        g.bench_function(format!("workers_{workers}"), |b| {
            let cfg = ReplayConfig {
                captures: vec![capture.clone()],
                workers,
                ..Default::default()
            };
            b.iter(|| replay(&engine, &cfg).expect("replay"))
        });
    }
    g.finish();
}

criterion_group!(benches, by_workers);
criterion_main!(benches);

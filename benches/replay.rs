//! Replay throughput by worker count: the whole pipeline (read, unwrap, dispatch, decide, count).
//!
//! `cargo bench --bench replay`. The capture (200,000 packets, raw IP, office-like port mix) is written
//! once to a temporary directory; the 1M-packet comparison with tcpdump is `benches/replay_vs_tcpdump.sh`.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use outgate::replay::writer::CaptureWriter;
use outgate::replay::{ReplayConfig, replay};
use outgate::{Engine, Policy, Timestamp};

const PACKETS: u64 = 200_000;
/// Destination ports weighted like an office: mostly web, some DNS, some blocked.
const PORTS: [u16; 10] = [443, 443, 443, 443, 443, 80, 80, 53, 22, 8080];

fn write_capture(path: &Path) {
    let mut w = CaptureWriter::create(path).expect("create capture");
    let mut buf = Vec::new();
    let payload = [0u8; 400];
    for i in 0..PACKETS {
        // 20 packets per flow, 1,000 client addresses, 500 servers.
        let flow = i / 20;
        let client = [10, 0, (flow % 1000 / 250) as u8, (flow % 250) as u8 + 1];
        let server = [198, 18, (flow % 500 / 250) as u8, (flow % 250) as u8 + 1];
        let sport = 20_000 + (flow % 40_000) as u16;
        let dport = PORTS[(flow % PORTS.len() as u64) as usize];
        let (src, dst, sp, dp) = if i % 2 == 0 {
            (client, server, sport, dport)
        } else {
            (server, client, dport, sport)
        };
        buf.clear();
        let b = PacketBuilder::ipv4(src, dst, 64);
        if dport == 53 {
            b.udp(sp, dp).write(&mut buf, &payload[..60]).expect("udp");
        } else {
            b.tcp(sp, dp, i as u32, 64_000)
                .ack(1)
                .write(&mut buf, &payload)
                .expect("tcp");
        }
        w.write(
            Timestamp::from_nanos(1_700_000_000_000_000_000 + i * 10_000),
            &buf,
            buf.len() as u32,
        )
        .expect("write");
    }
    w.finish().expect("finish capture");
}

fn by_workers(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let capture = dir.path().join("bench.pcap");
    write_capture(&capture);
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

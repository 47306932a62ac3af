//! The conntrack client at reload size: a dump of 50,000 entries, an update of 10,000 marks (and 1,000
//! updates one round trip at a time, for comparison).
//!
//! `cargo bench --bench conntrack`, as root (it needs a network namespace of its own; without root it
//! says so and measures nothing). It makes the namespace, fills it with `conntrack -I` (about half a
//! minute), runs itself inside it with `ip netns exec`, and deletes it.

use std::process::Command;

use criterion::{Criterion, Throughput};
use outgate::nfqueue::conntrack::{Conntrack, Entry};

const ENTRIES: usize = 50_000;
const UPDATES: usize = 10_000;
/// Set in the copy of the bench that runs inside the namespace.
const INSIDE: &str = "OUTGATE_BENCH_CONNTRACK_INSIDE";

fn main() {
    if std::env::var_os(INSIDE).is_some() {
        measure();
    } else {
        in_a_namespace();
    }
}

fn in_a_namespace() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    if !root {
        eprintln!("conntrack bench skipped: it needs root (a network namespace of its own)");
        return;
    }
    let ns = format!("ogbench{}", std::process::id());
    run("ip", &["netns", "add", &ns]);
    // Two shells, one per core: UDP entries from 10.50.0.1 upwards to 10.60.0.1:53.
    let half = ENTRIES / 2;
    let fill = format!(
        "fill() {{ i=$1; while [ $i -lt $2 ]; do \
           conntrack -I -p udp -s 10.50.$((i / 250)).$((i % 250 + 1)) -d 10.60.0.1 --sport 40000 \
             --dport 53 --timeout 3600 --mark 0 2>/dev/null || exit 1; \
           i=$((i + 1)); done; }}; \
         fill 0 {half} & fill {half} {ENTRIES} & wait"
    );
    run("ip", &["netns", "exec", &ns, "sh", "-c", &fill]);
    let exe = std::env::current_exe().expect("bench binary");
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env(INSIDE, "1")
        .status();
    run("ip", &["netns", "del", &ns]);
    assert!(status.is_ok_and(|s| s.success()), "the bench failed");
}

fn run(program: &str, args: &[&str]) {
    let ok = Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{program} {} failed", args.join(" "));
}

fn measure() {
    let mut c = Criterion::default().configure_from_args();
    let mut ct = Conntrack::open().expect("open ctnetlink");
    let entries = ct.dump().expect("dump").entries;
    assert!(entries.len() >= ENTRIES, "only {} entries", entries.len());

    let mut g = c.benchmark_group("conntrack");
    g.sample_size(10);
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("dump_50k", |b| {
        b.iter(|| ct.dump().expect("dump").entries.len())
    });
    // Each round flips the low bit of 10,000 marks, so every update changes its entry.
    g.throughput(Throughput::Elements(UPDATES as u64));
    let mut value = 0;
    g.bench_function("set_marks_10k", |b| {
        b.iter(|| {
            value ^= 1;
            let updates: Vec<(&Entry, u32)> =
                entries[..UPDATES].iter().map(|e| (e, value)).collect();
            let done = ct.set_marks(&updates, 1).expect("set_marks");
            assert_eq!(done.updated, UPDATES as u64, "{done:?}");
        })
    });
    // The same, one update and one answer at a time: what the pipelining saves.
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("set_mark_1k_one_by_one", |b| {
        b.iter(|| {
            value ^= 1;
            for e in &entries[..1_000] {
                assert!(ct.set_mark(e, value, 1).expect("set_mark"));
            }
        })
    });
    g.finish();
    c.final_summary();
}

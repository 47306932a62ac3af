//! The log's timestamps: `calendar::rfc3339` (jiff) beside the hand-written formatter it replaced, kept
//! here only as the baseline, and `parse_rfc3339` (what learn and diff read back per line).
//! Run: `cargo bench --bench calendar`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outgate::Timestamp;
use outgate::calendar::{parse_rfc3339, rfc3339};

/// The hand-written formatter before jiff (Howard Hinnant's `civil_from_days`), as it was.
fn hand_written(ts: Timestamp) -> String {
    let nanos = ts.as_nanos();
    let secs = nanos / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos % 1_000_000_000
    )
}

fn timestamps(c: &mut Criterion) {
    // A day of times a second apart and some nanoseconds, as a busy log's lines have.
    let times: Vec<Timestamp> = (0..1000u64)
        .map(|i| Timestamp::from_nanos(1_764_546_000_000_000_000 + i * 86_400_000_000 + i * 7_919))
        .collect();
    assert!(times.iter().all(|&t| hand_written(t) == rfc3339(t)));
    let texts: Vec<String> = times.iter().map(|&t| rfc3339(t)).collect();
    let mut g = c.benchmark_group("log_timestamp");
    g.throughput(Throughput::Elements(times.len() as u64));
    g.bench_function("format_hand_written", |b| {
        b.iter(|| {
            times
                .iter()
                .map(|&t| hand_written(black_box(t)).len())
                .sum::<usize>()
        })
    });
    g.bench_function("format_jiff", |b| {
        b.iter(|| {
            times
                .iter()
                .map(|&t| rfc3339(black_box(t)).len())
                .sum::<usize>()
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| {
            texts
                .iter()
                .filter_map(|s| parse_rfc3339(black_box(s)))
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, timestamps);
criterion_main!(benches);

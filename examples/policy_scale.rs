//! Compile time and resident size of large policies, measured: 100,000 rules of several shapes.
//!
//! cargo run --release --example policy_scale -- [RULES] [RUNS]
//!
//! For each shape, RULES (default 100,000) rules are generated, then parsed and compiled RUNS times
//! (default 5): the fastest and slowest run are printed, with the growth of the resident set
//! (/proc/self/statm) while the first compiled policy is held (what the parser freed may stay
//! resident; the figure is an upper bound), and the time to evaluate a first packet that no rule
//! matches (the longest walk: every rule narrowed to addresses on its port is checked). Linux only;
//! figures in BENCHMARKS.md ("Policy at 100k rules").

use std::error::Error;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use outgate::packet::Packet;
use outgate::{Policy, Timestamp};

/// Resident set size in bytes, from /proc/self/statm (4 KiB pages, as on x86-64).
fn rss() -> Result<u64, Box<dyn Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("/proc/self/statm: no resident field")?
        .parse()?;
    Ok(pages * 4096)
}

/// The policy text of `shape` with `n` rules.
fn text(shape: &str, n: u32) -> String {
    let mut t = String::new();
    if shape == "zones8" {
        for z in 0..8 {
            let _ = writeln!(t, "zone z{z} 10.{z}.0.0/16");
        }
        t.push_str("all all DROP\n");
    } else {
        t.push_str("loc net DROP\n");
    }
    for i in 0..n {
        let port = 1 + i % 65_000;
        let (a, b) = (i >> 8 & 0xff, i & 0xff);
        let _ = match shape {
            "ports" => writeln!(t, "ACCEPT loc net tcp {port}"),
            "narrowed" => writeln!(t, "ACCEPT loc net:198.18.{a}.{b} tcp 443"),
            "ranges" => writeln!(t, "ACCEPT loc net tcp 1:65535"),
            "hosts" => writeln!(t, "DROP loc net tcp 80 host=h{i}.example"),
            _ => writeln!(t, "ACCEPT z{} z{} tcp {port}", i % 8, i / 8 % 8),
        };
    }
    t
}

/// A TCP SYN from 10.0.0.1 to 192.0.2.1 port 443, which the shapes above leave to the pair's policy.
const SYN: [u8; 40] = [
    0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 192, 0, 2, 1, 0x30, 0x39, 1, 187, 0, 0,
    0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
];

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let rules: u32 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let runs: u32 = args.next().map_or(Ok(5), |a| a.parse())?;
    println!("{rules} rules, {runs} runs each");
    println!(
        "shape     text      compile (min-max)        RSS held   first packet, no rule matches"
    );
    for shape in ["ports", "narrowed", "ranges", "hosts", "zones8"] {
        let text = text(shape, rules);
        let before = rss()?;
        let (mut fastest, mut slowest) = (Duration::MAX, Duration::ZERO);
        let mut held = None;
        for _ in 0..runs {
            let start = Instant::now();
            let policy =
                Policy::compile("scale.rules", &text).map_err(|e| format!("{shape}: {}", e[0]))?;
            let took = start.elapsed();
            (fastest, slowest) = (fastest.min(took), slowest.max(took));
            held.get_or_insert(policy);
        }
        let grown = rss()?.saturating_sub(before);
        let policy = held.ok_or("no run")?;
        let packet = Packet::parse(&SYN).map_err(|e| format!("{e:?}"))?;
        let start = Instant::now();
        let evals = 200;
        for _ in 0..evals {
            std::hint::black_box(policy.evaluate(&packet, None, Timestamp::from_nanos(0)));
        }
        let per = start.elapsed() / evals;
        println!(
            "{shape:<9} {:>5.1} MB  {:>7.1}-{:<7.1} ms  {:>6.1} MiB  {:>9.1} µs",
            text.len() as f64 / 1e6,
            fastest.as_secs_f64() * 1e3,
            slowest.as_secs_f64() * 1e3,
            grown as f64 / (1 << 20) as f64,
            per.as_secs_f64() * 1e6,
        );
    }
    Ok(())
}

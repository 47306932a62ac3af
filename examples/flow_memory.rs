//! Resident memory of the flow table, measured: RSS (from /proc/self/statm) before and after a table
//! is filled with N distinct flows, and while 10 times its `max-flows` bound is offered.
//!
//! cargo run --release --example flow_memory -- [FLOWS] [OFFERED]
//!
//! FLOWS (default 1,000,000) distinct TCP flows (one SYN each, IPv4) go into a table whose bound is
//! above them; then OFFERED (default 10,000,000) distinct flows go into a table with the default bound
//! (262,144), printing the RSS every million and the evictions. Linux only; figures in BENCHMARKS.md.

use std::error::Error;

use outgate::flow::{FlowConfig, FlowTable};
use outgate::{Engine, Policy, Timestamp};

/// Resident set size in bytes, from /proc/self/statm (pages; 4 KiB pages assumed, as on x86-64).
fn rss() -> Result<u64, Box<dyn Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("/proc/self/statm: no resident field")?
        .parse()?;
    Ok(pages * 4096)
}

/// An IPv4 TCP SYN (20 + 20 bytes, checksums left at zero: nothing checks them) whose source address
/// and port are the `i`-th of 2^40: each `i` is a flow of its own.
fn syn(buf: &mut [u8; 40], i: u64) {
    *buf = [0; 40];
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&40u16.to_be_bytes());
    buf[8] = 64;
    buf[9] = 6;
    buf[12] = 10;
    buf[13..16].copy_from_slice(&(i >> 16).to_be_bytes()[5..8]);
    buf[16..20].copy_from_slice(&[198, 18, 0, 1]);
    buf[20..22].copy_from_slice(&(i as u16).to_be_bytes());
    buf[22..24].copy_from_slice(&443u16.to_be_bytes());
    buf[24..28].copy_from_slice(&(i as u32).to_be_bytes());
    buf[32] = 0x50;
    buf[33] = 0x02;
}

fn fill(engine: &Engine, table: &mut FlowTable, from: u64, n: u64) {
    let mut buf = [0u8; 40];
    for i in from..from + n {
        syn(&mut buf, i);
        engine.decide(table, &buf, Timestamp::from_secs(1), i);
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let arg = |n: usize, default: u64| -> Result<u64, Box<dyn Error>> {
        std::env::args()
            .nth(n)
            .map_or(Ok(default), |s| s.replace(['_', ','], "").parse())
            .map_err(|e| format!("argument {n}: {e}").into())
    };
    let (flows, offered) = (arg(1, 1_000_000)?, arg(2, 10_000_000)?);
    let engine = Engine::new(Policy::builtin());

    let base = FlowConfig::default();
    let before = rss()?;
    let mut table = FlowTable::new(FlowConfig {
        max_flows: flows as usize + 1,
        ..base
    });
    fill(&engine, &mut table, 0, flows);
    let after = rss()?;
    let grown = after.saturating_sub(before);
    println!(
        "{} flows: RSS {:.1} MiB before, {:.1} MiB after: {:.0} bytes per flow ({} in the table)",
        flows,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        grown as f64 / flows as f64,
        table.len()
    );
    drop(table);

    let bound = base.max_flows;
    let mut table = FlowTable::new(base);
    let start = rss()?;
    println!("{offered} distinct flows offered to a table bounded at {bound} (max-flows):");
    let step = 1_000_000.min(offered.max(1));
    let mut done = 0;
    while done < offered {
        let n = step.min(offered - done);
        fill(&engine, &mut table, flows + done, n);
        done += n;
        println!(
            "  {done:>10} offered: {:>8} in the table, {:>9} evicted, RSS +{:.1} MiB",
            table.len(),
            table.stats().evicted,
            rss()?.saturating_sub(start) as f64 / 1048576.0
        );
    }
    Ok(())
}

//! `outgate bench`: replay throughput by worker count, and the `--workers` to use on this machine; with
//! `--live`, the live filter's queues ([`live`]).
//!
//! The replay sweep is [`run_bench_replay`]: the captures (or the synthetic office mix, written once to a
//! temporary file that is removed at the end) are replayed in-process by `outgate::replay::replay`, the
//! engine built once, at each worker count: one warm-up round, then `--runs` timed rounds, each round
//! replaying once at every count in turn.

mod live;
mod plot;

pub use live::{AgentArgs, bench_agent};

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use serde::Serialize;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};

use outgate::Engine;
use outgate::bench::stats::{Spread, recommend};
use outgate::bench::synthetic::{self, SyntheticConfig};
use outgate::replay::{ReplayConfig, replay};

use super::{emit, load_policy};
use crate::Format;

/// A count within this fraction of the best median counts as "as fast".
const TOLERANCE: f64 = 0.10;
/// Runs shorter than this (seconds) get a note that they measure start-up more than decisions.
const SHORT_RUN: f64 = 0.1;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("generated").args(["synthetic", "live"])))]
pub struct BenchArgs {
    /// Policy file (default: the built-in policy). With --live it must accept the ports the bench uses:
    /// udp 53, tcp 80 and tcp 443, as the built-in one does.
    #[arg(short, long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Worker counts to try, comma-separated. [default: 1, 2, 4, ... up to the cores, then one count
    /// above them]
    #[arg(short, long, value_name = "N,N,...", value_delimiter = ',', conflicts_with = "live",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Vec<u16>,
    /// Timed runs per worker count (rounds over all the counts), after one warm-up round that is not
    /// counted.
    #[arg(long, value_name = "R", default_value_t = 5, conflicts_with = "live",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Replay N packets of a generated office mix (HTTPS with TLS ClientHellos, HTTP, DNS, NTP, SSH,
    /// proxy, RDP, BitTorrent, OpenVPN) instead of captures. It is written once to a temporary file
    /// (about 320 MB per million packets; TMPDIR says where) that is removed at the end, also on Ctrl-C.
    #[arg(long, value_name = "N", conflicts_with_all = ["captures", "live"],
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    synthetic: Option<u64>,
    /// With --synthetic: the flows the packets are spread over [default: one per 10 packets]. With
    /// --live: the new UDP flows of each case, one datagram each [default: 200,000; the kernel tracks
    /// at most net.netfilter.nf_conntrack_max connections per namespace, 262,144 by default].
    #[arg(long, value_name = "F", requires = "generated", conflicts_with = "captures",
          value_parser = clap::value_parser!(u64).range(1..))]
    flows: Option<u64>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Draw packets/s against workers (median and range) into an SVG file.
    #[arg(long, value_name = "FILE.svg", conflicts_with = "live")]
    plot: Option<PathBuf>,
    /// Measure the live filter (root): in network namespaces of its own, the kernel alone and then
    /// outgate's ruleset and daemon on each queue count; prints new flows/s, loss, TCP connections/s,
    /// bulk TCP, connect time, and the --queues to use.
    #[arg(long)]
    live: bool,
    /// With --live: queue counts to measure, e.g. `1,2,4` (each binds queues 0 to N-1, as `--queues
    /// 0-3` would). [default: 1,2, no more than the cores]
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', requires = "live",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: Vec<u16>,
    /// With --live: seconds of each TCP case (connections per second, bulk).
    #[arg(long, value_name = "SECS", default_value_t = 2.0, requires = "live",
          value_parser = live::parse_secs)]
    tcp_secs: f64,
    /// With --live: connects timed one after another for the connect time (median, p99).
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "live",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    samples: u32,
    /// With --live: client threads sending the new UDP flows. One sending socket is held back by its
    /// send buffer while its datagrams wait in the queue: with one thread the client is often the limit
    /// (sent/s as low as delivered/s); more threads offer more load, on the same cores.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "live",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    senders: u32,
    /// With --live: client threads of the closed-loop connection case.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "live",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Capture files (pcap or pcapng), replayed one after another as one stream.
    #[arg(value_name = "CAPTURE", required_unless_present_any = ["synthetic", "live"])]
    captures: Vec<PathBuf>,
}

/// The figures of one worker count.
#[derive(Serialize)]
pub struct Row {
    pub workers: usize,
    pub packets_per_second: Spread,
    pub flows_per_second: Spread,
    /// Median packets/s over the median of the first (smallest) count.
    pub speedup: f64,
    /// Each timed run's seconds, in order.
    pub seconds: Vec<f64>,
}

/// The whole sweep.
pub struct Sweep {
    pub input: String,
    pub policy: String,
    pub cores: usize,
    pub runs: u32,
    pub packets: u64,
    pub flows: u64,
    pub rows: Vec<Row>,
    pub recommended: usize,
    pub why: String,
}

pub fn run_bench(args: BenchArgs) -> Result<ExitCode, String> {
    if args.live {
        live::run(args)
    } else {
        run_bench_replay(args)
    }
}

/// The replay sweep: replays, prints the table or JSON, draws the plot.
pub fn run_bench_replay(args: BenchArgs) -> Result<ExitCode, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts: Vec<usize> = if args.workers.is_empty() {
        default_counts(cores)
    } else {
        args.workers.iter().map(|&w| usize::from(w)).collect()
    };
    counts.sort_unstable();
    counts.dedup();
    let policy_name = args
        .policy
        .as_ref()
        .map_or_else(|| "<default>".to_string(), |p| p.display().to_string());
    let engine = Engine::new(load_policy(args.policy)?);
    // Checked before the replays, so a wrong path does not wait for a generated capture.
    if let Some(plot) = &args.plot {
        std::fs::File::create(plot)
            .map_err(|e| format!("{}: cannot create: {e}", plot.display()))?;
    }

    // The synthetic capture lives in a temporary directory removed when `_dir` drops; Ctrl-C then
    // stops the generation or the runs between two of them, so that it is removed too.
    let mut interrupted = None;
    let (_dir, captures, input) = match args.synthetic {
        Some(packets) => {
            let mut cfg = SyntheticConfig::new(packets);
            if let Some(flows) = args.flows {
                cfg = cfg.with_flows(flows);
            }
            let dir = tempfile::Builder::new()
                .prefix("outgate-bench-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            let path = dir.path().join("synthetic.pcap");
            let flag = on_interrupt()?;
            interrupted = Some(flag.clone());
            let note = std::io::stderr().is_terminal();
            if note {
                eprint!(
                    "outgate: generating {packets} packets over {} flows ...",
                    cfg.flows
                );
            }
            let made = synthetic::write_capture_until(&path, cfg, || flag.load(Ordering::Relaxed))
                .map_err(|e| match e {
                    synthetic::SyntheticError::Stopped => {
                        "interrupted; the synthetic capture was removed".to_string()
                    }
                    e => e.to_string(),
                })?;
            if note {
                eprintln!(" done");
            }
            let input = format!(
                "synthetic office mix, {} packets over {} flows",
                made.packets, made.flows
            );
            (Some(dir), vec![path], input)
        }
        None => {
            let names: Vec<String> = args
                .captures
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            (None, args.captures, names.join(", "))
        }
    };

    let progress = Progress::new(counts.len() as u64 * (u64::from(args.runs) + 1));
    // Each round replays once at every count, so that a load that comes and goes on the machine
    // slows every count alike rather than the ones measured while it lasted. Round 0 warms up (page
    // cache, allocator, CPU frequency) and is not counted.
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let (mut packets, mut flows) = (0, 0);
    for round in 0..=args.runs {
        for (i, &workers) in counts.iter().enumerate() {
            if interrupted
                .as_ref()
                .is_some_and(|i| i.load(Ordering::Relaxed))
            {
                progress.finish();
                return Err("interrupted; the synthetic capture was removed".into());
            }
            progress.set(workers, round, args.runs);
            let cfg = ReplayConfig {
                captures: captures.clone(),
                workers,
                ..Default::default()
            };
            let report = replay(&engine, &cfg).map_err(|e| e.to_string())?;
            if let Some(e) = report.errors.first() {
                return Err(format!(
                    "{e} (a benchmark needs captures that read to the end)"
                ));
            }
            progress.inc();
            if round > 0 {
                seconds[i].push(report.elapsed.as_secs_f64().max(1e-9));
                packets = report.counters.records;
                flows = report.counters.flows_total();
            }
        }
    }
    let mut rows: Vec<Row> = counts
        .iter()
        .zip(seconds)
        .map(|(&workers, seconds)| {
            let per_second =
                |n: u64| -> Vec<f64> { seconds.iter().map(|s| n as f64 / s).collect() };
            Row {
                workers,
                packets_per_second: Spread::of(&per_second(packets)).unwrap_or_default(),
                flows_per_second: Spread::of(&per_second(flows)).unwrap_or_default(),
                speedup: 0.0,
                seconds,
            }
        })
        .collect();
    progress.finish();
    let base = rows.first().map_or(0.0, |r| r.packets_per_second.median);
    for r in &mut rows {
        r.speedup = if base > 0.0 {
            r.packets_per_second.median / base
        } else {
            0.0
        };
    }
    let shortest = rows
        .iter()
        .flat_map(|r| r.seconds.iter().copied())
        .fold(f64::INFINITY, f64::min);
    if shortest < SHORT_RUN {
        eprintln!(
            "outgate: some runs took under {SHORT_RUN} s, where starting threads weighs as much as \
             deciding: use more packets (--synthetic 1000000, or a larger capture) for figures to size by"
        );
    }
    let (recommended, why) = choose(&rows, cores);
    let sweep = Sweep {
        why,
        input,
        policy: policy_name,
        cores,
        runs: args.runs,
        packets,
        flows,
        rows,
        recommended,
    };
    match args.format {
        Format::Table => emit(&table(&sweep))?,
        Format::Json => emit(&format!("{:#}\n", sweep_json(&sweep)))?,
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &sweep).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A flag that SIGINT and SIGTERM raise instead of ending the process; a second one ends it.
fn on_interrupt() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, flag.clone())
            .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    Ok(flag)
}

/// 1, 2, 4, ... up to the cores, the cores themselves, then the next power of two above them (at most
/// twice the cores), to show what threads beyond the cores do.
fn default_counts(cores: usize) -> Vec<usize> {
    let cores = cores.clamp(1, 128);
    let mut counts: Vec<usize> = std::iter::successors(Some(1usize), |n| Some(n * 2))
        .take_while(|&n| n <= cores)
        .collect();
    counts.push(cores);
    counts.push((cores + 1).next_power_of_two().min(2 * cores));
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// The count to recommend and the one line that says why: the fewest workers within [`TOLERANCE`] of
/// the best median, among the counts no larger than the cores (a count above them is only chosen when
/// no other was measured).
fn choose(rows: &[Row], cores: usize) -> (usize, String) {
    fn median(r: &Row) -> f64 {
        r.packets_per_second.median
    }
    fn best_of<'a>(rows: &[&'a Row]) -> Option<&'a Row> {
        rows.iter()
            .copied()
            .max_by(|a, b| median(a).total_cmp(&median(b)))
    }
    let all: Vec<&Row> = rows.iter().collect();
    let mut pool: Vec<&Row> = rows.iter().filter(|r| r.workers <= cores).collect();
    if pool.is_empty() {
        pool.clone_from(&all);
    }
    let (Some(best), Some(overall)) = (best_of(&pool), best_of(&all)) else {
        return (1, "nothing was measured".into());
    };
    let medians: Vec<(usize, f64)> = pool.iter().map(|r| (r.workers, median(r))).collect();
    let recommended = recommend(&medians, TOLERANCE).unwrap_or(best.workers);
    let first = if best.workers == recommended {
        format!("the best median ({} packets/s)", rate(median(best)))
    } else {
        format!(
            "the fewest workers within {:.0}% of the best median ({} packets/s with {})",
            TOLERANCE * 100.0,
            rate(median(best)),
            best.workers
        )
    };
    let second = if overall.workers > cores && median(overall) > median(best) {
        format!(
            "{} workers measured {} packets/s, but more workers than the {cores} core(s) cannot all \
             run at once, so the recommendation stays within the cores",
            overall.workers,
            rate(median(overall))
        )
    } else {
        format!("more workers than the {cores} core(s) only add contention")
    };
    (recommended, format!("{first}; {second}"))
}

/// 1234567.0 -> "1.23 M"
fn rate(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.1} k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn table(s: &Sweep) -> String {
    let base = s.rows.first().map_or(1, |r| r.workers);
    let mut out = format!(
        "bench: {}\npolicy {}, {} core(s), {} packets and {} flows per run, {} timed run(s) per worker \
         count, the counts in turn, after 1 warm-up round\nmedian of the runs, then the slowest and the fastest run; speed-up: the \
         median over that of {base} worker(s)\n\n",
        s.input, s.policy, s.cores, s.packets, s.flows, s.runs
    );
    out += &format!(
        "{:>7}  {:>10}  {:>21}  {:>10}  {:>21}  {:>8}\n",
        "workers", "packets/s", "(min - max)", "flows/s", "(min - max)", "speed-up"
    );
    let range = |s: &Spread| format!("({} - {})", rate(s.min), rate(s.max));
    for r in &s.rows {
        out += &format!(
            "{:>7}  {:>10}  {:>21}  {:>10}  {:>21}  {:>7.2}x\n",
            r.workers,
            rate(r.packets_per_second.median),
            range(&r.packets_per_second),
            rate(r.flows_per_second.median),
            range(&r.flows_per_second),
            r.speedup
        );
    }
    out += &format!("\nrecommended: --workers {}: {}\n", s.recommended, s.why);
    out
}

fn sweep_json(s: &Sweep) -> serde_json::Value {
    json!({
        "input": s.input,
        "policy": s.policy,
        "cores": s.cores,
        "runs": s.runs,
        "warmup_runs": 1,
        "packets": s.packets,
        "flows": s.flows,
        "rows": s.rows,
        "recommended": { "workers": s.recommended, "why": s.why },
    })
}

/// A progress bar on stderr when it is a terminal.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {msg}, {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress(Some(bar))
    }

    fn set(&self, workers: usize, round: u32, runs: u32) {
        if let Some(bar) = &self.0 {
            bar.set_message(match round {
                0 => format!("warm-up, {workers} worker(s)"),
                r => format!("round {r}/{runs}, {workers} worker(s)"),
            });
        }
    }

    fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_reach_past_the_cores() {
        assert_eq!(default_counts(1), [1, 2]);
        assert_eq!(default_counts(2), [1, 2, 4]);
        assert_eq!(default_counts(6), [1, 2, 4, 6, 8]);
        assert_eq!(default_counts(8), [1, 2, 4, 8, 16]);
    }

    fn row(workers: usize, median: f64) -> Row {
        let s = Spread {
            median,
            min: median,
            max: median,
        };
        Row {
            workers,
            packets_per_second: s,
            flows_per_second: s,
            speedup: 1.0,
            seconds: vec![],
        }
    }

    #[test]
    fn the_recommendation_stays_within_the_cores_and_says_why() {
        let (n, why) = choose(&[row(1, 3e6), row(2, 5e6), row(4, 5.2e6)], 2);
        assert_eq!(n, 2);
        assert!(
            why.starts_with("the best median (5.00 M packets/s); 4 workers measured 5.20 M"),
            "{why}"
        );
        let (n, why) = choose(&[row(1, 4.7e6), row(2, 5e6), row(4, 4e6)], 2);
        assert_eq!(n, 1);
        assert!(why.starts_with("the fewest workers within 10% of the best median (5.00 M packets/s with 2); more workers than the 2 core(s) only add contention"), "{why}");
        assert_eq!(choose(&[row(8, 1e6), row(16, 2e6)], 4).0, 16);
        assert_eq!(choose(&[], 4).0, 1);
    }

    #[test]
    fn rates_read_at_a_glance() {
        assert_eq!(rate(3_456_789.0), "3.46 M");
        assert_eq!(rate(345_678.0), "345.7 k");
        assert_eq!(rate(12.0), "12");
    }
}

//! `outgate bench --live` and the hidden `outgate bench-agent` it runs inside its namespaces.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use outgate::bench::live::{self, LiveConfig, agent};

use super::emit;
use crate::Format;

/// The queue counts a bench measures without --queues: 1 and 2, no more than the cores.
fn default_queues() -> Vec<u16> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    [1, 2]
        .into_iter()
        .filter(|&q| q as usize <= cores)
        .collect()
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Measure the live filter (root): in network namespaces of its own, the kernel alone and then
    /// outgate's ruleset and daemon on each queue count; prints new flows/s, loss, TCP connections/s,
    /// bulk TCP, connect time, and the --queues to use.
    #[arg(long)]
    pub live: bool,
    /// Queue counts to measure, e.g. `1,2,4` (each binds queues 0 to N-1, as `--queues 0-3` would).
    /// [default: 1,2, no more than the cores]
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', requires = "live",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queues: Vec<u16>,
    /// New UDP flows per case, one datagram each (the kernel tracks at most
    /// net.netfilter.nf_conntrack_max connections per namespace; 262,144 by default).
    #[arg(long, value_name = "N", default_value_t = 200_000, requires = "live",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub flows: u32,
    /// Seconds of each TCP case (connections per second, bulk).
    #[arg(long, value_name = "SECS", default_value_t = 2.0, requires = "live",
          value_parser = parse_secs)]
    pub tcp_secs: f64,
    /// Connects timed one after another for the connect time (median, p99).
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "live",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub samples: u32,
    /// Client threads sending the new UDP flows. One sending socket is held back by its send buffer
    /// while its datagrams wait in the queue: with one thread the client is often the limit (sent/s
    /// as low as delivered/s); more threads offer more load, on the same cores.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "live",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub senders: u32,
    /// Client threads of the closed-loop connection case.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "live",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// The daemon's policy (default: the built-in one, which accepts the ports the bench uses: udp 53,
    /// tcp 80 and 443).
    #[arg(short, long, value_name = "FILE", requires = "live")]
    pub policy: Option<PathBuf>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds from 0.05 to 3600"
        )),
    }
}

pub fn bench(args: BenchArgs) -> Result<ExitCode, String> {
    if !args.live {
        return Err(
            "only `outgate bench --live` is in this build (see `outgate bench --help`)".into(),
        );
    }
    live::preflight()?;
    if let Some(p) = &args.policy {
        super::load_policy(Some(p.clone()))?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let queues = if args.queues.is_empty() {
        default_queues()
    } else {
        args.queues
    };
    let cfg = LiveConfig {
        queues,
        flows: args.flows,
        tcp_secs: args.tcp_secs,
        samples: args.samples,
        threads: args.threads,
        senders: args.senders,
        policy: args.policy,
        exe,
        progress: std::io::stderr().is_terminal(),
    };
    let report = live::run(&cfg)?;
    emit(&match args.format {
        Format::Table => report.table(),
        Format::Json => report.json(),
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    task: AgentTask,
}

#[derive(clap::Subcommand)]
enum AgentTask {
    /// Accept and close on tcp 80, read and discard on tcp 443, until stdin closes.
    Serve,
    /// One UDP datagram to each of N flows.
    Udp {
        #[arg(long)]
        flows: u32,
        #[arg(long, default_value_t = live::PAYLOAD)]
        payload: usize,
        #[arg(long, default_value_t = 1)]
        senders: u32,
    },
    /// Closed-loop connect and close.
    Connect {
        #[arg(long)]
        threads: u32,
        #[arg(long, value_parser = parse_secs)]
        secs: f64,
    },
    /// Timed connects, one after another.
    Latency {
        #[arg(long)]
        count: u32,
    },
    /// One connection sending as fast as it can.
    Bulk {
        #[arg(long, value_parser = parse_secs)]
        secs: f64,
    },
}

pub fn bench_agent(args: AgentArgs) -> Result<ExitCode, String> {
    let task = match args.task {
        AgentTask::Serve => agent::Task::Serve,
        AgentTask::Udp {
            flows,
            payload,
            senders,
        } => agent::Task::Udp {
            flows,
            payload,
            senders,
        },
        AgentTask::Connect { threads, secs } => agent::Task::Connect { threads, secs },
        AgentTask::Latency { count } => agent::Task::Latency { count },
        AgentTask::Bulk { secs } => agent::Task::Bulk { secs },
    };
    agent::run(&task)?;
    Ok(ExitCode::SUCCESS)
}

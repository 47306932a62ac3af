//! `outgate bench --live` and the hidden `outgate bench-agent` it runs inside its namespaces.

use std::io::IsTerminal;
use std::process::ExitCode;

use outgate::bench::live::{self, LiveConfig, agent};

use super::super::{emit, load_policy};
use super::BenchArgs;
use crate::Format;

/// New UDP flows per case without --flows.
const DEFAULT_FLOWS: u64 = 200_000;

/// The queue counts a bench measures without --queues: 1 and 2, no more than the cores.
fn default_queues() -> Vec<u16> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    [1, 2]
        .into_iter()
        .filter(|&q| q as usize <= cores)
        .collect()
}

pub(super) fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds from 0.05 to 3600"
        )),
    }
}

pub(super) fn run(args: BenchArgs) -> Result<ExitCode, String> {
    live::preflight()?;
    if let Some(p) = &args.policy {
        load_policy(Some(p.clone()))?;
    }
    let flows = args.flows.unwrap_or(DEFAULT_FLOWS);
    let flows = u32::try_from(flows)
        .ok()
        .filter(|&f| f <= 10_000_000)
        .ok_or_else(|| format!("--flows {flows}: bench --live sends at most 10,000,000 flows"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let queues = if args.queues.is_empty() {
        default_queues()
    } else {
        args.queues
    };
    let cfg = LiveConfig {
        queues,
        flows,
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

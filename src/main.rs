//! The `outgate` binary: command line -> library calls; every error is printed once, here.
//!
//! Exit codes: 0 success; 1 the work failed (invalid policy, unreadable or corrupt capture, output not
//! writable); 2 the command line is wrong.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use outgate::log::FlowLine;
use outgate::policy::{LoadError, DEFAULT_POLICY};
use outgate::replay::{replay, ReplayConfig};
use outgate::{Engine, Policy};

const ABOUT: &str = "Outbound packet filter: default-deny egress that stays practical.";

const LONG_ABOUT: &str = "\
Outbound packet filter: default-deny egress that stays practical.

outgate decides each new outbound flow against a Shorewall-style policy (`policy loc net DROP`, \
`ACCEPT loc net 443 # https`). The same engine replays pcap/pcapng captures, so a policy can be tried \
on real traffic before it goes live.

Start here:
  outgate check --print-default > policy.rules   the built-in policy, ready to edit
  outgate check --policy policy.rules            is it valid? what does it open?
  outgate replay --policy policy.rules traffic.pcap
                                                 what would it do to this traffic?";

#[derive(Parser)]
#[command(name = "outgate", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy: print a summary (zones, policies, rules, open ports) or every error as FILE:LINE:COL.
    ///
    /// Exits 0 when the policy is valid, 1 when it is not. Without --policy, checks the built-in default.
    Check {
        /// Policy file to check (default: the built-in policy).
        #[arg(short, long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print the built-in default policy, ready to copy to /etc/outgate/policy.rules.
        #[arg(long, conflicts_with = "policy")]
        print_default: bool,
    },
    /// Replay pcap/pcapng captures through the engine and report what the policy would do.
    ///
    /// Several captures are replayed one after another as one stream. Prints a table (or JSON) of
    /// packets, flows, verdicts and hits per rule. A corrupt capture is reported with its record number;
    /// what was read before it still counts, and the exit code is 1.
    Replay {
        /// Policy file (default: the built-in policy, which is announced on stderr).
        #[arg(short, long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Worker threads; flows are pinned to workers by address hash, so verdicts do not depend on it.
        /// [default: the number of cores]
        #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: Option<u16>,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Write one JSON line per flow, in first-packet order, to FILE.
        #[arg(long, value_name = "FILE")]
        flows: Option<PathBuf>,
        /// Write the accepted packets to a new pcap (raw IP link type).
        #[arg(long, value_name = "FILE")]
        write_accepted: Option<PathBuf>,
        /// Write the dropped and rejected packets to a new pcap (raw IP link type).
        #[arg(long, value_name = "FILE")]
        write_dropped: Option<PathBuf>,
        /// Capture files (pcap or pcapng).
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            policy,
            print_default,
        } => check(policy, print_default),
        Command::Replay {
            policy,
            workers,
            format,
            flows,
            write_accepted,
            write_dropped,
            captures,
        } => {
            let workers = workers.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            );
            let cfg = ReplayConfig {
                captures,
                workers,
                keep_flows: flows.is_some(),
                write_accepted,
                write_dropped,
                progress: true,
            };
            run_replay(policy, cfg, format, flows)
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("outgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout; a closed pipe (`outgate ... | head`) is not an error worth a message.
fn emit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

fn load_policy(path: Option<PathBuf>) -> Result<Policy, String> {
    match path {
        None => Ok(Policy::builtin()),
        Some(p) => Policy::load(&p).map_err(|e| match e {
            // Each policy error is already `FILE:LINE:COL: message`, one per line.
            LoadError::Invalid(errors) => {
                let n = errors.len();
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                format!(
                    "{}\n{n} error(s); the policy was not loaded",
                    list.join("\n")
                )
            }
            read => read.to_string(),
        }),
    }
}

fn check(policy: Option<PathBuf>, print_default: bool) -> Result<ExitCode, String> {
    if print_default {
        emit(DEFAULT_POLICY)?;
        return Ok(ExitCode::SUCCESS);
    }
    match load_policy(policy) {
        Ok(p) => {
            emit(&p.summary())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_replay(
    policy: Option<PathBuf>,
    cfg: ReplayConfig,
    format: Format,
    flows: Option<PathBuf>,
) -> Result<ExitCode, String> {
    if policy.is_none() {
        eprintln!("outgate: no --policy given: using the built-in default policy (see `outgate check --print-default`)");
    }
    let engine = Engine::new(load_policy(policy)?);
    // Create the flow log before the replay, so an unwritable path fails fast.
    let mut flow_out = flows
        .as_ref()
        .map(|p| {
            std::fs::File::create(p)
                .map(BufWriter::new)
                .map_err(|e| format!("{}: cannot create: {e}", p.display()))
        })
        .transpose()?;
    let report = replay(&engine, &cfg).map_err(|e| e.to_string())?;
    if let (Some(out), Some(path)) = (flow_out.as_mut(), flows.as_ref()) {
        let write_err = |e: std::io::Error| format!("{}: {e}", path.display());
        for rec in &report.flows {
            serde_json::to_writer(&mut *out, &FlowLine::new(engine.policy(), rec))
                .map_err(|e| write_err(e.into()))?;
            out.write_all(b"\n").map_err(write_err)?;
        }
        out.flush().map_err(write_err)?;
    }
    match format {
        Format::Table => emit(&report.table(engine.policy()))?,
        Format::Json => emit(&format!("{}\n", report.json(engine.policy())))?,
    }
    for e in &report.errors {
        eprintln!("outgate: {e}");
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

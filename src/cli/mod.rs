//! The binary's commands: each takes what the command line gave and returns the exit code or the one
//! message to print (`main` prints it).

mod against;
mod bench;
mod diff;
mod live;
mod package;
mod probe;
mod replay;
mod try_policy;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use outgate::Policy;
use outgate::policy::{Cidr, DEFAULT_POLICY, LoadError, error_list};

pub use bench::{AgentArgs, BenchArgs, bench_agent, run_bench};
pub use diff::diff_command;
pub use live::{rules_command, run_live, shaping};
pub use package::package_files;
pub use probe::{PROBE_ABOUT, PROBE_LONG_ABOUT, ProbeArgs, run_probe};
pub use replay::{run_learn, run_replay};
pub use try_policy::{confirm_policy, try_policy};

pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    Cidr::parse(s)
}

pub fn parse_class_mask(s: &str) -> Result<u32, String> {
    outgate::rules::parse_mask(s)
        .ok_or_else(|| format!("invalid class mask '{s}': expected a number like 0xf000"))
}

pub fn parse_bit_rate(s: &str) -> Result<outgate::policy::Rate, String> {
    outgate::policy::Rate::parse(s)
}

/// Writes to stdout; a closed pipe (`outgate ... | head`) is not an error worth a message.
pub fn emit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

pub fn load_policy(path: Option<PathBuf>) -> Result<Policy, String> {
    match path {
        None => Ok(Policy::builtin()),
        Some(p) => Policy::load(&p).map_err(|e| match e {
            // Each policy error is already `FILE:LINE:COL: message`, one per line.
            LoadError::Invalid(errors) => {
                let n = errors.len();
                format!(
                    "{}\n{n} error(s); the policy was not loaded",
                    error_list(&errors)
                )
            }
            read => read.to_string(),
        }),
    }
}

pub fn check(
    policy: Option<PathBuf>,
    print_default: bool,
    against: &[String],
) -> Result<ExitCode, String> {
    if print_default {
        emit(DEFAULT_POLICY)?;
        return Ok(ExitCode::SUCCESS);
    }
    match load_policy(policy) {
        Ok(p) => {
            emit(&p.summary())?;
            warn_shadowed(&p);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let notes = p.expiry_notes(outgate::Timestamp::from_nanos(now));
            if !notes.is_empty() {
                eprint!("{notes}");
            }
            if !against::against(&p, against) {
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// At most this many never-matching lines are printed by `check`; the rest are counted.
const SHADOWED_SHOWN: usize = 20;

/// Above this many rules `check` does not look for lines that never match: that compares every
/// rule with every earlier one (5,000 rules: about 2 s; 100,000 would take many minutes).
const SHADOWED_MAX_RULES: usize = 5_000;

/// `check`'s warnings: lines that can never match. They never fail the check.
fn warn_shadowed(policy: &Policy) {
    let rules = policy.rules().len();
    if rules > SHADOWED_MAX_RULES {
        eprintln!(
            "note: {rules} rules: lines that never match are looked for up to {SHADOWED_MAX_RULES} rules only"
        );
        return;
    }
    let found = policy.shadowed();
    for s in found.iter().take(SHADOWED_SHOWN) {
        eprintln!("{s}");
    }
    if found.len() > SHADOWED_SHOWN {
        eprintln!(
            "... and {} more line(s) that never match (warning)",
            found.len() - SHADOWED_SHOWN
        );
    }
}

//! `outgate replay` and `outgate learn`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use outgate::Engine;
use outgate::learn::{self, LearnConfig};
use outgate::log::{DnsLine, FlowEnd, FlowLine, HttpLine, IcmpLine, LogLine, TlsLine, rfc3339};
use outgate::policy::Cidr;
use outgate::replay::{ReplayConfig, replay};

use super::{emit, load_policy};
use crate::Format;

pub fn run_replay(
    policy: Option<PathBuf>,
    lan: Vec<Cidr>,
    cfg: ReplayConfig,
    format: Format,
    logs: [Option<PathBuf>; 5],
) -> Result<ExitCode, String> {
    if policy.is_none() {
        eprintln!(
            "outgate: no --policy given: using the built-in default policy (see `outgate check --print-default`)"
        );
    }
    let messages = logs[3].is_some() || logs[4].is_some();
    let engine = Engine::new(load_policy(policy)?)
        .with_lan(lan)
        .with_messages(messages);
    // Create the logs before the replay, so an unwritable path fails fast.
    let names = [
        "--flows",
        "--http-log",
        "--tls-log",
        "--dns-log",
        "--icmp-log",
    ];
    for (path, name) in logs.iter().zip(names) {
        if path.as_deref() == Some(std::path::Path::new("-")) {
            return Err(format!(
                "{name} -: replay prints its summary on stdout, so a log needs a file (or /dev/stdout, to mix the two)"
            ));
        }
    }
    let mut outs = Vec::with_capacity(logs.len());
    for path in &logs {
        let out = path.as_ref().map(|p| {
            std::fs::File::create(p)
                .map(|f| (p, BufWriter::new(f)))
                .map_err(|e| format!("{}: cannot create: {e}", p.display()))
        });
        outs.push(out.transpose()?);
    }
    let report = replay(&engine, &cfg).map_err(|e| e.to_string())?;
    let policy = engine.policy();
    for (i, out) in outs.iter_mut().enumerate() {
        let Some((path, out)) = out else { continue };
        let write_err = |e: std::io::Error| format!("{}: {e}", path.display());
        let audit = cfg.audit;
        for rec in &report.flows {
            let line = match i {
                0 => {
                    let mut line = FlowLine::new(policy, rec).audited(audit);
                    line.end = Some(FlowEnd::of(rec));
                    serde_json::to_string(&line).ok()
                }
                1 => json(HttpLine::new(policy, rec, rfc3339).map(|l| l.audited(audit))),
                2 => json(TlsLine::new(policy, rec, rfc3339).map(|l| l.audited(audit))),
                3 => json(DnsLine::tcp_flow(policy, rec, rfc3339).map(|l| l.audited(audit))),
                _ => None,
            };
            if let Some(line) = line {
                writeln!(out, "{line}").map_err(write_err)?;
            }
        }
        // DNS queries over UDP and echo messages, one by one, in capture order.
        for rec in &report.messages {
            let line = match i {
                3 => json(DnsLine::message(policy, rec, rfc3339).map(|l| l.audited(audit))),
                4 => json(IcmpLine::message(policy, rec, rfc3339).map(|l| l.audited(audit))),
                _ => None,
            };
            if let Some(line) = line {
                writeln!(out, "{line}").map_err(write_err)?;
            }
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

fn json(line: Option<impl serde::Serialize>) -> Option<String> {
    line.and_then(|l| serde_json::to_string(&l).ok())
}

/// The proposal on stdout; lines not understood, capture errors and notes on stderr. A capture cut
/// short fails the run (as in replay), after the proposal learned from what came before it.
pub fn run_learn(cfg: &LearnConfig) -> Result<ExitCode, String> {
    let learned = learn::learn(cfg).map_err(|e| e.to_string())?;
    emit(&learned.policy)?;
    for message in learned.messages() {
        eprintln!("outgate: {message}");
    }
    Ok(if learned.capture_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

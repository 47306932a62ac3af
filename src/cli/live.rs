//! `outgate rules` and `outgate run`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use outgate::Policy;
use outgate::nfqueue::{self, RunConfig};
use outgate::policy::Rate as BitRate;
use outgate::rules::{self, Backend, Family, QueueRange, RulesConfig, ShapeBackend, Shaping};

use super::{emit, load_policy};

/// `rules --policy FILE`: the traffic control its classes need (none without classes, or with
/// `--remove`); the backends other than classify are only printed.
pub fn shaping(
    policy: Option<&Path>,
    remove: bool,
    apply: bool,
    link_rate: BitRate,
    backend: ShapeBackend,
) -> Result<Option<Shaping>, String> {
    if apply && backend != ShapeBackend::Classify {
        return Err(rules::RulesError::NotApplied(backend).to_string());
    }
    let (Some(path), false) = (policy, remove) else {
        return Ok(None);
    };
    let policy = load_policy(Some(path.to_path_buf()))?;
    let shaping = Shaping::of_policy(&policy, link_rate, backend);
    if shaping.is_none() {
        eprintln!(
            "outgate: {} has no traffic classes: no traffic control is set up",
            policy.file()
        );
    }
    Ok(shaping)
}

pub fn rules_command(
    cfg: &RulesConfig,
    backend: Backend,
    apply: bool,
    force: bool,
    remove: bool,
) -> Result<ExitCode, String> {
    if remove {
        for note in rules::remove().map_err(|e| e.to_string())? {
            eprintln!("outgate: {note}");
        }
    } else if apply {
        rules::apply(cfg, backend, force).map_err(|e| e.to_string())?;
        for warning in rules::flow_accounting() {
            eprintln!("outgate: warning: {warning}");
        }
    } else {
        let text = match backend {
            Backend::Iptables => {
                let v4 = rules::iptables_restore(cfg, Family::V4).map_err(|e| e.to_string())?;
                let v6 = rules::iptables_restore(cfg, Family::V6).map_err(|e| e.to_string())?;
                format!("{v4}\n{v6}")
            }
            Backend::Nft => rules::nft(cfg).map_err(|e| e.to_string())?,
        };
        let shaping = rules::script(cfg).map_err(|e| e.to_string())?;
        if shaping.is_empty() {
            emit(&text)?;
        } else {
            emit(&format!("{text}\n{shaping}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_live(queues: QueueRange, mut cfg: RunConfig) -> Result<ExitCode, String> {
    if cfg.policy_path.is_none() {
        eprintln!(
            "outgate: no --policy given: using the built-in default policy (see `outgate check --print-default`)"
        );
    }
    let policy = load_policy(cfg.policy_path.clone())?;
    cfg.ruleset = check_ruleset(queues, &cfg, &policy)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    // SIGHUP reloads: the signal thread only passes it on; the daemon's reload thread does the work.
    let (requests, requests_rx) = crossbeam_channel::unbounded();
    let mut hup = Signals::new([SIGHUP]).map_err(|e| format!("cannot handle signals: {e}"))?;
    let reload = requests.clone();
    std::thread::spawn(move || {
        for _ in hup.forever() {
            let _ = reload.send(nfqueue::Request::Reload);
        }
    });
    let mode = if cfg.fail_open {
        "fail-open"
    } else {
        "fail-closed"
    };
    let summary = nfqueue::run(policy, &cfg, stop, (requests, requests_rx), |policy| {
        if cfg.audit {
            eprintln!(
                "outgate: AUDIT mode: nothing is enforced, every packet passes; decisions are logged (\"enforced\":false) and counted"
            );
        }
        eprintln!(
            "outgate: {} on NFQUEUE {queues} ({mode}, mark bits {}), policy {} ({})",
            if cfg.audit { "auditing" } else { "filtering" },
            cfg.marks,
            policy.file(),
            policy.hash()
        );
        // Only under systemd (`NOTIFY_SOCKET`); a lost notification is systemd's timeout to report.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    })
    .map_err(|e| e.to_string())?;
    eprintln!(
        "outgate: stopped after {} packets, {} flows decided",
        summary.packets, summary.flows
    );
    Ok(ExitCode::SUCCESS)
}

/// Refuses to start when the installed ruleset sends to other queues, fails the other way or uses other
/// mark bits (a ruleset for queues 0-3 with a daemon on 0 would drop three quarters of new flows); warns
/// when there is none.
/// The installed iptables ruleset comes back, for the daemon to keep its jump first.
/// A policy whose traffic classes the ruleset does not shape (or shapes at other rates) is a warning, not
/// a refusal: SHAPE flows still pass, only not as slowly as the policy says.
fn check_ruleset(
    queues: QueueRange,
    cfg: &RunConfig,
    policy: &Policy,
) -> Result<Option<RulesConfig>, String> {
    match rules::installed() {
        Ok(Some(installed)) => {
            match installed.mismatch(queues, cfg.fail_open, cfg.marks, cfg.audit) {
                Some(message) => Err(message),
                None => {
                    if let Some(warning) = installed.shaping_mismatch(policy.classes()) {
                        eprintln!("outgate: warning: {warning}");
                    }
                    Ok((installed.backend == Backend::Iptables).then_some(installed.config))
                }
            }
        }
        Ok(None) => {
            eprintln!(
                "outgate: warning: no outgate ruleset is installed: nothing is queued until `outgate rules --apply`"
            );
            Ok(None)
        }
        Err(e) => Err(format!(
            "cannot read the installed ruleset (this needs root, or CAP_NET_ADMIN): {e}"
        )),
    }
}

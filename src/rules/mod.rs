//! The kernel ruleset that sends outbound flows to the daemon: generated as text, applied, kept first,
//! read back and removed.
//!
//! `outgate rules [--queues 0-3] [--mode host|gateway] [--lan IF] [--wan IF] [--fail-open|--fail-closed]
//! [--mark-mask MASK] [--class-mask MASK] [--limit-per-source RATE [--limit-burst N]]
//! [--policy FILE [--link-rate RATE] [--shape-backend classify|fw|cake|ifb]] [--backend iptables|nft]
//! [--apply [--force]|--remove]` prints or installs it, for IPv4 and IPv6. Host mode filters what this
//! host sends (filter OUTPUT, loopback excluded; `--wan` limits it to one interface); gateway mode what it
//! forwards from `--lan` to `--wan` (filter FORWARD). With `--policy`, the policy's traffic classes are
//! set up in traffic control (see `shape`): SHAPE's flows go through them.
//!
//! What the ruleset guarantees:
//! - Outgate sees every filtered packet first: the iptables jump is the first rule of its hook, so no
//!   earlier rule (an ESTABLISHED accept, say) lets packets of a flow under inspection or of a dropped
//!   flow by, and the daemon's REPEAT pass (the hook again from its first rule) runs no other rule twice.
//!   Firewalls that insert at position 1 on reload undo that; [`ensure_first`] puts the jump back. nft:
//!   outgate's base chain runs at `priority filter - 10`, and an `accept` in another chain does not skip
//!   it. Outgate only restricts: its accept returns to the admin's rules.
//! - Decided flows never reach userspace: the verdict the daemon puts in outgate's bits of the packet mark
//!   ([`Marks`]) is saved in the conntrack mark, and later packets take it from there. Exception: a flow
//!   dropped or rejected at its first packet leaves no conntrack entry (entries are confirmed only when a
//!   packet leaves), so its retries are queued again and the daemon answers them from its flow table;
//!   `--limit-per-source` caps, per source address, what goes to the queues.
//! - Undecided packets go to the queues: new flows, flows still inspected, and packets without conntrack
//!   (untracked, invalid), each of which is decided on its own. Several queues are balanced by the hash of
//!   the two addresses, so one flow stays on one queue (never by CPU, which can split a flow).
//! - Passed but undecided (the daemon's pending value: a flow still inspected): on to the admin's rules,
//!   nothing saved. Only a verdict is ever saved, and only into empty conntrack bits. Any other value in
//!   outgate's bits, in the packet or the conntrack mark, is dropped: fail closed.
//! - Nothing else writes outgate's bits: [`apply`] refuses while other software's rules do (a foreign 1
//!   there would read as a verdict; see [`collisions`]), unless forced.
//! - The ruleset describes itself (queues, fail mode, bits; see [`Installed`]): [`installed`] reads it
//!   back, so that the daemon refuses to serve a ruleset made for other queues, fail mode or bits.
//! - Daemon not running (no listener on a queue): fail-closed drops undecided packets silently (a local
//!   sender's `send` succeeds); fail-open (`--queue-bypass`, nft `bypass`) accepts them in this table.
//!   Decided flows keep their verdict either way, in conntrack. Queue full: not the ruleset's choice; the
//!   kernel drops unless the daemon binds its queues with `NFQA_CFG_F_FAIL_OPEN`, which it must set exactly
//!   when fail-open is chosen.
//! - Not filtered: replies on connections opened from outside (conntrack direction REPLY: the daemon would
//!   take the responder for the initiator; what may connect in is the inbound firewall's job), and in host
//!   mode IPv6 neighbour discovery and MLD reports, without which IPv6 stops under a default-deny policy
//!   (kept link-local by hop limit; crafting them needs CAP_NET_RAW, which can remove the rules anyway).
//!
//! [`apply`] is idempotent, and all or nothing: per family one `iptables-restore --noflush` transaction
//! deletes every jump to [`CHAIN`] and [`SHAPE_CHAIN`] (whatever mode or version made it), redefines the
//! chains and inserts the jumps; both are tested before either is committed, IPv4 is put back as it was
//! if IPv6 fails, and both if traffic control fails (see `tc`). [`remove`] leaves no outgate chain, jump,
//! nft table or HTB tree (the empty tables that iptables-nft creates on first use, and legacy iptables
//! even on listing, stay). Commands run with
//! [`std::process::Command`]; their errors name the command and its stderr on one line.
//!
//! nftables: the `queue` statement needs `CONFIG_NFT_QUEUE`; without it the nft ruleset cannot be loaded
//! (the iptables `NFQUEUE` target is separate and works).

use std::io::{ErrorKind, Write};
use std::process::{Command, Stdio};

use crate::Verdict;

mod config;
mod conflicts;
mod describe;
mod iptables;
mod limit;
mod marks;
mod nft;
mod place;
mod shape;
mod tc;

pub use config::{Backend, Family, Mode, QueueRange, RulesConfig};
pub use conflicts::{MarkKind, MarkUser, collisions};
pub use describe::Installed;
pub use iptables::iptables_restore;
use iptables::{Present, iptables_body, iptables_raw_body};
pub use limit::{Rate, RateUnit, SourceLimit};
pub use marks::{CLASSES, Marks, parse_mask};
pub use nft::nft;
pub use place::ensure_first;
pub use shape::{
    DEFAULT_LINK_RATE, SHAPE_CHAIN, ShapeBackend, ShapeClass, Shaping, class_id, devices,
    htb_commands, script,
};

/// The iptables chain; in nftables the table is `inet outgate`.
pub const CHAIN: &str = "OUTGATE";

const NFT_TABLE: &str = "outgate";

/// Why a ruleset could not be made, applied or removed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("invalid queue range '{0}': expected N or N-M with N <= M <= 65535")]
    Queues(String),
    #[error("invalid mode '{0}': expected host or gateway")]
    Mode(String),
    #[error("invalid backend '{0}': expected iptables or nft")]
    Backend(String),
    #[error("invalid --{option} interface '{name}': {reason}")]
    Interface {
        option: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("gateway mode needs --lan and --wan (--{0} is missing)")]
    MissingInterface(&'static str),
    #[error(
        "--lan is for gateway mode; host mode filters what this host sends (--wan limits it to one interface)"
    )]
    LanInHostMode,
    #[error("invalid mark mask '{mask}': {reason}")]
    MarkMask { mask: String, reason: &'static str },
    #[error("invalid class mask '{mask}': {reason}")]
    ClassMask { mask: String, reason: String },
    #[error("invalid --{option} '{value}': {reason}")]
    Limit {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "outgate's ruleset describes itself as '{text}': {reason}; run `outgate rules --apply` to replace it"
    )]
    Description { text: String, reason: String },
    #[error(
        "{0} has no description (made by an older outgate?): run `outgate rules --apply` to replace it"
    )]
    Undescribed(String),
    #[error("{0}: run `outgate rules --apply` to replace it")]
    Inconsistent(String),
    #[error(
        "outgate's ruleset is gone: the {0} has no chain {CHAIN}, and there is no nft table inet outgate (flushed by a firewall reload?): run `outgate rules --apply`"
    )]
    Gone(String),
    #[error(
        "the ruleset describes itself in comments of at most {max} characters, and '{field}' does not fit in one: use shorter interface or class names"
    )]
    LongDescription { field: String, max: usize },
    #[error(
        "refusing to apply: other software uses outgate's mark bits {mask}, where a foreign value could pass for a verdict or a class (or be dropped as none):{rules}\n{hint}, and give `outgate run` the same; or apply anyway with --force"
    )]
    MarkCollision {
        mask: String,
        rules: String,
        hint: String,
    },
    #[error("invalid shape backend '{0}': expected classify, fw, cake or ifb")]
    ShapeBackend(String),
    #[error(
        "shaping in host mode needs --wan: traffic control shapes what leaves a device, so name the one this host's traffic leaves by"
    )]
    ShapeNeedsWan,
    #[error(
        "cannot shape --{option} {name}: it is a wildcard, and traffic control needs one device; name it"
    )]
    ShapeWildcard { option: &'static str, name: String },
    #[error("{0} traffic classes: shaping takes 1 to 15")]
    ShapeClasses(usize),
    #[error(
        "the policy's classes add up to {promised}, at or above --link-rate {link}: set --link-rate to the real uplink's rate"
    )]
    ShapeRates { promised: String, link: String },
    #[error(
        "--shape-backend {0} is printed, not applied: `outgate rules --policy FILE --shape-backend {0}` prints its setup for a kernel that has its modules; --apply sets up only classify"
    )]
    NotApplied(shape::ShapeBackend),
    #[error(
        "refusing to shape {device}: its root qdisc is not outgate's (`{qdisc}`); outgate replaces only the kernel's default root qdisc or its own HTB 1:. Remove it (`tc qdisc del dev {device} root`) or shape elsewhere"
    )]
    ForeignQdisc { device: String, qdisc: String },
    #[error("{program}: not found; is it installed and in PATH?")]
    NotInstalled { program: String },
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("{failed}; and putting {family} back as it was failed too: {back}")]
    PutBack {
        failed: Box<RulesError>,
        family: &'static str,
        back: Box<RulesError>,
    },
}

fn hex(value: u32) -> String {
    format!("{value:#x}")
}

fn fail_mode(cfg: &RulesConfig) -> &'static str {
    if cfg.fail_open {
        "fail-open"
    } else {
        "fail-closed"
    }
}

fn lines(l: Vec<String>) -> String {
    let mut text = l.join("\n");
    text.push('\n');
    text
}

/// Installs the ruleset, replacing any outgate rules of either backend and any mode (a mode or interface
/// change leaves no stale jump), and sets up traffic control for `cfg.shaping` (see `shape`): HTB on
/// each shaped device, none where an earlier apply shaped a device this one does not. Idempotent.
///
/// First it reads the other rules that use marks (see [`collisions`]) and refuses, naming each rule that
/// writes into outgate's bits, unless `force`; and it refuses to shape a device whose root qdisc is
/// neither the kernel's default nor outgate's. Only `--shape-backend classify` is applied.
///
/// iptables: all or nothing across the families and traffic control. Both transactions (one
/// `*-restore --noflush` each, over the raw, mangle and filter tables) are tested first (`--test`),
/// then IPv4 is committed, then IPv6, then traffic control; if a later step fails, the earlier ones are
/// put back as they were (outgate's earlier chains and jumps, at their places, or nothing; outgate's
/// earlier HTB trees, or the kernel's default qdisc), and the error names the step. nft: traffic control
/// first, then one atomic `nft -f` that deletes and recreates the table; if that fails, traffic control
/// is put back.
pub fn apply(cfg: &RulesConfig, backend: Backend, force: bool) -> Result<(), RulesError> {
    cfg.validate()?;
    if let Some(shaping) = &cfg.shaping
        && shaping.backend != ShapeBackend::Classify
    {
        return Err(RulesError::NotApplied(shaping.backend));
    }
    if !force && let Some(refusal) = conflicts::refusal(cfg.marks, &conflicts::mark_users()?) {
        return Err(refusal);
    }
    let tc_before = tc::before(cfg)?;
    match backend {
        Backend::Iptables => {
            let mut plans = Vec::new();
            for family in Family::ALL {
                let installed = |table, chain| {
                    present_iptables(family, table, chain)?.ok_or_else(|| {
                        RulesError::NotInstalled {
                            program: family.iptables().to_string(),
                        }
                    })
                };
                let raw = installed("raw", CHAIN)?;
                let mangle = installed("mangle", SHAPE_CHAIN)?;
                let filter = installed("filter", CHAIN)?;
                let mut l = vec!["*raw".to_string()];
                l.extend(raw.deletes.iter().cloned());
                l.extend(iptables_raw_body(cfg));
                l.push("COMMIT".into());
                let shaping = shape::iptables_mangle_body(cfg);
                if !shaping.is_empty() || mangle.chain || !mangle.deletes.is_empty() {
                    l.push("*mangle".into());
                    l.extend(mangle.deletes.iter().cloned());
                    if !shaping.is_empty() {
                        l.extend(shaping);
                    } else if mangle.chain {
                        l.extend([format!("-F {SHAPE_CHAIN}"), format!("-X {SHAPE_CHAIN}")]);
                    }
                    l.push("COMMIT".into());
                }
                l.push("*filter".into());
                l.extend(filter.deletes.iter().cloned());
                l.extend(iptables_body(cfg, family)?);
                l.push("COMMIT".into());
                let before = [("raw", raw), ("mangle", mangle), ("filter", filter)];
                plans.push((family, lines(l), before));
            }
            for (family, text, _) in &plans {
                run(family.restore(), &["-w", "--noflush", "--test"], Some(text))?;
            }
            let mut committed = Vec::new();
            let mut failed = None;
            for (family, text, before) in &plans {
                if let Err(e) = restore(*family, text) {
                    failed = Some(e);
                    break;
                }
                committed.push((*family, before));
            }
            if failed.is_none()
                && let Err(e) = tc::apply(cfg, &tc_before)
            {
                failed = Some(e);
            }
            if let Some(e) = failed {
                // Put back what was committed, newest first (traffic control put itself back).
                for (family, before) in committed.into_iter().rev() {
                    if let Err(back) = put_back(family, before) {
                        return Err(RulesError::PutBack {
                            failed: Box::new(e),
                            family: family.name(),
                            back: Box::new(back),
                        });
                    }
                }
                return Err(e);
            }
            remove_nft()
        }
        Backend::Nft => {
            // `table` creates it if absent, so the `delete` never fails: one transaction either way.
            let text = format!(
                "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n{}",
                nft(cfg)?
            );
            tc::apply(cfg, &tc_before)?;
            if let Err(e) = run("nft", &["-f", "-"], Some(&text)) {
                return match tc::put_back(&tc_before) {
                    Ok(()) => Err(e),
                    Err(back) => Err(RulesError::PutBack {
                        failed: Box::new(e),
                        family: "traffic control",
                        back: Box::new(back),
                    }),
                };
            }
            for family in Family::ALL {
                remove_iptables(family)?;
            }
            Ok(())
        }
    }
}

/// The kernel settings the daemon's flow end lines need (`outgate run --log`): conntrack's byte and
/// packet counts and its start and stop times, per network namespace, for the entries made after they
/// are on. Sets each to 1, and says why for each it could not set; they are left on by `--remove`
/// (they cost memory per entry, 32 and 16 bytes, and other tools read them).
pub fn flow_accounting() -> Vec<String> {
    ["nf_conntrack_acct", "nf_conntrack_timestamp"]
        .into_iter()
        .filter_map(|name| {
            let path = format!("/proc/sys/net/netfilter/{name}");
            std::fs::write(&path, "1\n")
                .err()
                .map(|e| format!("cannot set net.netfilter.{name} to 1 ({path}: {e}): flow end lines will lack what it gives"))
        })
        .collect()
}

/// Puts outgate's part of `family`'s tables back as `before` describes it (see [`apply`]).
fn put_back(family: Family, before: &[(&str, Present); 3]) -> Result<(), RulesError> {
    let mut l = Vec::new();
    for (table, before) in before {
        let now = present_iptables(family, table, before.name)?.ok_or_else(|| {
            RulesError::NotInstalled {
                program: family.iptables().to_string(),
            }
        })?;
        if before.chain || now.chain || !now.deletes.is_empty() {
            l.extend(iptables::put_back(table, before, &now));
        }
    }
    restore(family, &lines(l))
}

/// The ruleset outgate installed, read from its description (see [`Installed`]): `None` when there is
/// none. An error when a ruleset cannot describe itself (made by an older outgate), when the families'
/// rulesets differ, or when both backends hold one: a daemon must not guess which one it serves.
pub fn installed() -> Result<Option<Installed>, RulesError> {
    let mut families = Vec::new();
    for family in Family::ALL {
        match run(family.iptables(), &["-w", "-t", "filter", "-S"], None) {
            Ok(listing) => families.push((family, describe::in_iptables(family, &listing)?)),
            Err(RulesError::NotInstalled { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let iptables = match families.as_slice() {
        [(_, v4), (_, v6)] if v4 == v6 => v4.clone(),
        [(_, v4), (_, v6)] => {
            let show = |cfg: &Option<RulesConfig>| {
                cfg.as_ref().map_or("none".to_string(), describe::describe)
            };
            return Err(RulesError::Inconsistent(format!(
                "the IPv4 and IPv6 rulesets differ (IPv4: {}; IPv6: {})",
                show(v4),
                show(v6)
            )));
        }
        [(_, one)] => one.clone(),
        _ => None,
    };
    let nft = match run("nft", &["list", "table", "inet", NFT_TABLE], None) {
        Ok(listing) => Some(describe::in_nft(&listing)?),
        Err(RulesError::NotInstalled { .. }) => None,
        // What nft says when the table is not there.
        Err(RulesError::Command { message, .. })
            if message.contains("No such file or directory") =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    match (iptables, nft) {
        (Some(_), Some(_)) => Err(RulesError::Inconsistent(format!(
            "both an iptables ruleset (chain {CHAIN}) and an nft one (table inet {NFT_TABLE}) are installed"
        ))),
        (Some(config), None) => Ok(Some(Installed {
            backend: Backend::Iptables,
            config,
        })),
        (None, Some(config)) => Ok(Some(Installed {
            backend: Backend::Nft,
            config,
        })),
        (None, None) => Ok(None),
    }
}

/// Removes every trace of outgate: the traffic control its ruleset records (each shaped device's root
/// qdisc, while it is still outgate's HTB), each jump to its chains in the raw, mangle and filter tables
/// (any chain, any mode), the chains, for both families, and nft's `table inet outgate`. Succeeds when
/// nothing is there, and when a tool is not installed (nothing of outgate can be there then). Tries
/// everything, reports the first error. Returns a note for each root qdisc it left because someone
/// replaced outgate's.
pub fn remove() -> Result<Vec<String>, RulesError> {
    // Traffic control first: the ruleset's description is what says which devices are outgate's.
    let notes = tc::remove(tc::recorded());
    let results = [
        remove_iptables(Family::V4),
        remove_iptables(Family::V6),
        remove_nft(),
    ];
    let notes = notes?;
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(notes)
}

fn present_iptables(
    family: Family,
    table: &str,
    chain: &'static str,
) -> Result<Option<Present>, RulesError> {
    match run(family.iptables(), &["-w", "-t", table, "-S"], None) {
        Ok(listing) => Ok(Some(Present::read(chain, &listing))),
        Err(RulesError::NotInstalled { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_iptables(family: Family) -> Result<(), RulesError> {
    let mut l = Vec::new();
    for (table, chain) in [("raw", CHAIN), ("mangle", SHAPE_CHAIN), ("filter", CHAIN)] {
        let Some(present) = present_iptables(family, table, chain)? else {
            return Ok(());
        };
        if present.deletes.is_empty() && !present.chain {
            continue;
        }
        l.push(format!("*{table}"));
        l.extend(present.deletes);
        if present.chain {
            l.push(format!("-F {chain}"));
            l.push(format!("-X {chain}"));
        }
        l.push("COMMIT".into());
    }
    if l.is_empty() {
        return Ok(());
    }
    restore(family, &lines(l))
}

fn remove_nft() -> Result<(), RulesError> {
    // Listing fails when nft is missing, the kernel has no nf_tables, or the table is absent: nothing to do.
    if run("nft", &["list", "table", "inet", NFT_TABLE], None).is_err() {
        return Ok(());
    }
    run("nft", &["delete", "table", "inet", NFT_TABLE], None).map(drop)
}

fn restore(family: Family, text: &str) -> Result<(), RulesError> {
    run(family.restore(), &["-w", "--noflush"], Some(text)).map(drop)
}

/// Runs a command, feeding it `input`; its stdout, or an error naming the command with its stderr on one line.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, RulesError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let failed = |message: String| RulesError::Command {
        command: command.clone(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => RulesError::NotInstalled {
                program: program.to_string(),
            },
            _ => failed(format!("cannot run: {e}")),
        })?;
    // Inputs are a few KiB, below the pipe buffer: writing before reading cannot deadlock. The pipe is
    // closed when `stdin` drops, at the end of this block.
    let written = match (input, child.stdin.take()) {
        (Some(text), Some(mut stdin)) => stdin.write_all(text.as_bytes()),
        _ => Ok(()),
    };
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(failed(if stderr.is_empty() {
            format!("failed ({})", output.status)
        } else {
            stderr
        }));
    }
    written.map_err(|e| failed(format!("cannot write its input: {e}")))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests;

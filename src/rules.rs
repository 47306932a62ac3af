//! The kernel ruleset that sends outbound flows to the daemon: generated as text, applied and removed.
//!
//! `outgate rules [--queues 0-3] [--mode host|gateway] [--lan IF] [--wan IF] [--fail-open|--fail-closed]
//! [--backend iptables|nft] [--apply|--remove]` prints or installs it, for IPv4 and IPv6. Host mode filters
//! what this host sends (filter OUTPUT, loopback excluded; `--wan` limits it to one interface); gateway mode
//! what it forwards from `--lan` to `--wan` (filter FORWARD).
//!
//! What the ruleset guarantees:
//! - Outgate sees every filtered packet first: the jump is the first rule of its hook, so no earlier rule
//!   (an ESTABLISHED accept, say) lets packets of a flow under inspection or of a dropped flow by, and the
//!   daemon's REPEAT pass (the hook again from its first rule) runs no other rule twice. Outgate only
//!   restricts: its accept returns to the admin's rules.
//! - Decided flows never reach userspace: the verdict the daemon puts in the packet mark ([`MARK_MASK`]
//!   bits) is saved in the conntrack mark, and later packets take it from there. Exception: a flow dropped
//!   or rejected at its first packet leaves no conntrack entry (entries are confirmed only when a packet
//!   leaves), so its retries are queued again and the daemon answers them from its flow table.
//! - Undecided packets go to the queues: new flows, flows still inspected (the daemon accepted without a
//!   mark), and packets without conntrack (untracked, invalid), each of which is decided on its own.
//!   Host mode spreads several queues by sending CPU (`fanout`), since the kernel's balance hashes only the
//!   two addresses and would put every flow to one server on one queue; the cost: one flow's packets can
//!   reach several queues. Gateway mode balances by that address hash (one flow, one queue).
//! - A value in outgate's bits that is not a verdict is dropped: fail closed.
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
//! [`apply`] is idempotent and atomic per family: one `iptables-restore --noflush` transaction deletes
//! every jump to [`CHAIN`] (whatever mode or version made it), redefines the chain and inserts the jump.
//! [`remove`] leaves no outgate chain, jump or nft table (the empty `filter` table that iptables-nft
//! creates on first use, and legacy iptables even on listing, stays). Commands run with
//! [`std::process::Command`]; their errors name the command and its stderr on one line.
//!
//! nftables: the `queue` statement needs `CONFIG_NFT_QUEUE`; without it the nft ruleset cannot be loaded
//! (the iptables `NFQUEUE` target is separate and works).

use std::fmt;
use std::io::{ErrorKind, Write};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// Outgate's bits of the packet mark and the conntrack mark; the other bits belong to others.
pub const MARK_MASK: u32 = 0x0000_0f00;
/// Verdict in the mark: accept the flow.
pub const MARK_ACCEPT: u32 = 0x100;
/// Verdict in the mark: drop the flow.
pub const MARK_DROP: u32 = 0x200;
/// Verdict in the mark: reject the flow (TCP reset, else ICMP port unreachable).
pub const MARK_REJECT: u32 = 0x300;
/// The iptables chain; in nftables the table is `inet outgate`.
pub const CHAIN: &str = "OUTGATE";

const NFT_TABLE: &str = "outgate";

/// Where outgate filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Packets this host sends (OUTPUT), loopback excluded.
    Host,
    /// Packets this host forwards from the LAN interface to the WAN interface (FORWARD).
    Gateway,
}

impl FromStr for Mode {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(Mode::Host),
            "gateway" => Ok(Mode::Gateway),
            _ => Err(RulesError::Mode(s.to_string())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Host => "host",
            Mode::Gateway => "gateway",
        })
    }
}

/// Which kernel interface carries the ruleset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `iptables` and `ip6tables` (legacy or nf_tables based).
    Iptables,
    /// One `table inet outgate` for both families.
    Nft,
}

impl FromStr for Backend {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iptables" => Ok(Backend::Iptables),
            "nft" => Ok(Backend::Nft),
            _ => Err(RulesError::Backend(s.to_string())),
        }
    }
}

/// IP version of an iptables ruleset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The `iptables` command of this family; `-restore` is appended for the restore tool.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The NFQUEUE numbers the daemon listens on, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRange {
    pub first: u16,
    pub last: u16,
}

impl QueueRange {
    /// One queue.
    pub const fn one(queue: u16) -> Self {
        QueueRange {
            first: queue,
            last: queue,
        }
    }

    /// How many queues; 0 for a reversed range (which [`RulesConfig::validate`] rejects).
    pub fn len(self) -> u32 {
        (u32::from(self.last) + 1).saturating_sub(u32::from(self.first))
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl Default for QueueRange {
    fn default() -> Self {
        QueueRange::one(0)
    }
}

/// Parses `N` or `N-M` (also iptables' `N:M`), N ≤ M ≤ 65535.
impl FromStr for QueueRange {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RulesError::Queues(s.to_string());
        // Digits only: `u16::from_str` would also take a sign.
        let number = |t: &str| {
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse::<u16>().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let range = match s.split_once(['-', ':']) {
            None => QueueRange::one(number(s)?),
            Some((a, b)) => QueueRange {
                first: number(a)?,
                last: number(b)?,
            },
        };
        if range.is_empty() {
            return Err(bad());
        }
        Ok(range)
    }
}

impl fmt::Display for QueueRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// What `outgate rules` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    pub queues: QueueRange,
    pub mode: Mode,
    /// Gateway mode: the interface the filtered traffic comes from (required; not allowed in host mode).
    pub lan: Option<String>,
    /// Gateway mode: the interface it leaves by (required). Host mode: filter only this egress interface.
    pub wan: Option<String>,
    /// Undecided packets pass while no daemon listens (`--queue-bypass`); otherwise they are dropped.
    pub fail_open: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            queues: QueueRange::default(),
            mode: Mode::Host,
            lan: None,
            wan: None,
            fail_open: false,
        }
    }
}

impl RulesConfig {
    /// Checks everything that goes into a command line: interface names, their presence per mode, queues.
    pub fn validate(&self) -> Result<(), RulesError> {
        if self.queues.is_empty() {
            return Err(RulesError::Queues(format!(
                "{}-{}",
                self.queues.first, self.queues.last
            )));
        }
        for (option, name) in [("lan", &self.lan), ("wan", &self.wan)] {
            if let Some(name) = name {
                check_interface(option, name)?;
            }
        }
        match self.mode {
            Mode::Gateway => {
                for (option, name) in [("lan", &self.lan), ("wan", &self.wan)] {
                    if name.is_none() {
                        return Err(RulesError::MissingInterface(option));
                    }
                }
            }
            Mode::Host => {
                if self.lan.is_some() {
                    return Err(RulesError::LanInHostMode);
                }
            }
        }
        Ok(())
    }
}

/// Linux interface names (IFNAMSIZ − 1 bytes), restricted to characters that are safe on a command line
/// and in nft strings. A trailing `+` is iptables' prefix wildcard (`nft`: `*`).
fn check_interface(option: &'static str, name: &str) -> Result<(), RulesError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > 15 {
        Some("longer than 15 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b))
    {
        Some("only letters, digits and . _ - + @ are allowed")
    } else if name.starts_with('-') {
        Some("must not start with '-'")
    } else if name == "." || name == ".." {
        Some("not a valid interface name")
    } else if name == "lo" {
        Some("loopback is never filtered")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RulesError::Interface {
            option,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

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
    #[error("{program}: not found; is it installed and in PATH?")]
    NotInstalled { program: String },
    #[error("{command}: {message}")]
    Command { command: String, message: String },
}

fn hex(value: u32) -> String {
    format!("{value:#x}")
}

fn mark_is(value: u32) -> String {
    format!("-m mark --mark {}/{}", hex(value), hex(MARK_MASK))
}

/// The hook chain and the match of the jump to [`CHAIN`].
fn iptables_hook(cfg: &RulesConfig) -> (&'static str, String) {
    match (cfg.mode, &cfg.lan, &cfg.wan) {
        (Mode::Gateway, Some(lan), Some(wan)) => ("FORWARD", format!("-i {lan} -o {wan}")),
        (_, _, Some(wan)) => ("OUTPUT", format!("-o {wan}")),
        _ => ("OUTPUT", "! -o lo".to_string()),
    }
}

fn iptables_queue(cfg: &RulesConfig) -> String {
    let q = cfg.queues;
    let mut target = if q.first == q.last {
        format!("-j NFQUEUE --queue-num {}", q.first)
    } else {
        format!("-j NFQUEUE --queue-balance {}:{}", q.first, q.last)
    };
    // The order iptables-save prints them in, so the text compares with a saved ruleset.
    if cfg.fail_open {
        target.push_str(" --queue-bypass");
    }
    if q.first != q.last && cfg.mode == Mode::Host {
        target.push_str(" --queue-cpu-fanout");
    }
    target
}

fn fail_mode(cfg: &RulesConfig) -> &'static str {
    if cfg.fail_open {
        "fail-open"
    } else {
        "fail-closed"
    }
}

/// The table body: everything between `*filter` and `COMMIT`, with a comment above each step.
fn iptables_body(cfg: &RulesConfig, family: Family) -> Vec<String> {
    let (hook, hook_match) = iptables_hook(cfg);
    let c = CHAIN;
    let mask = hex(MARK_MASK);
    let none = mark_is(0);
    let mut l: Vec<String> = vec![
        format!(":{c} - [0:0]"),
        "# First in the hook: no earlier rule may pass packets of flows under inspection, and the"
            .into(),
        "# daemon's REPEAT pass (the hook again from its first rule) runs no other rule twice."
            .into(),
        format!("-I {hook} 1 {hook_match} -j {c}"),
        "# Replies on connections opened from outside are not outbound flows.".into(),
        format!("-A {c} -m conntrack --ctdir REPLY -j RETURN"),
    ];
    if family == Family::V6 && cfg.mode == Mode::Host {
        l.push("# IPv6 needs neighbour discovery and MLD reports; link-local by hop limit.".into());
        for (icmp_type, hop_limit) in [
            (133, 255),
            (135, 255),
            (136, 255),
            (131, 1),
            (132, 1),
            (143, 1),
        ] {
            l.push(format!(
                "-A {c} -p ipv6-icmp -m icmp6 --icmpv6-type {icmp_type} -m hl --hl-eq {hop_limit} -j RETURN"
            ));
        }
    }
    let reject_icmp = match family {
        Family::V4 => "icmp-port-unreachable",
        Family::V6 => "icmp6-port-unreachable",
    };
    let queue_comment = if cfg.fail_open {
        "# Undecided: to the daemon; with none listening the packet passes (fail-open)."
    } else {
        "# Undecided: to the daemon; with none listening the packet is dropped (fail-closed)."
    };
    l.extend([
        "# Decided flow: its verdict comes from the conntrack mark. Not when the packet carries one:".into(),
        "# that is the REPEAT pass, and restoring the still-empty conntrack mark would loop it.".into(),
        format!("-A {c} {none} -j CONNMARK --restore-mark --nfmask {mask} --ctmask {mask}"),
        queue_comment.into(),
        format!("-A {c} {none} {}", iptables_queue(cfg)),
        "# Only packets with a verdict get here: keep it in conntrack so the flow skips the queue.".into(),
        format!("-A {c} -j CONNMARK --save-mark --nfmask {mask} --ctmask {mask}"),
        "# Accept returns to the admin's rules: outgate only restricts.".into(),
        format!("-A {c} {} -j RETURN", mark_is(MARK_ACCEPT)),
        format!("-A {c} {} -j DROP", mark_is(MARK_DROP)),
        format!(
            "-A {c} -p tcp {} -j REJECT --reject-with tcp-reset",
            mark_is(MARK_REJECT)
        ),
        format!(
            "-A {c} {} -j REJECT --reject-with {reject_icmp}",
            mark_is(MARK_REJECT)
        ),
        "# Any other value in outgate's bits is no verdict: fail closed.".into(),
        format!("-A {c} -j DROP"),
    ]);
    l
}

/// The raw table's part: the kernel's FTP helper on the control connections outgate lets through. It
/// reads the server's 227/229 replies and the client's PORT/EPRT commands (which the daemon never sees:
/// only the client's direction is queued) and expects exactly the data connection they announce, for a
/// short time. That connection is RELATED and inherits the control connection's conntrack mark, so an
/// accepted control connection's data channel is accepted in the kernel, and nothing else on high ports.
fn iptables_raw_body(cfg: &RulesConfig) -> Vec<String> {
    let c = CHAIN;
    // raw has no FORWARD: in gateway mode the LAN side's PREROUTING sees the same packets.
    let hook = match (cfg.mode, &cfg.lan) {
        (Mode::Gateway, Some(lan)) => format!("-I PREROUTING 1 -i {lan} -j {c}"),
        _ => format!("-I OUTPUT 1 {} -j {c}", iptables_hook(cfg).1),
    };
    vec![
        format!(":{c} - [0:0]"),
        hook,
        "# FTP: the kernel's helper admits exactly the data connection the control connection announces."
            .into(),
        format!("-A {c} -p tcp -m tcp --dport 21 -j CT --helper ftp"),
    ]
}

/// The ruleset as `iptables-restore --noflush` (or `ip6tables-restore`) text, for a filter table without
/// outgate rules: loading it twice inserts the jump twice. [`apply`] replaces existing rules instead.
pub fn iptables_restore(cfg: &RulesConfig, family: Family) -> Result<String, RulesError> {
    cfg.validate()?;
    let mut l = vec![
        format!(
            "# outgate, {} ({}): {} mode, queue {}, {}.",
            family.name(),
            family.restore(),
            cfg.mode,
            cfg.queues,
            fail_mode(cfg)
        ),
        "# Load with --noflush into tables without outgate; `outgate rules --apply` replaces in place.".into(),
        "*raw".into(),
    ];
    l.extend(iptables_raw_body(cfg));
    l.extend(["COMMIT".to_string(), "*filter".to_string()]);
    l.extend(iptables_body(cfg, family));
    l.push("COMMIT".into());
    Ok(lines(l))
}

fn lines(l: Vec<String>) -> String {
    let mut text = l.join("\n");
    text.push('\n');
    text
}

/// An nft interface name: iptables' trailing `+` wildcard is nft's `*`.
fn nft_interface(name: &str) -> String {
    match name.strip_suffix('+') {
        Some(prefix) => format!("\"{prefix}*\""),
        None => format!("\"{name}\""),
    }
}

fn nft_queue(cfg: &RulesConfig) -> String {
    let mut flags = Vec::new();
    if cfg.queues.first != cfg.queues.last && cfg.mode == Mode::Host {
        flags.push("fanout");
    }
    if cfg.fail_open {
        flags.push("bypass");
    }
    let mut statement = format!("queue num {}", cfg.queues);
    if !flags.is_empty() {
        statement.push(' ');
        statement.push_str(&flags.join(","));
    }
    statement
}

/// The ruleset as one `nft -f` file: `table inet outgate`, both families, the same steps as iptables.
/// nft 1.0 cannot combine two registers (`meta mark | ct mark`), so the mark is restored and saved one
/// verdict value at a time, with constants, which also leaves the other bits of both marks alone.
pub fn nft(cfg: &RulesConfig) -> Result<String, RulesError> {
    cfg.validate()?;
    let (chain, hook, jump) = match (cfg.mode, &cfg.lan, &cfg.wan) {
        (Mode::Gateway, Some(lan), Some(wan)) => (
            "forward",
            "forward",
            format!(
                "iifname {} oifname {} jump gate",
                nft_interface(lan),
                nft_interface(wan)
            ),
        ),
        (_, _, Some(wan)) => (
            "output",
            "output",
            format!("oifname {} jump gate", nft_interface(wan)),
        ),
        _ => (
            "output",
            "output",
            "oifname != \"lo\" jump gate".to_string(),
        ),
    };
    let (helper_hook, helper_match) = match (cfg.mode, &cfg.lan, &cfg.wan) {
        (Mode::Gateway, Some(lan), _) => ("prerouting", format!("iifname {} ", nft_interface(lan))),
        (_, _, Some(wan)) => ("output", format!("oifname {} ", nft_interface(wan))),
        _ => ("output", "oifname != \"lo\" ".to_string()),
    };
    let mask = hex(MARK_MASK);
    let keep = hex(!MARK_MASK);
    let bits = |v: u32| format!("meta mark & {mask} == {}", hex(v));
    let verdicts = [MARK_ACCEPT, MARK_DROP, MARK_REJECT];
    let mut l = vec![
        format!(
            "# outgate (nft -f): {} mode, queue {}, {}.",
            cfg.mode,
            cfg.queues,
            fail_mode(cfg)
        ),
        format!("table inet {NFT_TABLE} {{"),
        "\t# FTP: the kernel's helper admits exactly the data connection a control connection announces".into(),
        "\tct helper ftp-standard {".into(),
        "\t\ttype \"ftp\" protocol tcp;".into(),
        "\t}".into(),
        format!("\tchain helpers {{"),
        format!("\t\ttype filter hook {helper_hook} priority raw; policy accept;"),
        format!("\t\t{helper_match}tcp dport 21 ct helper set \"ftp-standard\""),
        "\t}".into(),
        format!("\tchain {chain} {{"),
        format!("\t\ttype filter hook {hook} priority filter; policy accept;"),
        format!("\t\t{jump}"),
        "\t}".into(),
        "\tchain gate {".into(),
        "\t\t# replies on connections opened from outside are not outbound flows".into(),
        "\t\tct direction reply return".into(),
    ];
    if cfg.mode == Mode::Host {
        l.extend([
            "\t\t# IPv6 needs neighbour discovery and MLD reports; link-local by hop limit".into(),
            "\t\ticmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 return".into(),
            "\t\ticmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } ip6 hoplimit 1 return".into(),
        ]);
    }
    l.push("\t\t# decided flow: the verdict from the conntrack mark, unless the packet has one (REPEAT pass)".into());
    for v in verdicts {
        l.push(format!(
            "\t\t{} ct mark & {mask} == {} meta mark set meta mark | {}",
            bits(0),
            hex(v),
            hex(v)
        ));
    }
    l.extend([
        "\t\t# any other value in outgate's conntrack bits is no verdict: fail closed".into(),
        format!("\t\t{} ct mark & {mask} != 0x0 drop", bits(0)),
        format!(
            "\t\t# undecided: to the daemon; with none listening the packet {}",
            if cfg.fail_open {
                "passes (fail-open)"
            } else {
                "is dropped (fail-closed)"
            }
        ),
        format!("\t\t{} {}", bits(0), nft_queue(cfg)),
        "\t\t# a verdict: keep it in conntrack so the flow skips the queue".into(),
    ]);
    for v in verdicts {
        l.push(format!(
            "\t\t{} ct mark set ct mark & {keep} | {}",
            bits(v),
            hex(v)
        ));
    }
    l.extend([
        "\t\t# accept ends this table's chain only: the admin's tables still run".into(),
        format!("\t\t{} accept", bits(MARK_ACCEPT)),
        format!("\t\t{} drop", bits(MARK_DROP)),
        format!(
            "\t\t{} meta l4proto tcp reject with tcp reset",
            bits(MARK_REJECT)
        ),
        format!(
            "\t\t{} reject with icmpx type port-unreachable",
            bits(MARK_REJECT)
        ),
        "\t\t# any other value in outgate's bits is no verdict: fail closed".into(),
        "\t\tdrop".into(),
        "\t}".into(),
        "}".into(),
    ]);
    Ok(lines(l))
}

/// Installs the ruleset, replacing any outgate rules of either backend and any mode (a mode or interface
/// change leaves no stale jump). Idempotent. iptables: each family is one atomic `*-restore --noflush`
/// transaction; if IPv6 fails, IPv4 stays applied and the error names ip6tables-restore.
/// nft: one atomic `nft -f` that deletes and recreates the table.
pub fn apply(cfg: &RulesConfig, backend: Backend) -> Result<(), RulesError> {
    cfg.validate()?;
    match backend {
        Backend::Iptables => {
            for family in Family::ALL {
                let installed = |table| {
                    present_iptables(family, table)?.ok_or_else(|| RulesError::NotInstalled {
                        program: family.iptables().to_string(),
                    })
                };
                let (raw, filter) = (installed("raw")?, installed("filter")?);
                let mut l = vec!["*raw".to_string()];
                l.extend(raw.deletes);
                l.extend(iptables_raw_body(cfg));
                l.extend(["COMMIT".to_string(), "*filter".to_string()]);
                l.extend(filter.deletes);
                l.extend(iptables_body(cfg, family));
                l.push("COMMIT".into());
                restore(family, &lines(l))?;
            }
            remove_nft()
        }
        Backend::Nft => {
            // `table` creates it if absent, so the `delete` never fails: one transaction either way.
            let text = format!(
                "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n{}",
                nft(cfg)?
            );
            run("nft", &["-f", "-"], Some(&text))?;
            for family in Family::ALL {
                remove_iptables(family)?;
            }
            Ok(())
        }
    }
}

/// Removes every trace of outgate: each jump to [`CHAIN`] in the filter table (any chain, any mode),
/// the chain, for both families, and nft's `table inet outgate`. Succeeds when nothing is there, and when
/// a tool is not installed (nothing of outgate can be there then). Tries everything, reports the first error.
pub fn remove() -> Result<(), RulesError> {
    let results = [
        remove_iptables(Family::V4),
        remove_iptables(Family::V6),
        remove_nft(),
    ];
    results.into_iter().collect()
}

/// What the filter table holds of outgate: `-D` lines for every jump or goto to [`CHAIN`], and whether
/// the chain exists. `None` when the tool is not installed.
struct Present {
    deletes: Vec<String>,
    chain: bool,
}

fn present_iptables(family: Family, table: &str) -> Result<Option<Present>, RulesError> {
    let listing = match run(family.iptables(), &["-w", "-t", table, "-S"], None) {
        Ok(listing) => listing,
        Err(RulesError::NotInstalled { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut present = Present {
        deletes: Vec::new(),
        chain: false,
    };
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-N", name] if *name == CHAIN => present.chain = true,
            ["-A", .., "-j" | "-g", target] if *target == CHAIN => {
                // `-S` prints rules in the syntax restore reads (quotes included): delete by spec, so a
                // rule inserted meanwhile cannot shift the deletion to the wrong rule.
                present.deletes.push(format!("-D{}", &line[2..]));
            }
            _ => {}
        }
    }
    Ok(Some(present))
}

fn remove_iptables(family: Family) -> Result<(), RulesError> {
    let mut l = Vec::new();
    for table in ["raw", "filter"] {
        let Some(present) = present_iptables(family, table)? else {
            return Ok(());
        };
        if present.deletes.is_empty() && !present.chain {
            continue;
        }
        l.push(format!("*{table}"));
        l.extend(present.deletes);
        if present.chain {
            l.push(format!("-F {CHAIN}"));
            l.push(format!("-X {CHAIN}"));
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
mod tests {
    use super::*;

    fn host(queues: &str) -> RulesConfig {
        RulesConfig {
            queues: queues.parse().expect("valid range"),
            ..RulesConfig::default()
        }
    }

    fn gateway() -> RulesConfig {
        RulesConfig {
            queues: "2-5".parse().expect("valid range"),
            mode: Mode::Gateway,
            lan: Some("lan0".into()),
            wan: Some("wan0".into()),
            fail_open: true,
        }
    }

    /// Rules only, without comments: what iptables-save would show (apart from `-I` for `-A`).
    fn rules(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn host_one_queue_fail_closed_is_exactly_this() {
        let text = iptables_restore(&host("0"), Family::V4).expect("valid config");
        let expected = "\
# outgate, IPv4 (iptables-restore): host mode, queue 0, fail-closed.
# Load with --noflush into tables without outgate; `outgate rules --apply` replaces in place.
*raw
:OUTGATE - [0:0]
-I OUTPUT 1 ! -o lo -j OUTGATE
# FTP: the kernel's helper admits exactly the data connection the control connection announces.
-A OUTGATE -p tcp -m tcp --dport 21 -j CT --helper ftp
COMMIT
*filter
:OUTGATE - [0:0]
# First in the hook: no earlier rule may pass packets of flows under inspection, and the
# daemon's REPEAT pass (the hook again from its first rule) runs no other rule twice.
-I OUTPUT 1 ! -o lo -j OUTGATE
# Replies on connections opened from outside are not outbound flows.
-A OUTGATE -m conntrack --ctdir REPLY -j RETURN
# Decided flow: its verdict comes from the conntrack mark. Not when the packet carries one:
# that is the REPEAT pass, and restoring the still-empty conntrack mark would loop it.
-A OUTGATE -m mark --mark 0x0/0xf00 -j CONNMARK --restore-mark --nfmask 0xf00 --ctmask 0xf00
# Undecided: to the daemon; with none listening the packet is dropped (fail-closed).
-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-num 0
# Only packets with a verdict get here: keep it in conntrack so the flow skips the queue.
-A OUTGATE -j CONNMARK --save-mark --nfmask 0xf00 --ctmask 0xf00
# Accept returns to the admin's rules: outgate only restricts.
-A OUTGATE -m mark --mark 0x100/0xf00 -j RETURN
-A OUTGATE -m mark --mark 0x200/0xf00 -j DROP
-A OUTGATE -p tcp -m mark --mark 0x300/0xf00 -j REJECT --reject-with tcp-reset
-A OUTGATE -m mark --mark 0x300/0xf00 -j REJECT --reject-with icmp-port-unreachable
# Any other value in outgate's bits is no verdict: fail closed.
-A OUTGATE -j DROP
COMMIT
";
        assert_eq!(text, expected);
    }

    #[test]
    fn host_four_queues_fan_out_by_cpu() {
        let text = iptables_restore(&host("0-3"), Family::V4).expect("valid config");
        let queue: Vec<_> = rules(&text)
            .into_iter()
            .filter(|l| l.contains("NFQUEUE"))
            .collect();
        assert_eq!(
            queue,
            [
                "-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-balance 0:3 --queue-cpu-fanout"
            ]
        );
        assert!(text.contains("queue 0-3, fail-closed"), "{text}");
        assert!(!text.contains("bypass"), "{text}");
    }

    #[test]
    fn host_wan_limits_the_jump_to_that_interface() {
        let cfg = RulesConfig {
            wan: Some("eth0".into()),
            fail_open: true,
            ..host("7")
        };
        let text = iptables_restore(&cfg, Family::V4).expect("valid config");
        assert!(
            text.contains("\n-I OUTPUT 1 -o eth0 -j OUTGATE\n"),
            "{text}"
        );
        assert!(
            text.contains("-j NFQUEUE --queue-num 7 --queue-bypass\n"),
            "{text}"
        );
    }

    #[test]
    fn gateway_fail_open_balances_by_address_with_bypass() {
        let text = iptables_restore(&gateway(), Family::V4).expect("valid config");
        let r = rules(&text);
        assert_eq!(
            r[2], "-I PREROUTING 1 -i lan0 -j OUTGATE",
            "raw: the FTP helper on LAN traffic"
        );
        assert_eq!(r[7], "-I FORWARD 1 -i lan0 -o wan0 -j OUTGATE");
        assert!(
            r.contains(
                &"-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-balance 2:5 --queue-bypass"
            ),
            "{text}"
        );
        assert!(!text.contains("OUTPUT"), "{text}");
        assert!(!text.contains("fanout"), "{text}");
        assert!(!text.contains("icmpv6"), "{text}");
    }

    #[test]
    fn ip6tables_rejects_with_icmp6_and_passes_neighbour_discovery() {
        let v4 = iptables_restore(&host("0"), Family::V4).expect("valid config");
        let v6 = iptables_restore(&host("0"), Family::V6).expect("valid config");
        assert!(
            v6.contains("-j REJECT --reject-with icmp6-port-unreachable\n"),
            "{v6}"
        );
        assert!(!v6.contains("icmp-port-unreachable"), "{v6}");
        assert!(
            v6.starts_with("# outgate, IPv6 (ip6tables-restore)"),
            "{v6}"
        );
        let nd: Vec<_> = rules(&v6)
            .into_iter()
            .filter(|l| l.contains("icmpv6-type"))
            .collect();
        assert_eq!(
            nd,
            [
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 133 -m hl --hl-eq 255 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 136 -m hl --hl-eq 255 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 131 -m hl --hl-eq 1 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 132 -m hl --hl-eq 1 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 143 -m hl --hl-eq 1 -j RETURN",
            ]
        );
        // Apart from those, the families differ only in the ICMP reject type and the header.
        let strip = |t: &str| -> Vec<String> {
            rules(t)
                .into_iter()
                .filter(|l| !l.contains("icmpv6-type"))
                .map(|l| l.replace("icmp6-port", "icmp-port"))
                .collect()
        };
        assert_eq!(strip(&v4), strip(&v6));
        // Gateway mode forwards no neighbour discovery.
        let gw6 = iptables_restore(&gateway(), Family::V6).expect("valid config");
        assert!(!gw6.contains("icmpv6-type"), "{gw6}");
    }

    #[test]
    fn verdict_rules_follow_the_mark_contract() {
        assert_eq!(MARK_MASK, 0xf00);
        for v in [MARK_ACCEPT, MARK_DROP, MARK_REJECT] {
            assert_eq!(v & !MARK_MASK, 0, "{v:#x} outside the mask");
            assert_ne!(v, 0, "0 means undecided");
        }
        let text = iptables_restore(&host("0"), Family::V4).expect("valid config");
        let r = rules(&text);
        // Restore, queue, save come before every verdict, and the catch-all is last.
        let pos = |needle: &str| {
            r.iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no rule with {needle}: {text}"))
        };
        assert!(pos("--restore-mark") < pos("NFQUEUE"));
        assert!(pos("NFQUEUE") < pos("--save-mark"));
        assert!(pos("--save-mark") < pos("0x100/0xf00"));
        assert_eq!(r[r.len() - 2], "-A OUTGATE -j DROP");
    }

    #[test]
    fn nft_host_multi_queue_fail_open() {
        let cfg = RulesConfig {
            fail_open: true,
            ..host("0-3")
        };
        let text = nft(&cfg).expect("valid config");
        for needle in [
            "\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t\toifname != \"lo\" jump gate\n\t}",
            "\tchain helpers {\n\t\ttype filter hook output priority raw; policy accept;\n\t\toifname != \"lo\" tcp dport 21 ct helper set \"ftp-standard\"\n\t}",
            "\t\tct direction reply return\n",
            "\t\tmeta mark & 0xf00 == 0x0 ct mark & 0xf00 == 0x100 meta mark set meta mark | 0x100\n",
            "\t\tmeta mark & 0xf00 == 0x0 ct mark & 0xf00 != 0x0 drop\n",
            "\t\tmeta mark & 0xf00 == 0x0 queue num 0-3 fanout,bypass\n",
            "\t\tmeta mark & 0xf00 == 0x200 ct mark set ct mark & 0xfffff0ff | 0x200\n",
            "\t\tmeta mark & 0xf00 == 0x100 accept\n",
            "\t\tmeta mark & 0xf00 == 0x300 meta l4proto tcp reject with tcp reset\n",
            "\t\tmeta mark & 0xf00 == 0x300 reject with icmpx type port-unreachable\n",
            "\t\tdrop\n\t}\n}\n",
            "nd-neighbor-solicit",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn nft_gateway_and_wildcards() {
        let cfg = RulesConfig {
            lan: Some("br+".into()),
            fail_open: false,
            ..gateway()
        };
        let text = nft(&cfg).expect("valid config");
        assert!(text.contains("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tiifname \"br*\" oifname \"wan0\" jump gate\n"), "{text}");
        assert!(text.contains(" queue num 2-5\n"), "{text}");
        assert!(!text.contains("icmpv6"), "{text}");
        let one = nft(&RulesConfig {
            fail_open: true,
            ..host("4")
        })
        .expect("valid config");
        assert!(one.contains(" queue num 4 bypass\n"), "{one}");
    }

    #[test]
    fn bad_interface_names_are_refused_before_any_text() {
        for (name, reason) in [
            ("", "empty"),
            ("abcdefghijklmnop", "longer than 15"),
            ("eth0 -j ACCEPT", "only letters"),
            ("eth0\n-A", "only letters"),
            ("wan\"0", "only letters"),
            ("-j", "must not start"),
            ("..", "not a valid"),
            ("lo", "loopback"),
        ] {
            let cfg = RulesConfig {
                wan: Some(name.into()),
                ..gateway()
            };
            // (`apply` validates the same way first; not called here: unit tests must not touch the host.)
            for result in [iptables_restore(&cfg, Family::V4), nft(&cfg)] {
                let err = result.expect_err(name).to_string();
                assert!(err.contains(reason), "{name:?}: {err}");
                assert!(err.starts_with("invalid --wan interface"), "{err}");
            }
        }
        for ok in [
            "eth0",
            "wlp3s0",
            "br-lan.10",
            "veth+",
            "wg@x",
            "abcdefghijklmno",
        ] {
            let cfg = RulesConfig {
                lan: Some(ok.into()),
                ..gateway()
            };
            assert!(cfg.validate().is_ok(), "{ok}");
        }
    }

    #[test]
    fn gateway_needs_lan_and_wan_host_takes_no_lan() {
        let no_lan = RulesConfig {
            lan: None,
            ..gateway()
        };
        let err = iptables_restore(&no_lan, Family::V4).expect_err("no lan");
        assert_eq!(
            err.to_string(),
            "gateway mode needs --lan and --wan (--lan is missing)"
        );
        let no_wan = RulesConfig {
            wan: None,
            ..gateway()
        };
        assert!(
            nft(&no_wan)
                .expect_err("no wan")
                .to_string()
                .contains("--wan is missing")
        );
        let host_lan = RulesConfig {
            lan: Some("eth1".into()),
            ..host("0")
        };
        assert!(matches!(
            host_lan.validate(),
            Err(RulesError::LanInHostMode)
        ));
    }

    #[test]
    fn queue_ranges_parse_strictly() {
        assert_eq!("0".parse::<QueueRange>().ok(), Some(QueueRange::one(0)));
        assert_eq!(
            "0-3".parse::<QueueRange>().ok(),
            Some(QueueRange { first: 0, last: 3 })
        );
        assert_eq!(
            "4:7".parse::<QueueRange>().ok(),
            Some(QueueRange { first: 4, last: 7 })
        );
        assert_eq!(
            "65535".parse::<QueueRange>().ok(),
            Some(QueueRange::one(65535))
        );
        for bad in [
            "", "-", "3-1", "+1", "1-", "-1", "65536", "0-3-4", " 1", "a", "1 - 3",
        ] {
            let err = bad.parse::<QueueRange>().expect_err(bad);
            assert!(err.to_string().starts_with("invalid queue range"), "{err}");
        }
        assert_eq!(QueueRange { first: 0, last: 3 }.to_string(), "0-3");
        assert_eq!(QueueRange { first: 3, last: 3 }.len(), 1);
        let reversed = RulesConfig {
            queues: QueueRange { first: 3, last: 1 },
            ..host("0")
        };
        assert!(reversed.validate().is_err());
    }

    #[test]
    fn modes_and_backends_parse() {
        assert_eq!("host".parse::<Mode>().ok(), Some(Mode::Host));
        assert_eq!("gateway".parse::<Mode>().ok(), Some(Mode::Gateway));
        assert_eq!("nft".parse::<Backend>().ok(), Some(Backend::Nft));
        assert_eq!("iptables".parse::<Backend>().ok(), Some(Backend::Iptables));
        assert!("router".parse::<Mode>().is_err());
        assert!("ebtables".parse::<Backend>().is_err());
    }

    #[test]
    fn command_errors_are_one_line_and_name_the_command() {
        let err = run(
            "sh",
            &["-c", "echo first >&2; echo; echo second >&2; exit 3"],
            None,
        )
        .expect_err("exit 3");
        assert_eq!(
            err.to_string(),
            "sh -c echo first >&2; echo; echo second >&2; exit 3: first | second"
        );
        let err = run("sh", &["-c", "exit 4"], None).expect_err("exit 4");
        assert!(err.to_string().contains("exit status: 4"), "{err}");
        let err = run("outgate-no-such-program", &[], None).expect_err("missing");
        assert!(matches!(err, RulesError::NotInstalled { .. }), "{err}");
        let out = run("cat", &[], Some("fed\n")).expect("cat runs");
        assert_eq!(out, "fed\n");
    }
}

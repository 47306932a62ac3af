//! The `outgate` binary: command line -> library calls; every error is printed once, here.
//!
//! Exit codes: 0 success; 1 the work failed (invalid policy, unreadable or corrupt capture, output not
//! writable); 2 the command line is wrong.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use outgate::log::{FlowLine, HttpLine, LogLine, TlsLine, rfc3339};
use outgate::nfqueue::{self, LogTarget, RunConfig};
use outgate::policy::{Cidr, DEFAULT_POLICY, LoadError};
use outgate::replay::{ReplayConfig, replay};
use outgate::rules::{
    self, Backend, DEFAULT_LINK_RATE, Family, Marks, Mode, QueueRange, Rate, RulesConfig,
    ShapeBackend, Shaping, SourceLimit,
};
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
                                                 what would it do to this traffic?
  outgate rules --apply && outgate run --policy policy.rules --log flows.jsonl --http-log http.jsonl
                                                 filter live (root; `outgate rules --remove` undoes)
  outgate report flows.jsonl http.jsonl          who is tunnelling, and how?";

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
        /// Write one JSON line per HTTP request a rule looked at (the HTTP filter log) to FILE.
        #[arg(long, value_name = "FILE")]
        http_log: Option<PathBuf>,
        /// Write one JSON line per TLS ClientHello a rule looked at to FILE.
        #[arg(long, value_name = "FILE")]
        tls_log: Option<PathBuf>,
        /// Write the accepted packets to a new pcap (raw IP link type).
        #[arg(long, value_name = "FILE")]
        write_accepted: Option<PathBuf>,
        /// Write the dropped and rejected packets to a new pcap (raw IP link type).
        #[arg(long, value_name = "FILE")]
        write_dropped: Option<PathBuf>,
        /// A local network (repeatable): for a TCP flow the capture holds only from its middle, the end
        /// inside it is the client. Without it (and without zone lines), the ports tell: the end on the
        /// higher, ephemeral-looking port is the client.
        #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
        lan: Vec<Cidr>,
        /// Audit: count and log what the policy would do, but as if every packet passed (log lines say
        /// "enforced":false); the summary shows what enforcing would change.
        #[arg(long)]
        audit: bool,
        /// Capture files (pcap or pcapng).
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
    },
    /// Run the live filter: decide the packets the kernel ruleset queues (see `outgate rules`).
    ///
    /// One worker thread per queue. Decided flows are handed back to the kernel with a mark that the
    /// ruleset saves in the conntrack entry, so their later packets never reach userspace. Stops on
    /// SIGTERM or SIGINT after answering every packet it holds. Needs root (CAP_NET_ADMIN).
    ///
    /// Fail-closed is the default: when the daemon is not running or its queue is full, outbound traffic
    /// stops. With --fail-open it flows unfiltered instead.
    ///
    /// Before it binds a queue it reads the installed ruleset's description, and refuses to start when
    /// the ruleset was made with other --queues, another fail mode or another --mark-mask (it names both
    /// values and the commands that make them agree); with no ruleset installed it warns that nothing
    /// will be queued. While it runs it keeps the ruleset's jump first in its hook (other firewalls insert
    /// theirs at the top), logging each repair.
    ///
    /// SIGHUP (systemctl reload) re-reads --policy off the packet path and swaps it in; a policy with
    /// errors is refused (FILE:LINE:COL on stderr and in the metrics) and the one in force stays. After a
    /// reload, and at the start, the flows the kernel already passes are decided again under the policy in
    /// force: a connection it no longer allows is cut, one it still allows is not touched. SIGHUP also
    /// reopens the logs (logrotate).
    Run {
        /// Policy file (default: the built-in policy, which is announced on stderr).
        #[arg(short, long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Queue numbers to bind, one worker each: `0` or a range `0-3`. Use as many as cores that
        /// should filter; the ruleset spreads flows over them.
        #[arg(long, value_name = "N|A-B", default_value = "0")]
        queues: QueueRange,
        /// Let traffic pass unfiltered when the queue is full (and, in the ruleset, when no daemon runs).
        #[arg(long, conflicts_with = "fail_closed")]
        fail_open: bool,
        /// Drop traffic when the queue is full or no daemon runs (the default).
        #[arg(long)]
        fail_closed: bool,
        /// Outgate's bits of the packet and conntrack marks: the same as the ruleset's (`outgate rules
        /// --mark-mask`).
        #[arg(long, value_name = "MASK", default_value_t = Marks::DEFAULT)]
        mark_mask: Marks,
        /// The bits a SHAPE verdict's traffic class goes in: the same as the ruleset's (`outgate rules
        /// --class-mask`). [default: the four bits above --mark-mask, 0xf000]
        #[arg(long, value_name = "MASK", value_parser = parse_class_mask)]
        class_mask: Option<u32>,
        /// Write one JSON line per decided flow to FILE (`-` for stdout); same keys as replay's --flows.
        #[arg(long, value_name = "FILE")]
        log: Option<String>,
        /// Write one JSON line per HTTP request a rule looked at to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        http_log: Option<String>,
        /// Write one JSON line per TLS ClientHello a rule looked at to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        tls_log: Option<String>,
        /// Serve Prometheus metrics over HTTP on ADDR, e.g. 127.0.0.1:9717.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Packets the kernel may hold per queue waiting for a verdict.
        #[arg(long, value_name = "N", default_value_t = 16_384)]
        queue_maxlen: u32,
        /// Socket receive buffer per queue, in MiB (the default loses nothing in BENCHMARKS.md's blast).
        #[arg(long, value_name = "MIB", default_value_t = 64)]
        rcvbuf_mib: usize,
        /// Remember the policy in force in FILE (e.g. /run/outgate/state). After a restart with the same
        /// policy, connections a payload rule allowed keep their verdict; without it (or with another
        /// policy) they get `option midstream`, since their first payload can no longer be read.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Print, apply or remove the kernel ruleset that sends undecided flows to outgate's queues.
    ///
    /// Its own chain OUTGATE, hooked first in OUTPUT (host mode, loopback excluded) or FORWARD (gateway
    /// mode, --lan to --wan), for IPv4 and IPv6. Decided flows are handled by their conntrack mark in the
    /// kernel; undecided ones go to the queues (several queues by address hash: one flow, one queue).
    /// Without --apply or --remove, prints it (iptables-restore format, or an nftables ruleset with
    /// --backend nft).
    ///
    /// --apply is idempotent, and all or nothing across IPv4 and IPv6. It refuses while other software
    /// writes into the mark bits (a foreign value there could pass for a verdict): choose free bits with
    /// --mark-mask, or override with --force. The ruleset describes itself in a comment that `outgate run`
    /// checks: give both the same --queues, fail mode, --mark-mask and --class-mask. --remove leaves no
    /// trace of outgate in any table, nor in traffic control.
    ///
    /// Shaping (SHAPE in the policy): with --policy FILE whose policy has traffic classes (`class bulk
    /// 500kbit`, `option shape-rate 2mbit`), it also sets up traffic control: an HTB tree on each shaped
    /// device (gateway mode: --lan for downloads, --wan for uploads; host mode: --wan, uploads only) with
    /// one class per policy class, and mangle rules that put each shaped flow's packets, both ways, into
    /// its class (tc class 1:11 for the first class, 1:12 for the second, ...; 1:10 for the rest). It
    /// refuses to replace a root qdisc it did not make. Without --policy, or with a policy without
    /// classes, it sets up no traffic control (and takes away what an earlier --apply made).
    Rules {
        /// Queues to spread flows over: `0` or `0-3` (the same as `outgate run --queues`).
        #[arg(long, value_name = "N|A-B", default_value = "0")]
        queues: QueueRange,
        /// host: filter this machine's own outbound traffic (OUTPUT); gateway: traffic forwarded from --lan
        /// to --wan (FORWARD).
        #[arg(long, default_value = "host")]
        mode: Mode,
        /// Gateway mode: the LAN-side interface.
        #[arg(long, value_name = "IF")]
        lan: Option<String>,
        /// Gateway mode: the WAN-side interface (required). Host mode: filter only this interface.
        #[arg(long, value_name = "IF")]
        wan: Option<String>,
        /// With no daemon listening, let undecided traffic pass (`--queue-bypass`).
        #[arg(long, conflicts_with = "fail_closed")]
        fail_open: bool,
        /// With no daemon listening, drop undecided traffic (the default).
        #[arg(long)]
        fail_closed: bool,
        /// Outgate's bits of the packet and conntrack marks: one contiguous run of at least 3 bits, free of
        /// other software's marks (WireGuard, multi-WAN, Kubernetes). The daemon must be given the same.
        #[arg(long, value_name = "MASK", default_value_t = Marks::DEFAULT)]
        mark_mask: Marks,
        /// The bits a SHAPE verdict's traffic class goes in (class N of the policy is written as N+1): one
        /// contiguous run of at least 4 bits, outside --mark-mask and free of other software's marks. The
        /// daemon must be given the same. [default: the four bits above --mark-mask, 0xf000]
        #[arg(long, value_name = "MASK", value_parser = parse_class_mask)]
        class_mask: Option<u32>,
        /// The policy whose traffic classes (SHAPE) get a slow class each in traffic control. Without it,
        /// no traffic control is set up.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The rate of the shaped devices' links (tc's units: 100mbit, 1gbit). Set it near the real
        /// uplink: above it the queue forms in the modem, where slow classes wait behind everything else;
        /// below it every unshaped flow is capped at it. Each class is capped at its own rate either way.
        #[arg(long, value_name = "RATE", requires = "policy", value_parser = parse_bit_rate,
              default_value_t = DEFAULT_LINK_RATE)]
        link_rate: outgate::policy::Rate,
        /// How the kernel puts shaped flows in their class. classify (iptables CLASSIFY and tc HTB) is the
        /// one --apply sets up. fw (tc's fw classifier), cake (CAKE's fwmark tins, no per-class rate) and
        /// ifb (host mode: downloads shaped on an IFB device) are printed for kernels that have those
        /// modules, and refused with --apply.
        #[arg(
            long,
            value_name = "BACKEND",
            requires = "policy",
            default_value = "classify"
        )]
        shape_backend: ShapeBackend,
        /// At most RATE packets per source address go to the queues (N/second or N/minute, e.g.
        /// 200/second); the kernel drops the rest. A dropped flow's retries all reach the daemon, so one
        /// client could otherwise flood it. Decided flows are not counted.
        #[arg(long, value_name = "RATE")]
        limit_per_source: Option<Rate>,
        /// How many packets a source may send at once above --limit-per-source [default: the rate's N].
        #[arg(long, value_name = "N", requires = "limit_per_source",
              value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        limit_burst: Option<u32>,
        /// iptables (iptables-restore text, applied with iptables-nft or legacy) or nft. Note: kernels
        /// without NFT_QUEUE cannot run the nft ruleset's queue statement.
        #[arg(long, default_value = "iptables")]
        backend: Backend,
        /// Install the ruleset (replacing an earlier one). Refused when other software's rules write
        /// into the mark bits (iptables/nft MARK, CONNMARK, TPROXY; `ip rule fwmark`): each is named.
        #[arg(long, conflicts_with = "remove")]
        apply: bool,
        /// With --apply: install even though other software writes into the mark bits (a foreign value
        /// there can pass for a verdict).
        #[arg(long, requires = "apply")]
        force: bool,
        /// Remove every trace of outgate's ruleset, and the traffic control it set up (a root qdisc someone
        /// else put in place of outgate's is left, and named).
        #[arg(long)]
        remove: bool,
    },
    /// Read flow, HTTP and TLS logs (from `run` or `replay`) and report what points to tunnels.
    ///
    /// Top destinations by flows and bytes, numeric-IP hosts contacted (HTTP hosts and TLS names in
    /// every spelling), hosts only ever sent POSTs or odd URLs, protocols on the wrong port, and the
    /// clients ranked by that evidence, each item citing the log lines (`FILE:LINE`) that back it. The
    /// same logs always give the same report.
    Report {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Log files (JSON lines; flow, HTTP and TLS lines may be mixed).
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<PathBuf>,
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
            http_log,
            tls_log,
            write_accepted,
            write_dropped,
            lan,
            audit,
            captures,
        } => {
            let workers = workers.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            );
            let cfg = ReplayConfig {
                captures,
                workers,
                keep_flows: flows.is_some() || http_log.is_some() || tls_log.is_some(),
                write_accepted,
                write_dropped,
                progress: true,
                audit,
            };
            run_replay(policy, lan, cfg, format, [flows, http_log, tls_log])
        }
        Command::Run {
            policy,
            queues,
            fail_open,
            fail_closed: _,
            mark_mask,
            class_mask,
            log,
            http_log,
            tls_log,
            metrics,
            queue_maxlen,
            rcvbuf_mib,
            state,
        } => {
            let target = |l: Option<String>| {
                l.map(|l| {
                    if l == "-" {
                        LogTarget::Stdout
                    } else {
                        LogTarget::File(l.into())
                    }
                })
            };
            let cfg = RunConfig {
                queues: (queues.first..=queues.last).collect(),
                fail_open,
                marks: with_class_mask(mark_mask, class_mask),
                queue_maxlen,
                rcvbuf: rcvbuf_mib << 20,
                log: target(log),
                http_log: target(http_log),
                tls_log: target(tls_log),
                metrics,
                policy_path: policy,
                state,
                ..RunConfig::default()
            };
            run_live(queues, cfg)
        }
        Command::Report { format, logs } => {
            let report = outgate::report::report(&logs).map_err(|e| e.to_string());
            report.and_then(|r| {
                match format {
                    Format::Table => emit(&r.table())?,
                    Format::Json => emit(&format!("{}\n", r.json()))?,
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Rules {
            queues,
            mode,
            lan,
            wan,
            fail_open,
            fail_closed: _,
            mark_mask,
            class_mask,
            policy,
            link_rate,
            shape_backend,
            limit_per_source,
            limit_burst,
            backend,
            apply,
            force,
            remove,
        } => limit_per_source
            .map(|rate| SourceLimit::new(rate, limit_burst))
            .transpose()
            .map_err(|e| e.to_string())
            .and_then(|limit_per_source| {
                if apply && shape_backend != ShapeBackend::Classify {
                    return Err(rules::RulesError::NotApplied(shape_backend).to_string());
                }
                let shaping = match (&policy, remove) {
                    (Some(path), false) => {
                        let policy = load_policy(Some(path.clone()))?;
                        let shaping = Shaping::of_policy(&policy, link_rate, shape_backend);
                        if shaping.is_none() {
                            eprintln!(
                                "outgate: {} has no traffic classes: no traffic control is set up",
                                policy.file()
                            );
                        }
                        shaping
                    }
                    _ => None,
                };
                let cfg = RulesConfig {
                    queues,
                    mode,
                    lan,
                    wan,
                    fail_open,
                    marks: with_class_mask(mark_mask, class_mask),
                    limit_per_source,
                    shaping,
                };
                rules_command(&cfg, backend, apply, force, remove)
            }),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("outgate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    Cidr::parse(s)
}

fn parse_class_mask(s: &str) -> Result<u32, String> {
    rules::parse_mask(s)
        .ok_or_else(|| format!("invalid class mask '{s}': expected a number like 0xf000"))
}

fn parse_bit_rate(s: &str) -> Result<outgate::policy::Rate, String> {
    outgate::policy::Rate::parse(s)
}

/// `--mark-mask` with `--class-mask`, when given; a class mask that does not fit beside the verdict bits
/// is a usage error (exit 2), as a bad mask alone is.
fn with_class_mask(marks: Marks, class_mask: Option<u32>) -> Marks {
    match class_mask.map(|c| marks.with_class_mask(c)) {
        None => marks,
        Some(Ok(marks)) => marks,
        Some(Err(e)) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit(),
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

fn rules_command(
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

fn run_live(queues: QueueRange, mut cfg: RunConfig) -> Result<ExitCode, String> {
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
    let (reload_tx, reload_rx) = crossbeam_channel::unbounded();
    let mut hup = Signals::new([SIGHUP]).map_err(|e| format!("cannot handle signals: {e}"))?;
    std::thread::spawn(move || {
        for _ in hup.forever() {
            let _ = reload_tx.send(());
        }
    });
    let mode = if cfg.fail_open {
        "fail-open"
    } else {
        "fail-closed"
    };
    let summary = nfqueue::run(policy, &cfg, stop, reload_rx, |policy| {
        eprintln!(
            "outgate: filtering on NFQUEUE {queues} ({mode}, mark bits {}), policy {} ({})",
            cfg.marks,
            policy.file(),
            policy.hash()
        );
        nfqueue::notify("READY=1");
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
        Ok(Some(installed)) => match installed.mismatch(queues, cfg.fail_open, cfg.marks) {
            Some(message) => Err(message),
            None => {
                if let Some(warning) = installed.shaping_mismatch(policy.classes()) {
                    eprintln!("outgate: warning: {warning}");
                }
                Ok((installed.backend == Backend::Iptables).then_some(installed.config))
            }
        },
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

fn run_replay(
    policy: Option<PathBuf>,
    lan: Vec<Cidr>,
    cfg: ReplayConfig,
    format: Format,
    logs: [Option<PathBuf>; 3],
) -> Result<ExitCode, String> {
    if policy.is_none() {
        eprintln!(
            "outgate: no --policy given: using the built-in default policy (see `outgate check --print-default`)"
        );
    }
    let engine = Engine::new(load_policy(policy)?).with_lan(lan);
    // Create the logs before the replay, so an unwritable path fails fast.
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
        for rec in &report.flows {
            let audit = cfg.audit;
            let line = match i {
                0 => serde_json::to_string(&FlowLine::new(policy, rec).audited(audit)).ok(),
                1 => HttpLine::new(policy, rec, rfc3339)
                    .and_then(|l| serde_json::to_string(&l.audited(audit)).ok()),
                _ => TlsLine::new(policy, rec, rfc3339)
                    .and_then(|l| serde_json::to_string(&l.audited(audit)).ok()),
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

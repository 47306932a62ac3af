//! The `outgate` binary: command line -> library calls; every error is printed once, here.
//!
//! Exit codes: 0 success; 1 the work failed (invalid policy, unreadable or corrupt capture, output not
//! writable); 2 the command line is wrong. `diff` has its own, for scripts: 0 nothing changes, 1 something
//! does, 2 any error.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use outgate::learn::LearnConfig;
use outgate::nfqueue::{LogTarget, RunConfig};
use outgate::policy::Cidr;
use outgate::replay::ReplayConfig;
use outgate::rules::{
    Backend, DEFAULT_LINK_RATE, Marks, Mode, QueueRange, Rate, RulesConfig, ShapeBackend,
    SourceLimit,
};

use cli::{
    BenchArgs, check, confirm_policy, diff_command, emit, parse_bit_rate, parse_cidr,
    parse_class_mask, rules_command, run_bench, run_learn, run_live, run_replay, shaping,
    try_policy,
};

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
  outgate learn traffic.pcap flows.jsonl > new.rules
                                                 a policy proposed from what was used
  outgate diff --old policy.rules --new new.rules traffic.pcap flows.jsonl
                                                 which flows would the change change?
  outgate rules --apply && outgate run --policy policy.rules --log flows.jsonl --http-log http.jsonl
                                                 filter live (root; `outgate rules --remove` undoes;
                                                 both with --audit: log and count, enforce nothing)
  outgate try new.rules --timeout 60             the daemon switches; back unless confirmed
  outgate report flows.jsonl http.jsonl          tunnels, shaped flows, what would be blocked
  outgate probe --state probe.json --confederates confederates.txt http.jsonl
                                                 test the report's suspect servers (daily)
  outgate bench --synthetic 1000000              how many replay workers for this machine?

Switching default-deny on without angry users: README, \"Rolling out default-deny\".";

#[derive(Parser)]
#[command(name = "outgate", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy: print a summary (zones, policies, rules, open ports) or its errors as FILE:LINE:COL.
    ///
    /// Exits 0 when the policy is valid, 1 when it is not: every line is checked, the first 20 errors
    /// are printed, then how many more there are. Without --policy, checks the built-in default.
    /// After the summary, warns on stderr of lines that can never match because earlier lines already
    /// take every flow they would (`p.rules:7: never matches: p.rules:3 (ACCEPT loc net 80,443) already
    /// takes every flow it would`), and of a second `policy` line for a zone pair; warnings do not fail
    /// the check. The summary's `hash:` is the policy's fingerprint, which the daemon's metrics also
    /// show: `--against` compares it with running daemons' (two gateways must run the same policy).
    Check {
        /// Policy file to check (default: the built-in policy).
        #[arg(short, long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print the built-in default policy, ready to copy to /etc/outgate/policy.rules.
        #[arg(long, conflicts_with = "policy")]
        print_default: bool,
        /// Compare with the policy a running daemon has in force, read from its metrics at ADDR (the
        /// address of its `run --metrics`, such as 127.0.0.1:9717). Repeat it for both gateways of a
        /// pair: exits 1 unless every daemon runs this very policy (same hash).
        #[arg(long, value_name = "ADDR", conflicts_with = "print_default")]
        against: Vec<String>,
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
        /// Write one JSON line per flow, in first-packet order, to FILE. A line is the flow's end
        /// record: it adds `last_ts`, `duration` (seconds) and the counts per direction
        /// (`orig_packets`, `orig_bytes` from `src`; `resp_packets`, `resp_bytes` from `dst`).
        #[arg(long, value_name = "FILE")]
        flows: Option<PathBuf>,
        /// Write one JSON line per HTTP request a rule looked at (the HTTP filter log) to FILE.
        #[arg(long, value_name = "FILE")]
        http_log: Option<PathBuf>,
        /// Write one JSON line per TLS ClientHello (over TCP, or in QUIC's Initial packets) a rule looked at
        /// to FILE: server name, ALPN, JA4.
        #[arg(long, value_name = "FILE")]
        tls_log: Option<PathBuf>,
        /// Write one JSON line per DNS query (each over UDP; a TCP flow's first) to FILE: client,
        /// server, qname, qtype, labels, verdict, rule. `outgate report` finds DNS tunnels in it.
        #[arg(long, value_name = "FILE")]
        dns_log: Option<PathBuf>,
        /// Write one JSON line per ICMP echo request and reply to FILE: size, entropy, ping's fill or
        /// not, digest, verdict, rule. `outgate report` finds ICMP tunnels in it.
        #[arg(long, value_name = "FILE")]
        icmp_log: Option<PathBuf>,
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
    /// Measure outgate on this machine: replay workers, or (--live, root) the live filter's queues.
    ///
    /// Replay (the default):
    /// Replays the captures (or --synthetic N packets of an office mix) in-process at each worker count:
    /// one warm-up round, then --runs timed rounds, each round replaying once at every count in turn (a
    /// load that comes and goes then slows every count alike). For each count it prints packets/s
    /// and flows/s (the median of the runs, and the slowest and fastest run: a wide range means a
    /// busy machine, so measure again), and the speed-up: that count's median over the first
    /// count's. Then the recommended --workers: of the counts no larger than the cores, the fewest
    /// workers within 10% of the best median, because a worker beyond that is a thread taken from the
    /// rest of the machine for little gain, and workers beyond the cores cannot all run at once.
    ///
    /// Use the recommendation as `outgate replay --workers N` and `outgate learn --workers N` (their
    /// default is every core).
    ///
    ///   outgate bench --synthetic 1000000                 # 1M packets, 100k flows, workers 1, 2, 4...
    ///   outgate bench --policy site.rules monday.pcap     # your traffic and your policy
    ///   outgate bench --synthetic 200000 --workers 1,2 --runs 3 --format json --plot bench.svg
    ///
    /// Live (--live, root): the live filter is sized by queues, one worker each. It builds two network
    /// namespaces of its own joined by a veth pair (named outgate-bench-PID-...; nothing outside them is
    /// touched, and they are removed on exit, on error and on Ctrl-C), then for each queue count
    /// measures, beside the kernel alone in the same round:
    ///   new flows/s   one UDP datagram to each of --flows destinations (every packet a new flow),
    ///                 delivered/sent, and the kernel's queue_dropped and user_dropped: loss shows
    ///   TCP conn/s    closed-loop connect and close on --threads threads
    ///   bulk MB/s     one TCP connection, a decided flow the kernel passes without the daemon
    ///   connect time  SYN to SYN-ACK, median and p99 of --samples connects
    /// and recommends a --queues: the smallest count within 10% of the best new-flow rate that lost
    /// nothing. README, "Sizing: how many workers and queues", reads both outputs.
    ///
    ///   sudo outgate bench --live                      # 1 and 2 queues, 200,000 new flows
    ///   sudo outgate bench --live --queues 1,2,4 --format json
    ///
    /// Exit codes: 0 measured; 1 a capture or the policy cannot be read, a capture is corrupt, or the
    /// live bench failed (not root, a tool missing); 2 the command line is wrong; 130 interrupted
    /// during --live.
    #[command(verbatim_doc_comment)]
    Bench(BenchArgs),
    /// Compare two policies on real traffic: the flows whose decision (verdict or SHAPE class) would change.
    ///
    /// Replays each capture under both policies, or decides each flow line of a flow log (`run --log`,
    /// `replay --flows`) under both, and prints the flows that change, grouped by (old line, new line),
    /// then by protocol, port and host, with flows, packets and bytes. Flows whose decision stays but whose
    /// enforcement changes (an AUDIT(...) line) are listed apart. From a log line only the ports, the app
    /// and the HTTP host or TLS name are known: a flow a policy would decide by more (URL, method, an unread
    /// payload) is counted as undecidable from the log, with its lines cited.
    ///
    /// Exit codes: 0 nothing changes, 1 something does, 2 error (usage, unreadable policy or input, a
    /// corrupt capture), so a script or CI job can gate on it.
    ///
    /// Example: outgate diff --old in-force.rules --new new.rules day.pcap flows.jsonl
    Diff {
        /// The policy in force (or the one to compare against).
        #[arg(long, value_name = "FILE")]
        old: PathBuf,
        /// The policy to try.
        #[arg(long, value_name = "FILE")]
        new: PathBuf,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// A local network (repeatable), as for replay: tells the client of a TCP flow a capture holds
        /// only from its middle.
        #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
        lan: Vec<Cidr>,
        /// Captures (pcap, pcapng; several are one stream, as in replay) and flow logs (JSON lines),
        /// told apart by their first bytes.
        #[arg(required = true, value_name = "CAPTURE-or-LOG")]
        inputs: Vec<PathBuf>,
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
        /// When the kernel ends a decided flow, its end follows as a line of its own, `"end": true`,
        /// with the kernel's byte and packet counts per direction and its duration (the conntrack
        /// accounting and timestamps that `outgate rules --apply` turns on).
        #[arg(long, value_name = "FILE")]
        log: Option<String>,
        /// Do not write flow end lines to --log (nor listen to the kernel's conntrack destroy events).
        #[arg(long)]
        no_flow_ends: bool,
        /// Write one JSON line per HTTP request a rule looked at to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        http_log: Option<String>,
        /// Write one JSON line per TLS ClientHello (over TCP, or in QUIC's Initial packets) a rule looked at
        /// to FILE (`-` for stdout): server name, ALPN, JA4.
        #[arg(long, value_name = "FILE")]
        tls_log: Option<String>,
        /// Write one JSON line per DNS query to FILE (`-` for stdout), as replay's --dns-log. Each DNS
        /// query over UDP then comes to the daemon (not only a flow's first).
        #[arg(long, value_name = "FILE")]
        dns_log: Option<String>,
        /// Write one JSON line per ICMP echo request to FILE (`-` for stdout), as replay's --icmp-log
        /// (replies stay in the kernel). Each echo request then comes to the daemon.
        #[arg(long, value_name = "FILE")]
        icmp_log: Option<String>,
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
        /// Audit: decide, log and count every flow as the policy says, but accept every packet (log lines
        /// say "enforced":false; the metric outgate_mode says audit). For switching default-deny on
        /// safely: run it for a while, read the logs and `outgate report`, then enforce.
        #[arg(long)]
        audit: bool,
        /// Listen for `outgate try` on this Unix socket (root only: its directory is made 0700, the
        /// socket 0600). The systemd unit uses /run/outgate/control.
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
    },
    /// Try a policy on the running daemon: it switches back by itself unless confirmed in time.
    ///
    /// For changing the policy from a remote shell without locking yourself out (Shorewall's `try`,
    /// iptables-apply). The policy is checked here first (errors as FILE:LINE:COL, nothing sent); the
    /// daemon (`outgate run --control PATH`) then switches to it as a reload does: the flows the
    /// kernel passes are decided again, those it no longer allows are cut. Unless `outgate try
    /// --confirm` comes within --timeout seconds, the daemon reads its --policy again by itself.
    ///
    ///   outgate try new.rules --timeout 60      # now check you can still reach the machine
    ///   outgate try --confirm                   # keep it: new.rules is copied over the daemon's
    ///                                           # --policy file (the old one kept as FILE.prev)
    ///
    /// Only root can reach the control socket. A SIGHUP or a restart during a trial ends it: the
    /// daemon's --policy is read again.
    #[command(verbatim_doc_comment)]
    Try {
        /// The policy to try.
        #[arg(value_name = "POLICY", required_unless_present = "confirm")]
        policy: Option<PathBuf>,
        /// Seconds before the daemon switches back by itself (1 to 86400).
        #[arg(long, value_name = "SECONDS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: u64,
        /// Keep the policy being tried: the daemon stops counting down, and the tried file is copied
        /// over the daemon's --policy file (the old one kept as FILE.prev).
        #[arg(long, conflicts_with = "policy")]
        confirm: bool,
        /// The daemon's control socket (`outgate run --control`).
        #[arg(long, value_name = "PATH", default_value = "/run/outgate/control")]
        control: PathBuf,
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
    /// --apply also turns on conntrack's byte counts and timestamps (net.netfilter.nf_conntrack_acct
    /// and nf_conntrack_timestamp, in this network namespace) for the daemon's flow end lines, and
    /// warns when it cannot; --remove leaves them on.
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
        /// For a daemon run with --audit: the ruleset is the same, its description says `audit=yes`
        /// (read it with `iptables -S OUTGATE`), and `outgate run` refuses to enforce with it (and to
        /// audit without it), so the mode cannot be mistaken.
        #[arg(long, conflicts_with = "remove")]
        audit: bool,
        /// Remove every trace of outgate's ruleset, and the traffic control it set up (a root qdisc someone
        /// else put in place of outgate's is left, and named).
        #[arg(long)]
        remove: bool,
    },
    /// Read flow, HTTP and TLS logs (from `run` or `replay`) and report what points to tunnels.
    ///
    /// Top destinations by flows and bytes, numeric-IP hosts contacted (HTTP hosts and TLS names in
    /// every spelling), hosts only ever sent POSTs or odd URLs, protocols on the wrong port, and the
    /// clients ranked by that evidence, each item citing the log lines (`FILE:LINE`) that back it. Then
    /// beacons (a client connecting to one server on a timer: RITA's beacon score, from the start
    /// times and sizes of 20 or more flows; 1 is a perfect timer), long connections (an hour or
    /// more; replay flow logs carry `duration`), and one suspicion score per client, the sum of its
    /// reasons, each citing its lines. The same logs always give the same report.
    Report {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Log files (JSON lines; flow, HTTP and TLS lines may be mixed).
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<PathBuf>,
    },
    #[command(about = cli::PROBE_ABOUT, long_about = cli::PROBE_LONG_ABOUT)]
    Probe(cli::ProbeArgs),
    /// Propose a policy from traffic: one ACCEPT rule per port that outbound flows used, to review.
    ///
    /// Reads captures (pcap, pcapng) and logs (`outgate run --log`, `outgate replay --flows`; HTTP and
    /// TLS logs add host names), mixed freely: a file is a capture when it starts like one, else a log.
    /// Captures are replayed through the engine, which reads each TCP and UDP flow's first payload for
    /// its HTTP host or TLS name. Prints on stdout a policy that `outgate check` accepts:
    ///
    ///   policy loc net DROP
    ///   ACCEPT loc net tcp 443    # learned: https, 1234 flows, 56 clients, first ..., last ...,
    ///                             #   top: www.example.org (300), cdn.example.net (120), 192.0.2.7 (12)
    ///
    /// one rule per protocol and port (ICMP: echo request) used by at least --min-flows flows from at
    /// least --min-clients clients, with its evidence; below them, commented out, what was seen too
    /// seldom, and other IP protocols (GRE, ESP: only an `all` rule could open them). Flows seen from
    /// their middle, inbound flows (with --lan: started outside it) and FTP data connections (the rule
    /// for port 21 covers them) never make a rule; the header counts them. Nor does a port whose every
    /// logged flow the policy in force dropped or rejected (an attempt that failed, perhaps a tunnel
    /// retrying); a log of `run --audit` has none such.
    ///
    /// It never changes a live policy: review the proposal, try it, then install it yourself:
    ///
    ///   outgate learn --lan 10.0.0.0/8 monday.pcap flows.jsonl > proposed.rules
    ///   outgate check --policy proposed.rules
    ///   outgate replay --policy proposed.rules tuesday.pcap      # what would it drop?
    ///
    /// Log lines it cannot read are reported as FILE:LINE and skipped (exit 0). A missing file, or one
    /// that is neither a capture nor a log, exits 1 without a proposal; a capture cut short exits 1
    /// after the proposal learned from what came before its bad record.
    #[command(verbatim_doc_comment)]
    Learn {
        /// A port used by fewer flows is listed as seen, not proposed.
        #[arg(long, value_name = "N", default_value_t = 3,
              value_parser = clap::value_parser!(u64).range(1..))]
        min_flows: u64,
        /// A port used from fewer client addresses is listed as seen, not proposed (1 for a single
        /// machine's own traffic).
        #[arg(long, value_name = "N", default_value_t = 2,
              value_parser = clap::value_parser!(u64).range(1..))]
        min_clients: u64,
        /// A local network (repeatable): the proposal declares `zone loc` with them, and a flow started
        /// from outside them is inbound, never a rule. Without it every flow's initiator is local, as
        /// with the implicit zones.
        #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
        lan: Vec<Cidr>,
        /// A name for the proposal, written in its header (the site, the week it was learned).
        #[arg(long, value_name = "NAME")]
        policy_name: Option<String>,
        /// Replay worker threads for the captures; the flows do not depend on it. [default: the
        /// number of cores]
        #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: Option<u16>,
        /// Captures (pcap, pcapng) and logs (JSON lines), in any order.
        #[arg(required = true, value_name = "CAPTURE|LOG")]
        inputs: Vec<PathBuf>,
    },
    /// The bench's traffic generators, run in its namespaces.
    #[command(hide = true)]
    BenchAgent(cli::AgentArgs),
    /// Writes the Debian package's generated files into DIR (see packaging/build-deb).
    #[command(hide = true)]
    PackageFiles { dir: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            policy,
            print_default,
            against,
        } => check(policy, print_default, &against),
        Command::Bench(args) => run_bench(args),
        Command::Replay {
            policy,
            workers,
            format,
            flows,
            http_log,
            tls_log,
            dns_log,
            icmp_log,
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
                keep_flows: flows.is_some()
                    || http_log.is_some()
                    || tls_log.is_some()
                    || dns_log.is_some()
                    || icmp_log.is_some(),
                write_accepted,
                write_dropped,
                progress: true,
                audit,
            };
            run_replay(
                policy,
                lan,
                cfg,
                format,
                [flows, http_log, tls_log, dns_log, icmp_log],
            )
        }
        Command::Diff {
            old,
            new,
            format,
            lan,
            inputs,
        } => Ok(diff_command(old, new, format, lan, inputs)),
        Command::Run {
            policy,
            queues,
            fail_open,
            fail_closed: _,
            mark_mask,
            class_mask,
            log,
            no_flow_ends,
            http_log,
            tls_log,
            dns_log,
            icmp_log,
            metrics,
            queue_maxlen,
            rcvbuf_mib,
            state,
            audit,
            control,
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
                dns_log: target(dns_log),
                icmp_log: target(icmp_log),
                metrics,
                policy_path: policy,
                state,
                audit,
                control,
                flow_ends: !no_flow_ends,
                ..RunConfig::default()
            };
            run_live(queues, cfg)
        }
        Command::BenchAgent(args) => cli::bench_agent(args),
        Command::PackageFiles { dir } => cli::package_files(Cli::command(), &dir),
        Command::Try {
            policy,
            timeout,
            confirm,
            control,
        } => match policy {
            Some(policy) if !confirm => try_policy(&policy, timeout, &control),
            _ => confirm_policy(&control),
        },
        Command::Probe(args) => cli::run_probe(args),
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
            audit,
            remove,
        } => limit_per_source
            .map(|rate| SourceLimit::new(rate, limit_burst))
            .transpose()
            .map_err(|e| e.to_string())
            .and_then(|limit_per_source| {
                let shaping = shaping(policy.as_deref(), remove, apply, link_rate, shape_backend)?;
                let cfg = RulesConfig {
                    queues,
                    mode,
                    lan,
                    wan,
                    fail_open,
                    marks: with_class_mask(mark_mask, class_mask),
                    limit_per_source,
                    shaping,
                    audit,
                };
                rules_command(&cfg, backend, apply, force, remove)
            }),
        Command::Learn {
            min_flows,
            min_clients,
            lan,
            policy_name,
            workers,
            inputs,
        } => run_learn(&LearnConfig {
            inputs,
            lan,
            min_flows,
            min_clients,
            name: policy_name,
            workers: workers.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            ),
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

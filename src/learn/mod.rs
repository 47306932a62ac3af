//! `outgate learn`: a policy proposed from the traffic that was seen, for an admin to review.
//!
//! Promises:
//! - The proposal is text that `outgate check` accepts: `policy loc net DROP` (with `--lan`, after a
//!   `zone loc` line), then one `ACCEPT loc net PROTO PORT` rule per protocol and port that outbound
//!   flows used often enough, each with its evidence in a `# learned:` comment, then what was seen too
//!   seldom as comment lines. The same inputs always give the same text (order by protocol, then port).
//! - Never a rule from a flow seen from its middle, from an inbound flow (with `--lan`: an initiator
//!   in none of its networks; flows between two LAN addresses are left out too), or from an FTP data
//!   connection (the rule for port 21 covers those: the kernel's helper opens them). Protocols other
//!   than TCP, UDP and ICMP echo get no rule: only `all` could open them, and it opens everything.
//! - Inputs are captures and logs, mixed; a file is a capture when it starts with a pcap or pcapng
//!   magic number, else a log (JSON lines). Log lines that cannot be read are counted and cited as
//!   `FILE:LINE`, never fatal; a capture cut short is used up to its bad record, which is reported as
//!   replay reports it. A file that cannot be opened, or of which no line can be read, is an error.
//! - Nothing here touches a live policy: the proposal is returned as text.
//!
//! Hosts and TLS names in captures come from the engine itself: the captures are replayed under
//! [`READ_EVERY_PAYLOAD`], whose rules make the engine read the first payload of every TCP and UDP
//! flow without changing which flows there are.

mod propose;
mod read;

use std::net::IpAddr;
use std::path::PathBuf;

use crate::flow::FlowRecord;
use crate::log::FlowLine;
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::policy::Cidr;
use crate::replay::{ReplayConfig, ReplayError, replay};
use crate::{Engine, Policy, Reason, Timestamp};

/// The policy learn replays captures under.
///
/// A rule with a payload term (`app=`) makes the engine wait for a flow's first payload and read it,
/// so the flow records carry the HTTP host or TLS server name; `tcp` and `udp` with no port make that
/// every TCP and UDP flow, and leave ICMP and other protocols decided on their first packet. Whether
/// the term matches does not matter: `app=unknown` accepts what showed no known protocol, and the rest
/// falls to `policy loc net ACCEPT`. Which flows there are does not change: replay's flow table keys,
/// splits and expires flows the same way whatever their verdict, and without zone lines every flow is
/// `loc` to `net`, so none falls outside the pair. Every flow is accepted (also one whose payload never
/// came, `inspect-limit`, or that began before the capture, `midstream`), so FTP control connections
/// are read for the data connections they announce, as under a policy that opens port 21.
pub const READ_EVERY_PAYLOAD: &str = "\
policy loc net ACCEPT
ACCEPT loc net tcp app=unknown
ACCEPT loc net udp app=unknown
option inspect-limit ACCEPT
option midstream ACCEPT
";

/// What to learn from, and how much use makes a rule.
#[derive(Clone, Debug)]
pub struct LearnConfig {
    /// Captures and logs, in any order.
    pub inputs: Vec<PathBuf>,
    /// The local networks: a flow whose initiator is in none of them is inbound. Empty: every flow's
    /// initiator is local, as with the implicit zones.
    pub lan: Vec<Cidr>,
    /// A port used by fewer flows is listed as seen, not proposed.
    pub min_flows: u64,
    /// A port used from fewer client addresses is listed as seen, not proposed.
    pub min_clients: u64,
    /// A name for the proposal, written in its header.
    pub name: Option<String>,
    /// Replay workers for the captures (the flows do not depend on it).
    pub workers: usize,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            inputs: Vec::new(),
            lan: Vec::new(),
            min_flows: 3,
            min_clients: 2,
            name: None,
            workers: 1,
        }
    }
}

/// Why nothing could be learned.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not a capture, and no line of it is a log line.
    #[error(
        "{path}:{line}: neither a capture (pcap, pcapng) nor an outgate log (JSON lines): {detail}; no line of the file could be read"
    )]
    NotAnInput {
        path: String,
        line: u64,
        detail: String,
    },
    #[error("{0}")]
    Replay(#[from] ReplayError),
    /// [`READ_EVERY_PAYLOAD`] did not compile: a bug in this crate, reported rather than panicked on.
    #[error("learn's own replay policy does not compile: {0}")]
    Policy(String),
}

/// The proposal, and what the admin should know about how it was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The proposed policy, ready for `outgate check`.
    pub policy: String,
    /// How many rules it proposes.
    pub rules: usize,
    /// The first log lines not understood, each `FILE:LINE: why`.
    pub bad_lines: Vec<String>,
    /// How many log lines were not understood in all.
    pub bad_lines_total: u64,
    /// Captures that ended at a bad record, `FILE: record N: ...`; what came before it was used.
    pub capture_errors: Vec<String>,
    /// Other things worth saying: empty files, a proposal that opens nothing.
    pub notes: Vec<String>,
}

impl Learned {
    /// The lines to show on stderr: lines not understood (the first few, then how many more), capture
    /// errors, notes.
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .bad_lines
            .iter()
            .map(|l| format!("{l} (line skipped)"))
            .collect();
        let more = self
            .bad_lines_total
            .saturating_sub(self.bad_lines.len() as u64);
        if more > 0 {
            out.push(format!(
                "{more} more log lines not understood ({} in all), skipped",
                self.bad_lines_total
            ));
        }
        out.extend(
            self.capture_errors
                .iter()
                .map(|e| format!("{e} (what came before it was used)")),
        );
        out.extend(self.notes.iter().cloned());
        out
    }
}

/// One flow, from a capture or a log line: what learning needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// IP protocol number.
    proto: u8,
    client: IpAddr,
    /// 0 for flows without ports.
    client_port: u16,
    server: IpAddr,
    /// The server's port (TCP, UDP), the ICMP type, 0 for other protocols.
    selector: u16,
    first_ts: Timestamp,
    /// HTTP host or TLS server name, when the first payload was read.
    host: Option<String>,
    midstream: bool,
    /// A data connection an FTP control connection announced.
    ftp_data: bool,
    /// A log line's flow that the policy in force dropped or rejected (enforced): an attempt that
    /// did not work, perhaps a tunnel retrying, not a service in use.
    blocked: bool,
}

impl Seen {
    fn of_record(policy: &Policy, rec: &FlowRecord) -> Seen {
        let proto = rec.key.proto();
        let (client, client_port) = rec.key.endpoint(rec.flow.initiator);
        let (server, server_port) = rec.key.endpoint(rec.flow.initiator.other());
        let selector = match proto {
            PROTO_TCP | PROTO_UDP => server_port,
            PROTO_ICMP | PROTO_ICMPV6 => rec.flow.icmp_type.map_or(0, u16::from),
            _ => 0,
        };
        let ported = matches!(proto, PROTO_TCP | PROTO_UDP);
        Seen {
            proto,
            client,
            client_port: if ported { client_port } else { 0 },
            server,
            selector,
            first_ts: rec.flow.first_ts,
            // The flow log's own reading of the payload, so that a capture and its `--flows` log
            // name the same hosts.
            host: FlowLine::new(policy, rec).host,
            midstream: rec.flow.midstream(),
            ftp_data: rec.flow.decision.reason == Reason::FtpData,
            blocked: false,
        }
    }
}

/// One input file, for the header.
#[derive(Clone, Debug)]
struct Source {
    name: String,
    /// `capture`, or `log, N lines`.
    what: String,
}

/// Reads every input, and proposes a policy from the outbound flows in them.
pub fn learn(cfg: &LearnConfig) -> Result<Learned, LearnError> {
    let mut sources = Vec::with_capacity(cfg.inputs.len());
    let mut captures = Vec::new();
    let mut logs = read::Logs::default();
    // Logs are read first, and captures only opened: a wrong file fails the run before the replay.
    for path in &cfg.inputs {
        let name = path.display().to_string();
        match read::sniff(path)? {
            read::Kind::Capture => {
                captures.push(path.clone());
                sources.push(Source {
                    name,
                    what: "capture".into(),
                });
            }
            read::Kind::Log => {
                let lines = logs.read_file(path)?;
                let plural = if lines == 1 { "" } else { "s" };
                sources.push(Source {
                    name,
                    what: format!("log, {lines} line{plural}"),
                });
            }
        }
    }

    let mut seen = std::mem::take(&mut logs.flows);
    let mut capture_errors = Vec::new();
    if !captures.is_empty() {
        let policy = Policy::compile("<learn>", READ_EVERY_PAYLOAD).map_err(|errors| {
            LearnError::Policy(
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        // The same local networks as the learned policy's zone: a flow seen from its middle gets the
        // same client in this replay as in a replay under the proposal.
        let engine = Engine::new(policy).with_lan(cfg.lan.clone());
        let replay_cfg = ReplayConfig {
            captures,
            workers: cfg.workers.max(1),
            keep_flows: true,
            progress: true,
            ..ReplayConfig::default()
        };
        let report = replay(&engine, &replay_cfg)?;
        seen.extend(
            report
                .flows
                .iter()
                .map(|r| Seen::of_record(engine.policy(), r)),
        );
        capture_errors = report.errors;
    }
    let unmatched = logs.lend_hosts(&mut seen);

    let mut groups = propose::Groups::new(&cfg.lan);
    for s in &seen {
        groups.add(s);
    }
    let header = propose::Header {
        name: cfg.name.as_deref(),
        sources: &sources,
        capture_errors: &capture_errors,
        bad_lines: logs.bad_total,
        unmatched_host_lines: unmatched,
    };
    let (policy, rules) = groups.render(cfg, &header);
    let mut notes = logs.notes;
    if rules == 0 {
        notes.push(format!(
            "note: the proposal opens nothing: no port was used by at least {} flow(s) from at least {} client(s) (see --min-flows, --min-clients)",
            cfg.min_flows, cfg.min_clients
        ));
    }
    Ok(Learned {
        policy,
        rules,
        bad_lines: logs.bad,
        bad_lines_total: logs.bad_total,
        capture_errors,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;
    use etherparse::PacketBuilder;

    /// A client segment to 192.0.2.1:8443; the SYN takes sequence number 1, data starts at 2.
    fn tcp(syn: bool, payload: &[u8]) -> Vec<u8> {
        let seq = if syn { 1 } else { 2 };
        let b = PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64).tcp(40000, 8443, seq, 64000);
        let b = if syn { b.syn() } else { b.ack(1) };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// What the replay under the learning policy makes of a flow: waits for the first payload on any
    /// TCP port, reads the TLS name, and accepts; decides ICMP at once.
    #[test]
    fn the_learning_policy_reads_every_first_payload_and_accepts_everything() {
        let engine = Engine::new(Policy::compile("<learn>", READ_EVERY_PAYLOAD).unwrap());
        let mut table = engine.new_flow_table();
        table.keep_finished(true);
        let now = Timestamp::from_secs(1);
        let syn = engine.decide(&mut table, &tcp(true, &[]), now, 0);
        assert_eq!(syn.reason, Reason::Inspecting);
        let request = engine.decide(
            &mut table,
            &tcp(false, b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
            now,
            1,
        );
        assert_eq!(request.verdict, Verdict::Accept, "{request:?}");
        let mut ping = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut ping, &[])
            .unwrap();
        let d = engine.decide(&mut table, &ping, now, 2);
        assert_eq!(d.verdict, Verdict::Accept);
        assert!(matches!(d.reason, Reason::Policy(_)), "{d:?}");

        table.finish_all();
        let records: Vec<FlowRecord> = table.drain_finished().collect();
        let seen: Vec<Seen> = records
            .iter()
            .map(|r| Seen::of_record(engine.policy(), r))
            .collect();
        let web = seen.iter().find(|s| s.selector == 8443).unwrap();
        assert_eq!(web.host.as_deref(), Some("www.example.org"));
        assert!(
            records
                .iter()
                .all(|r| r.flow.decision.verdict == Verdict::Accept)
        );
    }
}

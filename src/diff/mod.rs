//! `outgate diff`: the flows whose decision would change if one policy replaced another.
//!
//! Promises:
//! - What is compared is the *decision*: what each policy says of a flow, its verdict and, for SHAPE, its
//!   traffic class (by name, so the same class is the same whatever its place among the classes). A flow
//!   whose decision is the same but whose packets get something else (an `AUDIT(...)` line taken in or
//!   out) is reported apart, as a change of what is enforced only. A flow that changes neither is not
//!   listed, whichever lines decided it.
//! - Captures are replayed once under each policy, as `outgate replay` replays them (several captures are
//!   one stream), and a flow is the flow table's: the same connection (its key and the ordinal of its
//!   first packet) under both. Flows seen from their middle are compared too, and counted as such. Should
//!   the two policies' flow tables cut the traffic into different flows (other timeouts or `max-flows`),
//!   the flows found under one only are counted, not compared.
//! - A flow log line (`outgate run --log`, `replay --flows`) is decided under each policy from what it
//!   says: protocol, addresses, ports or ICMP type, and, for a flow a rule looked at, the protocol spoken
//!   (`app`) and the HTTP host or TLS server name (`host`). Where a policy would need more (a URL, a
//!   method, the payload of a flow no rule looked at, the control connection of an FTP data connection),
//!   the flow is counted and cited as *undecidable from the log*, never guessed. A line seen from its
//!   middle (`"midstream": true`) is decided the way the engine decides such a flow (by its ports, else
//!   `option midstream`). A line that is not a flow line is counted and cited (`FILE:LINE`), never fatal;
//!   HTTP and TLS log lines are skipped and counted.
//! - The same inputs give the same bytes: changes are grouped by (old line, new line), then by protocol,
//!   port and host, with counts of flows, packets and bytes, in a fixed order.
//!
//! Known limit: a flow line names one host; an HTTP request that named several (an absolute URI that
//! disagrees with its Host header) is decided from the log as if it named that one only.
//!
//! # JSON ([`Diff::json`])
//!
//! ```text
//! {
//!   "old": FILE, "new": FILE,
//!   "inputs": [{"path": str, "kind": "capture"|"log", "lines": n (logs only)}],
//!   "flows": {"compared": n, "changed": n, "enforcement_only": n, "unchanged": n, "midstream": n,
//!             "undecidable": n, "unmatched": n},
//!   "changes": [{"kind": "decision"|"enforcement", "old": Said, "new": Said,
//!                "flows": n, "packets": n, "bytes": n, "midstream": n,
//!                "rows": [{"proto": str, "port": n|null, "host": str, "flows": n, "packets": n,
//!                          "bytes": n, "midstream": n, "example": str, "cites": [str], "cites_more": n}]}],
//!   "undecidable": {"count": n, "cites": [str], "cites_more": n},
//!   "not_understood": {"count": n, "cites": [str], "cites_more": n},
//!   "skipped_lines": n,
//!   "errors": [str]
//! }
//! Said = {"verdict": "accept"|"drop"|"reject"|"shape"|null, "class": str|null, "rule": "FILE:LINE"|null,
//!         "reason": str, "text": str|null, "enforced": bool, "applied": {"verdict": str, "class": str|null}|null}
//! ```
//!
//! `midstream` counts flows seen from their middle; `port` is the destination port (TCP, UDP) or the ICMP
//! type; `host` the HTTP host or TLS name when known, else the destination address; `example` one flow as
//! `SRC -> DST`; `cites` the first log lines behind a row (captures have none). `verdict` is null for a
//! flow still waiting for its first payload when the capture ended (`reason` `inspecting`).

mod logs;
mod text;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::Engine;
use crate::decision::{Action, Decision, Reason, Verdict};
use crate::flow::FlowRecord;
use crate::log::FlowLine;
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::policy::Policy;
use crate::replay::capture::{CaptureError, CaptureReader};
use crate::replay::{ReplayConfig, ReplayError, replay};

/// Citations kept per row and per tally.
const CITES: usize = 5;

/// What to compare.
#[derive(Clone, Debug, Default)]
pub struct DiffConfig {
    /// Captures (pcap, pcapng) and flow logs, told apart by their first bytes.
    pub inputs: Vec<PathBuf>,
    /// Replay workers (the verdicts do not depend on them).
    pub workers: usize,
}

/// Why a diff could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A capture that cannot be opened or read, named.
    #[error("{0}")]
    Capture(String),
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: neither a capture nor a flow log (no line is a flow line; the first is not understood: {path}:{line})"
    )]
    NotALog { path: String, line: u64 },
    #[error("{0}")]
    Replay(String),
}

/// What one policy says of a flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Said {
    /// `None` while the flow waited for its first payload when the capture ended.
    pub verdict: Option<&'static str>,
    /// SHAPE's traffic class, by name.
    pub class: Option<String>,
    /// `FILE:LINE` of the line that decided, if one did.
    pub rule: Option<String>,
    /// How it was decided (`rule`, `policy`, `no-policy`, `midstream`, `inspect-limit`, ...).
    pub reason: &'static str,
    /// The deciding line as written, without its comment.
    pub text: Option<String>,
    /// Whether the decision is what the packets get (not an `AUDIT(...)` line).
    pub enforced: bool,
    /// What the packets get instead, when not enforced.
    pub applied: Option<Applied>,
}

/// What an audited decision's packets get.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Applied {
    pub verdict: &'static str,
    pub class: Option<String>,
}

fn class_of(policy: &Policy, action: Action) -> Option<String> {
    (action.verdict == Verdict::Shape)
        .then(|| policy.class_name(action.class).map(str::to_string))
        .flatten()
}

impl Said {
    pub fn new(policy: &Policy, d: Decision) -> Said {
        let undecided = d.reason == Reason::Inspecting;
        Said {
            verdict: (!undecided).then_some(d.verdict.name()),
            class: class_of(policy, d.action()),
            rule: policy.cite(d.reason),
            reason: d.reason.kind(),
            text: policy
                .line_text(d.reason)
                .map(|t| t.split('#').next().unwrap_or("").trim().to_string()),
            enforced: d.enforced(),
            applied: d.applied.map(|a| Applied {
                verdict: a.verdict.name(),
                class: class_of(policy, a),
            }),
        }
    }

    /// The decision as compared: verdict and class.
    fn decision(&self) -> (Option<&str>, Option<&str>) {
        (self.verdict, self.class.as_deref())
    }

    /// What the packets get: verdict and class.
    fn enforced_action(&self) -> (Option<&str>, Option<&str>) {
        match &self.applied {
            Some(a) => (Some(a.verdict), a.class.as_deref()),
            None => self.decision(),
        }
    }
}

/// How a flow changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The decision (verdict or class) changes.
    Decision,
    /// The decision is the same; what the packets get is not (an audited line).
    Enforcement,
}

fn change_kind(old: &Said, new: &Said) -> Option<ChangeKind> {
    if old.decision() != new.decision() {
        Some(ChangeKind::Decision)
    } else if old.enforced_action() != new.enforced_action() {
        Some(ChangeKind::Enforcement)
    } else {
        None
    }
}

/// One flow as compared: what it is, as its flow line says.
#[derive(Clone, Debug)]
struct Facts {
    proto: String,
    /// Destination port (TCP, UDP) or ICMP type.
    port: Option<u16>,
    /// The HTTP host or TLS name, else the destination address.
    host: String,
    example: String,
    packets: u64,
    bytes: u64,
    midstream: bool,
    /// `FILE:LINE` of its log line.
    cite: Option<String>,
}

impl Facts {
    /// From a flow line (a capture's flow, rendered as `--flows` writes it).
    fn of_line(line: &FlowLine, port: Option<u16>, host: Option<String>) -> Facts {
        Facts {
            proto: line.proto.to_string(),
            port,
            host: host.unwrap_or_else(|| address_of(&line.dst)),
            example: format!("{} -> {}", line.src, line.dst),
            packets: line.packets,
            bytes: line.bytes,
            midstream: line.midstream,
            cite: None,
        }
    }
}

/// The address of a flow line's endpoint (`192.0.2.1:80`, `[2001:db8::1]:443`, `192.0.2.1`).
fn address_of(endpoint: &str) -> String {
    match endpoint.parse::<std::net::SocketAddr>() {
        Ok(sa) => sa.ip().to_string(),
        Err(_) => endpoint.to_string(),
    }
}

/// Counts with their first citations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub cites: Vec<String>,
    pub cites_more: u64,
}

impl Tally {
    fn add(&mut self, cite: Option<String>) {
        self.count = self.count.saturating_add(1);
        match cite {
            Some(c) if self.cites.len() < CITES => self.cites.push(c),
            Some(_) => self.cites_more = self.cites_more.saturating_add(1),
            None => {}
        }
    }
}

/// The flows of one (protocol, port, host) within a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub proto: String,
    pub port: Option<u16>,
    pub host: String,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub midstream: u64,
    pub example: String,
    pub cites: Vec<String>,
    pub cites_more: u64,
}

/// The flows that go from one (old line, decision) to one (new line, decision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub old: Said,
    pub new: Said,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub midstream: u64,
    pub rows: Vec<Row>,
}

/// An input: a capture (several are replayed as one stream) or a flow log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Input {
    pub path: String,
    pub kind: &'static str,
    /// Lines read, for a log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

/// Flow counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowCounts {
    pub compared: u64,
    pub changed: u64,
    pub enforcement_only: u64,
    pub unchanged: u64,
    /// Compared flows seen from their middle.
    pub midstream: u64,
    pub undecidable: u64,
    /// Capture flows found under one policy's flow table only.
    pub unmatched: u64,
}

/// The comparison: see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    pub inputs: Vec<Input>,
    pub flows: FlowCounts,
    pub changes: Vec<Change>,
    pub undecidable: Tally,
    pub not_understood: Tally,
    pub skipped_lines: u64,
    /// Captures that ended in a bad record (what was read before it is compared).
    pub errors: Vec<String>,
}

impl Diff {
    /// Whether any flow changes its decision or what is enforced.
    pub fn changes_anything(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn table(&self) -> String {
        text::table(self)
    }
}

/// A row while it is being counted.
#[derive(Default)]
struct RowAcc {
    flows: u64,
    packets: u64,
    bytes: u64,
    midstream: u64,
    example: String,
    cites: Tally,
}

/// A change's key: (kind, old, new).
type ChangeKey = (ChangeKind, Said, Said);
/// A row's key: (protocol, port, host).
type RowKey = (String, Option<u16>, String);

/// Collects compared flows into changes.
struct Builder {
    diff: Diff,
    groups: BTreeMap<ChangeKey, BTreeMap<RowKey, RowAcc>>,
}

impl Builder {
    fn new(old: &Policy, new: &Policy) -> Builder {
        Builder {
            diff: Diff {
                old: old.file().to_string(),
                new: new.file().to_string(),
                inputs: Vec::new(),
                flows: FlowCounts::default(),
                changes: Vec::new(),
                undecidable: Tally::default(),
                not_understood: Tally::default(),
                skipped_lines: 0,
                errors: Vec::new(),
            },
            groups: BTreeMap::new(),
        }
    }

    fn compare(&mut self, facts: Facts, old: Said, new: Said) {
        let f = &mut self.diff.flows;
        f.compared = f.compared.saturating_add(1);
        if facts.midstream {
            f.midstream = f.midstream.saturating_add(1);
        }
        let Some(kind) = change_kind(&old, &new) else {
            f.unchanged = f.unchanged.saturating_add(1);
            return;
        };
        match kind {
            ChangeKind::Decision => f.changed = f.changed.saturating_add(1),
            ChangeKind::Enforcement => {
                f.enforcement_only = f.enforcement_only.saturating_add(1);
            }
        }
        let rows = self.groups.entry((kind, old, new)).or_default();
        let row = rows
            .entry((facts.proto, facts.port, facts.host))
            .or_default();
        row.flows = row.flows.saturating_add(1);
        row.packets = row.packets.saturating_add(facts.packets);
        row.bytes = row.bytes.saturating_add(facts.bytes);
        row.midstream = row.midstream.saturating_add(u64::from(facts.midstream));
        if row.example.is_empty() {
            row.example = facts.example;
        }
        if let Some(cite) = facts.cite {
            row.cites.add(Some(cite));
        }
    }

    fn undecidable(&mut self, cite: Option<String>) {
        self.diff.flows.undecidable = self.diff.flows.undecidable.saturating_add(1);
        self.diff.undecidable.add(cite);
    }

    fn finish(mut self) -> Diff {
        let mut changes: Vec<Change> = self
            .groups
            .into_iter()
            .map(|((kind, old, new), rows)| {
                let mut rows: Vec<Row> = rows
                    .into_iter()
                    .map(|((proto, port, host), r)| Row {
                        proto,
                        port,
                        host,
                        flows: r.flows,
                        packets: r.packets,
                        bytes: r.bytes,
                        midstream: r.midstream,
                        example: r.example,
                        cites: r.cites.cites,
                        cites_more: r.cites.cites_more,
                    })
                    .collect();
                // Most flows first; the key order (already sorted) breaks ties.
                rows.sort_by_key(|r| std::cmp::Reverse(r.flows));
                let sum =
                    |f: fn(&Row) -> u64| rows.iter().fold(0u64, |n, r| n.saturating_add(f(r)));
                Change {
                    kind,
                    flows: sum(|r| r.flows),
                    packets: sum(|r| r.packets),
                    bytes: sum(|r| r.bytes),
                    midstream: sum(|r| r.midstream),
                    old,
                    new,
                    rows,
                }
            })
            .collect();
        // Decision changes first, then by flows; the key order breaks ties.
        changes.sort_by_key(|c| (c.kind, std::cmp::Reverse(c.flows)));
        self.diff.changes = changes;
        self.diff
    }
}

/// Compares what `old` and `new` decide for the flows of every input.
pub fn diff(old: &Engine, new: &Engine, cfg: &DiffConfig) -> Result<Diff, DiffError> {
    // Tell captures from logs first, so that an unreadable input fails before any work.
    let mut captures = Vec::new();
    let mut logs = Vec::new();
    for path in &cfg.inputs {
        match CaptureReader::open(path) {
            Ok(_) => captures.push(path.clone()),
            Err(CaptureError::NotACapture { .. }) => logs.push(path.clone()),
            Err(e) => return Err(capture_error(path, e)),
        }
    }
    let mut b = Builder::new(old.policy(), new.policy());
    if !captures.is_empty() {
        compare_captures(old, new, &captures, cfg.workers, &mut b)?;
    }
    for path in &logs {
        logs::compare_log(old, new, path, &mut b)?;
    }
    // Inputs in the order given.
    let order = |p: &str| cfg.inputs.iter().position(|i| i.display().to_string() == p);
    b.diff.inputs.sort_by_key(|i| order(&i.path));
    Ok(b.finish())
}

/// Replays the captures under each policy and compares the flows both flow tables hold.
fn compare_captures(
    old: &Engine,
    new: &Engine,
    captures: &[PathBuf],
    workers: usize,
    b: &mut Builder,
) -> Result<(), DiffError> {
    let cfg = ReplayConfig {
        captures: captures.to_vec(),
        workers: workers.max(1),
        keep_flows: true,
        ..ReplayConfig::default()
    };
    let run = |engine: &Engine| {
        replay(engine, &cfg).map_err(|e| match e {
            // Every capture opened a moment ago; this is one that changed since.
            ReplayError::Capture(c) => DiffError::Capture(c.to_string()),
            damaged @ ReplayError::Damaged { .. } => DiffError::Capture(damaged.to_string()),
            other => DiffError::Replay(other.to_string()),
        })
    };
    let (a, z) = (run(old)?, run(new)?);
    b.diff.errors.extend(a.errors.iter().cloned());
    // Both lists are sorted by (first packet, key): walk them together.
    let (mut i, mut j) = (a.flows.iter().peekable(), z.flows.iter().peekable());
    loop {
        let order = match (i.peek(), j.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => identity(x).cmp(&identity(y)),
        };
        match order {
            std::cmp::Ordering::Less => {
                i.next();
                b.diff.flows.unmatched = b.diff.flows.unmatched.saturating_add(1);
            }
            std::cmp::Ordering::Greater => {
                j.next();
                b.diff.flows.unmatched = b.diff.flows.unmatched.saturating_add(1);
            }
            std::cmp::Ordering::Equal => {
                let (Some(x), Some(y)) = (i.next(), j.next()) else {
                    break;
                };
                let (lx, ly) = (
                    FlowLine::new(old.policy(), x),
                    FlowLine::new(new.policy(), y),
                );
                // Whichever policy read the first payload tells its host.
                let host = lx.host.clone().or_else(|| ly.host.clone());
                let facts = Facts::of_line(&lx, port_of(x), host);
                b.compare(
                    facts,
                    Said::new(old.policy(), x.flow.decision),
                    Said::new(new.policy(), y.flow.decision),
                );
            }
        }
    }
    for path in captures {
        b.diff.inputs.push(Input {
            path: path.display().to_string(),
            kind: "capture",
            lines: None,
        });
    }
    Ok(())
}

/// A capture's error, naming the file (errors about a record do not).
fn capture_error(path: &std::path::Path, e: CaptureError) -> DiffError {
    match e.record() {
        Some(_) => DiffError::Capture(format!("{}: {e}", path.display())),
        None => DiffError::Capture(e.to_string()),
    }
}

/// A capture flow's identity in both replays.
fn identity(rec: &FlowRecord) -> (u64, crate::flow::FlowKey) {
    (rec.flow.first_seq, rec.key)
}

/// The destination port (TCP, UDP) or ICMP type of a capture flow.
fn port_of(rec: &FlowRecord) -> Option<u16> {
    match rec.key.proto() {
        PROTO_TCP | PROTO_UDP => Some(rec.key.endpoint(rec.flow.initiator.other()).1),
        PROTO_ICMP | PROTO_ICMPV6 => rec.flow.icmp_type.map(u16::from),
        _ => None,
    }
}

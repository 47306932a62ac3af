//! Replay results: counters merged from the workers, printed as a table or one JSON object.
//!
//! The JSON schema is documented in the README ("Replay output"); keys are only ever added.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use serde_json::{Value, json};

use super::ReplayConfig;
use super::link::{LinkError, LinkType};
use crate::flow::{FlowRecord, FlowStats, MessageRecord};
use crate::{Action, Decision, Policy, Reason, Verdict};

/// Packets and flows of one reason (a rule line, a policy line, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    pub flows: u64,
    pub packets: u64,
}

/// Everything counted during a replay; workers each keep one and they are merged at the end.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Capture records read.
    pub records: u64,
    /// Packets per verdict, indexed like [`Verdict::ALL`].
    pub packets: [u64; 4],
    /// Flows per verdict.
    pub flows: [u64; 4],
    /// Packets decided as malformed, by kind (`bad-ip-header`, `truncated-transport`, `orphan-fragment`).
    pub malformed: BTreeMap<&'static str, u64>,
    /// Records that carried no IP packet, by cause; they get no verdict.
    pub unsupported: BTreeMap<String, u64>,
    /// Hits by policy line (see [`HitTable`]).
    pub hits: HitTable,
    /// `--audit`: nothing was enforced (every packet was accepted).
    pub audit: bool,
    /// Flows and packets whose verdict was not what they got: under `--audit` every one not accepted,
    /// else those of audited lines whose verdict differs from what the rest of the policy gave.
    pub not_enforced: Hits,
    /// TCP flows the capture holds only from their middle, and their packets: they began before the
    /// capture, so they are kept out of the verdict counts and the rule hits (which say what the policy
    /// would change), with whatever the port rules give them.
    pub midstream: Hits,
    /// Flows the policy shapes, by class (an index into the policy's classes).
    pub shaped: Vec<Shaped>,
    pub flow_table: FlowStats,
}

/// Shaped flows of one class, their packets and bytes (IP, both directions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shaped {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// Hits per reason in a plain vector (rule `i` at `2i`, policy line `i` at `2i + 1`, the no-policy
/// fallback at 0 of its own): counting happens for every packet, so no hashing.
#[derive(Clone, Debug, Default)]
pub struct HitTable {
    lines: Vec<Hits>,
    no_policy: Hits,
    /// Flows whose first payload did not come or parse in time, and packets that passed while waiting.
    inspect_limit: Hits,
    ambiguous: Hits,
    inspecting: Hits,
    ftp_data: Hits,
    midstream: Hits,
    /// Malformed and orphan packets are counted elsewhere; this absorbs their writes.
    other: Hits,
}

impl HitTable {
    fn index(r: Reason) -> Option<usize> {
        match r {
            Reason::Rule(i) => Some(2 * i as usize),
            Reason::Policy(i) => Some(2 * i as usize + 1),
            _ => None,
        }
    }

    pub fn get(&self, r: Reason) -> Hits {
        match (Self::index(r), r) {
            (Some(i), _) => self.lines.get(i).copied().unwrap_or_default(),
            (None, Reason::NoPolicy) => self.no_policy,
            (None, Reason::InspectLimit) => self.inspect_limit,
            (None, Reason::AmbiguousStream) => self.ambiguous,
            (None, Reason::Inspecting) => self.inspecting,
            (None, Reason::FtpData) => self.ftp_data,
            (None, Reason::Midstream) => self.midstream,
            _ => Hits::default(),
        }
    }

    fn get_mut(&mut self, r: Reason) -> &mut Hits {
        match (Self::index(r), r) {
            (Some(i), _) => {
                if i >= self.lines.len() {
                    self.lines.resize(i + 1, Hits::default());
                }
                &mut self.lines[i]
            }
            (None, Reason::NoPolicy) => &mut self.no_policy,
            (None, Reason::InspectLimit) => &mut self.inspect_limit,
            (None, Reason::AmbiguousStream) => &mut self.ambiguous,
            (None, Reason::Inspecting) => &mut self.inspecting,
            (None, Reason::FtpData) => &mut self.ftp_data,
            (None, Reason::Midstream) => &mut self.midstream,
            _ => &mut self.other,
        }
    }

    fn merge(&mut self, o: &HitTable) {
        if self.lines.len() < o.lines.len() {
            self.lines.resize(o.lines.len(), Hits::default());
        }
        for (a, b) in self.lines.iter_mut().zip(&o.lines) {
            a.flows += b.flows;
            a.packets += b.packets;
        }
        for (a, b) in [
            (&mut self.no_policy, &o.no_policy),
            (&mut self.inspect_limit, &o.inspect_limit),
            (&mut self.ambiguous, &o.ambiguous),
            (&mut self.inspecting, &o.inspecting),
            (&mut self.ftp_data, &o.ftp_data),
            (&mut self.midstream, &o.midstream),
        ] {
            a.flows += b.flows;
            a.packets += b.packets;
        }
    }
}

fn slot(v: Verdict) -> usize {
    Verdict::ALL.iter().position(|&x| x == v).unwrap_or(0)
}

impl Counters {
    /// What a decision's packets got.
    pub fn applied(&self, d: Decision) -> Action {
        if self.audit {
            Action::ACCEPT
        } else {
            d.enforced_action()
        }
    }

    /// Counts a packet's decision; a held packet is counted when it is released with its flow's.
    pub(crate) fn count_packet(&mut self, d: Decision) {
        if d.reason == Reason::Held {
            return;
        }
        self.packets[slot(d.verdict)] += 1;
        if self.applied(d) != d.action() {
            self.not_enforced.packets += 1;
        }
        match d.reason {
            Reason::Malformed(m) => *self.malformed.entry(m.name()).or_default() += 1,
            Reason::OrphanFragment => *self.malformed.entry("orphan-fragment").or_default() += 1,
            r => self.hits.get_mut(r).packets += 1,
        }
    }

    pub(crate) fn count_flow(&mut self, rec: &FlowRecord) {
        let d = rec.flow.decision;
        if rec.flow.midstream() {
            // Every packet of a flow seen from its middle got the flow's decision (nothing is inspected):
            // move them from the verdict counts to the midstream ones.
            let n = rec.flow.packets;
            self.packets[slot(d.verdict)] = self.packets[slot(d.verdict)].saturating_sub(n);
            let hit = self.hits.get_mut(d.reason);
            hit.packets = hit.packets.saturating_sub(n);
            if self.applied(d) != d.action() {
                self.not_enforced.packets = self.not_enforced.packets.saturating_sub(n);
            }
            self.midstream.flows += 1;
            self.midstream.packets += n;
            return;
        }
        self.flows[slot(d.verdict)] += 1;
        self.hits.get_mut(d.reason).flows += 1;
        if d.verdict == Verdict::Shape {
            let class = usize::from(d.class);
            if self.shaped.len() <= class {
                self.shaped.resize(class + 1, Shaped::default());
            }
            let shaped = &mut self.shaped[class];
            shaped.flows += 1;
            shaped.packets += rec.flow.packets;
            shaped.bytes += rec.flow.bytes;
        }
        if self.applied(d) != d.action() {
            self.not_enforced.flows += 1;
        }
    }

    pub(crate) fn count_unsupported(&mut self, e: LinkError, link: LinkType) {
        let key = match e {
            LinkError::NotIp => "not-ip".to_string(),
            LinkError::Truncated => "truncated-link-header".to_string(),
            LinkError::UnsupportedLinkType => format!("link-type-{link}"),
        };
        *self.unsupported.entry(key).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, o: &Counters) {
        self.records += o.records;
        for i in 0..4 {
            self.packets[i] += o.packets[i];
            self.flows[i] += o.flows[i];
        }
        for (k, v) in &o.malformed {
            *self.malformed.entry(k).or_default() += v;
        }
        for (k, v) in &o.unsupported {
            *self.unsupported.entry(k.clone()).or_default() += v;
        }
        self.hits.merge(&o.hits);
        if self.shaped.len() < o.shaped.len() {
            self.shaped.resize(o.shaped.len(), Shaped::default());
        }
        for (a, b) in self.shaped.iter_mut().zip(&o.shaped) {
            a.flows += b.flows;
            a.packets += b.packets;
            a.bytes += b.bytes;
        }
        self.midstream.flows += o.midstream.flows;
        self.midstream.packets += o.midstream.packets;
        self.not_enforced.flows += o.not_enforced.flows;
        self.not_enforced.packets += o.not_enforced.packets;
        self.audit |= o.audit;
        let (a, b) = (&mut self.flow_table, &o.flow_table);
        a.created += b.created;
        a.expired += b.expired;
        a.evicted += b.evicted;
        a.orphan_fragments += b.orphan_fragments;
        a.inspections_evicted += b.inspections_evicted;
    }

    /// Packets that got a verdict (midstream flows' included).
    pub fn decided(&self) -> u64 {
        self.packets.iter().sum::<u64>() + self.midstream.packets
    }

    /// Flows, midstream ones included.
    pub fn flows_total(&self) -> u64 {
        self.flows.iter().sum::<u64>() + self.midstream.flows
    }
}

/// The outcome of a replay.
pub struct ReplayReport {
    pub captures: Vec<String>,
    pub workers: usize,
    pub counters: Counters,
    /// Every flow, in first-packet order (when asked for).
    pub flows: Vec<FlowRecord>,
    /// Every DNS query over UDP and ICMP echo message, in capture order (when flows are kept and the
    /// engine decides messages one by one).
    pub messages: Vec<MessageRecord>,
    /// Captures that ended in a bad record: `FILE: record N: ...`.
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

/// One row of the rule-hits list.
struct HitRow<'a> {
    cite: String,
    kind: &'static str,
    text: &'a str,
    verdict: Verdict,
    /// An audited line (`AUDIT(...)`): its hits are what it would do.
    audit: bool,
    hits: Hits,
}

impl ReplayReport {
    pub(super) fn new(cfg: &ReplayConfig, workers: usize) -> ReplayReport {
        ReplayReport {
            captures: cfg
                .captures
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            workers,
            counters: Counters::default(),
            messages: Vec::new(),
            flows: Vec::new(),
            errors: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    pub fn packets_per_second(&self) -> f64 {
        self.counters.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Every rule and policy line in file order, then the implicit fallback when it was used.
    fn hit_rows<'a>(&self, policy: &'a Policy) -> Vec<HitRow<'a>> {
        let hits = |r: Reason| self.counters.hits.get(r);
        let mut rows: Vec<(u32, HitRow<'a>)> = Vec::new();
        for (i, rule) in policy.rules().iter().enumerate() {
            let r = Reason::Rule(i as u32);
            let row = HitRow {
                cite: policy.cite(r).unwrap_or_default(),
                kind: "rule",
                text: &rule.text,
                verdict: rule.verdict,
                audit: rule.audit,
                hits: hits(r),
            };
            rows.push((rule.line, row));
        }
        for (i, p) in policy.pair_policies().iter().enumerate() {
            let r = Reason::Policy(i as u32);
            let row = HitRow {
                cite: policy.cite(r).unwrap_or_default(),
                kind: "policy",
                text: &p.text,
                verdict: p.verdict,
                audit: p.audit,
                hits: hits(r),
            };
            rows.push((p.line, row));
        }
        rows.sort_by_key(|(line, _)| *line);
        let mut rows: Vec<HitRow<'a>> = rows.into_iter().map(|(_, r)| r).collect();
        // Decisions no line made, listed when they happened.
        let others = [
            (
                Reason::NoPolicy,
                "no-policy",
                "(no policy line covers the zone pair)",
                Verdict::Drop,
            ),
            (
                Reason::InspectLimit,
                "inspect-limit",
                "(first payload did not come or parse in time: option inspect-limit)",
                policy.options().flows.inspect.limit,
            ),
            (
                Reason::AmbiguousStream,
                "ambiguous-stream",
                "(overlapping segments that disagree: option inspect-limit)",
                policy.options().flows.inspect.limit,
            ),
            (
                Reason::FtpData,
                "ftp-data",
                "(data connections announced by accepted FTP control connections)",
                Verdict::Accept,
            ),
            (
                Reason::Inspecting,
                "inspecting",
                "(handshake passed while waiting for the first payload; flows: never decided)",
                Verdict::Accept,
            ),
        ];
        for (reason, kind, text, verdict) in others {
            let h = hits(reason);
            if h != Hits::default() {
                rows.push(HitRow {
                    cite: "-".into(),
                    kind,
                    text,
                    verdict,
                    audit: false,
                    hits: h,
                });
            }
        }
        rows
    }

    /// The human-readable report.
    pub fn table(&self, policy: &Policy) -> String {
        let c = &self.counters;
        let mut out = String::new();
        let captures = if self.captures.len() == 1 {
            "1 capture".to_string()
        } else {
            format!("{} captures", self.captures.len())
        };
        let _ = writeln!(
            out,
            "replay: {captures}, policy {}, {} worker(s)\n",
            policy.file(),
            self.workers
        );
        if c.audit {
            let _ = writeln!(
                out,
                "AUDIT: nothing enforced, every packet passed; the verdicts below are what the policy would do\n"
            );
        }
        let unsupported: u64 = c.unsupported.values().sum();
        let malformed: u64 = c.malformed.values().sum();
        let _ = writeln!(out, "records        {:>12}", c.records);
        let _ = writeln!(out, "ip packets     {:>12}", c.decided());
        let _ = writeln!(
            out,
            "unsupported    {:>12}{}",
            unsupported,
            breakdown(c.unsupported.iter().map(|(k, v)| (k.as_str(), *v)))
        );
        let _ = writeln!(
            out,
            "malformed      {:>12}{}{}",
            malformed,
            breakdown(c.malformed.iter().map(|(k, v)| (*k, *v))),
            if malformed > 0 {
                format!("  -> {}", policy.options().malformed.name())
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "flows          {:>12}", c.flows_total());
        if c.flow_table.evicted > 0 {
            let _ = writeln!(
                out,
                "flows evicted  {:>12}  (the flow table was full: raise `option max-flows`)",
                c.flow_table.evicted
            );
        }
        let _ = writeln!(out, "\nverdict             packets        flows");
        for v in Verdict::ALL {
            let _ = writeln!(
                out,
                "{:<10} {:>16} {:>12}",
                v.name(),
                c.packets[slot(v)],
                c.flows[slot(v)]
            );
        }
        if c.not_enforced.flows > 0 {
            let _ = writeln!(
                out,
                "{:<10} {:>16} {:>12}  (counted above as what the policy would do; audited, they passed)",
                "not enforced", c.not_enforced.packets, c.not_enforced.flows
            );
        }
        if c.midstream.flows > 0 {
            let _ = writeln!(
                out,
                "{:<10} {:>16} {:>12}  (TCP flows that began before the capture: not counted above)",
                "midstream", c.midstream.packets, c.midstream.flows
            );
        }
        if !policy.classes().is_empty() {
            let _ = writeln!(
                out,
                "\nshaped by class      flows      packets          bytes  rate"
            );
            for (i, class) in policy.classes().iter().enumerate() {
                let n = c.shaped.get(i).copied().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {:<12} {:>11} {:>12} {:>14}  {}",
                    class.name, n.flows, n.packets, n.bytes, class.rate
                );
            }
        }
        let _ = writeln!(
            out,
            "\nrule hits (first match wins)       flows      packets  line"
        );
        for row in self.hit_rows(policy) {
            let _ = writeln!(
                out,
                "  {:<30} {:>9} {:>12}  {}{}",
                row.cite,
                row.hits.flows,
                row.hits.packets,
                row.text,
                if row.audit {
                    "  (audited: not enforced)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            out,
            "\nelapsed {:.3} s, {:.0} packets/s",
            self.elapsed.as_secs_f64(),
            self.packets_per_second()
        );
        out
    }

    /// The same as one JSON object (schema in the README).
    pub fn json(&self, policy: &Policy) -> Value {
        let c = &self.counters;
        let per_verdict = |a: &[u64; 4]| -> Value {
            Verdict::ALL
                .iter()
                .map(|v| (v.name().to_string(), json!(a[slot(*v)])))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut packets = per_verdict(&c.packets);
        packets["midstream"] = json!(c.midstream.packets);
        packets["decided"] = json!(c.decided());
        let mut flows = per_verdict(&c.flows);
        flows["midstream"] = json!(c.midstream.flows);
        flows["total"] = json!(c.flows_total());
        flows["expired"] = json!(c.flow_table.expired);
        flows["evicted"] = json!(c.flow_table.evicted);
        let mut unsupported: serde_json::Map<String, Value> = c
            .unsupported
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        unsupported.insert("total".into(), json!(c.unsupported.values().sum::<u64>()));
        let mut malformed: serde_json::Map<String, Value> = c
            .malformed
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        malformed.insert("total".into(), json!(c.malformed.values().sum::<u64>()));
        malformed.insert("verdict".into(), json!(policy.options().malformed.name()));
        let rules: Vec<Value> = self
            .hit_rows(policy)
            .into_iter()
            .map(|r| {
                let mut row = json!({"rule": r.cite, "kind": r.kind, "text": r.text, "verdict": r.verdict.name(),
                       "flows": r.hits.flows, "packets": r.hits.packets});
                if r.audit {
                    row["audit"] = json!(true);
                }
                row
            })
            .collect();
        let shaped: Vec<Value> = policy
            .classes()
            .iter()
            .enumerate()
            .map(|(i, class)| {
                let n = c.shaped.get(i).copied().unwrap_or_default();
                json!({"class": class.name, "rate": class.rate.to_string(), "flows": n.flows,
                       "packets": n.packets, "bytes": n.bytes})
            })
            .collect();
        json!({
            "captures": self.captures,
            "policy": policy.file(),
            "workers": self.workers,
            "mode": if c.audit { "audit" } else { "enforce" },
            "records": c.records,
            "packets": packets,
            "flows": flows,
            "not_enforced": {"flows": c.not_enforced.flows, "packets": c.not_enforced.packets},
            "shaped": shaped,
            "unsupported": unsupported,
            "malformed": malformed,
            "rules": rules,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "packets_per_s": self.packets_per_second(),
        })
    }
}

fn breakdown<'a>(items: impl Iterator<Item = (&'a str, u64)>) -> String {
    let parts: Vec<String> = items.map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("  ({})", parts.join(", "))
    }
}

/// A progress line on stderr for long replays, only when stderr is a terminal.
pub(super) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub(super) fn new(wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {human_pos} packets, {per_sec}, {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Progress(Some(bar))
    }

    pub(super) fn tick(&self, seq: u64) {
        if let Some(bar) = &self.0
            && seq.is_multiple_of(65_536)
        {
            bar.set_position(seq);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

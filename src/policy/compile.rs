//! Checked lines -> lookup tables that answer "which rule decides this port?" in O(1).
//!
//! For every (source zone, destination zone) pair the rules that can apply are listed in file order, and for
//! every protocol an index maps each destination port (or ICMP type) to the first rule in that list that
//! names it (or names every protocol): 65,536 `u16` slots for TCP and UDP, 256 for ICMP. The rule found
//! there decides unless it is narrowed to some addresses the packet is not from or to; only then does the
//! scan continue down the list, so first-match-wins holds exactly while the common case is one lookup.

use std::net::IpAddr;

use super::parse::{Parsed, Proto, Rule, Service};
use crate::decision::{Action, Decision, Reason, RuleId, Verdict};
use crate::inspect::Payload;
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Packet, Transport};

/// The flow's protocol class and selector (destination port, or ICMP type); `None` for other protocols.
pub(super) fn classify(p: &Packet<'_>) -> Option<(Proto, u16)> {
    match (p.ip_proto, p.transport) {
        (PROTO_TCP, Transport::Tcp { dport, .. }) => Some((Proto::Tcp, dport)),
        (PROTO_UDP, Transport::Udp { dport, .. }) => Some((Proto::Udp, dport)),
        (PROTO_ICMP, Transport::Icmp { icmp_type, .. }) => {
            Some((Proto::Icmp, u16::from(icmp_type)))
        }
        (PROTO_ICMPV6, Transport::Icmp { icmp_type, .. }) => {
            Some((Proto::Icmp6, u16::from(icmp_type)))
        }
        _ => None,
    }
}

fn proto_slot(p: Proto) -> usize {
    Proto::ALL.iter().position(|&x| x == p).unwrap_or(0)
}

/// The tables of one zone pair.
struct PairTable {
    /// Rules whose zones cover this pair, in file order.
    rules: Vec<RuleId>,
    /// Per protocol: selector -> 1 + position in `rules` of the first candidate; 0 = none.
    index: [Option<Box<[u16]>>; 4],
    /// 1 + position of the first rule that matches every protocol (for GRE, ESP, ...); 0 = none.
    other: u16,
    default: Decision,
}

/// The outcome of evaluating a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eval {
    Decided(Decision),
    /// A rule that may match needs the flow's first payload.
    NeedPayload,
}

/// The compiled form of a [`Parsed`] policy.
pub(super) struct Compiled {
    /// Without zone lines: the initiator is zone 0 (`loc`), the other end zone 1 (`net`).
    implicit_zones: bool,
    zone_count: usize,
    pairs: Vec<PairTable>,
}

impl Compiled {
    pub(super) fn new(parsed: &Parsed) -> Result<Compiled, String> {
        let implicit_zones = parsed.zones.is_empty();
        // Declared zones, plus `net` as the catch-all for addresses in none of them when not declared.
        let zone_count = if implicit_zones {
            2
        } else {
            parsed.zones.len() + usize::from(net_zone(parsed).is_none())
        };
        let mut pairs = Vec::with_capacity(zone_count * zone_count);
        for s in 0..zone_count {
            for d in 0..zone_count {
                pairs.push(pair_table(parsed, s, d)?);
            }
        }
        Ok(Compiled {
            implicit_zones,
            zone_count,
            pairs,
        })
    }

    fn zone_of(&self, parsed: &Parsed, a: IpAddr) -> usize {
        parsed
            .zones
            .iter()
            .position(|z| z.nets.iter().any(|n| n.contains(a)))
            .or_else(|| net_zone(parsed))
            .unwrap_or(parsed.zones.len())
    }

    /// The zone pair of a flow whose first packet is `p` (its source is the initiator).
    pub(super) fn zones_of(&self, parsed: &Parsed, p: &Packet<'_>) -> (usize, usize) {
        if self.implicit_zones {
            (0, 1)
        } else {
            (self.zone_of(parsed, p.src), self.zone_of(parsed, p.dst))
        }
    }

    pub(super) fn zone_count(&self) -> usize {
        self.zone_count
    }

    /// First-match evaluation of a flow's first packet.
    ///
    /// A rule with payload terms decides only once `payload` is known: without it the walk stops there
    /// with [`Eval::NeedPayload`], so first-match-wins holds across rules with and without terms.
    pub(super) fn evaluate(
        &self,
        parsed: &Parsed,
        p: &Packet<'_>,
        payload: Option<&Payload>,
        now_secs: u64,
    ) -> Eval {
        let (s, d) = self.zones_of(parsed, p);
        let Some(pair) = self.pairs.get(s * self.zone_count + d) else {
            return Eval::Decided(Decision::new(Verdict::Drop, Reason::NoPolicy));
        };
        let class = classify(p);
        let start = match class {
            Some((proto, sel)) => pair.index[proto_slot(proto)]
                .as_ref()
                .and_then(|ix| ix.get(usize::from(sel)))
                .copied(),
            None => Some(pair.other),
        };
        let start = usize::from(start.unwrap_or(0));
        // First match wins. An audited line that matches first is what the flow is logged and counted
        // as; the walk goes on for what it gets: the next matching line that is not audited.
        let mut audited: Option<Decision> = None;
        let settle = |enforced: Decision, audited: Option<Decision>| match audited {
            Some(would) => Decision {
                applied: Some(enforced.enforced_action()),
                ..would
            },
            None => enforced,
        };
        if start > 0 {
            for &id in pair.rules.get(start - 1..).unwrap_or(&[]) {
                let Some(rule) = parsed.rules.get(id as usize) else {
                    continue;
                };
                if !(rule.src.contains(p.src)
                    && rule.dst.contains(p.dst)
                    && service_matches(&rule.service, class)
                    && rule.until.is_none_or(|until| now_secs < until))
                {
                    continue;
                }
                let decided = Decision {
                    class: rule.class,
                    ..Decision::new(rule.verdict, Reason::Rule(id))
                };
                if !rule.terms.is_empty() {
                    match payload {
                        None => return Eval::NeedPayload,
                        Some(pl) if rule.terms.matches(pl, rule.verdict) => {}
                        Some(_) => continue,
                    }
                }
                match (rule.audit, audited) {
                    (true, None) => audited = Some(decided),
                    (true, Some(_)) => {}
                    (false, _) => return Eval::Decided(settle(decided, audited)),
                }
            }
        }
        Eval::Decided(settle(pair.default, audited))
    }

    /// For `check`: the verdict a selector gets in pair (s, d) from rules that apply to every address of
    /// their zones (rules narrowed to some addresses are left out of this summary), as enforced: audited
    /// lines are left out, and an audited policy line leaves flows accepted.
    pub(super) fn verdict_for_any_address(
        &self,
        parsed: &Parsed,
        s: usize,
        d: usize,
        class: Option<(Proto, u16)>,
    ) -> Verdict {
        let Some(pair) = self.pairs.get(s * self.zone_count + d) else {
            return Verdict::Drop;
        };
        pair.rules
            .iter()
            .filter_map(|&id| parsed.rules.get(id as usize))
            .find(|r| {
                !r.audit
                    && r.src.nets.is_empty()
                    && r.dst.nets.is_empty()
                    && r.terms.is_empty()
                    && service_matches(&r.service, class)
            })
            .map_or(pair.default.enforced_action().verdict, |r| r.verdict)
    }
}

/// The index of the declared zone named `net`, if any.
fn net_zone(parsed: &Parsed) -> Option<usize> {
    parsed.zones.iter().position(|z| z.name == "net")
}

fn service_matches(service: &Service, class: Option<(Proto, u16)>) -> bool {
    match (service, class) {
        (Service::Any, _) => true,
        (Service::Of(_), None) => false,
        (Service::Of(list), Some((proto, sel))) => list.iter().any(|(p, r)| {
            *p == proto
                && r.as_ref()
                    .is_none_or(|r| r.iter().any(|&(a, b)| (a..=b).contains(&sel)))
        }),
    }
}

fn rule_covers_pair(r: &Rule, s: usize, d: usize) -> bool {
    r.src.zone.covers(s) && r.dst.zone.covers(d)
}

fn pair_table(parsed: &Parsed, s: usize, d: usize) -> Result<PairTable, String> {
    let rules: Vec<RuleId> = (0..parsed.rules.len())
        .filter(|&i| rule_covers_pair(&parsed.rules[i], s, d))
        .map(|i| i as RuleId)
        .collect();
    if rules.len() >= usize::from(u16::MAX) {
        return Err(format!(
            "more than {} rules apply to one zone pair",
            u16::MAX - 1
        ));
    }
    let mut index: [Option<Box<[u16]>>; 4] = Default::default();
    let mut other = 0u16;
    // Walk backwards so that the earliest rule is the last to write its slots: first match wins.
    for (pos, &id) in rules.iter().enumerate().rev() {
        let slot_value = pos as u16 + 1;
        let rule = &parsed.rules[id as usize];
        let mut fill = |proto: Proto, ranges: Option<&[(u16, u16)]>| {
            let len = usize::from(proto.max_selector()) + 1;
            let table =
                index[proto_slot(proto)].get_or_insert_with(|| vec![0u16; len].into_boxed_slice());
            match ranges {
                None => table.fill(slot_value),
                Some(ranges) => {
                    for &(a, b) in ranges {
                        if let Some(part) = table.get_mut(usize::from(a)..=usize::from(b)) {
                            part.fill(slot_value);
                        }
                    }
                }
            }
        };
        match &rule.service {
            Service::Any => {
                for proto in Proto::ALL {
                    fill(proto, None);
                }
                other = slot_value;
            }
            Service::Of(list) => {
                for (proto, ranges) in list {
                    fill(*proto, ranges.as_deref());
                }
            }
        }
    }
    let default = parsed
        .pair_policies
        .iter()
        .position(|p| p.src.covers(s) && p.dst.covers(d))
        .map_or(Decision::new(Verdict::Drop, Reason::NoPolicy), |i| {
            let p = &parsed.pair_policies[i];
            Decision {
                class: p.class,
                // An audited policy line has nothing behind it: its flows are accepted.
                applied: p.audit.then_some(Action::ACCEPT),
                ..Decision::new(p.verdict, Reason::Policy(i as u32))
            }
        });
    Ok(PairTable {
        rules,
        index,
        other,
        default,
    })
}

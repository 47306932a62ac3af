//! Checked lines -> lookup tables that answer "which rule decides this port?" in O(1).
//!
//! For every (source zone, destination zone) pair the rules that can apply are listed in file order, and for
//! every protocol an index maps each destination port (or ICMP type) to the first rule in that list that
//! names it (or names every protocol): 65,536 `u16` slots for TCP and UDP, 256 for ICMP. The rule found
//! there decides unless it is narrowed to some addresses the packet is not from or to; only then does the
//! scan continue down the list, so first-match-wins holds exactly while the common case is one lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::parse::{Parsed, Proto, Rule, Service, ZoneSel};
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

/// An index slot: 1 + position in the pair's rule list of the first candidate; 0 = none.
type Slot = u32;

/// Bounds on what a policy can make compiling build; a policy beyond them does not compile.
/// Rule lists: entries summed over the distinct lists (zone pairs that no rule names apart share one).
const MAX_LIST_ENTRIES: usize = 16 << 20;
/// Index tables: a TCP or UDP table is 256 KiB.
const MAX_INDEX_BYTES: usize = 256 << 20;

/// The rules of one zone pair and their index; shared by the pairs whose lists are the same.
struct Lookup {
    /// Rules whose zones cover this pair, in file order.
    rules: Vec<RuleId>,
    /// Per protocol: selector -> slot of the first candidate.
    index: [Option<Box<[Slot]>>; 4],
    /// Slot of the first rule that matches every protocol (for GRE, ESP, ...).
    other: Slot,
}

impl Lookup {
    /// The slot of the first rule that may match `class`: 0 when none names it.
    fn first_candidate(&self, class: Option<(Proto, u16)>) -> usize {
        let slot = match class {
            Some((proto, sel)) => self.index[proto_slot(proto)]
                .as_ref()
                .and_then(|ix| ix.get(usize::from(sel)))
                .copied(),
            None => Some(self.other),
        };
        slot.unwrap_or(0) as usize
    }
}

/// The tables of one zone pair.
struct PairTable {
    lookup: Arc<Lookup>,
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
        // A pair's rule list depends on its source zone only if some rule names that zone as its
        // source (else only the `all` rules apply), and the same for the destination.
        let named = |side: fn(&Rule) -> ZoneSel| {
            let mut named = vec![false; zone_count];
            for r in &parsed.rules {
                if let ZoneSel::Zone(z) = side(r)
                    && let Some(n) = named.get_mut(z)
                {
                    *n = true;
                }
            }
            named
        };
        let (src_named, dst_named) = (named(|r| r.src.zone), named(|r| r.dst.zone));
        let mut built: HashMap<(Option<usize>, Option<usize>), Arc<Lookup>> = HashMap::new();
        let mut budget = Budget::default();
        let mut pairs = Vec::with_capacity(zone_count * zone_count);
        for (s, &s_named) in src_named.iter().enumerate() {
            for (d, &d_named) in dst_named.iter().enumerate() {
                let key = (s_named.then_some(s), d_named.then_some(d));
                let lookup = match built.get(&key) {
                    Some(l) => Arc::clone(l),
                    None => {
                        let l = Arc::new(lookup(parsed, s, d, &mut budget)?);
                        built.insert(key, Arc::clone(&l));
                        l
                    }
                };
                let default = pair_default(parsed, s, d);
                pairs.push(PairTable { lookup, default });
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
        let lookup = &pair.lookup;
        let start = lookup.first_candidate(class);
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
            for &id in lookup.rules.get(start - 1..).unwrap_or(&[]) {
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
        // The index skips the rules that do not name the selector, as in `evaluate`.
        let lookup = &pair.lookup;
        let first = lookup.first_candidate(class);
        if first == 0 {
            return pair.default.enforced_action().verdict;
        }
        lookup
            .rules
            .get(first - 1..)
            .unwrap_or_default()
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

/// What compiling has built so far, against [`MAX_LIST_ENTRIES`] and [`MAX_INDEX_BYTES`].
#[derive(Default)]
struct Budget {
    entries: usize,
    bytes: usize,
}

/// The rule list and index of pair (s, d).
fn lookup(parsed: &Parsed, s: usize, d: usize, budget: &mut Budget) -> Result<Lookup, String> {
    let rules: Vec<RuleId> = (0..parsed.rules.len())
        .filter(|&i| rule_covers_pair(&parsed.rules[i], s, d))
        .map(|i| i as RuleId)
        .collect();
    budget.entries += rules.len();
    if budget.entries > MAX_LIST_ENTRIES || rules.len() >= Slot::MAX as usize {
        return Err(format!(
            "too large to compile: more than {MAX_LIST_ENTRIES} (rule, zone pair) entries; rules for `all` zones are shared by every pair, rules naming zones are not"
        ));
    }
    let mut index: [Option<Box<[Slot]>>; 4] = Default::default();
    // Per protocol: the next selector no earlier rule has taken, by path-halving over "taken" links,
    // so each slot is written once however many rules name it: rules are walked in file order and
    // only free slots are filled (first match wins).
    let mut free: [Vec<u32>; 4] = Default::default();
    let mut other: Slot = 0;
    for (pos, &id) in rules.iter().enumerate() {
        let slot = pos as Slot + 1;
        let rule = &parsed.rules[id as usize];
        let mut fill = |proto: Proto, a: u16, b: u16| -> Result<(), String> {
            let p = proto_slot(proto);
            let len = usize::from(proto.max_selector()) + 1;
            if index[p].is_none() {
                budget.bytes += len * size_of::<Slot>();
                if budget.bytes > MAX_INDEX_BYTES {
                    return Err(format!(
                        "too large to compile: the port indexes would take more than {} MiB; rules for `all` zones are shared by every pair, rules naming zones are not",
                        MAX_INDEX_BYTES >> 20
                    ));
                }
                free[p] = (0..=len as u32).collect();
            }
            let table = index[p].get_or_insert_with(|| vec![0; len].into_boxed_slice());
            fill_free(table, &mut free[p], usize::from(a), usize::from(b), slot);
            Ok(())
        };
        match &rule.service {
            Service::Any => {
                for proto in Proto::ALL {
                    fill(proto, 0, proto.max_selector())?;
                }
                if other == 0 {
                    other = slot;
                }
            }
            Service::Of(list) => {
                for (proto, ranges) in list {
                    match ranges {
                        None => fill(*proto, 0, proto.max_selector())?,
                        Some(ranges) => {
                            for &(a, b) in ranges {
                                fill(*proto, a, b)?;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Lookup {
        rules,
        index,
        other,
    })
}

/// Writes `slot` into the slots of `a..=b` that are still free. `free[i]` leads towards the first
/// free slot at or after `i` (`i` itself when free); `free[table.len()]` is the end.
fn fill_free(table: &mut [Slot], free: &mut [u32], a: usize, b: usize, slot: Slot) {
    let b = b.min(table.len().saturating_sub(1));
    let mut i = first_free(free, a);
    while i <= b && i < table.len() {
        table[i] = slot;
        free[i] = i as u32 + 1;
        i = first_free(free, i + 1);
    }
}

fn first_free(free: &mut [u32], mut i: usize) -> usize {
    while let Some(&next) = free.get(i) {
        let next = next as usize;
        if next == i {
            return i;
        }
        // Path halving: point at the grandparent while walking.
        let skip = free.get(next).copied().unwrap_or(next as u32);
        free[i] = skip;
        i = next;
    }
    i
}

/// The policy line that decides pair (s, d) when no rule does.
fn pair_default(parsed: &Parsed, s: usize, d: usize) -> Decision {
    parsed
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
        })
}

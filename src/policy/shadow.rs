//! Lines that can never match: a rule whose every flow an earlier rule already takes, a `policy` line
//! whose every zone pair an earlier `policy` line already decides.
//!
//! Promise: only what is certain is reported. A rule R is shadowed by an earlier rule E when E decides
//! every flow it matches on its first packet (it is not audited and has no payload term) and contains R
//! in every column: E's zone pairs include R's, E's addresses include R's (an address list
//! `net:192.0.2.0/24` contains `net:192.0.2.7`; no list contains any address), and E's protocols and
//! ports include R's (`all` contains every protocol, `tcp` every TCP port, `80,443` contains `443`, a
//! macro is the ports it stands for). E's addresses must hold each of R's networks whole in one of
//! theirs; two halves that only together cover R's network are not counted, so a real shadowing can go
//! unreported, never the reverse. Without zone lines every flow goes from `loc` to `net`: a line for
//! another pair can never match, and is reported as such.
//!
//! Used by `outgate check`, which prints the findings as warnings; nothing here changes a decision.

use std::fmt;
use std::net::IpAddr;

use super::Policy;
use super::parse::{Cidr, Endpoint, Ranges, Rule, Service, ZoneSel};

/// A line that can never match, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadowed {
    /// The policy's file name, as citations use it.
    pub file: String,
    /// The line that never matches.
    pub line: u32,
    pub kind: LineKind,
    /// The earlier lines that take every flow it would, `(line, text)` in file order; empty when no
    /// flow can reach it at all (a pair other than `loc net` without zone lines).
    pub by: Vec<(u32, String)>,
}

/// Which kind of line a [`Shadowed`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Rule,
    Policy,
}

/// `p.rules:7: never matches: p.rules:3 (ACCEPT loc net 80,443) already takes every flow it would (warning)`.
impl fmt::Display for Shadowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: never matches: ", self.file, self.line)?;
        if self.by.is_empty() {
            return write!(
                f,
                "without zone lines every flow goes from loc to net (warning)"
            );
        }
        let lines: Vec<String> = self
            .by
            .iter()
            .map(|(line, text)| format!("{}:{line} ({text})", self.file))
            .collect();
        let (verb, what) = match (self.kind, self.by.len()) {
            (LineKind::Rule, _) => ("takes", "every flow it would"),
            (LineKind::Policy, 1) => ("decides", "every zone pair it names"),
            (LineKind::Policy, _) => ("decide", "every zone pair it names"),
        };
        write!(f, "{} already {verb} {what} (warning)", lines.join(" and "))
    }
}

/// A line's text without its comment.
fn code(text: &str) -> String {
    text.split('#').next().unwrap_or("").trim().to_string()
}

impl Policy {
    /// Every line that can never match, in file order (see the module's promise).
    pub fn shadowed(&self) -> Vec<Shadowed> {
        let pairs = self.reachable_pairs();
        let mut out = Vec::new();
        let rules = &self.parsed.rules;
        for (j, r) in rules.iter().enumerate() {
            let r_pairs = pairs_of(&pairs, r.src.zone, r.dst.zone);
            let by = if r_pairs.is_empty() {
                Some(Vec::new())
            } else {
                // The earliest covering rule: a later one that covers R is itself covered by it.
                rules[..j]
                    .iter()
                    .find(|e| {
                        takes_every_match(e)
                            && r_pairs
                                .iter()
                                .all(|p| pairs_of(&pairs, e.src.zone, e.dst.zone).contains(p))
                            && contains_rule(e, r)
                    })
                    .map(|e| vec![(e.line, code(&e.text))])
            };
            if let Some(by) = by {
                out.push(self.finding(r.line, LineKind::Rule, by));
            }
        }
        let policies = &self.parsed.pair_policies;
        for (j, q) in policies.iter().enumerate() {
            let q_pairs = pairs_of(&pairs, q.src, q.dst);
            // The policy line that decides a pair is the first that covers it.
            let mut deciders: Vec<usize> = Vec::new();
            let mut all_earlier = true;
            for &(s, d) in &q_pairs {
                match policies
                    .iter()
                    .position(|p| p.src.covers(s) && p.dst.covers(d))
                {
                    Some(i) if i < j => {
                        if !deciders.contains(&i) {
                            deciders.push(i);
                        }
                    }
                    _ => all_earlier = false,
                }
            }
            if all_earlier {
                deciders.sort_unstable();
                let by = deciders
                    .iter()
                    .map(|&i| (policies[i].line, code(&policies[i].text)))
                    .collect();
                out.push(self.finding(q.line, LineKind::Policy, by));
            }
        }
        out.sort_by_key(|s| s.line);
        out
    }

    fn finding(&self, line: u32, kind: LineKind, by: Vec<(u32, String)>) -> Shadowed {
        Shadowed {
            file: self.file.clone(),
            line,
            kind,
            by,
        }
    }

    /// The zone pairs a flow can have: `loc` to `net` without zone lines, else every pair of zones
    /// (some may hold no address, which only makes the analysis report less).
    fn reachable_pairs(&self) -> Vec<(usize, usize)> {
        if self.parsed.zones.is_empty() {
            return vec![(0, 1)];
        }
        let n = self.compiled.zone_count();
        (0..n).flat_map(|s| (0..n).map(move |d| (s, d))).collect()
    }
}

/// The pairs among `reachable` that a line's zones cover.
fn pairs_of(reachable: &[(usize, usize)], src: ZoneSel, dst: ZoneSel) -> Vec<(usize, usize)> {
    reachable
        .iter()
        .copied()
        .filter(|&(s, d)| src.covers(s) && dst.covers(d))
        .collect()
}

/// Whether a rule decides every flow whose headers it matches: audited lines pass their flows on,
/// payload terms may not hold, and a line that expires (`until=`) leaves them to later lines.
fn takes_every_match(rule: &Rule) -> bool {
    !rule.audit && rule.terms.is_empty() && rule.until.is_none()
}

/// Whether every flow `r`'s addresses, protocols and ports match, `e`'s match too.
fn contains_rule(e: &Rule, r: &Rule) -> bool {
    service_contains(&e.service, &r.service)
        && endpoint_contains(&e.src, &r.src, r, 1)
        && endpoint_contains(&e.dst, &r.dst, r, 2)
}

/// Whether every address of `r_end` is in `e_end` (zones are compared apart).
fn endpoint_contains(e_end: &Endpoint, r_end: &Endpoint, r: &Rule, column: usize) -> bool {
    if e_end.nets.is_empty() {
        return true;
    }
    if r_end.nets.is_empty() {
        return false;
    }
    let Some(blocks) = blocks_as_written(r, column, &r_end.nets) else {
        return false;
    };
    blocks.iter().all(|&(first, last)| {
        e_end
            .nets
            .iter()
            .any(|n| n.contains(first) && n.contains(last))
    })
}

/// The first and last address of each network of a rule's SRC (`column` 1) or DST (2) column.
///
/// [`Cidr`] keeps its bits to itself (it is the parser's), so they are read again from the line as
/// written, and each network read is checked to be the one the parser stored; any difference gives
/// `None`, and the rule is then not counted as contained.
fn blocks_as_written(r: &Rule, column: usize, nets: &[Cidr]) -> Option<Vec<(IpAddr, IpAddr)>> {
    let line = r.text.split('#').next()?;
    let token = line.split_whitespace().nth(column)?;
    let (_, list) = token.split_once(':')?;
    let items: Vec<&str> = list.split(',').collect();
    if items.len() != nets.len() {
        return None;
    }
    items
        .iter()
        .zip(nets)
        .map(|(item, net)| {
            if Cidr::parse(item).ok()? != *net {
                return None;
            }
            block(item)
        })
        .collect()
}

/// `ADDR[/PREFIX]` -> its first and last address.
fn block(item: &str) -> Option<(IpAddr, IpAddr)> {
    let (addr, prefix) = match item.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (item, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match prefix {
        Some(p) => p.parse().ok().filter(|&p| p <= bits)?,
        None => bits,
    };
    // Host bits: the low (bits - prefix) bits.
    let host = |width: u32| -> u128 {
        let free = width - prefix;
        if free == 0 {
            0
        } else {
            u128::MAX >> (128 - free)
        }
    };
    Some(match addr {
        IpAddr::V4(a) => {
            let n = u128::from(u32::from(a));
            let h = host(32);
            let first = u32::try_from(n & !h).ok()?;
            let last = u32::try_from(n | h).ok()?;
            (IpAddr::V4(first.into()), IpAddr::V4(last.into()))
        }
        IpAddr::V6(a) => {
            let n = u128::from(a);
            let h = host(128);
            (IpAddr::V6((n & !h).into()), IpAddr::V6((n | h).into()))
        }
    })
}

/// Whether every flow `r` matches by protocol and port, `e` matches too.
fn service_contains(e: &Service, r: &Service) -> bool {
    match (e, r) {
        (Service::Any, _) => true,
        // `all` also matches GRE, ESP and the rest, which no protocol list does.
        (Service::Of(_), Service::Any) => false,
        (Service::Of(e_list), Service::Of(r_list)) => r_list.iter().all(|(proto, r_ranges)| {
            let mut have: Ranges = Vec::new();
            for (_, ranges) in e_list.iter().filter(|(p, _)| p == proto) {
                match ranges {
                    None => return true,
                    Some(rs) => have.extend(rs.iter().copied()),
                }
            }
            let whole = [(0, proto.max_selector())];
            let need: &[(u16, u16)] = r_ranges.as_deref().unwrap_or(&whole);
            ranges_cover(have, need)
        }),
    }
}

/// Whether the union of `have` holds every selector of `need`.
fn ranges_cover(mut have: Ranges, need: &[(u16, u16)]) -> bool {
    have.sort_unstable();
    // Merge overlapping and adjacent ranges, so that each needed range must sit in one of them.
    let mut merged: Ranges = Vec::with_capacity(have.len());
    for (a, b) in have {
        match merged.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    need.iter()
        .all(|&(a, b)| merged.iter().any(|&(x, y)| x <= a && b <= y))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The findings of a policy, as the warnings `check` prints.
    fn warnings(text: &str) -> Vec<String> {
        let p = Policy::compile("p.rules", text).unwrap_or_else(|e| panic!("{e:?}"));
        p.shadowed().iter().map(|s| s.to_string()).collect()
    }

    /// The lines reported as never matching, and the first covering line of each.
    fn lines(text: &str) -> Vec<(u32, Option<u32>)> {
        let p = Policy::compile("p.rules", text).unwrap_or_else(|e| panic!("{e:?}"));
        p.shadowed()
            .iter()
            .map(|s| (s.line, s.by.first().map(|b| b.0)))
            .collect()
    }

    #[test]
    fn the_warning_names_the_covering_line() {
        assert_eq!(
            warnings("policy loc net DROP\nACCEPT loc net 80,443 # web\nDROP loc net tcp 443\n"),
            [
                "p.rules:3: never matches: p.rules:2 (ACCEPT loc net 80,443) already takes every flow it would (warning)"
            ]
        );
    }

    #[test]
    fn ports_ranges_and_protocols_are_contained_exactly() {
        let head = "policy loc net DROP\n";
        for (earlier, later, shadowed) in [
            ("ACCEPT loc net tcp 80", "DROP loc net tcp 80", true),
            ("ACCEPT loc net tcp 80", "DROP loc net tcp 81", false),
            ("ACCEPT loc net tcp 80", "DROP loc net 80", false), // the bare port is TCP and UDP
            ("ACCEPT loc net 80", "DROP loc net udp 80", true),
            (
                "ACCEPT loc net tcp 6000:6010",
                "DROP loc net tcp 6003-6005",
                true,
            ),
            (
                "ACCEPT loc net tcp 6000:6010",
                "DROP loc net tcp 6005:6011",
                false,
            ),
            // Two ranges that meet cover what spans them.
            (
                "ACCEPT loc net tcp 1:100,101:200",
                "DROP loc net tcp 50:150",
                true,
            ),
            (
                "ACCEPT loc net tcp 1:100,102:200",
                "DROP loc net tcp 50:150",
                false,
            ),
            ("ACCEPT loc net tcp", "DROP loc net tcp 22", true),
            ("ACCEPT loc net tcp 0:65535", "DROP loc net tcp", true),
            ("ACCEPT loc net tcp 1:65535", "DROP loc net tcp", false),
            ("ACCEPT loc net all", "DROP loc net icmp 8", true),
            ("ACCEPT loc net all", "DROP loc net", true),
            // Every listed protocol is still not `all`: GRE and ESP match only `all`.
            (
                "ACCEPT loc net tcp\nACCEPT loc net udp\nACCEPT loc net icmp\nACCEPT loc net icmp6",
                "DROP loc net all",
                false,
            ),
            (
                "ACCEPT loc net icmp",
                "DROP loc net icmp echo-request",
                true,
            ),
            ("ACCEPT loc net icmp 8", "DROP loc net icmp6 128", false),
            // Macros are the ports they stand for.
            ("ACCEPT loc net tcp 22", "SSH(DROP) loc net", true),
            ("ACCEPT loc net icmp 8", "Ping(DROP) loc net", false), // Ping is ICMPv6 too
            (
                "Ping(ACCEPT) loc net",
                "DROP loc net icmp6 echo-request",
                true,
            ),
            ("DNS(ACCEPT) loc net", "DROP loc net 53", true),
            (
                "HTTPS(ACCEPT) loc net",
                "DROP loc net tcp 443 app=tls",
                true,
            ),
        ] {
            let text = format!("{head}{earlier}\n{later}\n");
            let found = lines(&text);
            let last = text.lines().count() as u32;
            assert_eq!(
                found.iter().any(|&(l, _)| l == last),
                shadowed,
                "{earlier} / {later}: {found:?}"
            );
        }
    }

    #[test]
    fn zones_all_and_address_lists() {
        let implicit = "policy loc net DROP\n";
        for (earlier, later, shadowed) in [
            ("ACCEPT all all tcp 80", "DROP loc net tcp 80", true),
            // Without zone lines `all all` is `loc net`: the only pair a flow has.
            ("ACCEPT loc net tcp 80", "DROP all all tcp 80", true),
            (
                "ACCEPT loc net:192.0.2.0/24 tcp 80",
                "DROP loc net:192.0.2.7 tcp 80",
                true,
            ),
            (
                "ACCEPT loc net:192.0.2.0/24 tcp 80",
                "DROP loc net:192.0.2.0/23 tcp 80",
                false,
            ),
            (
                "ACCEPT loc net:192.0.2.0/24 tcp 80",
                "DROP loc net tcp 80",
                false,
            ),
            (
                "ACCEPT loc net tcp 80",
                "DROP loc net:192.0.2.7 tcp 80",
                true,
            ),
            (
                "ACCEPT loc net:192.0.2.0/24,2001:db8::/32 tcp 80",
                "DROP loc net:2001:db8::1,192.0.2.255 tcp 80",
                true,
            ),
            (
                "ACCEPT loc net:192.0.2.0/24 tcp 80",
                "DROP loc net:192.0.2.7,198.51.100.1 tcp 80",
                false,
            ),
            // Halves that only together hold the network are not counted (conservative).
            (
                "ACCEPT loc net:192.0.2.0/25,192.0.2.128/25 tcp 80",
                "DROP loc net:192.0.2.0/24 tcp 80",
                false,
            ),
            (
                "ACCEPT loc:10.0.0.0/8 net tcp 80",
                "DROP loc:10.1.2.3 net tcp 80",
                true,
            ),
            (
                "ACCEPT loc:10.0.0.0/8 net tcp 80",
                "DROP loc net:10.1.2.3 tcp 80",
                false,
            ),
        ] {
            let text = format!("{implicit}{earlier}\n{later}\n");
            assert_eq!(
                lines(&text).contains(&(3, Some(2))),
                shadowed,
                "{earlier} / {later}"
            );
        }
        let zones = "zone lan 10.0.0.0/8\nzone dmz 172.16.0.0/12\npolicy all all DROP\n";
        for (earlier, later, shadowed) in [
            ("ACCEPT lan all tcp 22", "DROP lan dmz tcp 22", true),
            ("ACCEPT lan dmz tcp 22", "DROP lan all tcp 22", false),
            ("ACCEPT all all tcp 22", "DROP dmz net tcp 22", true),
            ("ACCEPT lan net tcp 22", "DROP dmz net tcp 22", false),
        ] {
            let text = format!("{zones}{earlier}\n{later}\n");
            assert_eq!(
                lines(&text).contains(&(5, Some(4))),
                shadowed,
                "{earlier} / {later}"
            );
        }
    }

    #[test]
    fn what_is_not_reported() {
        let head = "policy loc net DROP\n";
        for earlier in [
            // A payload term may not hold: the later rule still gets the flows it leaves.
            "ACCEPT loc net tcp 443 app=tls",
            "DROP loc net tcp 80 host=numeric",
            // An audited rule passes its flows on.
            "AUDIT(DROP) loc net tcp 443",
            // Narrower than what follows.
            "ACCEPT loc net tcp 443 # narrower",
            "ACCEPT loc net:192.0.2.1 all",
        ] {
            let text = format!("{head}{earlier}\nDROP loc net tcp 443,8443\n");
            assert_eq!(lines(&text), [], "{earlier}");
        }
        assert_eq!(Policy::builtin().shadowed(), [], "the built-in policy");
    }

    #[test]
    fn a_rule_that_expires_leaves_its_flows_to_later_lines() {
        let later = "DROP loc net tcp 443\n";
        let head = "policy loc net DROP\n";
        assert_eq!(
            lines(&format!("{head}ACCEPT loc net tcp 443\n{later}")),
            [(3, Some(2))]
        );
        assert_eq!(
            lines(&format!(
                "{head}ACCEPT loc net tcp 443 until=2026-12-31\n{later}"
            )),
            []
        );
    }

    #[test]
    fn an_audited_or_payload_rule_can_be_shadowed_itself() {
        assert_eq!(
            lines(
                "policy loc net DROP\nACCEPT loc net 443\nAUDIT(DROP) loc net tcp 443\nDROP loc net tcp 443 app=ssh\n"
            ),
            [(3, Some(2)), (4, Some(2))]
        );
    }

    #[test]
    fn pair_policies_for_a_pair_already_decided() {
        assert_eq!(
            warnings("policy loc net DROP\nACCEPT loc net 443\nloc net REJECT # again\n"),
            [
                "p.rules:3: never matches: p.rules:1 (policy loc net DROP) already decides every zone pair it names (warning)"
            ]
        );
        // Without zone lines `all all` is the one pair `loc net`.
        assert_eq!(
            lines("policy loc net DROP\npolicy all all REJECT\n"),
            [(2, Some(1))]
        );
        let zones = "zone lan 10.0.0.0/8\nzone dmz 172.16.0.0/12\n";
        // A later catch-all still decides the pairs no earlier line names.
        assert_eq!(
            lines(&format!(
                "{zones}policy lan net DROP\npolicy all all REJECT\n"
            )),
            []
        );
        // Two earlier lines that together decide every pair it names.
        let p = Policy::compile(
            "p.rules",
            &format!("{zones}policy lan all DROP\npolicy all all REJECT\npolicy lan dmz ACCEPT\npolicy dmz lan ACCEPT\n"),
        )
        .unwrap();
        let found = p.shadowed();
        assert_eq!(found.iter().map(|s| s.line).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(found[0].by, [(3, "policy lan all DROP".to_string())]);
        assert_eq!(found[1].by, [(4, "policy all all REJECT".to_string())]);
    }

    #[test]
    fn lines_for_a_pair_no_flow_has_without_zone_lines() {
        assert_eq!(
            warnings("policy loc net DROP\nnet loc DROP\nACCEPT net all tcp 22\n"),
            [
                "p.rules:2: never matches: without zone lines every flow goes from loc to net (warning)",
                "p.rules:3: never matches: without zone lines every flow goes from loc to net (warning)",
            ]
        );
    }

    #[test]
    fn blocks_are_first_and_last_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            block("192.0.2.77/24"),
            Some((ip("192.0.2.0"), ip("192.0.2.255")))
        );
        assert_eq!(
            block("0.0.0.0/0"),
            Some((ip("0.0.0.0"), ip("255.255.255.255")))
        );
        assert_eq!(
            block("2001:db8::1"),
            Some((ip("2001:db8::1"), ip("2001:db8::1")))
        );
        assert_eq!(
            block("2001:db8::/32"),
            Some((
                ip("2001:db8::"),
                ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
            ))
        );
        assert_eq!(block("192.0.2.1/33"), None);
    }
}

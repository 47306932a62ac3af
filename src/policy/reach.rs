//! Which rules a flow known only by its headers meets, and what of its first payload they read.
//!
//! For deciding flows from their log lines (`outgate diff`), which tell the app and the HTTP host or TLS
//! server name but not the URL or the method: a decision is only taken as known when no rule the flow
//! meets before it (or that made it) reads something the line does not tell. This does not decide
//! anything itself; [`Policy::evaluate`] does.

use super::Policy;
use super::compile::classify;
use super::parse::{Proto, Rule, Service};
use crate::decision::RuleId;
use crate::packet::Packet;

/// The payload term keys the policy language knows; a key outside it (a newer term) is never taken
/// as known.
pub const PAYLOAD_KEYS: [&str; 5] = ["app", "host", "url", "method", "sni"];

impl Policy {
    /// The rules whose zones, addresses, protocol and port match a flow whose first packet is `p`, in
    /// file order, up to and including rule `upto` (all of them when `None`): the rules first-match
    /// could look at before its answer.
    pub(crate) fn rules_met(&self, p: &Packet<'_>, upto: Option<RuleId>) -> Vec<RuleId> {
        let (s, d) = self.compiled.zones_of(&self.parsed, p);
        let class = classify(p);
        let last = upto.map_or(usize::MAX, |id| id as usize);
        self.parsed
            .rules
            .iter()
            .enumerate()
            .take_while(|(i, _)| *i <= last)
            .filter(|(_, r)| {
                r.src.zone.covers(s)
                    && r.dst.zone.covers(d)
                    && r.src.contains(p.src)
                    && r.dst.contains(p.dst)
                    && service_matches(&r.service, class)
            })
            .map(|(i, _)| i as RuleId)
            .collect()
    }
}

impl Rule {
    /// The keys of the rule's payload terms (`app`, `host`, ...), lower-case, as written.
    ///
    /// Read from the line's text, since the terms keep their parts to themselves: the parser takes
    /// every token after the port column that holds a `=` as a term, and no earlier token can hold one.
    pub(crate) fn term_keys(&self) -> Vec<String> {
        let code = self.text.split('#').next().unwrap_or("");
        code.split_whitespace()
            .filter_map(|t| t.split_once('=').map(|(k, _)| k.to_ascii_lowercase()))
            .collect()
    }
}

/// Whether a rule's protocol and port column matches a flow's (the same test as the compiled lookup's).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Reason;
    use crate::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, Transport};
    use crate::policy::Eval;
    use std::net::IpAddr;

    fn tcp(dst: &str, dport: u16) -> Packet<'static> {
        Packet::headers(
            "10.0.0.2".parse().unwrap(),
            dst.parse().unwrap(),
            PROTO_TCP,
            Transport::Tcp {
                sport: 40000,
                dport,
                seq: None,
                flags: None,
            },
        )
    }

    #[test]
    fn the_first_rule_met_is_the_one_that_decides() {
        let p = Policy::compile(
            "p",
            "zone lan 10.0.0.0/8\npolicy all all DROP\nACCEPT lan net:192.0.2.0/24 tcp 80\n\
             ACCEPT lan net 53\nPing(ACCEPT) lan net\nREJECT all all\nACCEPT lan net tcp 443\n",
        )
        .unwrap();
        let udp = |dport| {
            Packet::headers(
                "10.0.0.2".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                PROTO_UDP,
                Transport::Udp { sport: 5000, dport },
            )
        };
        let icmp = |ty| {
            Packet::headers(
                "10.0.0.2".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                PROTO_ICMP,
                Transport::Icmp {
                    icmp_type: ty,
                    code: 0,
                    ident: None,
                },
            )
        };
        let gre = Packet::headers(
            "10.0.0.2".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            47,
            Transport::Other,
        );
        let inbound = Packet::headers(
            "198.51.100.1".parse::<IpAddr>().unwrap(),
            "10.0.0.2".parse().unwrap(),
            PROTO_TCP,
            Transport::Tcp {
                sport: 5,
                dport: 80,
                seq: None,
                flags: None,
            },
        );
        for packet in [
            tcp("192.0.2.9", 80),
            tcp("198.51.100.1", 80),
            tcp("198.51.100.1", 443),
            udp(53),
            udp(54),
            icmp(8),
            icmp(0),
            gre,
            inbound,
        ] {
            let Eval::Decided(d) = p.evaluate(&packet, None, crate::Timestamp::default()) else {
                panic!("no payload rule here");
            };
            let met = p.rules_met(&packet, None);
            let first = met.first().map(|&id| Reason::Rule(id));
            assert_eq!(first.unwrap_or(d.reason), d.reason, "{packet:?}: {met:?}");
        }
        assert_eq!(p.rules_met(&tcp("192.0.2.9", 80), None), [0, 3]);
        assert_eq!(p.rules_met(&tcp("192.0.2.9", 80), Some(0)), [0]);
    }

    #[test]
    fn term_keys_are_read_from_the_line() {
        let p = Policy::compile(
            "p",
            "policy loc net ACCEPT\nDROP loc net tcp 80 url=/a=b METHOD=post # key=comment\n\
             DROP loc net:192.0.2.1 tcp 443\n",
        )
        .unwrap();
        assert_eq!(p.rules()[0].term_keys(), ["url", "method"]);
        assert!(p.rules()[1].term_keys().is_empty());
    }
}

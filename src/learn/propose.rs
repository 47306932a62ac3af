//! From flows to the proposal: flows grouped by protocol and port (or ICMP type), the groups used
//! often enough written as rules with their evidence, the others as comments.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use super::{LearnConfig, Seen, Source};
use crate::Timestamp;
use crate::log::{proto_name, rfc3339};
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::policy::Cidr;

/// Hosts or addresses named as evidence per rule.
const TOP: usize = 3;
/// Input files named in the header; the rest are counted.
const SOURCES_SHOWN: usize = 10;
/// Where a rule's comment starts, so that the comments line up.
const RULE_WIDTH: usize = 26;

/// What a rule can name: the order of the proposal (by protocol, then port or type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    /// Another IP protocol (GRE, ESP, ...), by number: only an `all` rule could open it.
    Other(u8),
}

impl Class {
    fn of(proto: u8) -> Class {
        match proto {
            PROTO_TCP => Class::Tcp,
            PROTO_UDP => Class::Udp,
            PROTO_ICMP => Class::Icmp,
            PROTO_ICMPV6 => Class::Icmp6,
            n => Class::Other(n),
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            Class::Tcp => "tcp",
            Class::Udp => "udp",
            Class::Icmp => "icmp",
            Class::Icmp6 => "icmp6",
            Class::Other(_) => "all",
        }
    }

    /// Echo requests are the ICMP a host starts on its own; the rest answers or reports on other
    /// traffic, which the kernel relates to the flow it belongs to.
    fn is_echo_request(self, selector: u16) -> bool {
        matches!((self, selector), (Class::Icmp, 8) | (Class::Icmp6, 128))
    }
}

/// Well-known ports and ICMP types, for the evidence comments: a short built-in table, so the
/// proposal does not depend on the machine's /etc/services.
fn service(class: Class, selector: u16) -> Option<&'static str> {
    Some(match (class, selector) {
        (Class::Tcp, 20) => "ftp-data",
        (Class::Tcp, 21) => "ftp",
        (Class::Tcp, 22) => "ssh",
        (Class::Tcp, 23) => "telnet",
        (Class::Tcp, 25) => "smtp",
        (Class::Tcp | Class::Udp, 53) => "dns",
        (Class::Udp, 67 | 68) => "dhcp",
        (Class::Udp, 69) => "tftp",
        (Class::Tcp, 80) => "http",
        (Class::Tcp | Class::Udp, 88) => "kerberos",
        (Class::Tcp, 110) => "pop3",
        (Class::Tcp, 119) => "nntp",
        (Class::Udp, 123) => "ntp",
        (Class::Udp, 137) => "netbios-ns",
        (Class::Tcp, 143) => "imap",
        (Class::Udp, 161) => "snmp",
        (Class::Tcp, 389) => "ldap",
        (Class::Tcp, 443) => "https",
        (Class::Udp, 443) => "quic",
        (Class::Tcp, 445) => "smb",
        (Class::Tcp, 465) => "smtps",
        (Class::Udp, 500) => "isakmp",
        (Class::Udp, 514) => "syslog",
        (Class::Tcp, 587) => "submission",
        (Class::Tcp, 636) => "ldaps",
        (Class::Tcp, 853) => "dns-over-tls",
        (Class::Tcp, 873) => "rsync",
        (Class::Tcp, 993) => "imaps",
        (Class::Tcp, 995) => "pop3s",
        (Class::Tcp, 1080) => "socks",
        (Class::Tcp | Class::Udp, 1194) => "openvpn",
        (Class::Tcp, 1723) => "pptp",
        (Class::Udp, 1900) => "ssdp",
        (Class::Tcp, 3306) => "mysql",
        (Class::Tcp, 3389) => "rdp",
        (Class::Udp, 3478) => "stun",
        (Class::Udp, 4500) => "ipsec-nat-t",
        (Class::Tcp | Class::Udp, 5060) => "sip",
        (Class::Tcp, 5222) => "xmpp",
        (Class::Udp, 5353) => "mdns",
        (Class::Tcp, 5432) => "postgresql",
        (Class::Tcp, 8080) => "http-alt",
        (Class::Tcp, 8443) => "https-alt",
        (Class::Tcp, 9418) => "git",
        (Class::Udp, 51820) => "wireguard",
        (Class::Icmp, 0) | (Class::Icmp6, 129) => "echo-reply",
        (Class::Icmp, 3) | (Class::Icmp6, 1) => "destination-unreachable",
        (Class::Icmp6, 2) => "packet-too-big",
        (Class::Icmp, 5) => "redirect",
        (Class::Icmp, 8) | (Class::Icmp6, 128) => "echo-request",
        (Class::Icmp, 11) | (Class::Icmp6, 3) => "time-exceeded",
        (Class::Icmp, 13) => "timestamp-request",
        (Class::Icmp, 14) => "timestamp-reply",
        (Class::Icmp6, 130..=132 | 143) => "multicast-listener",
        (Class::Icmp6, 133) => "router-solicitation",
        (Class::Icmp6, 134) => "router-advertisement",
        (Class::Icmp6, 135) => "neighbor-solicitation",
        (Class::Icmp6, 136) => "neighbor-advertisement",
        _ => return None,
    })
}

/// The flows of one protocol and port (or ICMP type).
#[derive(Debug, Default)]
struct Group {
    flows: u64,
    clients: BTreeSet<IpAddr>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    /// Host or TLS name when the first payload showed one, else the server's address -> flows.
    evidence: BTreeMap<String, u64>,
    /// FTP data connections its control connections announced (port 21 only).
    ftp_data: u64,
    /// Other protocols only: flows per server address, for the narrowed `all` rule suggested.
    servers: BTreeMap<IpAddr, u64>,
    /// Flows the policy in force dropped or rejected, by the log's word.
    blocked: u64,
}

/// How the flows read were used, for the header.
#[derive(Debug, Default)]
struct Tally {
    flows: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    used: u64,
    midstream: u64,
    inbound: u64,
    internal: u64,
    ftp_data: u64,
}

fn widen(first: &mut Option<Timestamp>, last: &mut Option<Timestamp>, ts: Timestamp) {
    *first = Some(first.map_or(ts, |t| t.min(ts)));
    *last = Some(last.map_or(ts, |t| t.max(ts)));
}

/// What the header says besides the counts.
pub(super) struct Header<'a> {
    pub(super) name: Option<&'a str>,
    pub(super) sources: &'a [Source],
    pub(super) capture_errors: &'a [String],
    pub(super) bad_lines: u64,
    pub(super) unmatched_host_lines: u64,
}

/// The flows, grouped.
pub(super) struct Groups<'a> {
    lan: &'a [Cidr],
    groups: BTreeMap<(Class, u16), Group>,
    tally: Tally,
}

impl<'a> Groups<'a> {
    pub(super) fn new(lan: &'a [Cidr]) -> Groups<'a> {
        Groups {
            lan,
            groups: BTreeMap::new(),
            tally: Tally::default(),
        }
    }

    pub(super) fn add(&mut self, s: &Seen) {
        let lan = self.lan;
        let local = |a: IpAddr| lan.iter().any(|n| n.contains(a));
        let t = &mut self.tally;
        t.flows += 1;
        widen(&mut t.first, &mut t.last, s.first_ts);
        if s.midstream {
            t.midstream += 1;
            return;
        }
        if !lan.is_empty() {
            if !local(s.client) {
                t.inbound += 1;
                return;
            }
            if local(s.server) {
                t.internal += 1;
                return;
            }
        }
        if s.ftp_data {
            // Opened by the kernel's helper for the control connection, whatever its port.
            t.ftp_data += 1;
            self.groups.entry((Class::Tcp, 21)).or_default().ftp_data += 1;
            return;
        }
        t.used += 1;
        let g = self
            .groups
            .entry((Class::of(s.proto), s.selector))
            .or_default();
        g.flows += 1;
        g.blocked += u64::from(s.blocked);
        g.clients.insert(s.client);
        widen(&mut g.first, &mut g.last, s.first_ts);
        let evidence = s.host.clone().unwrap_or_else(|| s.server.to_string());
        *g.evidence.entry(evidence).or_default() += 1;
        if matches!(Class::of(s.proto), Class::Other(_)) {
            *g.servers.entry(s.server).or_default() += 1;
        }
    }

    /// The proposal's text, and how many rules it holds.
    pub(super) fn render(&self, cfg: &LearnConfig, header: &Header<'_>) -> (String, usize) {
        let mut out = String::new();
        self.header(&mut out, cfg, header);
        if !self.lan.is_empty() {
            let nets: Vec<String> = self.lan.iter().map(Cidr::to_string).collect();
            let _ = writeln!(
                out,
                "zone loc {}   # --lan: the local networks; net is every other address",
                nets.join(",")
            );
        }
        let _ = writeln!(out, "policy loc net DROP   # what no rule below opens");
        let _ = writeln!(out);

        let mut proposed = 0;
        let mut seldom: Vec<String> = Vec::new();
        for (&(class, selector), g) in &self.groups {
            let evidence = evidence(class, selector, g);
            match (class, why_not(cfg, class, selector, g)) {
                (Class::Other(proto), _) => {
                    // The far end most used: `all` narrowed to it is the least this could take.
                    let server = g
                        .servers
                        .iter()
                        .max_by_key(|&(a, n)| (n, Reverse(*a)))
                        .map_or_else(|| "ADDRESS".to_string(), |(a, _)| a.to_string());
                    let ends = match g.servers.len() {
                        1 => "its far end".to_string(),
                        n => format!("the most used of its {n} far ends"),
                    };
                    let rule = format!("ACCEPT loc net:{server} all ");
                    let width = RULE_WIDTH.saturating_sub(2);
                    let why = format!(
                        "only an `all` rule opens {}, and it opens every protocol: here narrowed to \
                         {ends}",
                        proto_name(proto)
                    );
                    seldom.push(format!(
                        "# {rule:<width$}# seen: {evidence}; not proposed: {why}"
                    ));
                }
                (_, None) => {
                    proposed += 1;
                    let rule = rule(class, selector);
                    let _ = writeln!(out, "{rule:<RULE_WIDTH$}# learned: {evidence}");
                }
                (_, Some(why)) => {
                    let rule = rule(class, selector);
                    let width = RULE_WIDTH.saturating_sub(2);
                    seldom.push(format!(
                        "# {rule:<width$}# seen: {evidence}; not proposed: {why}"
                    ));
                }
            }
        }
        if proposed == 0 {
            let _ = writeln!(out, "# No port was used often enough for a rule.");
        }
        if !seldom.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "# Seen, not proposed: uncomment a rule only if that traffic is legitimate."
            );
            for line in seldom {
                let _ = writeln!(out, "{line}");
            }
        }
        (out, proposed)
    }

    fn header(&self, out: &mut String, cfg: &LearnConfig, h: &Header<'_>) {
        let t = &self.tally;
        let _ = writeln!(
            out,
            "# Proposed by `outgate learn` from the traffic below: a proposal to review, never applied by\n\
             # itself. Check it (`outgate check --policy FILE`), try it on other traffic (`outgate replay\n\
             # --policy FILE CAPTURE`), then install it and reload the daemon yourself."
        );
        if let Some(name) = h.name {
            // One line whatever was typed: a newline would end the comment.
            let name: String = name
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let _ = writeln!(out, "# Name: {name}");
        }
        let mut shown: Vec<String> = h
            .sources
            .iter()
            .take(SOURCES_SHOWN)
            .map(|s| format!("{} ({})", s.name, s.what))
            .collect();
        if h.sources.len() > SOURCES_SHOWN {
            shown.push(format!("and {} more", h.sources.len() - SOURCES_SHOWN));
        }
        let _ = writeln!(out, "# Learned from: {}", shown.join(", "));
        match (t.first, t.last) {
            (Some(first), Some(last)) if second(first) == second(last) => {
                let _ = writeln!(out, "# Flows: {}, started at {}.", t.flows, second(first));
            }
            (Some(first), Some(last)) => {
                let _ = writeln!(
                    out,
                    "# Flows: {}, started between {} and {}.",
                    t.flows,
                    second(first),
                    second(last)
                );
            }
            _ => {
                let _ = writeln!(out, "# Flows: none.");
            }
        }
        let mut used = format!("# Used: {} outbound {}", t.used, plural(t.used, "flow"));
        if t.ftp_data > 0 {
            let _ = write!(
                used,
                ", and {} FTP data {} (no rule of their own: they follow port 21's)",
                t.ftp_data,
                plural(t.ftp_data, "connection")
            );
        }
        let _ = writeln!(out, "{used}.");
        let _ = writeln!(
            out,
            "# {} {} from their middle and {} inbound {} were not used.",
            t.midstream,
            plural(t.midstream, "flow"),
            t.inbound,
            plural(t.inbound, "flow")
        );
        if t.internal > 0 {
            let _ = writeln!(
                out,
                "# {} {} between two LAN addresses were not used either (nothing here opens loc to loc:\n\
                 # add `policy loc loc ACCEPT` where outgate sees such flows, as on a host filtering its own).",
                t.internal,
                plural(t.internal, "flow")
            );
        }
        let _ = writeln!(
            out,
            "# A port gets a rule when at least {} {} from at least {} {} used it; the others are listed\n\
             # at the end.",
            cfg.min_flows,
            plural(cfg.min_flows, "flow"),
            cfg.min_clients,
            plural(cfg.min_clients, "client"),
        );
        for e in h.capture_errors {
            let _ = writeln!(out, "# Warning: {e}: what came before it was used.");
        }
        if h.bad_lines > 0 {
            let _ = writeln!(
                out,
                "# Warning: {} log {} not understood, left out (listed on stderr).",
                h.bad_lines,
                if h.bad_lines == 1 {
                    "line was"
                } else {
                    "lines were"
                }
            );
        }
        if h.unmatched_host_lines > 0 {
            let _ = writeln!(
                out,
                "# {} HTTP/TLS log {} named a connection no flow line or capture holds, left out.",
                h.unmatched_host_lines,
                plural(h.unmatched_host_lines, "line")
            );
        }
        let _ = writeln!(out);
    }
}

/// Why a group gets no rule; `None` when it gets one.
fn why_not(cfg: &LearnConfig, class: Class, selector: u16, g: &Group) -> Option<String> {
    if matches!(class, Class::Icmp | Class::Icmp6) && !class.is_echo_request(selector) {
        return Some("only echo requests are proposed".into());
    }
    if g.blocked == g.flows {
        return Some(
            "the policy in force blocked every one of these flows: open it on purpose, not by learning"
                .into(),
        );
    }
    if g.flows < cfg.min_flows {
        return Some(format!("fewer than {} flows (--min-flows)", cfg.min_flows));
    }
    let clients = g.clients.len() as u64;
    if clients < cfg.min_clients {
        let one = if clients == 1 {
            "one client only".to_string()
        } else {
            format!("{clients} clients")
        };
        return Some(format!(
            "{one}, fewer than {} (--min-clients)",
            cfg.min_clients
        ));
    }
    None
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// `ACCEPT loc net tcp 443`.
fn rule(class: Class, selector: u16) -> String {
    format!("ACCEPT loc net {} {selector} ", class.keyword())
}

/// `2024-03-01T09:00:00Z`: the header's precision.
fn second(ts: Timestamp) -> String {
    let full = rfc3339(ts);
    format!("{}Z", full.get(..19).unwrap_or(&full))
}

/// `2024-03-01T09:00Z`: a rule's first and last seen.
fn minute(ts: Timestamp) -> String {
    let full = rfc3339(ts);
    format!("{}Z", full.get(..16).unwrap_or(&full))
}

/// `https, 4 flows, 3 clients, first ..., last ..., top: www.example.org (2), ...`; for other IP
/// protocols the protocol's name comes first.
fn evidence(class: Class, selector: u16, g: &Group) -> String {
    let mut out = String::new();
    let name = match class {
        Class::Other(proto) => Some(proto_name(proto)),
        _ => service(class, selector).map(Cow::Borrowed),
    };
    if let Some(name) = name {
        let _ = write!(out, "{name}, ");
    }
    let clients = g.clients.len() as u64;
    let _ = write!(
        out,
        "{} {}, {clients} {}",
        g.flows,
        plural(g.flows, "flow"),
        plural(clients, "client")
    );
    if g.blocked > 0 {
        let _ = write!(out, ", {} blocked when logged", g.blocked);
    }
    if g.ftp_data > 0 {
        let _ = write!(
            out,
            ", {} FTP data {}",
            g.ftp_data,
            plural(g.ftp_data, "connection")
        );
    }
    if let (Some(first), Some(last)) = (g.first, g.last) {
        let _ = write!(out, ", first {}, last {}", minute(first), minute(last));
    }
    let mut top: Vec<(&String, &u64)> = g.evidence.iter().collect();
    top.sort_by_key(|&(name, n)| (Reverse(*n), name));
    if !top.is_empty() {
        let names: Vec<String> = top
            .iter()
            .take(TOP)
            .map(|(name, n)| format!("{name} ({n})"))
            .collect();
        let _ = write!(out, ", top: {}", names.join(", "));
        if top.len() > TOP {
            let _ = write!(out, " and {} more", top.len() - TOP);
        }
    }
    out
}

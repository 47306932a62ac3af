//! Policy text -> checked lines ([`Parsed`]), with every error as `FILE:LINE:COL: message`.
//!
//! One statement a line; `#` starts a comment anywhere; keywords are case-insensitive; zone names are not.
//!
//! ```text
//! zone NAME CIDR[,CIDR...]                    declare a zone (IPv4 and IPv6 networks)
//! policy SRC DST ACTION                       the default for a zone pair (Shorewall's policy file)
//! SRC DST ACTION                              the same, as the article writes it
//! ACTION SRC DST [PROTO [DPORT]] [TERM...]    a rule; first match wins
//! MACRO(ACTION) SRC DST                       SSH, Ping, DNS, HTTP, HTTPS, NTP
//! option NAME VALUE...                        malformed ACTION | midstream ACTION | timeout PROTO SECONDS
//!                                             | max-flows N | inspect-packets N | inspect-bytes N
//!                                             | inspect-time SECONDS | inspect-memory BYTES | inspect-limit ACTION
//! ```
//!
//! SRC and DST are a zone, `all`, or `zone:CIDR[,CIDR...]`. PROTO is tcp, udp, icmp, icmp6 (ipv6-icmp) or
//! all. A bare port spec where PROTO stands (`443`, `80,443`, `6000:6010`) is a destination port on TCP and
//! UDP: the article's shorthand (real Shorewall would read a bare number as an IP protocol number). For
//! icmp/icmp6 the DPORT column holds ICMP types. TERM is `key=value`, reserved for payload match terms
//! (HTTP host, TLS SNI, app protocol); an unknown key is an error, so a typo never silently widens a rule.

use std::fmt;
use std::net::IpAddr;

use std::path::Path;

use super::action::{self, Class, LineAction, MAX_CLASSES, Rate};
use super::terms::Terms;
use super::until::Expiry;
use crate::decision::Verdict;
use crate::flow::{FlowConfig, Timeouts};

/// One error in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// An IPv4 or IPv6 network; IPv4 is held as its IPv4-mapped IPv6 form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    prefix: u8,
    v4: bool,
}

fn mapped(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Cidr {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            None => max,
            Some(p) => p
                .parse()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("bad prefix length '/{p}' (expected 0 to {max})"))?,
        };
        let prefix = if addr.is_ipv4() { prefix + 96 } else { prefix };
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        };
        Ok(Cidr {
            net: mapped(addr) & mask,
            prefix,
            v4: addr.is_ipv4(),
        })
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        if a.is_ipv4() != self.v4 {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        mapped(a) & mask == self.net
    }
}

/// `10.0.0.0/8`, `fd00::/8`: the network as a policy's `zone` line writes it (host bits cleared).
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v4 {
            let a = std::net::Ipv4Addr::from(self.net as u32);
            write!(f, "{a}/{}", self.prefix - 96)
        } else {
            let a = std::net::Ipv6Addr::from(self.net);
            write!(f, "{a}/{}", self.prefix)
        }
    }
}

/// A zone in a rule or policy line: one zone (index into [`Parsed::zones`]) or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneSel {
    All,
    Zone(usize),
}

impl ZoneSel {
    pub fn covers(self, zone: usize) -> bool {
        matches!(self, ZoneSel::All) || self == ZoneSel::Zone(zone)
    }
}

/// SRC or DST of a rule: a zone, optionally narrowed to some networks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub zone: ZoneSel,
    /// Empty: the whole zone.
    pub nets: Vec<Cidr>,
}

impl Endpoint {
    pub fn contains(&self, a: IpAddr) -> bool {
        self.nets.is_empty() || self.nets.iter().any(|n| n.contains(a))
    }
}

/// The protocol classes a rule can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Icmp6];

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmp6 => "icmp6",
        }
    }

    /// Ports (tcp/udp) range to 65535, ICMP types to 255.
    pub fn max_selector(self) -> u16 {
        match self {
            Proto::Tcp | Proto::Udp => u16::MAX,
            Proto::Icmp | Proto::Icmp6 => 255,
        }
    }
}

/// Inclusive ranges of destination ports (tcp/udp) or ICMP types.
pub type Ranges = Vec<(u16, u16)>;

/// What a rule matches above IP: every protocol, or a list of (protocol, optional ports/types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    Any,
    /// `None`: every port or type of that protocol.
    Of(Vec<(Proto, Option<Ranges>)>),
}

/// A rule line.
#[derive(Clone, Debug)]
pub struct Rule {
    pub line: u32,
    /// The line as written (comment included), trimmed.
    pub text: String,
    pub verdict: Verdict,
    /// For SHAPE: the index of its class in [`Parsed::classes`].
    pub class: u8,
    /// `AUDIT(...)`: logged and counted as it would decide, not enforced.
    pub audit: bool,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub service: Service,
    /// Payload match terms; empty for a rule decided on a flow's first packet.
    pub terms: Terms,
    /// `until=`: from this moment (Unix seconds) the line no longer matches.
    pub until: Option<Expiry>,
}

/// A `policy` line: the default for a zone pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairPolicy {
    pub line: u32,
    pub text: String,
    pub src: ZoneSel,
    pub dst: ZoneSel,
    pub verdict: Verdict,
    pub class: u8,
    pub audit: bool,
}

/// A declared zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub nets: Vec<Cidr>,
    pub line: u32,
}

/// Settings from `option` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Verdict for packets that cannot be read far enough, and for orphan fragments.
    pub malformed: Verdict,
    /// Verdict for a TCP flow seen first in its middle when a payload rule would decide it.
    pub midstream: Verdict,
    /// The flow table's settings, including how long a flow's first payload is waited for.
    pub flows: FlowConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            malformed: Verdict::Drop,
            // A reset, not a silent drop: the client's application notices at once and opens a new
            // connection, whose first payload is read.
            midstream: Verdict::Reject,
            flows: FlowConfig::default(),
        }
    }
}

/// A policy file, checked line by line.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// Declared zones; empty means the implicit pair: `loc` (the initiator) and `net` (the other end).
    pub zones: Vec<Zone>,
    pub pair_policies: Vec<PairPolicy>,
    pub rules: Vec<Rule>,
    /// Traffic classes for SHAPE: `slow` first when `option shape-rate` is set, then `class` lines.
    pub classes: Vec<Class>,
    pub options: Options,
}

/// The names `loc` and `net` when no zone is declared.
pub const IMPLICIT_ZONES: [&str; 2] = ["loc", "net"];

struct Token<'a> {
    text: &'a str,
    col: u32,
}

fn tokens(line: &str) -> Vec<Token<'_>> {
    let code = line.split('#').next().unwrap_or("");
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in code
        .char_indices()
        .chain(std::iter::once((code.len(), ' ')))
    {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                let col = code[..s].chars().count() as u32 + 1;
                out.push(Token {
                    text: &code[s..i],
                    col,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

struct LineParser<'p> {
    file: &'p str,
    line: u32,
    text: &'p str,
    zone_names: &'p [String],
    class_names: &'p [String],
}

type Fail = (u32, String);

impl LineParser<'_> {
    fn zone(&self, t: &Token<'_>) -> Result<ZoneSel, Fail> {
        if t.text.eq_ignore_ascii_case("all") {
            return Ok(ZoneSel::All);
        }
        match self.zone_names.iter().position(|z| z == t.text) {
            Some(i) => Ok(ZoneSel::Zone(i)),
            None => Err((
                t.col,
                format!(
                    "unknown zone '{}' (expected one of: {}, all)",
                    t.text,
                    self.zone_names.join(", ")
                ),
            )),
        }
    }

    fn endpoint(&self, t: &Token<'_>) -> Result<Endpoint, Fail> {
        let (zone, nets) = match t.text.split_once(':') {
            // An IPv6 address has colons too: only the first colon after a zone name splits.
            Some((z, nets))
                if !z.is_empty() && !z.contains(['.', '/']) && z.parse::<u16>().is_err() =>
            {
                (z, Some(nets))
            }
            _ => (t.text, None),
        };
        let zone = self.zone(&Token {
            text: zone,
            col: t.col,
        })?;
        let nets = match nets {
            None => Vec::new(),
            Some(list) => {
                let col = t.col + t.text.find(':').unwrap_or(0) as u32 + 1;
                list.split(',')
                    .map(Cidr::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| (col, e))?
            }
        };
        Ok(Endpoint { zone, nets })
    }

    fn verdict(&self, t: &Token<'_>) -> Result<Verdict, Fail> {
        Verdict::from_keyword(t.text)
            .filter(|v| *v != Verdict::Shape)
            .ok_or_else(|| {
                (
                    t.col,
                    format!(
                        "unknown action '{}' (expected ACCEPT, DROP or REJECT)",
                        t.text
                    ),
                )
            })
    }

    fn action(&self, text: &str, col: u32) -> Result<LineAction, Fail> {
        action::parse(text, col, self.class_names)
    }

    /// `class NAME RATE` (the name itself was collected in the first pass).
    fn class_line(&self, toks: &[Token<'_>]) -> Result<Class, Fail> {
        let [_, name, rate] = toks else {
            let col = toks.get(3).map_or(toks[0].col, |t| t.col);
            return Err((
                col,
                "expected 'class NAME RATE', like 'class bulk 2mbit'".into(),
            ));
        };
        Ok(Class {
            name: name.text.to_string(),
            rate: Rate::parse(rate.text).map_err(|e| (rate.col, e))?,
            line: self.line,
        })
    }

    /// `zone NAME CIDR[,CIDR...]` (the name itself was collected in the first pass).
    fn zone_line(&self, toks: &[Token<'_>]) -> Result<Zone, Fail> {
        let [_, name, nets] = toks else {
            let col = toks.get(3).map_or(toks[0].col, |t| t.col);
            return Err((col, "expected 'zone NAME CIDR[,CIDR...]'".into()));
        };
        if name.text.eq_ignore_ascii_case("all")
            || !name
                .text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err((
                name.col,
                format!(
                    "'{}' cannot name a zone (letters, digits, '-' and '_'; not 'all')",
                    name.text
                ),
            ));
        }
        let nets = nets
            .text
            .split(',')
            .map(Cidr::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| (nets.col, e))?;
        Ok(Zone {
            name: name.text.to_string(),
            nets,
            line: self.line,
        })
    }

    /// `[policy] SRC DST ACTION`.
    fn policy_line(&self, toks: &[Token<'_>]) -> Result<PairPolicy, Fail> {
        let [src, dst, action, rest @ ..] = toks else {
            let col = toks.last().map_or(1, |t| t.col);
            return Err((col, "expected 'policy SRC DST ACTION'".into()));
        };
        if let Some(extra) = rest.first() {
            return Err((
                extra.col,
                format!("unexpected '{}' after the policy's action", extra.text),
            ));
        }
        let a = self.action(action.text, action.col)?;
        Ok(PairPolicy {
            line: self.line,
            text: self.text.trim().to_string(),
            src: self.zone(src)?,
            dst: self.zone(dst)?,
            verdict: a.verdict,
            class: a.class,
            audit: a.audit,
        })
    }

    /// `ACTION SRC DST [PROTO [DPORT]] [TERM...]` or `MACRO(ACTION) SRC DST`.
    fn rule_line(&self, toks: &[Token<'_>]) -> Result<Rule, Fail> {
        let [action, src, dst, rest @ ..] = toks else {
            let col = toks.last().map_or(1, |t| t.col);
            return Err((col, "expected 'ACTION SRC DST [PROTO [DPORT]]'".into()));
        };
        let (head, inner) = action::split_call(action.text, action.col)?;
        let (act, macro_service) = match (macro_service(head), inner) {
            (Some(service), Some(inner)) => (
                self.action(inner, action.col + head.len() as u32 + 1)?,
                Some(service),
            ),
            (Some(_), None) => {
                return Err((
                    action.col,
                    format!("a macro takes an action: {head}(ACCEPT)"),
                ));
            }
            (None, _) if action::looks_like_action(action.text) => {
                (self.action(action.text, action.col)?, None)
            }
            (None, _) => {
                return Err((
                    action.col,
                    format!(
                        "unknown macro or action '{head}' (macros: {})",
                        MACROS.join(", ")
                    ),
                ));
            }
        };
        let (src, dst) = (self.endpoint(src)?, self.endpoint(dst)?);
        let positional: Vec<&Token<'_>> =
            rest.iter().take_while(|t| !t.text.contains('=')).collect();
        let mut terms = Terms::default();
        let mut until = None;
        let dir = Path::new(self.file).parent().unwrap_or(Path::new(""));
        for t in &rest[positional.len()..] {
            let (key, value) = t.text.split_once('=').ok_or_else(|| {
                (
                    t.col,
                    format!(
                        "expected a match term KEY=VALUE after '{}', found '{}'",
                        rest[0].text, t.text
                    ),
                )
            })?;
            if key.eq_ignore_ascii_case("until") {
                if until.is_some() {
                    return Err((t.col, "until= is given twice".to_string()));
                }
                let col = t.col + key.len() as u32 + 1;
                until = Some(super::until::parse(value).map_err(|m| (col, m))?);
                continue;
            }
            terms
                .add(key, value, dir)
                .map_err(|(offset, m)| (t.col + offset as u32, m))?;
        }
        let service = match (macro_service, positional.as_slice()) {
            (Some(s), []) => s,
            (Some(_), [t, ..]) => {
                return Err((
                    t.col,
                    format!("a macro sets protocol and port itself; remove '{}'", t.text),
                ));
            }
            (None, []) => Service::Any,
            (None, [proto]) => proto_only(proto)?,
            (None, [proto, ports]) => proto_ports(proto, ports)?,
            (None, [_, _, extra, ..]) => {
                return Err((
                    extra.col,
                    format!("unexpected '{}' after the port column", extra.text),
                ));
            }
        };
        Ok(Rule {
            line: self.line,
            text: self.text.trim().to_string(),
            verdict: act.verdict,
            class: act.class,
            audit: act.audit,
            src,
            dst,
            service,
            terms,
            until,
        })
    }

    fn option_line(&self, toks: &[Token<'_>], options: &mut Options) -> Result<(), Fail> {
        let name = toks
            .get(1)
            .ok_or((toks[0].col, "expected 'option NAME VALUE'".to_string()))?;
        let value = |i: usize| {
            toks.get(i)
                .ok_or((name.col, format!("option '{}' needs a value", name.text)))
        };
        let number = |t: &Token<'_>| -> Result<u64, Fail> {
            t.text.parse().map_err(|_| {
                (
                    t.col,
                    format!("expected a whole number, found '{}'", t.text),
                )
            })
        };
        let expected_len = match name.text.to_ascii_lowercase().as_str() {
            "malformed" => {
                options.malformed = self.verdict(value(2)?)?;
                3
            }
            "shape-rate" => {
                // Its class was made in the first pass; here the rate is checked.
                let t = value(2)?;
                Rate::parse(t.text).map_err(|e| (t.col, e))?;
                3
            }
            "max-flows" => {
                let t = value(2)?;
                let n = number(t)?;
                options.flows.max_flows = usize::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or((t.col, "max-flows must be at least 1".to_string()))?;
                3
            }
            "timeout" => {
                let (proto, secs) = (value(2)?, value(3)?);
                let secs = number(secs)?;
                let t: &mut Timeouts = &mut options.flows.timeouts;
                let slot = match proto.text.to_ascii_lowercase().as_str() {
                    "tcp" => &mut t.tcp,
                    "tcp-closed" => &mut t.tcp_closed,
                    "udp" => &mut t.udp,
                    "icmp" => &mut t.icmp,
                    "other" => &mut t.other,
                    other => {
                        return Err((
                            proto.col,
                            format!(
                                "unknown timeout '{other}' (expected tcp, tcp-closed, udp, icmp or other)"
                            ),
                        ));
                    }
                };
                *slot = secs;
                4
            }
            "inspect-packets" | "inspect-bytes" | "inspect-time" | "inspect-memory" => {
                let key = name.text.to_ascii_lowercase();
                let t = value(2)?;
                let n = number(t)?;
                let max: u64 = match key.as_str() {
                    "inspect-time" => 3600,
                    "inspect-memory" => 1 << 40,
                    _ => 1 << 20,
                };
                if !(1..=max).contains(&n) {
                    return Err((t.col, format!("{key} must be from 1 to {max}")));
                }
                let inspect = &mut options.flows.inspect;
                match key.as_str() {
                    "inspect-packets" => inspect.packets = n as u32,
                    "inspect-bytes" => inspect.bytes = n as usize,
                    "inspect-time" => inspect.time = n,
                    _ => inspect.memory = n as usize,
                }
                3
            }
            "inspect-limit" => {
                options.flows.inspect.limit = self.verdict(value(2)?)?;
                3
            }
            "midstream" => {
                options.midstream = self.verdict(value(2)?)?;
                3
            }
            other => {
                return Err((
                    name.col,
                    format!(
                        "unknown option '{other}' (expected malformed, midstream, shape-rate, timeout, \
                         max-flows, inspect-packets, inspect-bytes, inspect-time, inspect-memory or inspect-limit)"
                    ),
                ));
            }
        };
        match toks.get(expected_len) {
            Some(extra) => Err((
                extra.col,
                format!("unexpected '{}' after the option's value", extra.text),
            )),
            None => Ok(()),
        }
    }
}

const MACROS: [&str; 6] = ["SSH", "Ping", "DNS", "HTTP", "HTTPS", "NTP"];

/// Shorewall's standard macros, as their macro files define them.
fn macro_service(name: &str) -> Option<Service> {
    let one = |p: Proto, n: u16| (p, Some(vec![(n, n)]));
    let list = match name.to_ascii_lowercase().as_str() {
        "ssh" => vec![one(Proto::Tcp, 22)],
        "ping" => vec![one(Proto::Icmp, 8), one(Proto::Icmp6, 128)],
        "dns" => vec![one(Proto::Udp, 53), one(Proto::Tcp, 53)],
        "http" => vec![one(Proto::Tcp, 80)],
        "https" => vec![one(Proto::Tcp, 443)],
        "ntp" => vec![one(Proto::Udp, 123)],
        _ => return None,
    };
    Some(Service::Of(list))
}

fn proto_keyword(t: &Token<'_>) -> Option<Option<Proto>> {
    Some(match t.text.to_ascii_lowercase().as_str() {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "icmp" => Some(Proto::Icmp),
        "icmp6" | "ipv6-icmp" | "icmpv6" => Some(Proto::Icmp6),
        "all" | "-" => None,
        _ => return None,
    })
}

fn looks_like_ports(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | ':' | '-'))
}

/// PROTO alone: a protocol keyword, or the article's bare port spec (TCP and UDP).
fn proto_only(t: &Token<'_>) -> Result<Service, Fail> {
    match proto_keyword(t) {
        Some(None) => Ok(Service::Any),
        Some(Some(p)) => Ok(Service::Of(vec![(p, None)])),
        None if looks_like_ports(t.text) => {
            let r = ranges(t, Proto::Tcp)?;
            Ok(Service::Of(vec![
                (Proto::Tcp, Some(r.clone())),
                (Proto::Udp, Some(r)),
            ]))
        }
        None => Err((
            t.col,
            format!(
                "unknown protocol '{}' (expected tcp, udp, icmp, icmp6, all or a port)",
                t.text
            ),
        )),
    }
}

fn proto_ports(proto: &Token<'_>, ports: &Token<'_>) -> Result<Service, Fail> {
    match proto_keyword(proto) {
        Some(Some(p)) => Ok(Service::Of(vec![(p, Some(ranges(ports, p)?))])),
        Some(None) => Err((
            ports.col,
            "a port or type needs a protocol: tcp, udp, icmp or icmp6".into(),
        )),
        None if looks_like_ports(proto.text) => Err((
            ports.col,
            format!(
                "'{}' is already a port; expected nothing after it",
                proto.text
            ),
        )),
        None => Err((
            proto.col,
            format!(
                "unknown protocol '{}' (expected tcp, udp, icmp, icmp6 or all)",
                proto.text
            ),
        )),
    }
}

/// `N`, `N,M`, `N:M` (Shorewall's range) or `N-M`; for ICMP also `echo-request` / `echo-reply`.
fn ranges(t: &Token<'_>, proto: Proto) -> Result<Ranges, Fail> {
    let what = if matches!(proto, Proto::Icmp | Proto::Icmp6) {
        "ICMP type"
    } else {
        "port"
    };
    let max = proto.max_selector();
    let number = |s: &str| -> Result<u16, Fail> {
        let named = match (proto, s.to_ascii_lowercase().as_str()) {
            (Proto::Icmp, "echo-request") => Some(8),
            (Proto::Icmp, "echo-reply") => Some(0),
            (Proto::Icmp6, "echo-request") => Some(128),
            (Proto::Icmp6, "echo-reply") => Some(129),
            _ => None,
        };
        named
            .or_else(|| s.parse::<u16>().ok().filter(|&n| n <= max))
            .ok_or_else(|| (t.col, format!("bad {what} '{s}' (expected 0 to {max})")))
    };
    t.text
        .split(',')
        .map(|item| {
            // A name like `echo-request` holds a dash too: only a non-name splits as a range.
            let whole = !item.starts_with(|c: char| c.is_ascii_digit());
            let (a, b) = if whole {
                (item, item)
            } else {
                item.split_once([':', '-']).unwrap_or((item, item))
            };
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err((t.col, format!("{what} range '{item}' runs backwards")));
            }
            Ok((a, b))
        })
        .collect()
}

/// Parses a policy file's text. `file` is the name errors and citations use.
pub fn parse(file: &str, text: &str) -> Result<Parsed, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let mut err = |line: u32, (col, message): Fail| {
        errors.push(PolicyError {
            file: file.to_string(),
            line,
            col,
            message,
        });
    };
    let lines: Vec<(u32, &str, Vec<Token<'_>>)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i as u32 + 1, l, tokens(l)))
        .filter(|(_, _, t)| !t.is_empty())
        .collect();
    let is_kw = |t: &Token<'_>, kw: &str| t.text.eq_ignore_ascii_case(kw);

    // Pass 1: zone names, so lines may use a zone declared further down (Shorewall keeps them in another file).
    let mut zone_names: Vec<String> = Vec::new();
    for (n, _, toks) in &lines {
        if let (true, Some(name)) = (is_kw(&toks[0], "zone"), toks.get(1)) {
            if zone_names.iter().any(|z| z == name.text) {
                err(
                    *n,
                    (name.col, format!("zone '{}' is declared twice", name.text)),
                );
            } else {
                zone_names.push(name.text.to_string());
            }
        }
    }
    if zone_names.is_empty() {
        zone_names = IMPLICIT_ZONES.iter().map(|s| s.to_string()).collect();
    } else if !zone_names.iter().any(|z| z == "net") {
        // `net` is the catch-all for addresses in no declared zone; its index follows the declared ones.
        zone_names.push("net".to_string());
    }

    // Pass 1 too: class names (SHAPE(bulk) may come before `class bulk ...`); `slow` for shape-rate.
    let mut class_names: Vec<String> = Vec::new();
    let mut shape_rate: Option<(u32, &str)> = None;
    for (n, _, toks) in &lines {
        match (toks.first(), toks.get(1), toks.get(2)) {
            (Some(o), Some(name), Some(rate))
                if is_kw(o, "option") && name.text.eq_ignore_ascii_case("shape-rate") =>
            {
                shape_rate = Some((*n, rate.text));
            }
            (Some(c), Some(name), _) if is_kw(c, "class") => {
                let valid = name
                    .text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid || name.text == action::DEFAULT_CLASS {
                    err(
                        *n,
                        (
                            name.col,
                            format!(
                                "'{}' cannot name a class (letters, digits, '-' and '_'; not '{}', which option shape-rate makes)",
                                name.text,
                                action::DEFAULT_CLASS
                            ),
                        ),
                    );
                } else if class_names.iter().any(|c| c == name.text) {
                    err(
                        *n,
                        (name.col, format!("class '{}' is declared twice", name.text)),
                    );
                } else {
                    class_names.push(name.text.to_string());
                }
            }
            _ => {}
        }
    }
    let mut parsed = Parsed::default();
    if let Some((line, rate)) = shape_rate {
        class_names.insert(0, action::DEFAULT_CLASS.to_string());
        if let Ok(rate) = Rate::parse(rate) {
            parsed.classes.push(Class {
                name: action::DEFAULT_CLASS.to_string(),
                rate,
                line,
            });
        }
    }
    if class_names.len() > MAX_CLASSES {
        err(
            1,
            (
                1,
                format!(
                    "{} traffic classes; at most {MAX_CLASSES}",
                    class_names.len()
                ),
            ),
        );
    }
    for (n, text, toks) in &lines {
        let lp = LineParser {
            file,
            line: *n,
            text,
            zone_names: &zone_names,
            class_names: &class_names,
        };
        let first = &toks[0];
        let result = if is_kw(first, "zone") {
            lp.zone_line(toks).map(|z| parsed.zones.push(z))
        } else if is_kw(first, "policy") {
            lp.policy_line(&toks[1..])
                .map(|p| parsed.pair_policies.push(p))
        } else if is_kw(first, "option") {
            lp.option_line(toks, &mut parsed.options)
        } else if is_kw(first, "class") {
            lp.class_line(toks).map(|c| parsed.classes.push(c))
        } else if action::looks_like_action(first.text) || first.text.contains('(') {
            lp.rule_line(toks).map(|r| parsed.rules.push(r))
        } else if toks
            .get(2)
            .is_some_and(|t| action::looks_like_action(t.text))
        {
            lp.policy_line(toks).map(|p| parsed.pair_policies.push(p))
        } else {
            Err((
                first.col,
                format!(
                    "'{}' does not start a statement (expected ACCEPT, DROP, REJECT, SHAPE, AUDIT(...), a macro, policy, zone, class or option)",
                    first.text
                ),
            ))
        };
        if let Err(e) = result {
            err(*n, e);
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        errors.sort_by_key(|e| (e.line, e.col));
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_error(text: &str) -> PolicyError {
        let errs = parse("p.rules", text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn article_lines_parse() {
        let p = parse(
            "p",
            "loc net DROP\nACCEPT loc net 13 # time\nACCEPT loc net ICMP 8 # ping\n",
        )
        .unwrap();
        assert_eq!(p.pair_policies[0].verdict, Verdict::Drop);
        assert_eq!(
            p.rules[0].service,
            Service::Of(vec![
                (Proto::Tcp, Some(vec![(13, 13)])),
                (Proto::Udp, Some(vec![(13, 13)]))
            ])
        );
        assert_eq!(
            p.rules[1].service,
            Service::Of(vec![(Proto::Icmp, Some(vec![(8, 8)]))])
        );
        assert_eq!(p.rules[1].text, "ACCEPT loc net ICMP 8 # ping");
    }

    #[test]
    fn forms_and_keywords() {
        let p = parse(
            "p",
            "zone lan 10.0.0.0/8,fd00::/8\nzone wan 0.0.0.0/0\npolicy lan wan REJECT\n\
             accept lan wan:192.0.2.0/24,2001:db8::1 tcp 80,443,6000:6010\nSSH(ACCEPT) lan all\n\
             option malformed ACCEPT\noption timeout udp 30\noption max-flows 1000\n",
        )
        .unwrap();
        assert_eq!(p.zones.len(), 2);
        assert_eq!(p.rules[0].dst.nets.len(), 2);
        assert!(p.rules[0].dst.contains("2001:db8::1".parse().unwrap()));
        assert!(!p.rules[0].dst.contains("192.0.3.1".parse().unwrap()));
        assert_eq!(
            p.rules[0].service,
            Service::Of(vec![(
                Proto::Tcp,
                Some(vec![(80, 80), (443, 443), (6000, 6010)])
            )])
        );
        assert_eq!(p.rules[1].dst.zone, ZoneSel::All);
        assert_eq!(p.options.malformed, Verdict::Accept);
        assert_eq!(
            (p.options.flows.timeouts.udp, p.options.flows.max_flows),
            (30, 1000)
        );
        let q = parse(
            "p",
            "ACCEPT loc net icmp6 echo-request,1-4\nACCEPT loc net icmp echo-reply",
        )
        .unwrap();
        assert_eq!(
            q.rules[0].service,
            Service::Of(vec![(Proto::Icmp6, Some(vec![(128, 128), (1, 4)]))])
        );
        assert_eq!(
            q.rules[1].service,
            Service::Of(vec![(Proto::Icmp, Some(vec![(0, 0)]))])
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = one_error("loc net DROP\nACCEPT loc lan 80\n");
        assert_eq!((e.line, e.col), (2, 12));
        assert_eq!(
            e.to_string(),
            "p.rules:2:12: unknown zone 'lan' (expected one of: loc, net, all)"
        );
        assert_eq!(one_error("ACCEPT loc net tcp 70000").col, 20);
        assert!(
            one_error("ACCEPT loc net tcp 90:80")
                .message
                .contains("backwards")
        );
        assert!(
            one_error("ALLOW loc net 80")
                .message
                .contains("does not start a statement")
        );
        let e = one_error("ACCEPT loc net tcp 80 hots=numeric");
        assert_eq!(e.col, 23);
        assert!(
            e.message.contains("unknown match term 'hots='"),
            "{}",
            e.message
        );
        let e = one_error("DROP loc net tcp 443 app=tls,sshh");
        assert_eq!(e.col, 26);
        assert!(e.message.contains("unknown app 'sshh'"), "{}", e.message);
        assert!(
            one_error("DROP loc net tcp 80 url=/a url=/b")
                .message
                .contains("appears twice")
        );
        assert!(
            one_error("DROP loc net tcp 80 host=@missing.txt")
                .message
                .contains("cannot read host list")
        );
        assert!(
            one_error("DROP loc net tcp 80 host=")
                .message
                .contains("needs a value")
        );
        assert!(
            one_error("DROP loc net tcp 80 host=numeric junk")
                .message
                .contains("expected a match term")
        );
        assert!(
            one_error("SSH(ACCEPT) loc net tcp")
                .message
                .contains("macro sets protocol")
        );
        assert!(
            one_error("Telnet(ACCEPT) loc net")
                .message
                .contains("unknown macro")
        );
        assert!(one_error("zone lan 10.0.0.0/33").message.contains("prefix"));
        assert!(
            one_error("loc net DROP info")
                .message
                .contains("unexpected 'info'")
        );
        assert!(
            one_error("option timeout tcp soon")
                .message
                .contains("whole number")
        );
    }

    #[test]
    fn every_error_is_reported() {
        let errs = parse("p", "ACCEPT loc lan 80\nACCEPT loc net bogus\nnonsense\n").unwrap_err();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn comments_and_blank_lines() {
        let p = parse("p", "# only a comment\n\n   \nACCEPT loc net 443# https\n").unwrap();
        assert_eq!(p.rules[0].line, 4);
    }

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::a01:203".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            !Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("::/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn cidr_prints_as_a_zone_line_writes_it() {
        for (given, shown) in [
            ("10.1.2.3/16", "10.1.0.0/16"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("fd00::2/8", "fd00::/8"),
            ("2001:db8::1", "2001:db8::1/128"),
        ] {
            let c = Cidr::parse(given).unwrap();
            assert_eq!(c.to_string(), shown);
            assert_eq!(Cidr::parse(shown).unwrap(), c, "{shown} reads back");
        }
    }
}

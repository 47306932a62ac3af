//! Rule and `policy` lines: [`Rule`], [`PairPolicy`], and what a rule matches above IP ([`Proto`],
//! [`Service`]: protocol keywords, port and ICMP type ranges, Shorewall's macros).

use std::path::Path;

use super::zone::{Endpoint, ZoneSel};
use super::{Fail, LineParser, Token};
use crate::decision::Verdict;
use crate::policy::action::{self, LineAction};
use crate::policy::terms::Terms;
use crate::policy::until::Expiry;

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
    /// For SHAPE: the index of its class in [`Parsed::classes`](super::Parsed::classes).
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

impl LineParser<'_> {
    fn action(&self, text: &str, col: u32) -> Result<LineAction, Fail> {
        action::parse(text, col, self.class_names)
    }

    /// `[policy] SRC DST ACTION`.
    pub(super) fn policy_line(&self, toks: &[Token<'_>]) -> Result<PairPolicy, Fail> {
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
    pub(super) fn rule_line(&self, toks: &[Token<'_>]) -> Result<Rule, Fail> {
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
                until = Some(crate::policy::until::parse(value).map_err(|m| (col, m))?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse::parse;

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
}

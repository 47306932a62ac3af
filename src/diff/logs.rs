//! Flow log lines in: each line a flow, decided under both policies from what it says (see the module
//! docs of [`super`] for what a line tells and what it cannot).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Builder, DiffError, Facts, Input, Said};
use crate::calendar::parse_rfc3339;
use crate::decision::{Decision, Reason};
use crate::inspect::Payload;
use crate::inspect::detect::App;
use crate::inspect::host::parse_host;
use crate::inspect::http::Request;
use crate::inspect::tls::ClientHello;
use crate::log::proto_name;
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Packet, Transport};
use crate::policy::{Eval, PAYLOAD_KEYS};
use crate::{Engine, Timestamp};

/// The keys of a flow line this reads; others are ignored.
#[derive(Debug, Deserialize)]
struct LineIn {
    proto: String,
    src: String,
    dst: String,
    #[serde(default)]
    icmp_type: Option<u8>,
    packets: u64,
    bytes: u64,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    midstream: bool,
    #[serde(default)]
    reason: Option<String>,
    /// When the flow began: the time `until=` is judged at.
    #[serde(default)]
    first_ts: Option<String>,
}

/// A flow as its log line tells it.
#[derive(Debug)]
struct Logged {
    /// The flow's first packet, headers only; its source is the initiator.
    packet: Packet<'static>,
    /// What a rule read of its first payload, as far as the line tells it.
    payload: Option<Payload>,
    /// Payload term keys the line cannot answer although it has a payload.
    unknown: &'static [&'static str],
    midstream: bool,
    /// An FTP data connection: it follows its control connection, which the line does not name.
    ftp_data: bool,
    /// When it began (Unix time), for rules that expire; the epoch when the line does not say.
    at: Timestamp,
    facts: Facts,
}

/// What one log line is.
#[derive(Debug)]
enum Line {
    Flow(Box<Logged>),
    /// An HTTP or TLS log line, or a live flow end line: outgate's, but not a flow to decide again.
    Other,
    NotUnderstood,
}

/// The IP protocol number of a flow line's `proto` (the names [`proto_name`] writes).
fn proto_number(name: &str) -> Option<u8> {
    let n = match name {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        "icmp" => PROTO_ICMP,
        "icmp6" => PROTO_ICMPV6,
        "ipip" => 4,
        "ipv6-in-ip" => 41,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "sctp" => 132,
        other => other.strip_prefix("ip-")?.parse().ok()?,
    };
    // One spelling a number: `ip-6` is not how a TCP flow is written.
    (proto_name(n) == name).then_some(n)
}

/// `192.0.2.1:80`, `[2001:db8::1]:443`; without a port for ICMP and portless protocols.
fn endpoint(s: &str, with_port: bool) -> Option<(IpAddr, u16)> {
    if with_port {
        s.parse::<SocketAddr>().ok().map(|a| (a.ip(), a.port()))
    } else {
        s.parse::<IpAddr>().ok().map(|a| (a, 0))
    }
}

fn read_line(text: &str, cite: String) -> Line {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Line::NotUnderstood;
    };
    let Some(obj) = value.as_object() else {
        return Line::NotUnderstood;
    };
    let end = crate::log::is_end_line(obj);
    if end || !(obj.contains_key("proto") && obj.contains_key("packets")) {
        return if end || obj.contains_key("method") || obj.contains_key("sni") {
            Line::Other
        } else {
            Line::NotUnderstood
        };
    }
    match serde_json::from_value::<LineIn>(value)
        .ok()
        .and_then(|l| logged(l, cite))
    {
        Some(l) => Line::Flow(Box::new(l)),
        None => Line::NotUnderstood,
    }
}

/// A flow line's flow; `None` when a value is not one outgate writes.
fn logged(l: LineIn, cite: String) -> Option<Logged> {
    let proto = proto_number(&l.proto)?;
    let with_port = matches!(proto, PROTO_TCP | PROTO_UDP);
    let (src, sport) = endpoint(&l.src, with_port)?;
    let (dst, dport) = endpoint(&l.dst, with_port)?;
    if src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    let (transport, port) = match proto {
        PROTO_TCP => (
            Transport::Tcp {
                sport,
                dport,
                seq: None,
                flags: None,
            },
            Some(dport),
        ),
        PROTO_UDP => (Transport::Udp { sport, dport }, Some(dport)),
        PROTO_ICMP | PROTO_ICMPV6 => {
            let icmp_type = l.icmp_type?;
            (
                Transport::Icmp {
                    icmp_type,
                    code: 0,
                    ident: None,
                },
                Some(u16::from(icmp_type)),
            )
        }
        _ => (Transport::Other, None),
    };
    let app = match l.app.as_deref() {
        None => None,
        Some(name) => Some(App::from_name(name)?),
    };
    // As `inspect::read_payload` leaves it: an HTTP flow had a request, a TLS flow over TCP a
    // ClientHello (a first payload that did not parse as one is logged as `unknown`), and so did a QUIC
    // flow whose line names a server.
    let (payload, unknown): (Option<Payload>, &'static [&'static str]) = match app {
        None => (None, &[]),
        Some(App::Http) => {
            let host = l.host.as_deref().and_then(parse_host).map(|(h, _)| h);
            // No host in the line: the request named none, or several (then its host is not told).
            let unknown: &'static [&'static str] = if host.is_some() {
                &["url", "method"]
            } else {
                &["url", "method", "host"]
            };
            let request = Request {
                method: String::new(),
                target: String::new(),
                host: host.clone(),
                port: None,
                path_and_query: String::new(),
                hosts: host.into_iter().collect(),
                user_agent: None,
                evasions: Vec::new(),
            };
            let payload = Payload {
                app,
                http: Some(request),
                tls: None,
                ..Payload::default()
            };
            (Some(payload), unknown)
        }
        Some(App::Tls) if proto == PROTO_TCP => {
            let hello = ClientHello {
                sni: l.host.clone(),
                ..ClientHello::default()
            };
            let payload = Payload {
                app,
                http: None,
                tls: Some(hello),
                ..Payload::default()
            };
            (Some(payload), &[])
        }
        // QUIC: a name in the line was read from the ClientHello in its Initials. Without one the line
        // does not tell whether a hello without a name was read or none was (another QUIC version).
        Some(App::Quic) if proto == PROTO_UDP => match &l.host {
            Some(sni) => {
                let hello = ClientHello {
                    sni: Some(sni.clone()),
                    ..ClientHello::default()
                };
                let payload = Payload {
                    app,
                    tls: Some(hello),
                    ..Payload::default()
                };
                (Some(payload), &[])
            }
            None => (
                Some(Payload {
                    app,
                    ..Payload::default()
                }),
                &["sni"],
            ),
        },
        Some(_) => (
            Some(Payload {
                app,
                ..Payload::default()
            }),
            &[],
        ),
    };
    let facts = Facts {
        proto: l.proto.clone(),
        port,
        host: l.host.clone().unwrap_or_else(|| dst.to_string()),
        example: format!("{} -> {}", l.src, l.dst),
        packets: l.packets,
        bytes: l.bytes,
        midstream: l.midstream,
        cite: Some(cite),
    };
    Some(Logged {
        packet: Packet::headers(src, dst, proto, transport),
        payload,
        unknown,
        midstream: l.midstream,
        ftp_data: l.reason.as_deref() == Some(Reason::FtpData.kind()),
        at: l
            .first_ts
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or_default(),
        facts,
    })
}

/// What `engine` decides for a logged flow; `None` when that needs more than the line tells.
fn decide(engine: &Engine, l: &Logged) -> Option<Decision> {
    if l.ftp_data {
        return None;
    }
    if l.midstream {
        // As the engine decides a flow seen from its middle: its first payload was never read.
        return Some(engine.redecide(&l.packet, None, l.at));
    }
    let policy = engine.policy();
    let d = match policy.evaluate(&l.packet, l.payload.as_ref(), l.at) {
        Eval::Decided(d) => d,
        // A rule needs the payload of a flow no rule looked at when it was logged.
        Eval::NeedPayload => return None,
    };
    if l.payload.is_none() {
        return Some(d);
    }
    // The rules first-match looked at: up to the deciding rule, or all (a policy line decided, or an
    // audited line let the walk go on). Each must read only what the line tells.
    let upto = match d.reason {
        Reason::Rule(id) if d.enforced() => Some(id),
        _ => None,
    };
    let unanswered = policy
        .rules_met(&l.packet, upto)
        .into_iter()
        .filter_map(|id| policy.rules().get(id as usize))
        .flat_map(|r| r.term_keys())
        .any(|k| !PAYLOAD_KEYS.contains(&k.as_str()) || l.unknown.contains(&k.as_str()));
    (!unanswered).then_some(d)
}

/// Reads one flow log and compares each of its flows.
pub(super) fn compare_log(
    old: &Engine,
    new: &Engine,
    path: &Path,
    b: &mut Builder,
) -> Result<(), DiffError> {
    let name = path.display().to_string();
    let err = |source: std::io::Error| DiffError::Read {
        path: name.clone(),
        source,
    };
    let mut reader = BufReader::new(std::fs::File::open(path).map_err(err)?);
    let mut buf = Vec::new();
    let (mut lines, mut flows) = (0u64, 0u64);
    let mut first_bad: Option<u64> = None;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(err)? == 0 {
            break;
        }
        lines += 1;
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let cite = format!("{name}:{lines}");
        let line = match std::str::from_utf8(bytes) {
            Ok(t) if t.trim().is_empty() => continue,
            Ok(t) => read_line(t, cite.clone()),
            Err(_) => Line::NotUnderstood,
        };
        match line {
            Line::Flow(l) => {
                flows += 1;
                match (decide(old, &l), decide(new, &l)) {
                    (Some(a), Some(z)) => {
                        let (a, z) = (Said::new(old.policy(), a), Said::new(new.policy(), z));
                        b.compare(l.facts, a, z);
                    }
                    _ => b.undecidable(Some(cite)),
                }
            }
            Line::Other => b.diff.skipped_lines = b.diff.skipped_lines.saturating_add(1),
            Line::NotUnderstood => {
                first_bad.get_or_insert(lines);
                b.diff.not_understood.add(Some(cite));
            }
        }
    }
    if let (0, Some(line)) = (flows, first_bad) {
        return Err(DiffError::NotALog { path: name, line });
    }
    b.diff.inputs.push(Input {
        path: name,
        kind: "log",
        lines: Some(lines),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    #[test]
    fn protocol_names_read_back_as_written() {
        for n in 0..=u8::MAX {
            assert_eq!(proto_number(&proto_name(n)), Some(n), "{n}");
        }
        assert_eq!(proto_number("ip-6"), None);
        assert_eq!(proto_number("TCP"), None);
        assert_eq!(proto_number("ip-256"), None);
    }

    fn flow(text: &str) -> Logged {
        match read_line(text, "f:1".into()) {
            Line::Flow(l) => *l,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn lines_that_are_not_flows() {
        for bad in [
            "",
            "not json",
            "[1,2]",
            r#"{"proto":"tcp"}"#,
            r#"{"proto":"tcp","src":"10.0.0.2","dst":"192.0.2.1:80","packets":1,"bytes":1}"#,
            r#"{"proto":"tcp","src":"10.0.0.2:1","dst":"[2001:db8::1]:80","packets":1,"bytes":1}"#,
            r#"{"proto":"icmp","src":"10.0.0.2","dst":"192.0.2.1","packets":1,"bytes":1}"#,
            r#"{"proto":"tcp","src":"10.0.0.2:1","dst":"192.0.2.1:80","packets":-1,"bytes":1}"#,
            r#"{"proto":"tcp","src":"10.0.0.2:1","dst":"192.0.2.1:80","packets":1,"bytes":1,"app":"gopher"}"#,
            r#"{"proto":"bogus","src":"10.0.0.2","dst":"192.0.2.1","packets":1,"bytes":1}"#,
        ] {
            assert!(
                matches!(read_line(bad, "f:1".into()), Line::NotUnderstood),
                "{bad}"
            );
        }
        let http = r#"{"ts":"x","client":"10.0.0.2:1","server":"192.0.2.1:80","method":"GET","host":null,"url":"/","user_agent":null,"verdict":"drop","rule":null,"reason":"rule"}"#;
        assert!(matches!(read_line(http, "f:1".into()), Line::Other));
        // A live end line: its flow is the decision line's, not one more.
        let end = r#"{"end":true,"ts":"x","proto":"tcp","src":"10.0.0.2:1","dst":"192.0.2.1:80","verdict":"accept","packets":9,"bytes":900}"#;
        assert!(matches!(read_line(end, "f:1".into()), Line::Other));
    }

    #[test]
    fn what_a_line_tells_decides_and_nothing_more() {
        let policy = "policy loc net ACCEPT\nDROP loc net tcp 80 host=numeric\n\
                      DROP loc net tcp 80 url=gateway.dll?\nDROP loc net tcp 443 sni=none\n\
                      ACCEPT loc net tcp 443 app=tls\nDROP loc net tcp 443\nDROP loc net tcp 8080\n";
        let engine = Engine::new(Policy::compile("p", policy).unwrap());
        let line = |extra: &str, dport: u16| {
            flow(&format!(
                r#"{{"proto":"tcp","src":"10.0.0.2:40000","dst":"192.0.2.1:{dport}","packets":3,"bytes":150{extra}}}"#
            ))
        };
        let said = |l: &Logged| decide(&engine, l).map(|d| (d.verdict.name(), d.reason));
        // A numeric host decides at the host rule, before the URL rule: known.
        assert_eq!(
            said(&line(r#","app":"http","host":"192.0.2.80""#, 80)),
            Some(("drop", Reason::Rule(0)))
        );
        // A named host passes the host rule; the URL rule needs the URL, which the line lacks.
        assert_eq!(
            said(&line(r#","app":"http","host":"www.example.org""#, 80)),
            None
        );
        // No payload was read: a payload rule cannot be answered.
        assert_eq!(said(&line("", 80)), None);
        // Ports alone: known.
        assert_eq!(said(&line("", 8080)), Some(("drop", Reason::Rule(5))));
        assert_eq!(said(&line("", 22)), Some(("accept", Reason::Policy(0))));
        // TLS: the server name is all the rules read.
        assert_eq!(
            said(&line(r#","app":"tls","host":"www.example.org""#, 443)),
            Some(("accept", Reason::Rule(3)))
        );
        assert_eq!(
            said(&line(r#","app":"tls""#, 443)),
            Some(("drop", Reason::Rule(2)))
        );
        assert_eq!(
            said(&line(r#","app":"ssh""#, 443)),
            Some(("drop", Reason::Rule(4)))
        );
        // From its middle: as the engine decides it, `option midstream` for a payload rule.
        assert_eq!(
            said(&line(r#","midstream":true"#, 443)),
            Some(("reject", Reason::Midstream))
        );
        // An FTP data connection follows a control connection the line does not name.
        assert_eq!(said(&line(r#","reason":"ftp-data""#, 22)), None);
    }

    #[test]
    fn a_quic_line_answers_sni_rules_when_it_names_a_server() {
        let engine = Engine::new(
            Policy::compile(
                "p",
                "policy loc net ACCEPT\nACCEPT loc net udp 443 sni=good.test\nDROP loc net udp 443\n",
            )
            .unwrap(),
        );
        let line = |host: &str| {
            flow(&format!(
                r#"{{"proto":"udp","src":"10.0.0.2:1","dst":"192.0.2.1:443","packets":2,"bytes":2500,"app":"quic"{host}}}"#
            ))
        };
        let said = |host: &str| decide(&engine, &line(host)).map(|d| d.reason);
        assert_eq!(said(r#","host":"good.test""#), Some(Reason::Rule(0)));
        assert_eq!(said(r#","host":"evil.test""#), Some(Reason::Rule(1)));
        assert_eq!(said(""), None, "no name: a hello without one, or none read");
    }

    #[test]
    fn an_http_line_without_a_host_cannot_answer_a_host_rule() {
        let engine = Engine::new(
            Policy::compile(
                "p",
                "policy loc net ACCEPT\nACCEPT loc net tcp 80 host=!numeric\nDROP loc net tcp 80\n",
            )
            .unwrap(),
        );
        let line = |host: &str| {
            flow(&format!(
                r#"{{"proto":"tcp","src":"10.0.0.2:1","dst":"192.0.2.1:80","packets":1,"bytes":1,"app":"http"{host}}}"#
            ))
        };
        // The request named no host, or several: which, the line does not say.
        assert_eq!(decide(&engine, &line("")), None);
        assert_eq!(
            decide(&engine, &line(r#","host":"a.example""#)).map(|d| d.reason),
            Some(Reason::Rule(0))
        );
        assert_eq!(
            decide(&engine, &line(r#","host":"192.0.2.1""#)).map(|d| d.reason),
            Some(Reason::Rule(1))
        );
    }
}

//! Flow log lines: one JSON object per flow, the same keys in replay (`--flows`) and, later, live (`--log`).
//!
//! The keys are a contract other tools read: `proto`, `src`, `dst` (`ip:port`, `[ipv6]:port`; addresses
//! alone for ICMP and portless protocols), `icmp_type` (ICMP only), `verdict` (with `class` when it is
//! `shape`), `rule` (`FILE:LINE` or null), `reason`, `enforced` and `applied` (only when the verdict was
//! not enforced: an audited line, or `--audit`), `packets`, `bytes`, `first_ts` (RFC 3339, UTC,
//! nanoseconds); the live log adds `ts`, when
//! the line was written; flows a rule inspected add `app` and `host`; a TCP flow first seen in its
//! middle adds `"midstream": true`. Replay writes a flow's line when the flow ended, and adds the end
//! keys of [`FlowEnd`]: `last_ts`, `duration`, `orig_packets`, `orig_bytes`, `resp_packets`,
//! `resp_bytes`. Live, the decision is written when it is made, and the flow's end comes later as a
//! line of its own, `"end": true` ([`EndLine`]), read from the kernel.
//!
//! Two more logs come from the flows' first payloads: the HTTP request log ([`HttpLine`]: `ts`,
//! `client`, `server`, `method`, `host`, `url`, `user_agent`, `verdict`, `rule`, `reason`) and the TLS
//! log ([`TlsLine`]: `ts`, `client`, `server`, `sni`, `alpn`, `ja4`, `verdict`, `rule`, `reason`). DNS queries
//! and ICMP echo messages have their own logs ([`DnsLine`], [`IcmpLine`], see `message`).

mod message;

pub use message::{DnsLine, IcmpLine};

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::flow::FlowRecord;
use crate::inspect::detect::App;
use crate::inspect::host::Host;
use crate::inspect::ja4::ja4;
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::policy::Policy;
use crate::{Decision, Timestamp, Verdict};

/// One flow, as logged.
#[derive(Debug, Serialize)]
pub struct FlowLine {
    pub proto: Cow<'static, str>,
    pub src: String,
    pub dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub packets: u64,
    pub bytes: u64,
    pub first_ts: String,
    /// Live log only: when the line was written (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    /// The protocol the flow's first payload showed, when a rule looked at it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<&'static str>,
    /// The HTTP request's host, or the TLS server name, when a rule looked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A TCP flow first seen in its middle (it began before the capture, or before the daemon): its
    /// first payload was never read, and `src` is the client as far as it can be told.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub midstream: bool,
    /// Replay only: how the flow ended ([`FlowEnd`]).
    #[serde(flatten)]
    pub end: Option<FlowEnd>,
}

/// The end of a flow, as the replay flow log writes it: the line is written when the flow left the
/// table, so its `packets` and `bytes` are the whole flow's, and these keys say when it ended and
/// how the counts split by direction (`orig_*`: sent by `src`, the initiator; `resp_*`: by `dst`).
/// `duration` is `last_ts - first_ts` in seconds.
#[derive(Debug, Serialize)]
pub struct FlowEnd {
    pub last_ts: String,
    pub duration: f64,
    pub orig_packets: u64,
    pub orig_bytes: u64,
    pub resp_packets: u64,
    pub resp_bytes: u64,
}

impl FlowEnd {
    /// The end of a flow that left the table (its counts are final).
    pub fn of(rec: &FlowRecord) -> FlowEnd {
        let f = &rec.flow;
        let nanos = f.last_ts.as_nanos().saturating_sub(f.first_ts.as_nanos());
        FlowEnd {
            last_ts: rfc3339(f.last_ts),
            duration: nanos as f64 / 1e9,
            orig_packets: f.init_packets,
            orig_bytes: f.init_bytes,
            resp_packets: f.packets.saturating_sub(f.init_packets),
            resp_bytes: f.bytes.saturating_sub(f.init_bytes),
        }
    }
}

/// The end of a flow, as the live flow log writes it: one line per flow the kernel's conntrack entry of
/// which ended carrying outgate's verdict in its mark, with the kernel's counts and times. Recognised by
/// `"end": true`; `proto`, `src`, `dst`, `icmp_type` as in [`FlowLine`]; `verdict` (and `class`) is
/// what the mark held, so what the kernel applied (under `--audit`, `accept`). The counts (IP bytes,
/// both directions summed in `packets` and `bytes`) come only when the kernel kept them
/// (`net.netfilter.nf_conntrack_acct`), the times only when it stamped the entry
/// (`net.netfilter.nf_conntrack_timestamp`); `outgate rules --apply` turns both on.
#[derive(Debug, Serialize)]
pub struct EndLine {
    pub end: bool,
    /// When the line was written.
    pub ts: String,
    pub proto: Cow<'static, str>,
    pub src: String,
    pub dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_bytes: Option<u64>,
}

/// Whether a log line (a JSON object) is a live flow end line ([`EndLine`]): `"end": true`. Readers
/// of flow logs that count flows skip them, as the flow was counted at its decision line.
pub fn is_end_line(obj: &serde_json::Map<String, serde_json::Value>) -> bool {
    obj.get("end") == Some(&serde_json::Value::Bool(true))
}

/// A flow's ends as logs write them: `ip:port` for TCP and UDP, the address alone for the others.
pub(crate) fn endpoints(proto: u8, src: (IpAddr, u16), dst: (IpAddr, u16)) -> (String, String) {
    let with_port = matches!(proto, PROTO_TCP | PROTO_UDP);
    (
        endpoint(src.0, src.1, with_port),
        endpoint(dst.0, dst.1, with_port),
    )
}

/// One HTTP request, for the request log: what admins read to find tunnels.
#[derive(Debug, Serialize)]
pub struct HttpLine {
    pub ts: String,
    pub client: String,
    pub server: String,
    pub method: String,
    pub host: Option<String>,
    pub url: String,
    pub user_agent: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One TLS ClientHello, for the TLS log.
#[derive(Debug, Serialize)]
pub struct TlsLine {
    pub ts: String,
    pub client: String,
    pub server: String,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The hello's JA4 fingerprint (see [`crate::inspect::ja4`]), `q...` for QUIC.
    pub ja4: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a line says about the decision, the same in the flow, HTTP and TLS logs: `verdict` (and for
/// `shape` its `class`), `rule` and `reason`, and, when that verdict was not what the packets got (an
/// audited line, or `--audit`), `"enforced": false` and the verdict `applied` instead.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub rule: Option<String>,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<&'static str>,
}

/// The log lines that carry an [`Outcome`].
pub trait LogLine: Sized {
    fn outcome_mut(&mut self) -> &mut Outcome;

    /// Under `--audit` (`on`), marks the line as not enforced: every packet was accepted.
    fn audited(mut self, on: bool) -> Self {
        if on {
            self.outcome_mut().audit_all();
        }
        self
    }
}

impl LogLine for FlowLine {
    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

impl LogLine for HttpLine {
    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

impl LogLine for TlsLine {
    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

impl Outcome {
    pub fn new(policy: &Policy, d: Decision) -> Outcome {
        Outcome {
            verdict: d.verdict.name(),
            class: (d.verdict == Verdict::Shape)
                .then(|| policy.class_name(d.class).map(str::to_string))
                .flatten(),
            rule: policy.cite(d.reason),
            reason: d.reason.kind(),
            enforced: (!d.enforced()).then_some(false),
            applied: d.applied.map(|a| a.verdict.name()),
        }
    }

    /// `--audit`: nothing was enforced, every packet was accepted.
    fn audit_all(&mut self) {
        self.enforced = Some(false);
        self.applied = Some(Verdict::Accept.name());
    }
}

/// A host as logs write it: names as they are, addresses as literals (IPv6 in brackets, like a URL).
fn host_text(h: &Host) -> String {
    match h {
        Host::Name(n) => n.clone(),
        Host::Ip(IpAddr::V6(a)) => format!("[{a}]"),
        Host::Ip(a) => a.to_string(),
    }
}

/// The initiator and responder of a record, as `ip:port`.
fn ends(rec: &FlowRecord) -> (String, String) {
    let a = rec.key.endpoint(rec.flow.initiator);
    let b = rec.key.endpoint(rec.flow.initiator.other());
    endpoints(rec.key.proto(), a, b)
}

impl HttpLine {
    /// The request of a flow whose first payload was one; `None` otherwise. `ts` writes the time of
    /// the decision.
    pub fn new(
        policy: &Policy,
        rec: &FlowRecord,
        ts: impl Fn(Timestamp) -> String,
    ) -> Option<HttpLine> {
        let inspected = rec.inspected.as_ref()?;
        let request = inspected.payload.http.as_ref()?;
        let (client, server) = ends(rec);
        let d = rec.flow.decision;
        let host = request
            .host
            .as_ref()
            .map(host_text)
            .map(|h| match request.port {
                Some(port) => format!("{h}:{port}"),
                None => h,
            });
        Some(HttpLine {
            ts: ts(inspected.at),
            client,
            server,
            method: request.method.clone(),
            host,
            url: request.path_and_query.clone(),
            user_agent: request.user_agent.clone(),
            outcome: Outcome::new(policy, d),
        })
    }
}

impl TlsLine {
    /// The ClientHello of a flow whose first payload was one; `None` otherwise.
    pub fn new(
        policy: &Policy,
        rec: &FlowRecord,
        ts: impl Fn(Timestamp) -> String,
    ) -> Option<TlsLine> {
        let inspected = rec.inspected.as_ref()?;
        let hello = inspected.payload.tls.as_ref()?;
        let (client, server) = ends(rec);
        let d = rec.flow.decision;
        Some(TlsLine {
            ts: ts(inspected.at),
            client,
            server,
            sni: hello.sni.clone(),
            alpn: hello.alpn.clone(),
            ja4: ja4(hello, inspected.payload.app == Some(App::Quic)),
            outcome: Outcome::new(policy, d),
        })
    }
}

/// The name of an IP protocol as logs show it: `tcp`, `udp`, `icmp`, `icmp6`, a few tunnels by name,
/// else `ip-N`.
pub(crate) fn proto_name(proto: u8) -> Cow<'static, str> {
    Cow::Borrowed(match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmp6",
        4 => "ipip",
        41 => "ipv6-in-ip",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        132 => "sctp",
        n => return Cow::Owned(format!("ip-{n}")),
    })
}

fn endpoint(addr: IpAddr, port: u16, with_port: bool) -> String {
    if with_port {
        SocketAddr::new(addr, port).to_string()
    } else {
        addr.to_string()
    }
}

impl FlowLine {
    pub fn new(policy: &Policy, rec: &FlowRecord) -> FlowLine {
        let proto = rec.key.proto();
        let (src, dst) = ends(rec);
        let decision = rec.flow.decision;
        let payload = rec.inspected.as_deref().map(|i| &i.payload);
        let host = payload.and_then(|p| match (&p.http, &p.tls) {
            (Some(r), _) => r.host.as_ref().map(host_text),
            (_, Some(t)) => t.sni.clone(),
            _ => None,
        });
        FlowLine {
            proto: proto_name(proto),
            src,
            dst,
            icmp_type: rec.flow.icmp_type,
            outcome: Outcome::new(policy, decision),
            packets: rec.flow.packets,
            bytes: rec.flow.bytes,
            first_ts: rfc3339(rec.flow.first_ts),
            ts: None,
            app: rec.flow.app.map(|a| a.name()),
            host,
            midstream: rec.flow.midstream(),
            end: None,
        }
    }
}

pub use crate::calendar::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_names() {
        assert_eq!(proto_name(6), "tcp");
        assert_eq!(proto_name(47), "gre");
        assert_eq!(proto_name(99), "ip-99");
    }
}

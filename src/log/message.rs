//! The DNS log and the ICMP log: one line per DNS query and per ICMP echo message.
//!
//! DNS log ([`DnsLine`]): `ts`, `client` and `server` (`ip:port`), `transport` (`udp`, `tcp`),
//! `qname` (lower-case, octets other than letters, digits, `-` and `_` written `\DDD`; `.` for the
//! root), `qtype` (mnemonic or `TYPEnnn`), `qtype_code`, `labels` (each label's length on the wire,
//! leftmost first), `more_questions` (`[[qname, qtype], ...]`, only for a query of several
//! questions), then `verdict`, `rule`, `reason` as in the other logs.
//!
//! ICMP log ([`IcmpLine`]): `ts`, `client` (the pinger) and `server` (addresses), `echo` (`request` or
//! `reply`), `ident`, `size` (bytes of data after the ICMP header; null for the first fragment of a
//! fragmented packet), `entropy` (bits per byte, two decimals), `ping_fill` (the data is ping's own
//! fill), `digest` (FNV-1a of the data, 16 hex digits: a reply that echoes its request has the same),
//! then the outcome. Live, only requests reach the daemon; replay logs replies too.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::{LogLine, Outcome};
use crate::flow::{FlowRecord, Message, MessageRecord};
use crate::inspect::dns::{Query, type_name};
use crate::packet::PROTO_TCP;
use crate::policy::Policy;
use crate::{Decision, Timestamp};

/// One DNS query.
#[derive(Debug, Serialize)]
pub struct DnsLine {
    pub ts: String,
    pub client: String,
    pub server: String,
    pub transport: &'static str,
    pub qname: String,
    pub qtype: String,
    pub qtype_code: u16,
    pub labels: Vec<u8>,
    /// The other questions (`[qname, qtype]`), when the query has more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more_questions: Vec<(String, String)>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One ICMP echo request or reply.
#[derive(Debug, Serialize)]
pub struct IcmpLine {
    pub ts: String,
    pub client: String,
    pub server: String,
    pub echo: &'static str,
    pub ident: u16,
    pub size: Option<u32>,
    pub entropy: f64,
    pub ping_fill: bool,
    pub digest: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl LogLine for DnsLine {
    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

impl LogLine for IcmpLine {
    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

fn sock((addr, port): (IpAddr, u16)) -> String {
    SocketAddr::new(addr, port).to_string()
}

impl DnsLine {
    fn of(
        policy: &Policy,
        q: &Query,
        ends: (String, String),
        transport: &'static str,
        d: Decision,
        ts: String,
    ) -> DnsLine {
        DnsLine {
            ts,
            client: ends.0,
            server: ends.1,
            transport,
            qname: q.name.clone(),
            qtype: type_name(q.qtype),
            qtype_code: q.qtype,
            labels: q.label_lens.clone(),
            more_questions: q
                .more
                .iter()
                .map(|(n, t)| (n.clone(), type_name(*t)))
                .collect(),
            outcome: Outcome::new(policy, d),
        }
    }

    /// A DNS query over UDP, decided on its own.
    pub fn message(
        policy: &Policy,
        rec: &MessageRecord,
        ts: impl Fn(Timestamp) -> String,
    ) -> Option<DnsLine> {
        let Message::Dns(q) = &rec.message else {
            return None;
        };
        let ends = (sock(rec.client), sock(rec.server));
        Some(DnsLine::of(
            policy,
            q,
            ends,
            "udp",
            rec.decision,
            ts(rec.at),
        ))
    }

    /// The first query of a DNS flow over TCP (UDP queries are logged as messages).
    pub fn tcp_flow(
        policy: &Policy,
        rec: &FlowRecord,
        ts: impl Fn(Timestamp) -> String,
    ) -> Option<DnsLine> {
        let inspected = rec.inspected.as_ref()?;
        let q = inspected.payload.dns.as_ref()?;
        if rec.key.proto() != PROTO_TCP {
            return None;
        }
        let d = rec.flow.decision;
        Some(DnsLine::of(
            policy,
            q,
            super::ends(rec),
            "tcp",
            d,
            ts(inspected.at),
        ))
    }
}

impl IcmpLine {
    /// An echo request or reply.
    pub fn message(
        policy: &Policy,
        rec: &MessageRecord,
        ts: impl Fn(Timestamp) -> String,
    ) -> Option<IcmpLine> {
        let Message::Echo(e) = &rec.message else {
            return None;
        };
        Some(IcmpLine {
            ts: ts(rec.at),
            client: rec.client.0.to_string(),
            server: rec.server.0.to_string(),
            echo: if e.request { "request" } else { "reply" },
            ident: e.ident,
            size: (e.size != u32::MAX).then_some(e.size),
            entropy: f64::from(e.entropy) / 100.0,
            ping_fill: e.ping_fill,
            digest: format!("{:016x}", e.digest),
            outcome: Outcome::new(policy, rec.decision),
        })
    }
}

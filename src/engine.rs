//! `Engine::decide`: the hot path, one packet in, one [`Decision`] out.
//!
//! Read top to bottom: parse the IP packet (a packet that cannot be read is a decision, never an error);
//! find its flow (both directions meet one entry); a known flow answers from the table, a new flow asks the
//! policy once. When a rule needs the flow's first payload (HTTP host, TLS SNI, the protocol spoken), the
//! flow waits: its packets pass as [`Reason::Inspecting`] while the initiator's payload is collected, and
//! the first payload that can be read decides it. No IO, no clock, no threads: time is an argument, and the
//! flow table belongs to the caller (one per worker), so the engine itself is immutable and shared.

use crate::Timestamp;
use crate::decision::{Decision, Reason, Verdict};
use crate::flow::{FlowKey, FlowTable, Inspect, Message, MessageRecord, Side};
use crate::inspect::detect::{App, Transport as Carrier};
use crate::inspect::echo::Echo;
use crate::inspect::{Collected, Payload, ftp, read_collected, read_payload};
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, Packet, Transport};
use crate::policy::{Cidr, Eval, Policy};

/// The decision of a flow that waits for its first payload.
const INSPECTING: Decision = Decision::new(Verdict::Accept, Reason::Inspecting);

/// What a packet held back until its flow is decided gets now: no verdict yet.
const HELD: Decision = Decision::new(Verdict::Drop, Reason::Held);

/// The decision of a data connection an accepted FTP control connection announced.
const FTP_DATA: Decision = Decision::new(Verdict::Accept, Reason::FtpData);

/// Reads an accepted FTP control connection (TCP port 21) for the data connections it announces, and
/// expects exactly those. Like the kernel's helper without `loose`: an announcement naming another
/// address than the control connection's peer (an FTP bounce, RFC 2577) is ignored. Live, the kernel's
/// helper does this (the daemon sees only the client's direction); replay reads both directions here.
fn ftp_control(flows: &mut FlowTable, p: &Packet<'_>, now: Timestamp) {
    let Transport::Tcp { sport, dport, .. } = p.transport else {
        return;
    };
    if sport != 21 && dport != 21 {
        return;
    }
    let (lines, _) = ftp::lines(p.payload);
    for line in lines {
        if dport == 21 {
            // The client's PORT/EPRT: the server connects back to the client.
            if let Some(dc) = ftp::parse_client_line(line)
                && dc.addr.is_none_or(|a| a == p.src)
            {
                flows.expect_connection(p.dst, p.src, dc.port, now);
            }
        } else if sport == 21 {
            // The server's 227/229: the client connects to the server.
            if let Some(dc) = ftp::parse_server_line(line)
                && dc.addr.is_none_or(|a| a == p.src)
            {
                flows.expect_connection(p.dst, p.src, dc.port, now);
            }
        }
    }
}

/// The compiled policy plus the decision procedure around it.
pub struct Engine {
    policy: Policy,
    /// Replay's `--lan`: which end of a flow seen from its middle is the local client.
    lan: Vec<Cidr>,
    /// Added to `now` to make Unix time, for rules that expire (`until=`): 0 in replay, whose `now`
    /// is the capture's time; live, the clock at the daemon's start, whose `now` counts from it.
    unix_offset: u64,
    /// DNS queries over UDP and ICMP echo requests are decided one by one (a rule has `qname=`,
    /// `qtype=` or `size=`, or [`Engine::with_messages`] asked for their logs).
    per_message: bool,
}

impl Engine {
    pub fn new(policy: Policy) -> Engine {
        Engine {
            per_message: policy.per_message(),
            policy,
            lan: Vec::new(),
            unix_offset: 0,
        }
    }

    /// Decides every DNS query over UDP and every ICMP echo request on its own, even when no rule
    /// asks for it, so that the DNS and ICMP logs (and, live, the daemon) see each of them.
    pub fn with_messages(mut self, on: bool) -> Engine {
        self.per_message |= on;
        self
    }

    /// Live: `now` counts from the daemon's start, which was `unix_start` (nanoseconds since the epoch).
    pub(crate) fn with_clock(mut self, unix_start: u64) -> Engine {
        self.unix_offset = unix_start;
        self
    }

    /// The Unix time of `now`.
    fn unix_time(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_nanos(now.as_nanos().saturating_add(self.unix_offset))
    }

    /// Networks whose addresses are local (replay's `--lan`): a TCP flow whose SYN the capture missed
    /// has its client there. Declared zones tell the same and come first.
    pub fn with_lan(mut self, lan: Vec<Cidr>) -> Engine {
        self.lan = lan;
        self
    }

    /// Whether DNS queries over UDP and ICMP echo requests are decided (and recorded) one by one.
    pub fn per_message(&self) -> bool {
        self.per_message
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A flow table sized and timed by the policy's options, for one worker.
    pub fn new_flow_table(&self) -> FlowTable {
        FlowTable::new(self.policy.options().flows)
    }

    /// Decides one IP packet. `now` is capture time (replay) or monotonic time (live); `seq` is the
    /// caller's ordinal of the packet, kept as the flow's first-packet order and as the handle of a
    /// packet held back ([`Reason::Held`]; it gets its decision from [`FlowTable::drain_released`]).
    pub fn decide(&self, flows: &mut FlowTable, ip: &[u8], now: Timestamp, seq: u64) -> Decision {
        let malformed = self.policy.options().malformed;
        flows.set_last_per_message(false);
        let packet = match Packet::parse(ip) {
            Ok(p) => p,
            Err(m) => {
                return Decision::new(malformed, Reason::Malformed(m));
            }
        };
        let Some(key) = FlowKey::of(&packet) else {
            // A later fragment has no ports: it follows its first fragment's flow, or is an orphan.
            return flows
                .follow_fragment(&packet, now)
                .unwrap_or(Decision::new(malformed, Reason::OrphanFragment));
        };
        let message = if self.per_message {
            Self::message_of(&packet)
        } else {
            None
        };
        let announced = flows.take_expected(&packet, &key.0, now);
        let offloaded = flows.is_offloaded();
        let at = self.unix_time(now);
        let decision = flows.decide_or_insert(&packet, key, now, seq, |midstream| {
            if announced {
                (FTP_DATA, key.1)
            } else if midstream {
                self.decide_midstream(&packet, key.1, offloaded, at)
            } else {
                match self.policy.evaluate(&packet, None, at) {
                    // With the DNS log on, a DNS flow over TCP is read for its first query too.
                    Eval::Decided(d) if !(self.per_message && is_dns_over_tcp(&packet)) => {
                        (d, key.1)
                    }
                    Eval::Decided(_) | Eval::NeedPayload => (INSPECTING, key.1),
                }
            }
        });
        if decision.reason != Reason::Inspecting {
            if decision.verdict == Verdict::Accept && !packet.payload.is_empty() {
                ftp_control(flows, &packet, now);
            }
            return self.decide_message(flows, &packet, message, decision, (now, at, seq));
        }
        let echo = message.as_ref().filter(|m| m.echo.is_some());
        // Only the initiator's packets add payload, so `packet` is the initiator's when `read` runs.
        let read = |collected: Collected<'_>| {
            let payload = match echo {
                Some(m) => m.clone(),
                None => read_collected(collected)?,
            };
            match self.policy.evaluate(&packet, Some(&payload), at) {
                Eval::Decided(d) => Some((d, payload)),
                Eval::NeedPayload => None,
            }
        };
        let decision = match flows.inspect(&packet, key, read, now, seq) {
            Inspect::Decided(d) => d,
            Inspect::Held => HELD,
            Inspect::Pass => INSPECTING,
        };
        self.decide_message(flows, &packet, message, decision, (now, at, seq))
    }

    /// What a datagram to port 53 (a DNS query, if it reads as one), or an ICMP echo message, carries;
    /// `None` for any other packet.
    fn message_of(p: &Packet<'_>) -> Option<Payload> {
        if p.fragment.is_some_and(|f| f.offset != 0) {
            return None;
        }
        match p.transport {
            // Any datagram to port 53 is a message, a readable query or not: one that is not must not
            // get (and, live, leave in the kernel) its flow's decision, or a socket could open with
            // one query, send garbage, and have its later queries pass unseen.
            Transport::Udp { dport: 53, .. } => {
                Some(read_payload(Carrier::Udp, p.payload).unwrap_or(Payload {
                    app: Some(App::Unknown),
                    ..Payload::default()
                }))
            }
            Transport::Icmp {
                icmp_type,
                ident: Some(ident),
                ..
            } => {
                let request = match (p.ip_proto, icmp_type) {
                    (PROTO_ICMP, 8) | (PROTO_ICMPV6, 128) => true,
                    (PROTO_ICMP, 0) | (PROTO_ICMPV6, 129) => false,
                    _ => return None,
                };
                let fragmented = p.fragment.is_some_and(|f| f.more);
                Some(Payload {
                    echo: Some(Echo::new(request, ident, p.payload, fragmented)),
                    ..Payload::default()
                })
            }
            _ => None,
        }
    }

    /// A message (see [`Engine::message_of`]) decided on its own: a DNS query or an echo request gets
    /// the policy's decision for it (and the table says so: [`FlowTable::last_per_message`]); an echo
    /// reply keeps its flow's. Each is recorded for the logs. Any other packet keeps `flow_decision`.
    fn decide_message(
        &self,
        flows: &mut FlowTable,
        p: &Packet<'_>,
        message: Option<Payload>,
        flow_decision: Decision,
        (now, at, seq): (Timestamp, Timestamp, u64),
    ) -> Decision {
        let Some(payload) = message.filter(|_| flow_decision.reason != Reason::Held) else {
            return flow_decision;
        };
        let is_reply = payload.echo.is_some_and(|e| !e.request);
        let decision = if is_reply {
            flow_decision
        } else {
            match self.policy.evaluate(p, Some(&payload), at) {
                Eval::Decided(d) => {
                    flows.set_last_per_message(true);
                    d
                }
                Eval::NeedPayload => flow_decision,
            }
        };
        if flows.keeps_messages() {
            let (src, dst) = ((p.src, ports(p).0), (p.dst, ports(p).1));
            let (client, server) = if is_reply { (dst, src) } else { (src, dst) };
            let message = match (payload.dns, payload.echo) {
                (Some(q), _) => Message::Dns(q),
                (None, Some(e)) => Message::Echo(e),
                (None, None) => return decision,
            };
            flows.push_message(MessageRecord {
                seq,
                at: now,
                client,
                server,
                decision,
                message,
            });
        }
        decision
    }

    /// Decides again a flow that is already under way (after a reload, or at the start), from a packet of
    /// its original direction (`p`, headers only) and the first payload that was read when it was first
    /// decided, if that is still known. Where a rule needs that payload and it is not known, the flow is
    /// one seen from its middle: `option midstream` decides.
    /// `at` is Unix time.
    pub(crate) fn redecide(
        &self,
        p: &Packet<'_>,
        payload: Option<&Payload>,
        at: Timestamp,
    ) -> Decision {
        match self.policy.evaluate(p, payload, at) {
            Eval::Decided(d) => d,
            Eval::NeedPayload => Decision::new(self.policy.options().midstream, Reason::Midstream),
        }
    }

    /// A TCP flow seen first in its middle: its first payload cannot be read, so a rule that would look
    /// at it leaves the flow to `option midstream`; port rules decide as usual. Live, the packet's
    /// sender is the initiator (only the original direction is queued); in replay the client is told
    /// by the local side, then by the ports.
    fn decide_midstream(
        &self,
        p: &Packet<'_>,
        sender: Side,
        offloaded: bool,
        at: Timestamp,
    ) -> (Decision, Side) {
        let sender_is_client = offloaded || self.sender_is_client(p);
        let (view, initiator) = if sender_is_client {
            (*p, sender)
        } else {
            (p.reversed(), sender.other())
        };
        (self.redecide(&view, None, at), initiator)
    }

    /// Whether the sender of a packet seen in a flow's middle is the flow's client.
    fn sender_is_client(&self, p: &Packet<'_>) -> bool {
        let Transport::Tcp {
            sport,
            dport,
            flags,
            ..
        } = p.transport
        else {
            return true;
        };
        // A SYN-ACK answers its receiver's SYN.
        if flags.is_some_and(|f| f.syn && f.ack) {
            return false;
        }
        let local = |a| {
            self.policy
                .is_local(a)
                .unwrap_or_else(|| self.lan.iter().any(|n| n.contains(a)))
        };
        match (local(p.src), local(p.dst)) {
            (true, false) => return true,
            (false, true) => return false,
            _ => {}
        }
        // Servers listen on well-known ports, clients send from ephemeral ones (RFC 6335 §6: 0-1023
        // system, 1024-49151 user, 49152-65535 dynamic; Linux picks from 32768 up by default).
        let rank = |port: u16| match port {
            0..1024 => 0,
            1024..32768 => 1,
            _ => 2,
        };
        (rank(sport), sport) >= (rank(dport), dport)
    }
}

/// A TCP packet to port 53.
fn is_dns_over_tcp(p: &Packet<'_>) -> bool {
    matches!(p.transport, Transport::Tcp { dport: 53, .. })
}

/// A packet's ports (0 for ICMP and portless protocols).
fn ports(p: &Packet<'_>) -> (u16, u16) {
    match p.transport {
        Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport } => (sport, dport),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod message_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const POLICY: &str = "policy loc net ACCEPT\n\
                          DROP loc net tcp 80 host=numeric\n\
                          ACCEPT loc net tcp 443 app=tls\n\
                          DROP loc net tcp 443\n\
                          option inspect-packets 4\n";

    /// A client segment of one connection: 10.0.0.2:40000 -> 192.0.2.1:dport, sequence `seq`.
    fn seg(dport: u16, seq: u32, syn: bool, data: &[u8]) -> Vec<u8> {
        let b =
            PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64).tcp(40000, dport, seq, 64000);
        let b = if syn { b.syn() } else { b.ack(1) };
        let mut out = Vec::new();
        b.write(&mut out, data).unwrap();
        out
    }

    /// Each packet's decision; a held packet's is the one it was released with.
    fn run(engine: &Engine, packets: &[Vec<u8>]) -> Vec<Decision> {
        let mut table = engine.new_flow_table();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            out.push(engine.decide(&mut table, p, Timestamp::from_secs(1), i as u64));
            for (seq, d) in table.drain_released() {
                out[seq as usize] = d;
            }
        }
        out
    }

    #[test]
    fn a_host_split_across_segments_is_read_whole() {
        let engine = Engine::new(Policy::compile("p", POLICY).unwrap());
        let d = run(
            &engine,
            &[
                seg(80, 99, true, b""),
                seg(80, 100, false, b""),
                seg(80, 100, false, b"GET / HTTP/1.1\r\nHost: 192.0"),
                seg(80, 127, false, b".2.80\r\n\r\n"),
                seg(80, 136, false, b"more"),
            ],
        );
        let reasons: Vec<Reason> = d.iter().map(|d| d.reason).collect();
        assert_eq!(
            &reasons[..2],
            [Reason::Inspecting; 2],
            "the handshake passes"
        );
        let drop = Decision::new(Verdict::Drop, Reason::Rule(0));
        assert_eq!(
            d[2], drop,
            "the partial request was held, and dropped with its flow"
        );
        assert_eq!(d[3], drop);
        assert_eq!(d[4], d[3], "the flow keeps its decision");
    }

    /// A client or server segment of a connection the capture holds from its middle.
    fn mid(from_client: bool, dport: u16, data: &[u8]) -> Vec<u8> {
        let (a, b) = ([10, 0, 0, 2], [192, 0, 2, 1]);
        let (src, dst, sport, port) = if from_client {
            (a, b, 50123, dport)
        } else {
            (b, a, dport, 50123)
        };
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .tcp(sport, port, 5000, 64000)
            .ack(1)
            .write(&mut out, data)
            .unwrap();
        out
    }

    #[test]
    fn a_flow_from_its_middle_is_decided_by_ports_or_option_midstream() {
        let engine = Engine::new(Policy::compile("p", POLICY).unwrap());
        let d = run(&engine, &[mid(true, 443, b"data")]);
        assert_eq!(
            d[0],
            Decision::new(Verdict::Reject, Reason::Midstream),
            "443's rules need the first payload, which cannot be read from the middle"
        );
        let mut table = engine.new_flow_table();
        table.keep_finished(true);
        // The server speaks first in the capture: the client is still the one on the ephemeral port.
        let d = engine.decide(
            &mut table,
            &mid(false, 22, b"x"),
            Timestamp::from_secs(1),
            0,
        );
        assert_eq!(d.reason, Reason::Policy(0), "port 22 falls to the policy");
        table.finish_all();
        let rec = table.drain_finished().next().unwrap();
        assert!(rec.flow.midstream());
        assert_eq!(
            rec.key.endpoint(rec.flow.initiator),
            ("10.0.0.2".parse().unwrap(), 50123),
            "the client is inferred from the ports"
        );
        // --lan says which side is local, whatever the ports.
        let lan = Engine::new(Policy::compile("p", POLICY).unwrap())
            .with_lan(vec![Cidr::parse("192.0.2.0/24").unwrap()]);
        let mut table = lan.new_flow_table();
        table.keep_finished(true);
        lan.decide(
            &mut table,
            &mid(false, 22, b"x"),
            Timestamp::from_secs(1),
            0,
        );
        table.finish_all();
        let rec = table.drain_finished().next().unwrap();
        assert_eq!(
            rec.key.endpoint(rec.flow.initiator).0,
            "192.0.2.1".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_protocol_spoken_decides_on_a_port() {
        let engine = Engine::new(Policy::compile("p", POLICY).unwrap());
        let ssh = run(
            &engine,
            &[
                seg(443, 9, true, b""),
                seg(443, 10, false, b"SSH-2.0-OpenSSH_9.2p1\r\n"),
            ],
        );
        assert_eq!(ssh[1], Decision::new(Verdict::Drop, Reason::Rule(2)));
        // A TLS record header: decided once the ClientHello is whole or cannot be one.
        let tls = run(
            &engine,
            &[
                seg(443, 9, true, b""),
                seg(
                    443,
                    10,
                    false,
                    &[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0],
                ),
            ],
        );
        assert_eq!(
            tls[1].reason,
            Reason::Rule(2),
            "a TLS header without a ClientHello is not TLS"
        );
    }

    #[test]
    fn a_flow_that_never_speaks_meets_the_budget() {
        let engine = Engine::new(Policy::compile("p", POLICY).unwrap());
        let quiet: Vec<Vec<u8>> = std::iter::once(seg(80, 99, true, b""))
            .chain((0..4).map(|_| seg(80, 100, false, b"")))
            .collect();
        let d = run(&engine, &quiet);
        assert_eq!(d[2].reason, Reason::Inspecting);
        assert_eq!(
            d[3],
            Decision::new(Verdict::Drop, Reason::InspectLimit),
            "4th packet: the budget"
        );
        assert_eq!(d[4], d[3]);
    }
}

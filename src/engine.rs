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
use crate::flow::{FlowKey, FlowTable};
use crate::inspect::detect::Transport as Carrier;
use crate::inspect::{ftp, read_payload};
use crate::packet::{Packet, Transport};
use crate::policy::{Eval, Policy};

/// The decision of a flow that waits for its first payload.
const INSPECTING: Decision = Decision {
    verdict: Verdict::Accept,
    reason: Reason::Inspecting,
};

/// The decision of a data connection an accepted FTP control connection announced.
const FTP_DATA: Decision = Decision {
    verdict: Verdict::Accept,
    reason: Reason::FtpData,
};

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
}

impl Engine {
    pub fn new(policy: Policy) -> Engine {
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A flow table sized and timed by the policy's options, for one worker.
    pub fn new_flow_table(&self) -> FlowTable {
        FlowTable::new(self.policy.options().flows)
    }

    /// Decides one IP packet. `now` is capture time (replay) or monotonic time (live); `seq` is the
    /// caller's ordinal of the packet, kept as the flow's first-packet order.
    pub fn decide(&self, flows: &mut FlowTable, ip: &[u8], now: Timestamp, seq: u64) -> Decision {
        let malformed = self.policy.options().malformed;
        let packet = match Packet::parse(ip) {
            Ok(p) => p,
            Err(m) => {
                return Decision {
                    verdict: malformed,
                    reason: Reason::Malformed(m),
                };
            }
        };
        let Some(key) = FlowKey::of(&packet) else {
            // A later fragment has no ports: it follows its first fragment's flow, or is an orphan.
            return flows.follow_fragment(&packet, now).unwrap_or(Decision {
                verdict: malformed,
                reason: Reason::OrphanFragment,
            });
        };
        let announced = flows.take_expected(&packet, &key.0, now);
        let decision = flows.decide_or_insert(&packet, key, now, seq, || {
            if announced {
                return FTP_DATA;
            }
            match self.policy.evaluate(&packet, None) {
                Eval::Decided(d) => d,
                Eval::NeedPayload => INSPECTING,
            }
        });
        if decision.reason != Reason::Inspecting {
            if decision.verdict == Verdict::Accept && !packet.payload.is_empty() {
                ftp_control(flows, &packet, now);
            }
            return decision;
        }
        let carrier = match packet.transport {
            Transport::Tcp { .. } => Carrier::Tcp,
            _ => Carrier::Udp,
        };
        let options = self.policy.options();
        let limit = Decision {
            verdict: options.inspect_limit,
            reason: Reason::InspectLimit,
        };
        // Only the initiator's packets add payload, so `packet` is the initiator's when `read` runs.
        let read = |bytes: &[u8]| {
            let payload = read_payload(carrier, bytes)?;
            match self.policy.evaluate(&packet, Some(&payload)) {
                Eval::Decided(d) => Some((d, payload)),
                Eval::NeedPayload => None,
            }
        };
        flows
            .inspect(&packet, key, options.inspect, read, limit, now)
            .unwrap_or(INSPECTING)
    }
}

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

    fn run(engine: &Engine, packets: &[Vec<u8>]) -> Vec<Decision> {
        let mut table = engine.new_flow_table();
        packets
            .iter()
            .enumerate()
            .map(|(i, p)| engine.decide(&mut table, p, Timestamp::from_secs(1), i as u64))
            .collect()
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
            &reasons[..3],
            [Reason::Inspecting; 3],
            "the handshake and the partial request pass"
        );
        assert_eq!(
            d[3],
            Decision {
                verdict: Verdict::Drop,
                reason: Reason::Rule(0)
            }
        );
        assert_eq!(d[4], d[3], "the flow keeps its decision");
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
        assert_eq!(
            ssh[1],
            Decision {
                verdict: Verdict::Drop,
                reason: Reason::Rule(2)
            }
        );
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
            Decision {
                verdict: Verdict::Drop,
                reason: Reason::InspectLimit
            },
            "4th packet: the budget"
        );
        assert_eq!(d[4], d[3]);
    }
}

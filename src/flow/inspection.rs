//! Waiting for a flow's first payload: collecting it, holding its packets back, and the bounds on both.
//!
//! A flow that a payload rule may concern passes its handshake (SYN, bare ACKs) and holds back every
//! packet of the initiator that carries payload (or a FIN) until the payload read so far decides the flow,
//! or the budget runs out; then each held packet gets the flow's decision, in the order they came. So a
//! flow that is dropped delivers none of its payload, and what the server reads is what was decided on.
//!
//! Bounds, each ending in the flow's `inspect-limit` decision:
//! - per flow: `packets` from the initiator (handshake included), `bytes` of payload (a UDP flow's
//!   datagrams all count: a QUIC ClientHello may take several), and `time` from its
//!   first held packet (held packets wait in the kernel's queue, which every new flow shares);
//! - per table (per worker): `memory` bytes of payload collected and `held` packets held back, checked
//!   before a packet is taken in: the flow waiting the longest is ended to make room, and the packet's
//!   own flow when no other can be;
//! - an initiator's RST ends the wait (the connection is gone), and overlapping segments that disagree
//!   end it as `ambiguous-stream` (what the server reads cannot be known, see `stream`).

use super::stream::{Added, Stream};
use super::{FlowKey, FlowRecord, FlowTable, Inspected, NANOS, Side};
use crate::Timestamp;
use crate::decision::{Decision, Reason, Verdict};
use crate::inspect::{Collected, Payload};
use crate::packet::{Packet, Transport};

/// How a flow's first payload may be waited for (the policy's `inspect-*` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InspectConfig {
    /// Packets from the initiator, handshake included.
    pub packets: u32,
    /// Bytes of the initiator's payload.
    pub bytes: usize,
    /// Seconds a held packet may wait for its flow's decision.
    pub time: u64,
    /// Bytes of payload collected by all the flows of one table (one worker).
    pub memory: usize,
    /// Packets held back by one table at once.
    pub held: usize,
    /// The verdict a flow gets when its payload did not come, or did not parse, within the bounds.
    pub limit: Verdict,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            packets: 8,
            bytes: 8192,
            time: 5,
            memory: 16 << 20,
            held: 8192,
            limit: Verdict::Drop,
        }
    }
}

/// What became of a packet of a flow waiting for its first payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspect {
    /// The flow is decided now; this packet gets the decision (held ones are released before it).
    Decided(Decision),
    /// The packet is held back until the flow is decided.
    Held,
    /// The packet carries no payload (handshake, bare ACK) or comes from the responder: it passes.
    Pass,
}

/// The initiator's payload so far, and the packets it holds back.
#[derive(Debug)]
pub(super) struct Inspection {
    stream: Stream,
    /// When the wait began, to end the oldest first when room is needed.
    started: Timestamp,
    /// When the first held packet's wait runs out.
    deadline: Option<Timestamp>,
    packets: u32,
    /// The caller's ordinals of the held packets, in arrival order.
    held: Vec<u64>,
}

impl FlowTable {
    fn limit(&self) -> Decision {
        Decision::new(self.config.inspect.limit, Reason::InspectLimit)
    }

    /// Feeds a packet of a flow still waiting for its first payload. The initiator's payload is collected
    /// (TCP in sequence order, UDP datagram by datagram, all kept); whenever it grew, `read` is asked for the
    /// flow's decision, and `Some` ends the wait. The decision becomes the flow's for all its later
    /// packets, and the held ones are released with it ([`FlowTable::drain_released`]).
    pub fn inspect(
        &mut self,
        p: &Packet<'_>,
        (key, side): (FlowKey, Side),
        read: impl FnOnce(Collected<'_>) -> Option<(Decision, Payload)>,
        now: Timestamp,
        seq: u64,
    ) -> Inspect {
        // Only the initiator's payload is read (live, replies never reach the daemon).
        if self.flows.get(&key).is_none_or(|f| f.initiator != side) {
            return Inspect::Pass;
        }
        let cfg = self.config.inspect;
        let limit = self.limit();
        let (flags, tcp_seq) = match p.transport {
            Transport::Tcp { flags, seq, .. } => (flags.unwrap_or_default(), seq),
            _ => Default::default(),
        };
        let hold = self.hold && (!p.payload.is_empty() || flags.fin);
        // Room first: the payload this packet may add must fit in the table's inspection memory.
        while self.inspect_bytes.saturating_add(p.payload.len()) > cfg.memory {
            if !self.end_oldest_inspection(key, now) {
                self.conclude(key, limit, None, now);
                return Inspect::Decided(limit);
            }
        }
        let state = self.inspecting.entry(key).or_insert_with(|| Inspection {
            stream: Stream::default(),
            started: now,
            deadline: None,
            packets: 0,
            held: Vec::new(),
        });
        state.packets += 1;
        let before = state.stream.held();
        let added = match (p.transport, tcp_seq) {
            (Transport::Tcp { .. }, Some(s)) => {
                state.stream.segment(s, flags.syn, p.payload, cfg.bytes)
            }
            (Transport::Tcp { .. }, None) => Added::Nothing,
            _ => state.stream.datagram(p.payload),
        };
        self.inspect_bytes = (self.inspect_bytes + state.stream.held()).saturating_sub(before);
        let over = state.packets >= cfg.packets || state.stream.readable() >= cfg.bytes;
        let collected = match p.transport {
            Transport::Tcp { .. } => Collected::Stream(state.stream.bytes()),
            _ => Collected::Datagrams(state.stream.datagrams()),
        };
        let decided = match added {
            Added::Conflict => Some((Decision::new(cfg.limit, Reason::AmbiguousStream), None)),
            Added::Grew => read(collected).map(|(d, payload)| (d, Some(payload))),
            Added::Nothing => None,
        };
        let decided = decided.or_else(|| (flags.rst || over).then_some((limit, None)));
        if let Some((decision, payload)) = decided {
            self.conclude(key, decision, payload, now);
            // The client's bare reset passes, undecided in the kernel, so that the server hears it (a
            // connection the server still holds would otherwise outlive every retry from this port);
            // the flow keeps its decision for anything after it.
            if flags.rst && p.payload.is_empty() {
                return Inspect::Pass;
            }
            return Inspect::Decided(decision);
        }
        if !hold {
            return Inspect::Pass;
        }
        while self.held >= cfg.held {
            if !self.end_oldest_inspection(key, now) {
                self.conclude(key, limit, None, now);
                return Inspect::Decided(limit);
            }
        }
        let Some(state) = self.inspecting.get_mut(&key) else {
            return Inspect::Pass;
        };
        state.held.push(seq);
        self.held += 1;
        let wait = Timestamp::from_nanos(
            now.as_nanos()
                .saturating_add(cfg.time.saturating_mul(NANOS)),
        );
        let deadline = *state.deadline.get_or_insert(wait);
        self.next_deadline = self.next_deadline.min(deadline);
        Inspect::Held
    }

    /// Ends a flow's wait with `decision`: its held packets are released with it, and the flow keeps it.
    fn conclude(
        &mut self,
        key: FlowKey,
        decision: Decision,
        payload: Option<Payload>,
        now: Timestamp,
    ) {
        self.release(key, decision);
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        flow.decision = decision;
        flow.app = payload.as_ref().and_then(|p| p.app);
        let inspected = payload.map(|payload| Box::new(Inspected { at: now, payload }));
        if self.keep_created {
            self.created.push(FlowRecord {
                key,
                flow: *flow,
                inspected: inspected.clone(),
            });
        }
        if let (true, Some(i)) = (self.keep_finished, inspected) {
            self.payloads.insert(key, i);
        }
    }

    /// Drops a flow's inspection state; its held packets get `decision`. Whether it held any.
    fn release(&mut self, key: FlowKey, decision: Decision) -> bool {
        let Some(state) = self.inspecting.remove(&key) else {
            return false;
        };
        self.inspect_bytes = self.inspect_bytes.saturating_sub(state.stream.held());
        self.held = self.held.saturating_sub(state.held.len());
        let any = !state.held.is_empty();
        self.released
            .extend(state.held.into_iter().map(|seq| (seq, decision)));
        any
    }

    /// A flow leaves the table while waiting: its held packets get `inspect-limit`, which becomes its
    /// decision (`Some`); a flow that held nothing stays undecided (`None`).
    pub(super) fn end_inspection(&mut self, key: FlowKey) -> Option<Decision> {
        let limit = self.limit();
        self.release(key, limit).then_some(limit)
    }

    /// Ends the wait of the flow that has waited the longest, other than `except`, that holds anything.
    fn end_oldest_inspection(&mut self, except: FlowKey, now: Timestamp) -> bool {
        let oldest = self
            .inspecting
            .iter()
            .filter(|(k, s)| **k != except && (!s.held.is_empty() || s.stream.held() > 0))
            .map(|(k, s)| (s.started, *k))
            .min();
        let Some((_, key)) = oldest else {
            return false;
        };
        let limit = self.limit();
        self.conclude(key, limit, None, now);
        self.stats.inspections_evicted += 1;
        true
    }

    /// Flows whose held packets waited `time` get `inspect-limit`.
    pub(super) fn expire_inspections(&mut self, now: Timestamp) {
        let mut due: Vec<FlowKey> = self
            .inspecting
            .iter()
            .filter(|(_, s)| s.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        due.sort_unstable();
        let limit = self.limit();
        for key in due {
            self.conclude(key, limit, None, now);
        }
        self.next_deadline = self
            .inspecting
            .values()
            .filter_map(|s| s.deadline)
            .min()
            .unwrap_or(Timestamp::from_nanos(u64::MAX));
    }
}

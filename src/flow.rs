//! `FlowKey` and `FlowTable`: the memory of decided flows.
//!
//! Promises:
//! - Both directions of a flow meet the same entry: the key orders its two endpoints, and the entry records
//!   which one sent the first packet (the initiator, zone `loc` without zone lines).
//! - A decided flow answers from the table; the policy is evaluated once per flow.
//! - Time enters only as the `now` argument (capture time in replay, monotonic time live), so expiry is
//!   deterministic and testable. A flow expires after its protocol's idle timeout; a TCP flow closed by RST,
//!   or by FIN from both sides, lingers `tcp-closed` seconds (late ACKs and retransmissions stay in the
//!   flow), and a fresh SYN on a closed flow starts a new one.
//! - Memory is bounded: at `max_flows`, expired flows are swept first; if the table is still full, the
//!   eighth of the flows idle the longest are evicted (counted). Live, an evicted flow is harmless (its
//!   verdict lives on in the conntrack mark); in replay its later packets start a new flow.
//! - One table per worker, owned by it: workers never share or wait on each other.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use ahash::RandomState;

use crate::Timestamp;
use crate::decision::{Decision, Reason};
use crate::inspect::Payload;
use crate::inspect::detect::App;
use crate::packet::{Packet, TcpFlags, Transport, has_echo_ident};

const NANOS: u64 = 1_000_000_000;
/// How long the first fragment of a datagram tells where its later fragments belong (Linux ipfrag_time).
const FRAGMENT_TIMEOUT: u64 = 30 * NANOS;
/// Bound on the fragment memory; past it later fragments become orphans (counted).
const MAX_FRAGMENTS: usize = 65_536;
/// How long an announced FTP data connection is expected (nf_conntrack_ftp's expectation timeout).
const FTP_EXPECT_TIMEOUT: u64 = 300 * NANOS;
/// Bound on the announced data connections held; past it new announcements are ignored.
const MAX_EXPECTED: usize = 4096;
/// Expired flows are swept at most this often (capture or monotonic time).
const SWEEP_INTERVAL: u64 = 10 * NANOS;

/// Idle timeouts per protocol, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u64,
    pub tcp_closed: u64,
    pub udp: u64,
    pub icmp: u64,
    pub other: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: 3600,
            tcp_closed: 120,
            udp: 120,
            icmp: 30,
            other: 600,
        }
    }
}

/// Flow table settings (from the policy's `option` lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    pub timeouts: Timeouts,
    /// Maximum number of flows one table (one worker) holds.
    pub max_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            timeouts: Timeouts::default(),
            max_flows: 262_144,
        }
    }
}

/// A flow's identity, the same for both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    // Addresses as IPv4-mapped 128-bit numbers in two words: compared and hashed as words, not as
    // byte slices, 8-byte aligned (a u128 would pad the entry to 16), and ports kept apart from them
    // so that the key packs into 40 bytes.
    lo_addr: [u64; 2],
    hi_addr: [u64; 2],
    lo_port: u16,
    hi_port: u16,
    proto: u8,
    /// For ICMP query/reply exchanges, the request type (echo, timestamp, ...), so that two exchanges
    /// with the same identifier stay apart; 0 otherwise.
    exchange: u8,
}

/// Which end of a [`FlowKey`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Lo,
    Hi,
}

fn addr16(a: IpAddr) -> [u64; 2] {
    let n = match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [(n >> 64) as u64, n as u64]
}

fn addr_of(b: [u64; 2]) -> IpAddr {
    let v6 = Ipv6Addr::from((u128::from(b[0]) << 64) | u128::from(b[1]));
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

impl FlowKey {
    /// The key of a packet and the side that sent it. `None` for a later fragment (no transport header):
    /// see [`FlowTable::follow_fragment`].
    pub fn of(p: &Packet<'_>) -> Option<(FlowKey, Side)> {
        let (sport, dport, exchange) = match p.transport {
            Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport } => {
                (sport, dport, 0)
            }
            // Request and reply carry the same identifier, so both directions meet in one entry.
            Transport::Icmp {
                ident: Some(id),
                icmp_type,
                ..
            } if has_echo_ident(p.ip_proto, icmp_type) => {
                (id, id, request_type(p.ip_proto, icmp_type))
            }
            Transport::Icmp { icmp_type, .. } => (u16::from(icmp_type), u16::from(icmp_type), 0),
            Transport::Other => (0, 0, 0),
            Transport::LaterFragment => return None,
        };
        let s = (addr16(p.src), sport);
        let d = (addr16(p.dst), dport);
        let proto = p.ip_proto;
        let (lo, hi, side) = if s <= d {
            (s, d, Side::Lo)
        } else {
            (d, s, Side::Hi)
        };
        let key = FlowKey {
            lo_addr: lo.0,
            hi_addr: hi.0,
            lo_port: lo.1,
            hi_port: hi.1,
            proto,
            exchange,
        };
        Some((key, side))
    }

    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// The endpoint on `side` as (address, port); the "port" of ICMP flows is the echo id or the type.
    pub fn endpoint(&self, side: Side) -> (IpAddr, u16) {
        let (a, port) = match side {
            Side::Lo => (self.lo_addr, self.lo_port),
            Side::Hi => (self.hi_addr, self.hi_port),
        };
        (addr_of(a), port)
    }
}

/// The request type of an ICMP query/reply pair (RFC 792: echo 8/0, timestamp 13/14, information 15/16;
/// RFC 4443: echo 128/129).
fn request_type(ip_proto: u8, icmp_type: u8) -> u8 {
    match (ip_proto, icmp_type) {
        (1, 0) => 8,
        (1, 14) => 13,
        (1, 16) => 15,
        (58, 129) => 128,
        (_, t) => t,
    }
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// What the table remembers of one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub decision: Decision,
    pub initiator: Side,
    /// The caller's ordinal of the flow's first packet (replay: record order), for ordering logs.
    pub first_seq: u64,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    pub packets: u64,
    pub bytes: u64,
    /// ICMP type of the first packet.
    pub icmp_type: Option<u8>,
    /// The protocol its first payload showed, when a rule looked.
    pub app: Option<App>,
    fin_lo: bool,
    fin_hi: bool,
    rst: bool,
}

impl Flow {
    fn tcp_closed(&self) -> bool {
        self.rst || (self.fin_lo && self.fin_hi)
    }

    /// Idle time after which the flow is over, in nanoseconds.
    fn timeout(&self, t: &Timeouts, proto: u8) -> u64 {
        let secs = match proto {
            6 if self.tcp_closed() => t.tcp_closed,
            6 => t.tcp,
            17 => t.udp,
            1 | 58 => t.icmp,
            _ => t.other,
        };
        secs.saturating_mul(NANOS)
    }

    fn is_expired(&self, t: &Timeouts, proto: u8, now: Timestamp) -> bool {
        now.as_nanos().saturating_sub(self.last_ts.as_nanos()) > self.timeout(t, proto)
    }

    fn count(&mut self, p: &Packet<'_>, now: Timestamp) {
        self.last_ts = now;
        self.packets += 1;
        self.bytes += u64::from(p.wire_len);
    }

    fn note_close(&mut self, side: Side, flags: TcpFlags) {
        self.rst |= flags.rst;
        match side {
            Side::Lo => self.fin_lo |= flags.fin,
            Side::Hi => self.fin_hi |= flags.fin,
        }
    }
}

/// A flow that left the table, handed to the caller when [`FlowTable::keep_finished`] is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    pub flow: Flow,
    /// What its first payload showed (HTTP request, ClientHello), when a rule looked at it.
    pub inspected: Option<Box<Inspected>>,
}

/// A flow's first payload, as read for a rule, and when it decided the flow. Kept apart from
/// [`Flow`] so that the table's entries stay small: only inspected flows carry one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub at: Timestamp,
    pub payload: Payload,
}

/// Counters of the table's housekeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    pub orphan_fragments: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FragmentKey {
    src: [u64; 2],
    dst: [u64; 2],
    id: u32,
    proto: u8,
}

/// One worker's flows.
pub struct FlowTable {
    config: FlowConfig,
    flows: HashMap<FlowKey, Flow, RandomState>,
    fragments: HashMap<FragmentKey, (FlowKey, Timestamp), RandomState>,
    next_sweep: Timestamp,
    keep_finished: bool,
    finished: Vec<FlowRecord>,
    keep_created: bool,
    created: Vec<FlowRecord>,
    /// Flows whose verdict waits for their first payload.
    inspecting: HashMap<FlowKey, Inspection, RandomState>,
    /// What decided flows' first payloads showed, kept for their records while `keep_finished` is on.
    payloads: HashMap<FlowKey, Box<Inspected>, RandomState>,
    /// Data connections FTP control connections announced: (initiator, responder, responder port),
    /// with the time they stop being expected.
    expected: HashMap<([u64; 2], [u64; 2], u16), Timestamp, RandomState>,
    stats: FlowStats,
}

/// How much of a flow's first payload may be waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InspectBudget {
    /// Packets from the initiator, handshake included.
    pub packets: u32,
    /// Bytes of the initiator's payload.
    pub bytes: usize,
}

impl Default for InspectBudget {
    fn default() -> Self {
        InspectBudget {
            packets: 8,
            bytes: 8192,
        }
    }
}

/// The initiator's payload so far, in sequence order (TCP) or its first datagram (UDP).
#[derive(Debug, Default)]
struct Inspection {
    stream: Vec<u8>,
    /// The next TCP sequence number expected from the initiator, once known.
    next_seq: Option<u32>,
    packets: u32,
}

impl Inspection {
    /// Adds a TCP segment from the initiator; true when it brought new bytes. A retransmission adds only
    /// what goes past the bytes already held (the first copy of a byte wins, as in the receiver's
    /// reassembly); a segment after a gap is skipped: it comes again after the missing one.
    fn add_segment(&mut self, seq: Option<u32>, syn: bool, data: &[u8]) -> bool {
        let Some(seq) = seq else { return false };
        if syn {
            // RFC 9293 §3.4: the SYN takes one sequence number.
            self.next_seq = Some(seq.wrapping_add(1).wrapping_add(data.len() as u32));
            self.stream.extend_from_slice(data);
            return !data.is_empty();
        }
        if data.is_empty() {
            return false;
        }
        let next = *self.next_seq.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next) as i32;
        if ahead > 0 {
            return false;
        }
        let skip = (-(ahead as i64)) as usize;
        let Some(fresh) = data.get(skip..).filter(|f| !f.is_empty()) else {
            return false;
        };
        self.stream.extend_from_slice(fresh);
        self.next_seq = Some(next.wrapping_add(fresh.len() as u32));
        true
    }
}

impl FlowTable {
    pub fn new(config: FlowConfig) -> FlowTable {
        // Fixed hash seeds: the table's behaviour (and a replay's) must not depend on the run.
        let hasher = RandomState::with_seeds(0x6f75_7467, 0x6174_6521, 0x666c_6f77, 0x7461_626c);
        FlowTable {
            config,
            flows: HashMap::with_hasher(hasher.clone()),
            fragments: HashMap::with_hasher(hasher),
            next_sweep: Timestamp::default(),
            keep_finished: false,
            finished: Vec::new(),
            keep_created: false,
            created: Vec::new(),
            inspecting: HashMap::with_hasher(RandomState::with_seeds(7, 8, 9, 10)),
            expected: HashMap::with_hasher(RandomState::with_seeds(11, 12, 13, 14)),
            payloads: HashMap::with_hasher(RandomState::with_seeds(15, 16, 17, 18)),
            stats: FlowStats::default(),
        }
    }

    /// When on, flows that leave the table (expired, evicted, or at [`FlowTable::finish_all`]) are kept
    /// for [`FlowTable::drain_finished`]; replay uses this to report every flow.
    pub fn keep_finished(&mut self, keep: bool) {
        self.keep_finished = keep;
    }

    /// When on, every new flow is also kept, as decided on its first packet, for
    /// [`FlowTable::drain_created`]; the live daemon logs flows this way, at their decision.
    pub fn keep_created(&mut self, keep: bool) {
        self.keep_created = keep;
    }

    /// Flows created since the last call.
    pub fn drain_created(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.created.drain(..)
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// The hot path: counts the packet on its flow and returns the flow's decision, or, for a new flow,
    /// asks `decide_new` (the policy) and remembers the answer. A known flow costs one hash lookup.
    pub fn decide_or_insert(
        &mut self,
        p: &Packet<'_>,
        (key, side): (FlowKey, Side),
        now: Timestamp,
        seq: u64,
        decide_new: impl FnOnce() -> Decision,
    ) -> Decision {
        if now >= self.next_sweep {
            self.sweep(now);
        }
        let flags = match p.transport {
            Transport::Tcp { flags, .. } => flags.unwrap_or_default(),
            _ => TcpFlags::default(),
        };
        if p.fragment.is_some_and(|f| f.offset == 0 && f.more) {
            self.remember_fragment(p, key, now);
        }
        let timeouts = self.config.timeouts;
        if let Some(flow) = self.flows.get_mut(&key) {
            let fresh_syn = flags.syn && !flags.ack && flow.tcp_closed();
            if !fresh_syn && !flow.is_expired(&timeouts, key.proto, now) {
                flow.count(p, now);
                flow.note_close(side, flags);
                return flow.decision;
            }
            // The old flow is over: report it, and decide the packet as the first of a new one.
            if let Some(old) = self.flows.remove(&key) {
                self.finish(key, old);
                self.stats.expired += 1;
            }
        } else if self.flows.len() >= self.config.max_flows {
            self.make_room(now);
        }
        let decision = decide_new();
        let icmp_type = match p.transport {
            Transport::Icmp { icmp_type, .. } => Some(icmp_type),
            _ => None,
        };
        let mut flow = Flow {
            decision,
            initiator: side,
            first_seq: seq,
            first_ts: now,
            last_ts: now,
            packets: 0,
            bytes: 0,
            icmp_type,
            app: None,
            fin_lo: false,
            fin_hi: false,
            rst: false,
        };
        flow.count(p, now);
        flow.note_close(side, flags);
        // A flow waiting for its payload is reported when that decides it (see `inspect`).
        if self.keep_created && decision.reason != Reason::Inspecting {
            self.created.push(FlowRecord {
                key,
                flow,
                inspected: None,
            });
        }
        self.flows.insert(key, flow);
        self.stats.created += 1;
        decision
    }

    fn fragment_key(p: &Packet<'_>) -> Option<FragmentKey> {
        let f = p.fragment?;
        Some(FragmentKey {
            src: addr16(p.src),
            dst: addr16(p.dst),
            id: f.id,
            proto: p.ip_proto,
        })
    }

    fn remember_fragment(&mut self, p: &Packet<'_>, key: FlowKey, now: Timestamp) {
        if let Some(fk) = Self::fragment_key(p)
            && (self.fragments.len() < MAX_FRAGMENTS || self.fragments.contains_key(&fk))
        {
            let expires = Timestamp::from_nanos(now.as_nanos().saturating_add(FRAGMENT_TIMEOUT));
            self.fragments.insert(fk, (key, expires));
        }
    }

    /// A later fragment follows the flow of its first fragment, if that was seen (and is still in the
    /// table): the packet is counted there and gets its decision. `None` means an orphan (counted); the
    /// caller decides it without ports.
    pub fn follow_fragment(&mut self, p: &Packet<'_>, now: Timestamp) -> Option<Decision> {
        let found = Self::fragment_key(p)
            .and_then(|fk| self.fragments.get(&fk))
            .filter(|(_, expires)| now <= *expires)
            .map(|(key, _)| *key)
            .and_then(|key| self.flows.get_mut(&key));
        match found {
            Some(flow) => {
                flow.count(p, now);
                Some(flow.decision)
            }
            None => {
                self.stats.orphan_fragments += 1;
                None
            }
        }
    }

    /// Feeds a packet of a flow still waiting for its first payload. The initiator's payload is collected
    /// (TCP in sequence order, UDP datagram by datagram); whenever it grew, `read` is asked for the
    /// flow's decision, and `Some` ends the wait. Past `budget`, the flow gets `limit`. The decision
    /// becomes the flow's for all its later packets; `None` means: still waiting.
    pub fn inspect(
        &mut self,
        p: &Packet<'_>,
        (key, side): (FlowKey, Side),
        budget: InspectBudget,
        read: impl FnOnce(&[u8]) -> Option<(Decision, Payload)>,
        limit: Decision,
        now: Timestamp,
    ) -> Option<Decision> {
        let initiator = self.flows.get(&key).map(|f| f.initiator)?;
        let state = self.inspecting.entry(key).or_default();
        let mut grew = false;
        if side == initiator {
            state.packets += 1;
            grew = match p.transport {
                Transport::Tcp { seq, flags, .. } => {
                    state.add_segment(seq, flags.is_some_and(|f| f.syn), p.payload)
                }
                _ if !p.payload.is_empty() => {
                    state.stream.clear();
                    state.stream.extend_from_slice(p.payload);
                    true
                }
                _ => false,
            };
        }
        let decided = if grew { read(&state.stream) } else { None };
        let over = state.packets >= budget.packets || state.stream.len() >= budget.bytes;
        let (decision, payload) = match decided {
            Some((d, payload)) => (d, Some(payload)),
            None if over => (limit, None),
            None => return None,
        };
        self.inspecting.remove(&key);
        if let Some(flow) = self.flows.get_mut(&key) {
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
        Some(decision)
    }

    /// Expects a TCP connection from `initiator` to `responder:port` (an FTP data channel), for a while.
    pub fn expect_connection(
        &mut self,
        initiator: IpAddr,
        responder: IpAddr,
        port: u16,
        now: Timestamp,
    ) {
        let key = (addr16(initiator), addr16(responder), port);
        if self.expected.len() < MAX_EXPECTED || self.expected.contains_key(&key) {
            let until = Timestamp::from_nanos(now.as_nanos().saturating_add(FTP_EXPECT_TIMEOUT));
            self.expected.insert(key, until);
        }
    }

    /// Whether `p` opens a connection that was expected (and is not a flow yet); the expectation is
    /// used up, as the kernel's is.
    pub fn take_expected(&mut self, p: &Packet<'_>, key: &FlowKey, now: Timestamp) -> bool {
        if self.expected.is_empty() || self.flows.contains_key(key) {
            return false;
        }
        let Transport::Tcp { dport, .. } = p.transport else {
            return false;
        };
        self.expected
            .remove(&(addr16(p.src), addr16(p.dst), dport))
            .is_some_and(|until| now <= until)
    }

    fn finish(&mut self, key: FlowKey, flow: Flow) {
        self.inspecting.remove(&key);
        if self.keep_finished {
            let inspected = self.payloads.remove(&key);
            self.finished.push(FlowRecord {
                key,
                flow,
                inspected,
            });
        }
    }

    /// Removes expired flows and fragment entries.
    pub fn sweep(&mut self, now: Timestamp) {
        self.next_sweep = Timestamp::from_nanos(now.as_nanos().saturating_add(SWEEP_INTERVAL));
        let t = self.config.timeouts;
        let expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, f)| f.is_expired(&t, k.proto, now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(flow) = self.flows.remove(&key) {
                self.finish(key, flow);
                self.stats.expired += 1;
            }
        }
        self.fragments.retain(|_, (_, expires)| now <= *expires);
        self.expected.retain(|_, until| now <= *until);
    }

    /// At the limit: sweep, then evict the eighth of the flows idle the longest.
    fn make_room(&mut self, now: Timestamp) {
        self.sweep(now);
        if self.flows.len() < self.config.max_flows {
            return;
        }
        let mut idle: Vec<(Timestamp, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.last_ts, *k)).collect();
        let n = (idle.len() / 8).max(1);
        idle.select_nth_unstable(n - 1);
        for (_, key) in idle.into_iter().take(n) {
            if let Some(flow) = self.flows.remove(&key) {
                self.finish(key, flow);
                self.stats.evicted += 1;
            }
        }
    }

    /// Ends every flow (end of a replay), keeping them for [`FlowTable::drain_finished`] when enabled.
    pub fn finish_all(&mut self) {
        let flows: Vec<(FlowKey, Flow)> = self.flows.drain().collect();
        for (key, flow) in flows {
            self.finish(key, flow);
        }
        self.fragments.clear();
        self.inspecting.clear();
    }

    /// Flows that left the table since the last call.
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.finished.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Verdict;
    use etherparse::PacketBuilder;

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(1),
                'F' => b.fin(),
                'R' => b.rst(),
                _ => b,
            };
        }
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    const ACCEPT: Decision = Decision {
        verdict: Verdict::Accept,
        reason: Reason::NoPolicy,
    };
    const DROP: Decision = Decision {
        verdict: Verdict::Drop,
        reason: Reason::NoPolicy,
    };

    fn feed(t: &mut FlowTable, bytes: &[u8], secs: u64, d: Decision) -> Decision {
        let p = Packet::parse(bytes).unwrap();
        let k = FlowKey::of(&p).unwrap();
        t.decide_or_insert(&p, k, Timestamp::from_secs(secs), 0, || d)
    }

    #[test]
    fn both_directions_share_one_flow_decided_once() {
        let mut t = FlowTable::new(FlowConfig::default());
        let out = tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, "S");
        let back = tcp([192, 0, 2, 1], 80, [10, 0, 0, 2], 40000, "SA");
        assert_eq!(feed(&mut t, &out, 1, ACCEPT), ACCEPT);
        // The second packet must not ask the policy again: the closure's answer is ignored.
        assert_eq!(feed(&mut t, &back, 1, DROP), ACCEPT);
        assert_eq!(t.len(), 1);
        t.keep_finished(true);
        t.finish_all();
        let rec: Vec<_> = t.drain_finished().collect();
        assert_eq!(rec[0].flow.packets, 2);
        assert_eq!(
            rec[0].key.endpoint(rec[0].flow.initiator),
            ("10.0.0.2".parse().unwrap(), 40000)
        );
    }

    #[test]
    fn idle_flow_expires_and_is_decided_again() {
        let mut t = FlowTable::new(FlowConfig::default());
        let out = tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, "A");
        feed(&mut t, &out, 0, ACCEPT);
        assert_eq!(feed(&mut t, &out, 3600, DROP), ACCEPT, "within the timeout");
        assert_eq!(
            feed(&mut t, &out, 7201, DROP),
            DROP,
            "after the timeout: a new flow"
        );
        assert_eq!(t.stats().expired, 1);
    }

    #[test]
    fn closed_tcp_lingers_then_fresh_syn_starts_new_flow() {
        let mut t = FlowTable::new(FlowConfig::default());
        feed(
            &mut t,
            &tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, "S"),
            0,
            ACCEPT,
        );
        feed(
            &mut t,
            &tcp([192, 0, 2, 1], 80, [10, 0, 0, 2], 40000, "R"),
            1,
            DROP,
        );
        // A late ACK stays in the closed flow.
        assert_eq!(
            feed(
                &mut t,
                &tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, "A"),
                2,
                DROP
            ),
            ACCEPT
        );
        // A new SYN on the same ports is a new connection.
        assert_eq!(
            feed(
                &mut t,
                &tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, "S"),
                3,
                DROP
            ),
            DROP
        );
        assert_eq!(t.stats().created, 2);
    }

    fn segment(seq: u32, syn: bool, data: &[u8], i: &mut Inspection) -> (bool, String) {
        let grew = i.add_segment(Some(seq), syn, data);
        (grew, String::from_utf8_lossy(&i.stream).into_owned())
    }

    #[test]
    fn segments_reassemble_in_order_first_copy_wins() {
        let mut i = Inspection::default();
        assert_eq!(
            segment(99, true, b"", &mut i),
            (false, "".into()),
            "SYN: next is 100"
        );
        assert_eq!(
            segment(100, false, b"GET / HT", &mut i),
            (true, "GET / HT".into())
        );
        assert_eq!(
            segment(100, false, b"GET / HT", &mut i),
            (false, "GET / HT".into()),
            "retransmission"
        );
        assert_eq!(
            segment(112, false, b"Host", &mut i),
            (false, "GET / HT".into()),
            "after a gap: skipped"
        );
        assert_eq!(
            segment(104, false, b"XXXXTP/1", &mut i),
            (true, "GET / HTTP/1".into()),
            "overlap: old bytes win"
        );
        let mut w = Inspection::default();
        segment(u32::MAX, true, b"", &mut w);
        assert_eq!(
            segment(0, false, b"ab", &mut w),
            (true, "ab".into()),
            "sequence numbers wrap"
        );
    }

    #[test]
    fn inspection_decides_once_or_at_the_budget() {
        const WAIT: Decision = Decision {
            verdict: Verdict::Accept,
            reason: Reason::Inspecting,
        };
        const LIMIT: Decision = Decision {
            verdict: Verdict::Drop,
            reason: Reason::InspectLimit,
        };
        let budget = InspectBudget {
            packets: 3,
            bytes: 100,
        };
        let mut t = FlowTable::new(FlowConfig::default());
        t.keep_created(true);
        let syn = tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, "S");
        assert_eq!(feed(&mut t, &syn, 0, WAIT), WAIT);
        assert_eq!(t.drain_created().count(), 0, "not reported while waiting");
        let p = Packet::parse(&syn).unwrap();
        let k = FlowKey::of(&p).unwrap();
        assert_eq!(
            t.inspect(
                &p,
                k,
                budget,
                |_| Some((ACCEPT, Payload::default())),
                LIMIT,
                Timestamp::from_secs(1)
            ),
            None,
            "a SYN has no payload"
        );
        assert_eq!(
            t.inspect(
                &p,
                k,
                budget,
                |_| Some((ACCEPT, Payload::default())),
                LIMIT,
                Timestamp::from_secs(1)
            ),
            None
        );
        assert_eq!(
            t.inspect(
                &p,
                k,
                budget,
                |_| Some((ACCEPT, Payload::default())),
                LIMIT,
                Timestamp::from_secs(1)
            ),
            Some(LIMIT),
            "third packet: budget"
        );
        assert_eq!(
            feed(&mut t, &syn, 1, WAIT),
            LIMIT,
            "the flow keeps the decision"
        );
        let logged: Vec<_> = t.drain_created().collect();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].flow.decision, LIMIT);
    }

    #[test]
    fn full_table_evicts_the_longest_idle() {
        let cfg = FlowConfig {
            max_flows: 16,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        t.keep_finished(true);
        for i in 0..40u16 {
            feed(
                &mut t,
                &tcp([10, 0, 0, 2], 1000 + i, [192, 0, 2, 1], 80, "S"),
                u64::from(i),
                ACCEPT,
            );
            assert!(t.len() <= 16);
        }
        assert!(t.stats().evicted >= 24);
        // The newest flow survived, the oldest did not.
        let evicted: Vec<u16> = t
            .drain_finished()
            .map(|r| r.key.endpoint(r.flow.initiator).1)
            .collect();
        assert!(evicted.contains(&1000) && !evicted.contains(&1039));
    }
}

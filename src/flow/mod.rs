//! `FlowKey` and `FlowTable`: the memory of flows, decided and waiting.
//!
//! Promises:
//! - Both directions of a flow meet the same entry: the key orders its two endpoints, and the entry records
//!   which one started the flow (the initiator, zone `loc` without zone lines).
//! - A decided flow answers from the table; the policy is evaluated once per connection.
//! - A new connection is a new flow, whatever 4-tuple it reuses: a SYN whose initial sequence number is
//!   not the flow's starts a new flow, as does a SYN on a closed flow. In an offloaded table (live: the
//!   kernel answers an accepted flow's later packets from its conntrack mark), a SYN that still reaches
//!   the table on an accepted flow can only belong to a new conntrack entry, so it starts a new flow too.
//! - A TCP flow first seen without its SYN is marked `midstream`: its first payload cannot be read.
//! - Time enters only as the `now` argument (capture time in replay, monotonic time live), so expiry is
//!   deterministic and testable. A flow expires after its protocol's idle timeout; a TCP flow closed by RST,
//!   or by FIN from both sides, lingers `tcp-closed` seconds (late ACKs and retransmissions stay in the
//!   flow). In an offloaded table an accepted flow is only kept [`SETTLE`] for the packets that were
//!   already on their way to the daemon, and a dropped TCP flow `tcp-closed` for its retries.
//! - A flow waiting for its first payload holds its payload packets back (see `inspection`): the
//!   packets get the flow's decision when it comes, in order, never before.
//! - Memory is bounded: at `max_flows`, expired flows are swept first; if the table is still full, the
//!   eighth of the decided flows idle the longest are evicted (counted), and flows waiting for their
//!   payload only when no decided flow is left. Live, an evicted decided flow is harmless (its verdict
//!   lives on in the conntrack mark); in replay its later packets start a new flow. Inspection memory
//!   and held packets have bounds of their own (`InspectConfig`).
//! - One table per worker, owned by it: workers never share or wait on each other. Hash seeds are random
//!   (a LAN client chooses ports and addresses); nothing that is reported depends on the hash order.

mod inspection;
mod key;
mod message;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;

use ahash::RandomState;
use indexmap::IndexMap;

use crate::Timestamp;
use crate::decision::{Decision, Reason, Verdict};
use crate::inspect::Payload;
use crate::inspect::detect::App;
use crate::packet::{Packet, TcpFlags, Transport};
use inspection::Inspection;
pub use inspection::{Inspect, InspectConfig};
use key::addr16;
pub use key::{FlowKey, Side};
pub use message::{Message, MessageRecord};

const NANOS: u64 = 1_000_000_000;
/// How long the first fragment of a datagram tells where its later fragments belong (Linux ipfrag_time).
const FRAGMENT_TIMEOUT: u64 = 30 * NANOS;
/// Bound on the fragment memory; past it later fragments become orphans (counted).
const MAX_FRAGMENTS: usize = 65_536;
/// How long an announced FTP data connection is expected (nf_conntrack_ftp's expectation timeout).
const FTP_EXPECT_TIMEOUT: u64 = 300 * NANOS;
/// Bound on the announced data connections held; past it new announcements are ignored.
const MAX_EXPECTED: usize = 4096;
/// Expired flows are swept at most this often (capture or monotonic time); an offloaded table, whose
/// accepted flows only settle, more often.
const SWEEP_INTERVAL: u64 = 10 * NANOS;
const SWEEP_INTERVAL_OFFLOADED: u64 = NANOS;
/// Offloaded table: how long an accepted flow is kept after its last packet. Its later packets are
/// answered by the kernel; only packets queued before the verdict reached the kernel still come.
pub const SETTLE: u64 = 2;

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
    /// How a flow's first payload is waited for.
    pub inspect: InspectConfig,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            timeouts: Timeouts::default(),
            max_flows: 262_144,
            inspect: InspectConfig::default(),
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
    /// Of `packets` and `bytes`, those the initiator sent.
    pub init_packets: u64,
    pub init_bytes: u64,
    /// ICMP type of the first packet.
    pub icmp_type: Option<u8>,
    /// The protocol its first payload showed, when a rule looked.
    pub app: Option<App>,
    /// The initiator's initial sequence number, for a TCP flow that began with its SYN (`HAS_ISN`).
    isn: u32,
    /// `FIN_LO`, `FIN_HI`, `RST`, `MIDSTREAM`, `HAS_ISN`: one byte, so that an entry (key and flow)
    /// stays at 120 bytes.
    bits: u8,
}

const FIN_LO: u8 = 1;
const FIN_HI: u8 = 2;
const RST: u8 = 4;
const MIDSTREAM: u8 = 8;
const HAS_ISN: u8 = 16;

impl Flow {
    /// A TCP flow first seen without its SYN: it began before the capture (or the daemon) saw it.
    pub fn midstream(&self) -> bool {
        self.bits & MIDSTREAM != 0
    }

    fn isn(&self) -> Option<u32> {
        (self.bits & HAS_ISN != 0).then_some(self.isn)
    }

    fn tcp_closed(&self) -> bool {
        self.bits & RST != 0 || self.bits & (FIN_LO | FIN_HI) == FIN_LO | FIN_HI
    }

    fn decided(&self) -> bool {
        self.decision.reason != Reason::Inspecting
    }

    /// Idle time after which the flow is over, in nanoseconds.
    fn timeout(&self, t: &Timeouts, offloaded: bool, proto: u8) -> u64 {
        let secs = match proto {
            _ if offloaded && self.decided() && self.decision.verdict == Verdict::Accept => SETTLE,
            6 if self.tcp_closed() || (offloaded && self.decided()) => t.tcp_closed,
            6 => t.tcp,
            17 => t.udp,
            1 | 58 => t.icmp,
            _ => t.other,
        };
        secs.saturating_mul(NANOS)
    }

    fn count(&mut self, p: &Packet<'_>, side: Side, now: Timestamp) {
        self.last_ts = now;
        self.packets += 1;
        self.bytes += u64::from(p.wire_len);
        if side == self.initiator {
            self.init_packets += 1;
            self.init_bytes += u64::from(p.wire_len);
        }
    }

    fn note_close(&mut self, side: Side, flags: TcpFlags) {
        if flags.rst {
            self.bits |= RST;
        }
        if flags.fin {
            self.bits |= match side {
                Side::Lo => FIN_LO,
                Side::Hi => FIN_HI,
            };
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
    /// Flows waiting for their first payload that were ended (with `inspect-limit`) to keep the
    /// inspection memory and the held packets within their bounds.
    pub inspections_evicted: u64,
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
    /// The kernel answers accepted flows' later packets (live); see the module's promises.
    offloaded: bool,
    /// Payload packets wait for their flow's decision (see `inspection`).
    hold: bool,
    /// The flows, in a dense vector beside a table of indices: a resident entry costs its 104 bytes plus
    /// the stored hash and the index table's slack (see BENCHMARKS.md "Memory").
    flows: IndexMap<FlowKey, Flow, RandomState>,
    fragments: HashMap<FragmentKey, (FlowKey, Timestamp), RandomState>,
    next_sweep: Timestamp,
    keep_finished: bool,
    finished: Vec<FlowRecord>,
    keep_created: bool,
    created: Vec<FlowRecord>,
    /// DNS queries and ICMP echo messages seen, kept for their logs while on (see `message`).
    keep_messages: bool,
    messages: Vec<MessageRecord>,
    /// Whether the packet last decided was decided as one message (see `message`).
    last_per_message: bool,
    /// Flows whose verdict waits for their first payload, and what they hold.
    inspecting: HashMap<FlowKey, Inspection, RandomState>,
    /// Bytes of payload held by all inspections, and packets held back.
    inspect_bytes: usize,
    held: usize,
    /// The earliest time a held packet's wait runs out.
    next_deadline: Timestamp,
    /// Held packets whose flow was decided: (the caller's ordinal, the decision), oldest first.
    released: Vec<(u64, Decision)>,
    /// What decided flows' first payloads showed, kept for their records while `keep_finished` is on.
    payloads: HashMap<FlowKey, Box<Inspected>, RandomState>,
    /// Data connections FTP control connections announced: (initiator, responder, responder port),
    /// with the time they stop being expected.
    expected: HashMap<([u64; 2], [u64; 2], u16), Timestamp, RandomState>,
    stats: FlowStats,
}

/// The TCP flags and sequence number of a packet (defaults for other transports).
fn tcp_fields(p: &Packet<'_>) -> (TcpFlags, Option<u32>, bool) {
    match p.transport {
        Transport::Tcp { flags, seq, .. } => (flags.unwrap_or_default(), seq, flags.is_some()),
        _ => (TcpFlags::default(), None, false),
    }
}

impl FlowTable {
    pub fn new(config: FlowConfig) -> FlowTable {
        FlowTable {
            config,
            offloaded: false,
            hold: true,
            flows: IndexMap::with_hasher(RandomState::new()),
            fragments: HashMap::with_hasher(RandomState::new()),
            next_sweep: Timestamp::default(),
            keep_finished: false,
            finished: Vec::new(),
            keep_created: false,
            created: Vec::new(),
            keep_messages: false,
            messages: Vec::new(),
            last_per_message: false,
            inspecting: HashMap::with_hasher(RandomState::new()),
            inspect_bytes: 0,
            held: 0,
            next_deadline: Timestamp::from_nanos(u64::MAX),
            released: Vec::new(),
            payloads: HashMap::with_hasher(RandomState::new()),
            expected: HashMap::with_hasher(RandomState::new()),
            stats: FlowStats::default(),
        }
    }

    /// Live: the kernel answers accepted flows' later packets from their conntrack mark (see the
    /// module's promises for what changes).
    pub fn offloaded(&mut self, on: bool) {
        self.offloaded = on;
    }

    pub(crate) fn is_offloaded(&self) -> bool {
        self.offloaded
    }

    /// Live: at most `n` packets held back at once (they wait in the kernel's queue, which is shared
    /// with every new flow).
    pub(crate) fn set_max_held(&mut self, n: usize) {
        self.config.inspect.held = n.max(1);
    }

    /// Whether payload packets wait for their flow's decision (on) or pass while it is read (off: under
    /// `--audit` nothing is enforced, so nothing need wait).
    pub fn set_hold(&mut self, on: bool) {
        self.hold = on;
    }

    /// Live, after a reload: the new policy's settings (the bound on held packets stays), and the decided
    /// flows that no payload decided are forgotten, so that their next packets (a dropped flow's retries,
    /// say) are decided under the new policy. Flows a payload decided keep their decision while they
    /// settle (the reload decides their conntrack entries again), as do FTP data connections (they
    /// follow their control connection); flows waiting for their payload go on, read under the new policy.
    pub(crate) fn policy_changed(&mut self, config: FlowConfig) {
        let held = self.config.inspect.held;
        self.config = config;
        self.config.inspect.held = held;
        self.flows
            .retain(|_, f| !f.decided() || f.app.is_some() || f.decision.reason == Reason::FtpData);
    }

    /// When on, flows that leave the table (expired, evicted, or at [`FlowTable::finish_all`]) are kept
    /// for [`FlowTable::drain_finished`]; replay uses this to report every flow.
    pub fn keep_finished(&mut self, keep: bool) {
        self.keep_finished = keep;
    }

    /// When on, every new flow is also kept, as decided on its first packet, for
    /// [`FlowTable::drain_created`]; the live daemon logs flows this way, at their decision.
    pub(crate) fn keep_created(&mut self, keep: bool) {
        self.keep_created = keep;
    }

    /// Flows decided since the last call.
    pub(crate) fn drain_created(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.created.drain(..)
    }

    /// Held packets that got their flow's decision since the last call, oldest first.
    pub fn drain_released(&mut self) -> std::vec::Drain<'_, (u64, Decision)> {
        self.released.drain(..)
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Packets held back now, waiting for their flow's decision.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Housekeeping that time alone makes due: expired flows, and held packets whose wait ran out
    /// (their flows get `inspect-limit`). Every packet calls it; live, the worker also calls it when idle.
    #[inline]
    pub fn tick(&mut self, now: Timestamp) {
        // One comparison on the hot path: the earlier of the two due times.
        if now >= self.next_sweep.min(self.next_deadline) {
            if now >= self.next_sweep {
                self.sweep(now);
            }
            if now >= self.next_deadline {
                self.expire_inspections(now);
            }
        }
    }

    /// Whether held packets were released since the last [`FlowTable::drain_released`].
    #[inline]
    pub(crate) fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// The hot path: counts the packet on its flow and returns the flow's decision, or, for a new flow,
    /// asks `decide_new` (the policy) and remembers the answer. `decide_new` is told whether the flow is
    /// a TCP flow seen first in its middle, and answers the decision and the initiator's side. A known
    /// flow costs one hash lookup.
    pub fn decide_or_insert(
        &mut self,
        p: &Packet<'_>,
        (key, side): (FlowKey, Side),
        now: Timestamp,
        seq: u64,
        decide_new: impl FnOnce(bool) -> (Decision, Side),
    ) -> Decision {
        self.tick(now);
        let (flags, tcp_seq, known_flags) = tcp_fields(p);
        if p.fragment.is_some_and(|f| f.offset == 0 && f.more) {
            self.remember_fragment(p, key, now);
        }
        let opening = flags.syn && !flags.ack;
        let (timeouts, offloaded) = (self.config.timeouts, self.offloaded);
        if let Some(flow) = self.flows.get_mut(&key) {
            let new_connection = opening
                && (flow.isn() != tcp_seq
                    || flow.tcp_closed()
                    || (offloaded && flow.decided() && flow.decision.verdict == Verdict::Accept));
            let idle = now.as_nanos().saturating_sub(flow.last_ts.as_nanos());
            if !new_connection && idle <= flow.timeout(&timeouts, offloaded, key.proto()) {
                flow.count(p, side, now);
                flow.note_close(side, flags);
                return flow.decision;
            }
            // The old flow is over: report it, and decide the packet as the first of a new one.
            if let Some(old) = self.flows.swap_remove(&key) {
                self.finish(key, old);
                self.stats.expired += 1;
            }
        } else if self.flows.len() >= self.config.max_flows {
            self.make_room(now);
        }
        let midstream = known_flags && !opening;
        let (decision, initiator) = decide_new(midstream);
        let icmp_type = match p.transport {
            Transport::Icmp { icmp_type, .. } => Some(icmp_type),
            _ => None,
        };
        let mut flow = Flow {
            decision,
            initiator,
            first_seq: seq,
            first_ts: now,
            last_ts: now,
            packets: 0,
            bytes: 0,
            init_packets: 0,
            init_bytes: 0,
            icmp_type,
            app: None,
            isn: tcp_seq.filter(|_| opening).unwrap_or(0),
            bits: if midstream { MIDSTREAM } else { 0 }
                | if opening && tcp_seq.is_some() {
                    HAS_ISN
                } else {
                    0
                },
        };
        flow.count(p, side, now);
        flow.note_close(side, flags);
        // A flow waiting for its payload is reported when that decides it (see `inspect`).
        if self.keep_created && flow.decided() {
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
            .and_then(|key| self.flows.get_mut(&key).map(|f| (key, f)));
        match found {
            Some((key, flow)) => {
                let (lo, _) = key.endpoint(Side::Lo);
                let (hi, _) = key.endpoint(Side::Hi);
                // A later fragment has no ports: its source address tells its side, unless both
                // ends share it (then it is counted as the initiator's).
                let side = if p.src == lo && p.src != hi {
                    Side::Lo
                } else if p.src == hi && p.src != lo {
                    Side::Hi
                } else {
                    flow.initiator
                };
                flow.count(p, side, now);
                Some(flow.decision)
            }
            None => {
                self.stats.orphan_fragments += 1;
                None
            }
        }
    }

    /// Expects a TCP connection from `initiator` to `responder:port` (an FTP data channel), for a while.
    pub(crate) fn expect_connection(
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
    pub(crate) fn take_expected(&mut self, p: &Packet<'_>, key: &FlowKey, now: Timestamp) -> bool {
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

    /// A flow leaves the table: what it held back gets `inspect-limit`, and it is reported.
    fn finish(&mut self, key: FlowKey, mut flow: Flow) {
        if let Some(decision) = self.end_inspection(key) {
            flow.decision = decision;
            if self.keep_created {
                self.created.push(FlowRecord {
                    key,
                    flow,
                    inspected: None,
                });
            }
        }
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
        let interval = if self.offloaded {
            SWEEP_INTERVAL_OFFLOADED
        } else {
            SWEEP_INTERVAL
        };
        self.next_sweep = Timestamp::from_nanos(now.as_nanos().saturating_add(interval));
        let (t, offloaded) = (self.config.timeouts, self.offloaded);
        let mut expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, f)| {
                now.as_nanos().saturating_sub(f.last_ts.as_nanos())
                    > f.timeout(&t, offloaded, k.proto())
            })
            .map(|(k, _)| *k)
            .collect();
        // The hash order is random: what is reported must not depend on it.
        expired.sort_unstable();
        for key in expired {
            if let Some(flow) = self.flows.swap_remove(&key) {
                self.finish(key, flow);
                self.stats.expired += 1;
            }
        }
        self.fragments.retain(|_, (_, expires)| now <= *expires);
        self.expected.retain(|_, until| now <= *until);
    }

    /// At the limit: sweep, then evict the eighth of the decided flows idle the longest; flows waiting for
    /// their payload only when no decided flow is left (an evicted one's next packet would be read as a
    /// flow from its middle).
    fn make_room(&mut self, now: Timestamp) {
        self.sweep(now);
        if self.flows.len() < self.config.max_flows {
            return;
        }
        let idle = |decided: bool| -> Vec<(Timestamp, FlowKey)> {
            self.flows
                .iter()
                .filter(|(_, f)| f.decided() == decided)
                .map(|(k, f)| (f.last_ts, *k))
                .collect()
        };
        let mut candidates = idle(true);
        if candidates.is_empty() {
            candidates = idle(false);
        }
        let n = (self.flows.len() / 8).clamp(1, candidates.len().max(1));
        if candidates.len() > n {
            candidates.select_nth_unstable(n - 1);
            candidates.truncate(n);
        }
        candidates.sort_unstable();
        for (_, key) in candidates {
            if let Some(flow) = self.flows.swap_remove(&key) {
                self.finish(key, flow);
                self.stats.evicted += 1;
            }
        }
    }

    /// Ends every flow (end of a replay), keeping them for [`FlowTable::drain_finished`] when enabled.
    pub fn finish_all(&mut self) {
        let mut flows: Vec<(FlowKey, Flow)> = self.flows.drain(..).collect();
        flows.sort_unstable_by_key(|(k, f)| (f.first_seq, *k));
        for (key, flow) in flows {
            self.finish(key, flow);
        }
        self.fragments.clear();
    }

    /// Flows that left the table since the last call.
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.finished.drain(..)
    }
}

use etherparse::PacketBuilder;

use super::*;
use crate::decision::Verdict;
use crate::inspect::Collected;

const CLIENT: [u8; 4] = [10, 0, 0, 2];
const SERVER: [u8; 4] = [192, 0, 2, 1];

/// A TCP packet; `flags` from "SAFR", `seq` its sequence number.
fn tcp_seq(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: &str,
    seq: u32,
    data: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 1000);
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
    b.write(&mut out, data).unwrap();
    out
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
    tcp_seq(src, sport, dst, dport, flags, 1, &[])
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(CLIENT, SERVER, 64)
        .udp(sport, dport)
        .write(&mut out, data)
        .unwrap();
    out
}

const fn decision(verdict: Verdict, reason: Reason) -> Decision {
    Decision::new(verdict, reason)
}
const ACCEPT: Decision = decision(Verdict::Accept, Reason::NoPolicy);
const DROP: Decision = decision(Verdict::Drop, Reason::NoPolicy);
const WAIT: Decision = decision(Verdict::Accept, Reason::Inspecting);
const LIMIT: Decision = decision(Verdict::Drop, Reason::InspectLimit);

/// Decides a packet; a new flow gets `d` and its sender as initiator.
fn feed(t: &mut FlowTable, bytes: &[u8], secs: u64, d: Decision) -> Decision {
    let p = Packet::parse(bytes).unwrap();
    let k = FlowKey::of(&p).unwrap();
    t.decide_or_insert(&p, k, Timestamp::from_secs(secs), 0, |_| (d, k.1))
}

#[test]
fn both_directions_share_one_flow_decided_once() {
    let mut t = FlowTable::new(FlowConfig::default());
    let out = tcp(CLIENT, 40000, SERVER, 80, "S");
    let back = tcp(SERVER, 80, CLIENT, 40000, "SA");
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
    let out = tcp(CLIENT, 40000, SERVER, 80, "A");
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
    feed(&mut t, &tcp(CLIENT, 40000, SERVER, 80, "S"), 0, ACCEPT);
    feed(&mut t, &tcp(SERVER, 80, CLIENT, 40000, "R"), 1, DROP);
    // A late ACK stays in the closed flow.
    assert_eq!(
        feed(&mut t, &tcp(CLIENT, 40000, SERVER, 80, "A"), 2, DROP),
        ACCEPT
    );
    // A new SYN on the same ports is a new connection.
    assert_eq!(
        feed(&mut t, &tcp(CLIENT, 40000, SERVER, 80, "S"), 3, DROP),
        DROP
    );
    assert_eq!(t.stats().created, 2);
}

#[test]
fn a_syn_with_another_initial_sequence_number_is_a_new_connection() {
    let mut t = FlowTable::new(FlowConfig::default());
    let syn = |isn| tcp_seq(CLIENT, 40000, SERVER, 443, "S", isn, &[]);
    assert_eq!(feed(&mut t, &syn(1000), 0, ACCEPT), ACCEPT);
    assert_eq!(
        feed(&mut t, &syn(1000), 1, DROP),
        ACCEPT,
        "the same SYN again: a retransmission"
    );
    assert_eq!(
        feed(&mut t, &syn(5000), 2, DROP),
        DROP,
        "another ISN, same 4-tuple: a new flow"
    );
    assert_eq!(t.stats().created, 2);
}

/// Live, the kernel answers an accepted flow's later packets; a SYN that still comes up belongs to a new
/// conntrack entry, even with the old ISN (a client can pick its ISN). A dropped flow's SYN retries
/// come up by design and stay in their flow.
#[test]
fn offloaded_a_syn_on_an_accepted_flow_is_always_a_new_connection() {
    let mut t = FlowTable::new(FlowConfig::default());
    t.offloaded(true);
    let syn = |port| tcp_seq(CLIENT, 40000, SERVER, port, "S", 1000, &[]);
    assert_eq!(feed(&mut t, &syn(443), 0, ACCEPT), ACCEPT);
    assert_eq!(
        feed(&mut t, &syn(443), 1, DROP),
        DROP,
        "same ISN, accepted flow: decided anew"
    );
    assert_eq!(feed(&mut t, &syn(22), 0, DROP), DROP);
    assert_eq!(
        feed(&mut t, &syn(22), 1, ACCEPT),
        DROP,
        "a dropped flow's retry stays in it"
    );
    // Not offloaded (replay), the same SYN is a retransmission.
    let mut r = FlowTable::new(FlowConfig::default());
    feed(&mut r, &syn(443), 0, ACCEPT);
    assert_eq!(feed(&mut r, &syn(443), 1, DROP), ACCEPT);
}

#[test]
fn offloaded_accepted_flows_only_settle() {
    let mut t = FlowTable::new(FlowConfig::default());
    t.offloaded(true);
    feed(
        &mut t,
        &tcp_seq(CLIENT, 40000, SERVER, 80, "S", 7, &[]),
        0,
        ACCEPT,
    );
    feed(
        &mut t,
        &tcp_seq(CLIENT, 40001, SERVER, 22, "S", 7, &[]),
        0,
        DROP,
    );
    t.tick(Timestamp::from_secs(SETTLE + 2));
    assert_eq!(
        t.len(),
        1,
        "the accepted flow is the kernel's now; the dropped one waits for retries"
    );
    let mut seen = None;
    let p = tcp(CLIENT, 40000, SERVER, 80, "A");
    let p = Packet::parse(&p).unwrap();
    let k = FlowKey::of(&p).unwrap();
    t.decide_or_insert(&p, k, Timestamp::from_secs(SETTLE + 3), 0, |midstream| {
        seen = Some(midstream);
        (ACCEPT, k.1)
    });
    assert_eq!(
        seen,
        Some(true),
        "a later packet that comes up is a flow seen from its middle"
    );
}

#[test]
fn a_tcp_flow_without_its_syn_is_midstream() {
    let mut t = FlowTable::new(FlowConfig::default());
    t.keep_finished(true);
    for (flags, port) in [("S", 1), ("A", 2), ("SA", 3), ("R", 4)] {
        let p = tcp(CLIENT, port, SERVER, 80, flags);
        let p = Packet::parse(&p).unwrap();
        let k = FlowKey::of(&p).unwrap();
        t.decide_or_insert(&p, k, Timestamp::from_secs(1), 0, |m| {
            assert_eq!(m, flags != "S", "{flags}");
            (ACCEPT, k.1)
        });
    }
    let u = udp(5, 53, b"q");
    let p = Packet::parse(&u).unwrap();
    let k = FlowKey::of(&p).unwrap();
    t.decide_or_insert(&p, k, Timestamp::from_secs(1), 0, |m| {
        assert!(!m, "UDP has no middle");
        (ACCEPT, k.1)
    });
    t.finish_all();
    let midstream: Vec<bool> = t.drain_finished().map(|r| r.flow.midstream()).collect();
    assert_eq!(midstream.iter().filter(|m| **m).count(), 3);
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
            &tcp(CLIENT, 1000 + i, SERVER, 80, "S"),
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

#[test]
fn a_full_table_evicts_decided_flows_before_waiting_ones() {
    let cfg = FlowConfig {
        max_flows: 8,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg);
    // The oldest flows wait for their payload; the newer ones are decided.
    for i in 0..4u16 {
        feed(&mut t, &tcp(CLIENT, 1000 + i, SERVER, 443, "S"), 0, WAIT);
    }
    for i in 0..20u16 {
        feed(
            &mut t,
            &tcp(CLIENT, 2000 + i, SERVER, 80, "S"),
            1 + u64::from(i),
            ACCEPT,
        );
    }
    let waiting = t.flows.values().filter(|f| !f.decided()).count();
    assert_eq!(waiting, 4, "the waiting flows are still there");
}

#[test]
fn hash_seeds_differ_between_tables() {
    let (a, b) = (
        FlowTable::new(FlowConfig::default()),
        FlowTable::new(FlowConfig::default()),
    );
    let p = tcp(CLIENT, 40000, SERVER, 80, "S");
    let key = FlowKey::of(&Packet::parse(&p).unwrap()).unwrap().0;
    assert_ne!(
        a.flows.hasher().hash_one(key),
        b.flows.hasher().hash_one(key),
        "a LAN client must not be able to predict the table's buckets"
    );
}

// ---- waiting for the first payload -----------------------------------------------------------

/// A table and one flow from CLIENT:40000 to SERVER:80 waiting for its payload (SYN at seq 99).
fn waiting(cfg: InspectConfig) -> FlowTable {
    let mut t = FlowTable::new(FlowConfig {
        inspect: cfg,
        ..FlowConfig::default()
    });
    t.keep_created(true);
    assert_eq!(
        segment(&mut t, 99, "S", b"", 0, 0),
        Inspect::Pass,
        "the SYN passes"
    );
    t
}

/// Feeds a client segment of the waiting flow to `inspect`; the flow is decided when the stream holds
/// "END" (accept) or "BAD" (drop). `seq` is the packet's ordinal.
fn segment(
    t: &mut FlowTable,
    tcp_seqno: u32,
    flags: &str,
    data: &[u8],
    secs: u64,
    seq: u64,
) -> Inspect {
    let bytes = tcp_seq(CLIENT, 40000, SERVER, 80, flags, tcp_seqno, data);
    let p = Packet::parse(&bytes).unwrap();
    let k = FlowKey::of(&p).unwrap();
    let now = Timestamp::from_secs(secs);
    assert_eq!(t.decide_or_insert(&p, k, now, seq, |_| (WAIT, k.1)), WAIT);
    t.inspect(
        &p,
        k,
        |c| {
            let Collected::Stream(s) = c else {
                return None;
            };
            let text = String::from_utf8_lossy(s);
            if text.contains("END") {
                Some((ACCEPT, Payload::default()))
            } else if text.contains("BAD") {
                Some((DROP, Payload::default()))
            } else {
                None
            }
        },
        now,
        seq,
    )
}

#[test]
fn payload_packets_are_held_and_released_in_order_with_the_decision() {
    let mut t = waiting(InspectConfig::default());
    assert_eq!(
        segment(&mut t, 100, "A", b"", 0, 1),
        Inspect::Pass,
        "the handshake's ACK passes"
    );
    assert_eq!(segment(&mut t, 100, "A", b"GET / ", 0, 2), Inspect::Held);
    assert_eq!(segment(&mut t, 106, "A", b"HTTP/1.1 ", 0, 3), Inspect::Held);
    assert_eq!(t.held(), 2);
    assert_eq!(t.drain_released().count(), 0, "nothing before the decision");
    assert_eq!(
        segment(&mut t, 115, "A", b"BAD", 0, 4),
        Inspect::Decided(DROP)
    );
    let released: Vec<_> = t.drain_released().collect();
    assert_eq!(
        released,
        [(2, DROP), (3, DROP)],
        "every held packet gets the flow's decision, in order"
    );
    assert_eq!(t.held(), 0);
    let logged: Vec<_> = t.drain_created().collect();
    assert_eq!((logged.len(), logged[0].flow.decision), (1, DROP));
}

#[test]
fn reordered_segments_reach_their_decision() {
    let mut t = waiting(InspectConfig::default());
    assert_eq!(
        segment(&mut t, 104, "A", b"END", 0, 1),
        Inspect::Held,
        "after a gap: kept and held"
    );
    assert_eq!(
        segment(&mut t, 100, "A", b"GET ", 0, 2),
        Inspect::Decided(ACCEPT)
    );
    assert_eq!(t.drain_released().collect::<Vec<_>>(), [(1, ACCEPT)]);
}

#[test]
fn disagreeing_overlaps_end_the_wait_as_ambiguous() {
    let mut t = waiting(InspectConfig::default());
    assert_eq!(segment(&mut t, 100, "A", b"GET / H", 0, 1), Inspect::Held);
    let d = segment(&mut t, 100, "A", b"XXXXXXXEND", 0, 2);
    assert_eq!(
        d,
        Inspect::Decided(decision(Verdict::Drop, Reason::AmbiguousStream)),
        "the server might read either copy"
    );
    assert_eq!(t.drain_released().count(), 1);
}

#[test]
fn a_reset_or_the_budget_ends_the_wait() {
    let mut t = waiting(InspectConfig::default());
    assert_eq!(segment(&mut t, 100, "A", b"GET", 0, 1), Inspect::Held);
    assert_eq!(
        segment(&mut t, 103, "R", b"", 0, 2),
        Inspect::Pass,
        "the reset itself passes undecided (see below)"
    );
    assert_eq!(t.drain_released().collect::<Vec<_>>(), [(1, LIMIT)]);
    let data = tcp_seq(CLIENT, 40000, SERVER, 80, "A", 103, b"more");
    assert_eq!(
        feed(&mut t, &data, 0, WAIT),
        LIMIT,
        "the flow keeps inspect-limit"
    );

    let mut t = waiting(InspectConfig {
        packets: 3,
        ..InspectConfig::default()
    });
    assert_eq!(
        segment(&mut t, 100, "A", b"a", 0, 1),
        Inspect::Held,
        "2nd packet (the SYN was 1st)"
    );
    assert_eq!(
        segment(&mut t, 101, "A", b"b", 0, 2),
        Inspect::Decided(LIMIT),
        "3rd: the budget"
    );
}

/// The client's bare reset that ends a wait passes, without deciding its connection in the kernel: the
/// server hears it. Found by the soak: a connection REJECTed in host mode stays open on the server (the
/// REJECT resets the client only); the next connection from the same port gets the server's challenge
/// ACK, which the client answers with a reset; dropping that reset kept the server's stale connection,
/// so every retry of the new connection failed the same way until it timed out. A reset carrying data
/// is still dropped.
#[test]
fn a_bare_reset_ending_a_wait_passes_so_the_server_hears_it() {
    let mut t = waiting(InspectConfig::default());
    assert_eq!(segment(&mut t, 100, "R", b"", 0, 1), Inspect::Pass);
    let data = tcp_seq(CLIENT, 40000, SERVER, 80, "A", 100, b"GET");
    assert_eq!(
        feed(&mut t, &data, 0, WAIT),
        LIMIT,
        "the flow got inspect-limit"
    );

    let mut t = waiting(InspectConfig::default());
    assert_eq!(
        segment(&mut t, 100, "R", b"GET / HTTP/1.1", 0, 1),
        Inspect::Decided(LIMIT),
        "a reset with data is no bare reset"
    );
}

#[test]
fn held_packets_wait_at_most_inspect_time() {
    let mut t = waiting(InspectConfig {
        time: 2,
        ..InspectConfig::default()
    });
    assert_eq!(segment(&mut t, 100, "A", b"GET", 10, 1), Inspect::Held);
    t.tick(Timestamp::from_secs(11));
    assert_eq!(t.drain_released().count(), 0, "still within the wait");
    t.tick(Timestamp::from_secs(12));
    assert_eq!(t.drain_released().collect::<Vec<_>>(), [(1, LIMIT)]);
    assert_eq!(
        t.drain_created().next().map(|r| r.flow.decision),
        Some(LIMIT)
    );
}

#[test]
fn the_tables_bounds_end_the_oldest_wait_first() {
    // Two flows waiting; room for 2 held packets in all.
    let mut t = waiting(InspectConfig {
        held: 2,
        ..InspectConfig::default()
    });
    assert_eq!(segment(&mut t, 100, "A", b"GET", 1, 1), Inspect::Held);
    let other = |flags: &str, seqno: u32, data: &[u8]| {
        tcp_seq(CLIENT, 40001, SERVER, 80, flags, seqno, data)
    };
    feed(&mut t, &other("S", 9, b""), 2, WAIT);
    let p2 = other("A", 10, b"GE");
    let p = Packet::parse(&p2).unwrap();
    let k = FlowKey::of(&p).unwrap();
    t.decide_or_insert(&p, k, Timestamp::from_secs(2), 2, |_| (DROP, k.1));
    assert_eq!(
        t.inspect(&p, k, |_| None, Timestamp::from_secs(2), 2),
        Inspect::Held
    );
    let p3 = other("A", 12, b"T");
    let p = Packet::parse(&p3).unwrap();
    assert_eq!(
        t.inspect(&p, k, |_| None, Timestamp::from_secs(3), 3),
        Inspect::Held,
        "room is made by ending the flow that waited longest"
    );
    assert_eq!(t.drain_released().collect::<Vec<_>>(), [(1, LIMIT)]);
    assert_eq!(t.stats().inspections_evicted, 1);

    // Inspection memory: a payload that does not fit ends the waits before it.
    let mut t = waiting(InspectConfig {
        memory: 8,
        ..InspectConfig::default()
    });
    assert_eq!(segment(&mut t, 100, "A", b"GET /", 1, 1), Inspect::Held);
    assert_eq!(
        segment(&mut t, 105, "A", b" HTTP", 1, 2),
        Inspect::Decided(LIMIT),
        "no other flow to end: this one gets the limit"
    );
}

#[test]
fn a_new_connection_ends_the_old_ones_wait() {
    let mut t = waiting(InspectConfig::default());
    assert_eq!(
        segment(&mut t, 100, "A", b"GET / HTTP/1.1\r\nHost: good", 0, 1),
        Inspect::Held
    );
    // Same 4-tuple, another ISN: the held bytes of the old connection must not count for the new one.
    let syn = tcp_seq(CLIENT, 40000, SERVER, 80, "S", 5000, &[]);
    assert_eq!(feed(&mut t, &syn, 1, WAIT), WAIT);
    assert_eq!(t.drain_released().collect::<Vec<_>>(), [(1, LIMIT)]);
    assert_eq!(
        segment(&mut t, 5001, "A", b"GET", 1, 2),
        Inspect::Held,
        "the new one starts empty"
    );
}

#[test]
fn udp_datagrams_are_collected_and_held() {
    let mut t = FlowTable::new(FlowConfig::default());
    let d = udp(5000, 53, b"first");
    let p = Packet::parse(&d).unwrap();
    let k = FlowKey::of(&p).unwrap();
    let now = Timestamp::from_secs(1);
    assert_eq!(t.decide_or_insert(&p, k, now, 1, |_| (WAIT, k.1)), WAIT);
    assert_eq!(t.inspect(&p, k, |_| None, now, 1), Inspect::Held);
    let d = udp(5000, 53, b"second");
    let p = Packet::parse(&d).unwrap();
    let read = |c: Collected<'_>| {
        let Collected::Datagrams(d) = c else {
            return None;
        };
        (d == [b"first".to_vec(), b"second".to_vec()]).then_some((ACCEPT, Payload::default()))
    };
    assert_eq!(t.inspect(&p, k, read, now, 2), Inspect::Decided(ACCEPT));
    assert_eq!(t.drain_released().collect::<Vec<_>>(), [(1, ACCEPT)]);
}

/// BENCHMARKS.md sizes the table with this: a key and its flow in 120 bytes (104 before the counts
/// per direction, when BENCHMARKS.md's figures were taken).
#[test]
fn an_entry_is_120_bytes() {
    assert_eq!(std::mem::size_of::<(FlowKey, Flow)>(), 120);
}

/// A flow's counts split by direction: what the initiator sent, and the rest (the replay flow log's
/// `orig_*` and `resp_*`), the frame lengths as built here.
#[test]
fn counts_split_by_direction() {
    let mut t = FlowTable::new(FlowConfig::default());
    let out = tcp(CLIENT, 40000, SERVER, 80, "S");
    let back = tcp(SERVER, 80, CLIENT, 40000, "SA");
    let ack = tcp_seq(CLIENT, 40000, SERVER, 80, "A", 2, b"hello");
    for (p, secs) in [(&out, 1), (&back, 1), (&ack, 2)] {
        feed(&mut t, p, secs, ACCEPT);
    }
    t.keep_finished(true);
    t.finish_all();
    let rec: Vec<_> = t.drain_finished().collect();
    let f = &rec[0].flow;
    assert_eq!((f.packets, f.init_packets), (3, 2));
    let len = |b: &[u8]| b.len() as u64;
    assert_eq!(f.bytes, len(&out) + len(&back) + len(&ack));
    assert_eq!(f.init_bytes, len(&out) + len(&ack));
    assert_eq!(
        (f.first_ts, f.last_ts),
        (Timestamp::from_secs(1), Timestamp::from_secs(2))
    );
}

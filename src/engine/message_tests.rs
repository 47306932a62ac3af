//! Messages decided one by one: DNS queries from one socket, echo requests of one ping session.

use super::*;
use crate::inspect::echo::Echo;
use etherparse::PacketBuilder;

const POLICY: &str = "policy loc net DROP\n\
                      DROP   loc net udp 53 qname=*.t.example.org\n\
                      DROP   loc net udp 53 qtype=NULL\n\
                      ACCEPT loc net udp 53\n\
                      ACCEPT loc net icmp 8 size=..128\n";

/// A DNS query for `name` (type `qtype`) from 10.0.0.2:40000, always the same socket.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut msg = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&[0, 1]);
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 53], 64)
        .udp(40000, 53)
        .write(&mut out, &msg)
        .unwrap();
    out
}

/// An echo request of one session (identifier 7) with `data`.
fn echo(seq: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
        .icmpv4_echo_request(7, seq)
        .write(&mut out, data)
        .unwrap();
    out
}

/// Each packet's decision, whether it was one message's, and the messages recorded.
fn decide_all(
    engine: &Engine,
    packets: &[Vec<u8>],
) -> (Vec<Decision>, Vec<bool>, Vec<MessageRecord>) {
    let mut table = engine.new_flow_table();
    table.keep_messages(true);
    let (mut d, mut one) = (Vec::new(), Vec::new());
    for (i, p) in packets.iter().enumerate() {
        d.push(engine.decide(&mut table, p, Timestamp::from_secs(1), i as u64));
        one.push(table.last_per_message());
    }
    (d, one, table.drain_messages().collect())
}

#[test]
fn each_query_of_one_socket_is_decided_on_its_own() {
    let engine = Engine::new(Policy::compile("p", POLICY).unwrap());
    let (d, one, messages) = decide_all(
        &engine,
        &[
            query("www.example.org", 1),
            query("paaaaa.t.example.org", 10),
            query("www.example.org", 1),
            query("www.example.net", 10),
        ],
    );
    let reasons: Vec<Reason> = d.iter().map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::Rule(2),
            Reason::Rule(0),
            Reason::Rule(2),
            Reason::Rule(1)
        ]
    );
    assert!(one.iter().all(|&o| o));
    assert_eq!(d[1].verdict, Verdict::Drop);
    let names: Vec<String> = messages
        .iter()
        .map(|m| match &m.message {
            Message::Dns(q) => q.name.clone(),
            Message::Echo(_) => String::new(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "www.example.org",
            "paaaaa.t.example.org",
            "www.example.org",
            "www.example.net"
        ]
    );
}

#[test]
fn a_small_first_echo_does_not_open_the_session_to_large_ones() {
    let engine = Engine::new(Policy::compile("p", POLICY).unwrap());
    // ptunnel's first request is its 28-byte header alone; data follows in larger ones.
    let (d, one, messages) = decide_all(
        &engine,
        &[echo(1, &[0; 28]), echo(2, &[0; 1024]), echo(3, &[0; 128])],
    );
    assert_eq!(d[0].reason, Reason::Rule(3));
    assert_eq!(d[1], Decision::new(Verdict::Drop, Reason::Policy(0)));
    assert_eq!(d[2].verdict, Verdict::Accept, "128 bytes is inside ..128");
    assert_eq!(one, [true; 3], "each request is decided on its own");
    let sizes: Vec<u32> = messages
        .iter()
        .filter_map(|m| match m.message {
            Message::Echo(Echo { size, .. }) => Some(size),
            Message::Dns(_) => None,
        })
        .collect();
    assert_eq!(sizes, [28, 1024, 128]);
}

#[test]
fn without_message_terms_nor_logs_a_flow_is_decided_once() {
    let engine = Engine::new(Policy::compile("p", "policy loc net ACCEPT\n").unwrap());
    let (d, one, messages) = decide_all(&engine, &[query("www.example.org", 1), echo(1, &[0; 56])]);
    assert!(d.iter().all(|d| d.verdict == Verdict::Accept));
    assert!(one.iter().all(|&o| !o));
    assert!(messages.is_empty());
    let logged =
        Engine::new(Policy::compile("p", "policy loc net ACCEPT\n").unwrap()).with_messages(true);
    let (d, one, messages) = decide_all(&logged, &[query("www.example.org", 1), echo(1, &[0; 56])]);
    assert!(d.iter().all(|d| d.verdict == Verdict::Accept));
    assert!(one.iter().all(|&o| o));
    assert_eq!(messages.len(), 2);
}

/// A datagram to port 53 that is no readable query must not get the flow's decision: live, that
/// would be remembered in the conntrack mark, and the socket's later queries (a tunnel's) would never
/// come to the daemon.
#[test]
fn a_datagram_that_is_no_query_does_not_decide_the_socket() {
    let engine = Engine::new(Policy::compile("p", POLICY).unwrap());
    let mut garbage = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 53], 64)
        .udp(40000, 53)
        .write(&mut garbage, b"not a DNS message")
        .unwrap();
    let (d, one, messages) = decide_all(
        &engine,
        &[
            query("www.example.org", 1),
            garbage,
            query("paaaaa.t.example.org", 10),
        ],
    );
    assert_eq!(one, [true; 3]);
    assert_eq!(
        d[1].reason,
        Reason::Rule(2),
        "the port rule, for this datagram only"
    );
    assert_eq!(d[2].verdict, Verdict::Drop);
    assert_eq!(messages.len(), 2, "the DNS log has the two queries");
}

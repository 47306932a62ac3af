//! The messages below are real: what Linux 6.18 answered to a dump (and to updates) in a network
//! namespace holding these entries, as `conntrack -L -o extended,id` listed them:
//!
//! ```text
//! ipv6 icmpv6 58 src=fd00::1 dst=fd00::2 type=128 code=0 id=78 src=fd00::2 dst=fd00::1 type=129 code=0 id=78 mark=0 id=1575915146
//! ipv4 icmp 1 src=10.1.0.1 dst=10.1.0.2 type=8 code=0 id=77 src=10.1.0.2 dst=10.1.0.1 type=0 code=0 id=77 mark=0 id=3552147038
//! ipv4 tcp 6 src=10.1.0.1 dst=10.1.0.2 sport=40000 dport=21 src=10.1.0.2 dst=10.1.0.1 sport=21 dport=40000 mark=19 id=295106853
//! ipv4 gre 47 src=10.1.0.1 dst=10.1.0.2 srckey=0x5 dstkey=0x6 src=10.1.0.2 dst=10.1.0.1 srckey=0x6 dstkey=0x5 mark=0 id=1914910883
//! ipv6 udp 17 src=fd00::1 dst=fd00::2 sport=1000 dport=53 src=fd00::2 dst=fd00::1 sport=53 dport=1000 mark=7 zone=5 id=3942425357
//! ipv4 tcp 6 src=10.1.0.2 dst=10.1.0.1 sport=20 dport=40001 src=10.1.0.1 dst=10.1.0.2 sport=40001 dport=20 mark=90 id=1852580846
//! ipv4 unknown 50 src=10.1.0.3 dst=10.1.0.4 src=10.1.0.4 dst=10.1.0.3 mark=0 id=292388964
//! ```
//!
//! The second TCP entry was made expected, with the first as its master (CTA_TUPLE_MASTER on create).

use super::*;
use crate::nfqueue::netlink::{self, Messages, NlMsg};

/// The first datagram of the dump: seven entries, NLM_F_MULTI, sequence number 7.
const DUMP: &str = concat!(
    "000100000001020007000000b22c00000a000000540001802c00018014000300fd000000000000000000000000000001",
    "14000400fd00000000000000000000000000000224000280050001003a00000006000700004e00000500080080000000",
    "0500090000000000540002802c00018014000300fd00000000000000000000000000000214000400fd00000000000000",
    "000000000000000124000280050001003a00000006000700004e00000500080081000000050009000000000008000300",
    "00000008080008000000000008000c005dee8e8a08000b000000000108000700000002571c0018800800010000000000",
    "08000200000000000800030000000000d00000000001020007000000b22c0000020000003c0001801400018008000100",
    "0a010001080002000a01000224000280050001000100000006000400004d000005000500080000000500060000000000",
    "3c00028014000180080001000a010002080002000a01000124000280050001000100000006000400004d000005000500",
    "0000000005000600000000000800030000000008080008000000000008000c00d3b9765e08000b000000000108000700",
    "000002571c001880080001000000000008000200000000000800030000000000f00000000001020007000000b22c0000",
    "020000003400018014000180080001000a010001080002000a0100021c0002800500010006000000060002009c400000",
    "06000300001500003400028014000180080001000a010002080002000a0100011c000280050001000600000006000200",
    "00150000060003009c4000000800030000000008080008000000001308000c001196f92508000b000000000208000700",
    "00000257300004802c000180050001000300000005000200000000000500030000000000060004000a00000006000500",
    "0a0000001c001880080001000000000008000200000000000800030000000000c00000000001020007000000b22c0000",
    "020000003400018014000180080001000a010001080002000a0100021c000280050001002f0000000600020000050000",
    "06000300000600003400028014000180080001000a010002080002000a0100011c000280050001002f00000006000200",
    "0006000006000300000500000800030000000008080008000000000008000c00722338a308000b000000000108000700",
    "000002571c001880080001000000000008000200000000000800030000000000f80000000001020007000000b22c0000",
    "0a0000004c0001802c00018014000300fd00000000000000000000000000000114000400fd0000000000000000000000",
    "000000021c00028005000100110000000600020003e8000006000300003500004c0002802c00018014000300fd000000",
    "00000000000000000000000214000400fd0000000000000000000000000000011c000280050001001100000006000200",
    "003500000600030003e8000006001200000500000800030000000008080008000000000708000c00eafca30d08000b00",
    "0000000108000700000002571c0018800800010000000000080002000000000008000300000000002401000000010200",
    "07000000b22c0000020000003400018014000180080001000a010002080002000a0100011c0002800500010006000000",
    "0600020000140000060003009c4100003400028014000180080001000a010001080002000a0100021c00028005000100",
    "06000000060002009c41000006000300001400000800030000000009080008000000005a08000c006e6c23ee08000b00",
    "0000000134000e8014000180080001000a010001080002000a0100021c0002800500010006000000060002009c400000",
    "06000300001500000800070000000257300004802c000180050001000000000005000200000000000500030000000000",
    "060004000000000006000500000000001c001880080001000000000008000200000000000800030000000000a0000000",
    "0001020007000000b22c0000020000002400018014000180080001000a010003080002000a0100040c00028005000100",
    "320000002400028014000180080001000a010004080002000a0100030c00028005000100320000000800030000000008",
    "080008000000000008000c00116d806408000b000000000108000700000002571c001880080001000000000008000200",
    "000000000800030000000000",
);

/// The dump's last datagram: NLMSG_DONE, errno 0.
const DONE: &str = "140000000300020007000000b22c000000000000";

/// The answer to an update with NLM_F_ACK (sequence number 1): an ACK, NLM_F_CAPPED.
const ACK: &str = "240000000200000101000000b22c000000000000c0000000000105040100000000000000";

/// The answer to an update of an entry that is not there (sequence number 55): ENOENT.
const ENOENT: &str = "240000000200000137000000b22c0000feffffff58000000000105003700000000000000";

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn ports(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        proto,
        sport,
        dport,
        icmp: None,
    }
}

fn icmp(src: &str, dst: &str, proto: u8, icmp_type: u8, id: u16) -> Tuple {
    Tuple {
        icmp: Some(IcmpTuple {
            icmp_type,
            code: 0,
            id,
        }),
        ..ports(src, dst, proto, 0, 0)
    }
}

fn entry(orig: Tuple, reply: Tuple, mark: u32, id: u32, zone: u16, status: u32) -> Entry {
    Entry {
        orig,
        reply: Some(reply),
        master: None,
        mark,
        id: Some(id),
        zone,
        status,
        counters: None,
        start: None,
        stop: None,
    }
}

/// The entries of [`DUMP`], in its order. Status 8 is IPS_CONFIRMED, 9 adds IPS_EXPECTED.
fn expected() -> Vec<Entry> {
    let (a4, b4, a6, b6) = ("10.1.0.1", "10.1.0.2", "fd00::1", "fd00::2");
    let master = ports(a4, b4, 6, 40000, 21);
    vec![
        entry(
            icmp(a6, b6, 58, 128, 78),
            icmp(b6, a6, 58, 129, 78),
            0,
            1575915146,
            0,
            8,
        ),
        entry(
            icmp(a4, b4, 1, 8, 77),
            icmp(b4, a4, 1, 0, 77),
            0,
            3552147038,
            0,
            8,
        ),
        entry(master, ports(b4, a4, 6, 21, 40000), 19, 295106853, 0, 8),
        entry(
            ports(a4, b4, 47, 5, 6),
            ports(b4, a4, 47, 6, 5),
            0,
            1914910883,
            0,
            8,
        ),
        entry(
            ports(a6, b6, 17, 1000, 53),
            ports(b6, a6, 17, 53, 1000),
            7,
            3942425357,
            5,
            8,
        ),
        Entry {
            master: Some(master),
            ..entry(
                ports(b4, a4, 6, 20, 40001),
                ports(a4, b4, 6, 40001, 20),
                90,
                1852580846,
                0,
                9,
            )
        },
        entry(
            ports("10.1.0.3", "10.1.0.4", 50, 0, 0),
            ports("10.1.0.4", "10.1.0.3", 50, 0, 0),
            0,
            292388964,
            0,
            8,
        ),
    ]
}

fn first(b: &[u8]) -> NlMsg<'_> {
    Messages::new(b).next().unwrap().unwrap()
}

fn feed(reader: &mut DumpReader, datagram: &[u8]) -> Next {
    let mut next = Next::More;
    for msg in Messages::new(datagram) {
        let event = match msg {
            Ok(m) => Event::Msg(m),
            Err(_) => Event::Malformed,
        };
        if reader.on(event) == Next::Done {
            next = Next::Done;
        }
    }
    next
}

#[test]
fn every_kind_of_tuple_reads_as_conntrack_lists_it() {
    let dump = bytes(DUMP);
    let got: Vec<Entry> = Messages::new(&dump)
        .map(|m| wire::parse_entry(m.expect("whole message")).expect("an entry"))
        .collect();
    assert_eq!(got, expected());
}

#[test]
fn a_dump_datagram_reads_as_the_dump_reader_reads_it() {
    let dump = parse_dump_datagram(&bytes(DUMP));
    assert_eq!(dump.entries, expected());
    assert_eq!(dump.unreadable, 0);
    // Cut inside its last message: the whole entries before it, and one that did not read.
    let cut = bytes(DUMP);
    let dump = parse_dump_datagram(&cut[..cut.len() - 3]);
    assert_eq!(dump.entries, expected()[..6]);
    assert_eq!(dump.unreadable, 1);
}

#[test]
fn a_dump_ends_at_nlmsg_done() {
    let mut reader = DumpReader::new(7);
    assert_eq!(feed(&mut reader, &bytes(DUMP)), Next::More);
    assert_eq!(feed(&mut reader, &bytes(DONE)), Next::Done);
    let dump = reader.finish().expect("a complete dump");
    assert_eq!(dump.entries, expected());
    assert_eq!(dump.unreadable, 0);

    // Another dump's leftovers (sequence number 7) are not this one's (8).
    let mut reader = DumpReader::new(8);
    assert_eq!(feed(&mut reader, &bytes(DUMP)), Next::More);
    assert_eq!(feed(&mut reader, &bytes(DONE)), Next::More);
    assert!(reader.dump.entries.is_empty());

    // NLMSG_DONE carrying an error, and an NLMSG_ERROR instead of the dump.
    let mut done = bytes(DONE);
    done[16..20].copy_from_slice(&(-libc::ENOMEM).to_ne_bytes());
    let mut reader = DumpReader::new(7);
    assert_eq!(feed(&mut reader, &done), Next::Done);
    assert!(matches!(
        reader.finish(),
        Err(ConntrackError::Kernel {
            errno: libc::ENOMEM,
            ..
        })
    ));
    let mut refused = bytes(ENOENT);
    refused[8..12].copy_from_slice(&7u32.to_ne_bytes());
    refused[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
    let mut reader = DumpReader::new(7);
    assert_eq!(feed(&mut reader, &refused), Next::Done);
    assert!(matches!(
        reader.finish(),
        Err(ConntrackError::Kernel {
            errno: libc::EPERM,
            ..
        })
    ));

    // An overrun spoils the dump, but the reader waits for its end all the same.
    let mut reader = DumpReader::new(7);
    assert_eq!(reader.on(Event::Overrun), Next::More);
    feed(&mut reader, &bytes(DONE));
    assert!(matches!(reader.finish(), Err(ConntrackError::Overrun)));
}

#[test]
fn answers_are_matched_by_sequence_number() {
    let msg = |hex: &str, seq: u32| {
        let mut b = bytes(hex);
        b[8..12].copy_from_slice(&seq.to_ne_bytes());
        b
    };
    // Sequence numbers 0xffff_fffe, 0xffff_ffff and 0 (wrapping).
    let mut answers = Answers::new(u32::MAX - 1, 3);
    let (ack0, gone2, ack2, stranger) = (
        msg(ACK, u32::MAX - 1),
        msg(ENOENT, 0),
        msg(ACK, 0),
        msg(ACK, 5),
    );
    assert_eq!(answers.on(Event::Msg(first(&ack0))), Next::More);
    assert_eq!(answers.on(Event::Msg(first(&gone2))), Next::More);
    assert_eq!(
        answers.on(Event::Msg(first(&ack2))),
        Next::More,
        "one answer per update"
    );
    assert_eq!(answers.on(Event::Msg(first(&stranger))), Next::More);
    assert_eq!(answers.on(Event::Idle), Next::More, "no overrun: wait");
    assert_eq!(answers.on(Event::Overrun), Next::More);
    assert_eq!(
        answers.on(Event::Idle),
        Next::Done,
        "drained after an overrun"
    );
    assert_eq!(answers.errnos, [Some(0), None, Some(libc::ENOENT)]);

    let mut answers = Answers::new(1, 1);
    assert_eq!(answers.on(Event::Msg(first(&bytes(ACK)))), Next::Done);

    // An answer that does not read is as good as lost: resent, not waited for.
    let mut answers = Answers::new(1, 2);
    assert_eq!(answers.on(Event::Malformed), Next::More);
    assert_eq!(answers.on(Event::Idle), Next::Done);
}

#[test]
fn an_update_reads_back_as_the_entry_with_the_masked_value() {
    for mut e in expected() {
        e.zone = 3;
        let mut b = Vec::new();
        wire::put_update(&mut b, 42, &e, 0xabcd_1234, 0x0000_ff00);
        assert!(b.len() <= wire::UPDATE_MAX_LEN, "{} bytes", b.len());
        let msgs: Vec<_> = Messages::new(&b).collect();
        let [Ok(msg)] = msgs.as_slice() else {
            panic!("{msgs:?}")
        };
        assert_eq!(msg.seq, 42);
        let back = wire::parse_entry(*msg).expect("an update reads as an entry");
        assert_eq!(back.orig, e.orig);
        assert_eq!((back.mark, back.zone), (0x1200, 3), "value & mask, zone");
        assert_eq!((back.reply, back.master, back.id), (None, None, None));
        let (family, _, attrs) = msg.nfgen().unwrap();
        let family_wanted = if e.orig.src.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        assert_eq!(i32::from(family), family_wanted);
        let mask = attrs
            .flatten()
            .find(|&(ty, _)| ty == 21)
            .and_then(|(_, d)| netlink::be32(d));
        assert_eq!(mask, Some(0xff00), "CTA_MARK_MASK");
    }
    // Zone 0 is not sent: a kernel without zones refuses CTA_ZONE.
    let mut b = Vec::new();
    wire::put_update(&mut b, 1, &expected()[2], 1, 1);
    let msg = Messages::new(&b).next().unwrap().unwrap();
    assert!(msg.nfgen().unwrap().2.flatten().all(|(ty, _)| ty != 18));
}

#[test]
fn a_zone_of_the_original_direction_is_the_entry_zone() {
    // CTA_TUPLE_ZONE inside CTA_TUPLE_ORIG, as the kernel writes a zone of one direction.
    let e = &expected()[2];
    let mut b = Vec::new();
    wire::put_update(&mut b, 1, e, 0, 0);
    let msg = Messages::new(&b).next().unwrap().unwrap();
    let (_, _, attrs) = msg.nfgen().unwrap();
    let (_, orig) = attrs.flatten().next().unwrap();
    let mut nest = orig.to_vec();
    netlink::put_be16(&mut nest, 3, 9);
    let mut m = Vec::new();
    let start = netlink::begin_msg(&mut m, wire::IPCTNL_MSG_CT_NEW, 0, 1, 2, 0);
    netlink::put_attr(&mut m, 1, &nest);
    netlink::end_msg(&mut m, start);
    let msg = Messages::new(&m).next().unwrap().unwrap();
    let back = wire::parse_entry(msg).unwrap();
    assert_eq!((back.orig, back.zone), (e.orig, 9));
}

#[test]
fn every_prefix_reads_whole_entries_or_nothing() {
    let mut datagram = bytes(DUMP);
    datagram.extend(bytes(DONE));
    let all = expected();
    for cut in 0..=datagram.len() {
        let mut reader = DumpReader::new(7);
        feed(&mut reader, &datagram[..cut]);
        let n = reader.dump.entries.len();
        assert_eq!(reader.dump.entries, all[..n], "cut at {cut}");
    }
    // Each message cut short, on its own.
    for msg in Messages::new(&datagram).flatten() {
        for cut in 0..msg.payload.len() {
            let short = NlMsg {
                payload: &msg.payload[..cut],
                ..msg
            };
            if let Some(e) = wire::parse_entry(short) {
                // Only a cut after the last attribute the entry needs can read.
                assert!(all.iter().any(|a| a.orig == e.orig), "{e:?}");
            }
        }
    }
}

#[test]
fn random_bit_flips_never_panic() {
    let mut datagram = bytes(DUMP);
    datagram.extend(bytes(DONE));
    let answers = [bytes(ACK), bytes(ENOENT)].concat();
    let mut next = crate::testutil::xorshift(0x2545_f491_4f6c_dd1d);
    let mut read = 0usize;
    for round in 0..30_000 {
        let base = if round % 4 == 0 { &answers } else { &datagram };
        let mut b = base.clone();
        for _ in 0..1 + next() % 4 {
            let bit = (next() % (b.len() as u64 * 8)) as usize;
            b[bit / 8] ^= 1 << (bit % 8);
        }
        let mut reader = DumpReader::new(7);
        feed(&mut reader, &b);
        read += reader.dump.entries.len();
        let _ = reader.finish();
        let mut answers = Answers::new(1, 60);
        for m in Messages::new(&b).flatten() {
            answers.on(Event::Msg(m));
        }
    }
    assert!(read > 0, "most flips leave most entries readable");
}

/// A real destroy event, as Linux 6.18 sent it to a socket of the NFNLGRP_CONNTRACK_DESTROY group: a
/// UDP flow 10.9.0.1:40000 -> 10.9.0.2:53 of two datagrams (5 and 11 bytes of payload) and no answer,
/// marked 0x100 by CONNMARK, that timed out after 2 s (`nf_conntrack_udp_timeout` 2), with
/// `nf_conntrack_acct` and `nf_conntrack_timestamp` on. Besides the tuples it carries CTA_ID, CTA_STATUS,
/// both counters, CTA_TIMESTAMP, CTA_MARK and CTA_TIMESTAMP_EVENT (27, not read).
const DESTROY: &str = concat!(
    "f4000000020100000000000000000000020000003400018014000180080001000a090001080002000a0900021c000280",
    "0500010011000000060002009c40000006000300003500003400028014000180080001000a090002080002000a090001",
    "1c00028005000100110000000600020000350000060003009c40000008000c00949d501708000300000002081c000980",
    "0c00010000000000000000020c00020000000000000000481c000a800c00010000000000000000000c00020000000000",
    "000000001c0014800c00010018ed09766c63b1c90c00020018ed0976e3a48b0608000800000001000c001b0018ed0978",
    "eaae1777",
);

#[test]
fn a_destroy_event_reads_with_its_counters_and_times() {
    let mut got = Vec::new();
    let read = parse_ends_datagram(&bytes(DESTROY), |e| got.push(e));
    assert_eq!((read.ended, read.unreadable), (1, 0));
    let e = &got[0];
    assert_eq!(e.orig, ports("10.9.0.1", "10.9.0.2", 17, 40000, 53));
    assert_eq!(e.reply, Some(ports("10.9.0.2", "10.9.0.1", 17, 53, 40000)));
    assert_eq!(e.mark, 0x100);
    // Two IPv4 datagrams: 20 + 8 + 5 and 20 + 8 + 11 bytes.
    let c = e.counters.expect("counters");
    assert_eq!(
        (c.orig_packets, c.orig_bytes, c.reply_packets, c.reply_bytes),
        (2, 72, 0, 0)
    );
    let (start, stop) = (e.start.expect("start"), e.stop.expect("stop"));
    // 2026-12-01, and ended by the 2 s timeout (the kernel's garbage collection may take longer).
    assert!((1_796_000_000..1_797_000_000).contains(&(start / 1_000_000_000)));
    let lived = stop - start;
    assert!((2_000_000_000..4_000_000_000).contains(&lived), "{lived}");
}

#[test]
fn a_destroy_event_cut_anywhere_reads_whole_or_not_at_all() {
    let event = bytes(DESTROY);
    let whole = wire::parse_entry(first(&event)).expect("the event reads");
    for cut in 0..event.len() {
        let mut got = Vec::new();
        let read = parse_ends_datagram(&event[..cut], |e| got.push(e));
        assert_eq!(read.ended, got.len() as u64);
        assert!(got.is_empty(), "cut at {cut} read {got:?}");
    }
    let msg = first(&event);
    for cut in 0..msg.payload.len() {
        let short = NlMsg {
            payload: &msg.payload[..cut],
            ..msg
        };
        if let Some(e) = wire::parse_entry(short) {
            assert_eq!(e.orig, whole.orig);
            // What a cut keeps is whole: counters come in both directions or not at all.
            if let Some(c) = e.counters {
                assert_eq!(Some(c), whole.counters);
            }
        }
    }
    // Other messages of the group's protocol are not ends.
    let mut dump = bytes(DUMP);
    dump.extend(bytes(DONE));
    assert_eq!(parse_ends_datagram(&dump, |_| {}).ended, 0);
}

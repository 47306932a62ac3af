use super::*;

fn packet_msg(id: u32, mark: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    let h = begin_msg(&mut b, NFQNL_MSG_PACKET, 0, 0, libc::AF_INET as u8, 0);
    let mut hdr = [0u8; 7];
    hdr[..4].copy_from_slice(&id.to_be_bytes());
    hdr[4..6].copy_from_slice(&0x0800u16.to_be_bytes());
    hdr[6] = 3;
    put_attr(&mut b, NFQA_PACKET_HDR, &hdr);
    put_be32(&mut b, NFQA_MARK, mark);
    put_attr(&mut b, NFQA_PAYLOAD, payload);
    end_msg(&mut b, h);
    b
}

/// What `recv_batch` reads out of one datagram.
fn packets(datagram: &[u8]) -> Vec<QueuedPacket> {
    let mut out = Vec::new();
    parse_datagram(datagram, &mut out);
    out
}

#[test]
fn parses_packet() {
    let b = packet_msg(7, 0x42, &[1, 2, 3, 4, 5]);
    let got = packets(&b);
    let [p] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!((p.id, p.mark), (7, 0x42));
    assert_eq!(p.payload, vec![1, 2, 3, 4, 5]);
}

#[test]
fn truncated_or_flipped_input_never_panics() {
    let mut b = packet_msg(9, 1, &[0xaa; 33]);
    b.extend(packet_msg(10, 2, &[0xbb; 3]));
    for cut in 0..b.len() {
        let got = packets(&b[..cut]);
        assert!(got.len() <= 1 || cut == b.len());
    }
    let mut next = crate::testutil::xorshift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut c = b.clone();
        for _ in 0..3 {
            let bit = (next() % (c.len() as u64 * 8)) as usize;
            c[bit / 8] ^= 1 << (bit % 8);
        }
        packets(&c);
    }
}

#[test]
fn verdict_encoding() {
    let mut b = Vec::new();
    let m = VerdictMsg {
        id: 0x01020304,
        verdict: Verdict::Repeat,
        mark: Some(1),
        batch: false,
    };
    encode_verdict(&mut b, 5, 1, &m);
    assert_eq!(b.len(), VERDICT_MSG_LEN);
    assert_eq!(&b[4..6], &NFQNL_MSG_VERDICT.to_ne_bytes());
    assert_eq!(&b[18..20], &5u16.to_be_bytes());
    assert_eq!(&b[24..28], &NF_REPEAT.to_be_bytes());
    assert_eq!(&b[28..32], &[1, 2, 3, 4]);
    assert_eq!(&b[36..40], &1u32.to_be_bytes());
}

#[test]
fn verdicts_share_one_buffer_in_order() {
    let mut b = Vec::new();
    let msgs = [
        (3, Verdict::Accept, None, false),
        (5, Verdict::Drop, Some(0x20), false),
        (9, Verdict::Repeat, Some(0x10), true),
    ];
    for (seq, &(id, verdict, mark, batch)) in msgs.iter().enumerate() {
        let m = VerdictMsg {
            id,
            verdict,
            mark,
            batch,
        };
        encode_verdict(&mut b, 2, seq as u32, &m);
    }
    let got: Vec<_> = Messages::new(&b)
        .map(|m| {
            let m = m.unwrap();
            let (_, queue, attrs) = m.nfgen().unwrap();
            let attrs: Vec<_> = attrs.map(Result::unwrap).collect();
            let id = be32(&attrs[0].1[4..]).unwrap();
            let mark = attrs.get(1).and_then(|a| be32(a.1));
            (m.ty, m.seq, queue, id, mark)
        })
        .collect();
    assert_eq!(
        got,
        [
            (NFQNL_MSG_VERDICT, 0, 2, 3, None),
            (NFQNL_MSG_VERDICT, 1, 2, 5, Some(0x20)),
            (NFQNL_MSG_VERDICT_BATCH, 2, 2, 9, Some(0x10)),
        ]
    );
}

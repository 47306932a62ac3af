use super::*;

fn sample() -> Vec<u8> {
    let mut b = Vec::new();
    let m = begin_msg(&mut b, 0x0100, NLM_F_REQUEST | NLM_F_ACK, 7, 2, 0x0102);
    let outer = begin_nest(&mut b, 1);
    put_u8(&mut b, 1, 6);
    put_be16(&mut b, 2, 443);
    end_nest(&mut b, outer);
    put_be32(&mut b, 8, 0xdead_beef);
    put_attr(&mut b, 9, b"abc");
    end_msg(&mut b, m);
    b
}

#[test]
fn builds_and_reads_back() {
    let b = sample();
    assert_eq!(b.len(), 16 + 4 + (4 + 8 + 8) + 8 + 8);
    assert_eq!(b.len() % 4, 0);
    let msgs: Vec<_> = Messages::new(&b).collect();
    let [Ok(msg)] = msgs.as_slice() else {
        panic!("{msgs:?}")
    };
    assert_eq!((msg.ty, msg.seq), (0x0100, 7));
    let (family, res_id, attrs) = msg.nfgen().unwrap();
    assert_eq!((family, res_id), (2, 0x0102));
    let attrs: Vec<_> = attrs.map(Result::unwrap).collect();
    assert_eq!(attrs.len(), 3);
    assert_eq!(attrs[0].0, 1, "NLA_F_NESTED is not part of the type");
    let inner: Vec<_> = Attrs::new(attrs[0].1).map(Result::unwrap).collect();
    assert_eq!(inner, [(1, &[6][..]), (2, &443u16.to_be_bytes()[..])]);
    assert_eq!(be32(attrs[1].1), Some(0xdead_beef));
    assert_eq!(attrs[2], (9, &b"abc"[..]));
    assert_eq!(be32(&[1, 2, 3]), None, "a wrong size is not a number");
}

#[test]
fn errors_and_acks() {
    let mut b = Vec::new();
    let m = begin_msg(&mut b, NLMSG_ERROR, 0, 9, 0, 0);
    end_msg(&mut b, m);
    // begin_msg wrote an nfgenmsg where the error code goes: overwrite it.
    b[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
    let msg = Messages::new(&b).next().unwrap().unwrap();
    assert_eq!((msg.ty, msg.seq, msg.errno()), (NLMSG_ERROR, 9, Some(2)));
    b[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
    let msg = Messages::new(&b).next().unwrap().unwrap();
    assert_eq!(msg.errno(), None, "no overflow on a nonsense code");
}

#[test]
fn lying_lengths_stop_the_iterators() {
    let mut b = sample();
    b.extend(sample());
    // Every prefix: whole messages come out, the cut one is Malformed, then nothing.
    for cut in 0..=b.len() {
        let items: Vec<_> = Messages::new(&b[..cut]).collect();
        let whole = cut / (b.len() / 2);
        assert!(items.iter().take(whole).all(Result::is_ok), "cut {cut}");
        assert!(items.len() <= whole + 1, "cut {cut}");
        for msg in items.into_iter().flatten() {
            if let Some((_, _, attrs)) = msg.nfgen() {
                for (_, d) in attrs.flatten() {
                    Attrs::new(d).for_each(drop);
                }
            }
        }
    }
    // An attribute longer than its message.
    let mut c = sample();
    c[20..22].copy_from_slice(&500u16.to_ne_bytes());
    let msg = Messages::new(&c).next().unwrap().unwrap();
    let items: Vec<_> = msg.nfgen().unwrap().2.collect();
    assert_eq!(items, [Err(Malformed)]);
    // An attribute shorter than its own header.
    c[20..22].copy_from_slice(&2u16.to_ne_bytes());
    let msg = Messages::new(&c).next().unwrap().unwrap();
    assert_eq!(msg.nfgen().unwrap().2.next(), Some(Err(Malformed)));
    // A message header claiming less than a header.
    let mut d = sample();
    d[..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(
        Messages::new(&d).map(|m| m.is_ok()).collect::<Vec<_>>(),
        [false]
    );
}

#[test]
fn slots_report_truncation() {
    let mut slots = Slots::new(32, 3);
    slots.filled.extend([(20, false), (40, true), (32, false)]);
    let got: Vec<_> = slots.datagrams().map(|d| d.map(<[u8]>::len)).collect();
    assert_eq!(got, [Ok(20), Err(Truncated), Ok(32)]);
}

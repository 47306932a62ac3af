//! RFC 9001 Appendix A and RFC 9369 Appendix A (their expected bytes, as published), and ClientHellos cut
//! into CRYPTO frames, packets and datagrams in every way the module must read.

use super::packet::{Keys, Secrets, Version, long_header};
use super::*;
use aes_gcm::AeadInOut;
use aes_gcm::aead::Nonce;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The Destination Connection ID both appendices use.
const DCID: &str = "8394c8f03e515708";

// The appendices' client Initial, as printed in RFC 9001 §A.2 and RFC 9369 §A.2: the CRYPTO frame
// (the same in both), the unprotected header, and the protected packet.
const CRYPTO_FRAME: &str = concat!(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c000004130113",
    "02010000c000000010000e00000b6578616d706c652e636f6dff01000100000a00080006001d00170018001000070005",
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fbabaf4559fedba753de171fa71f50f1ce1",
    "5d43e994ec74d748002b0003020304000d0010000e0403050306030203080408050806002d00020101001c0002400100",
    "3900320408ffffffffffffffff05048000ffff07048000ffff0801100104800075300901100f088394c8f03e51570806",
    "048000ffff",
);
const V1_HEADER: &str = "c300000001088394c8f03e5157080000449e00000002";
/// RFC 9001 §A.2's protected packet, as printed (also read by benches/engine.rs).
const V1_PROTECTED: &str = include_str!("rfc9001_a2_client_initial.hex");
const V2_HEADER: &str = "d36b3343cf088394c8f03e5157080000449e00000002";
/// RFC 9369 §A.2's protected packet, as printed.
const V2_PROTECTED: &str = include_str!("rfc9369_a2_client_initial.hex");

/// RFC 9001 §A.2 / RFC 9369 §A.2: the CRYPTO frame plus PADDING to a 1162-byte payload.
fn rfc_payload() -> Vec<u8> {
    let mut p = hex(CRYPTO_FRAME);
    p.resize(1162, 0);
    p
}

fn secrets(version: Version, side: &[u8]) -> Secrets {
    Secrets::initial(version, &hex(DCID), side).unwrap()
}

fn check(s: &Secrets, secret: &str, key: &str, iv: &str, hp: &str) {
    assert_eq!(s.secret.to_vec(), hex(secret), "secret");
    assert_eq!(s.key.to_vec(), hex(key), "key");
    assert_eq!(s.iv.to_vec(), hex(iv), "iv");
    assert_eq!(s.hp.to_vec(), hex(hp), "hp");
}

#[test]
fn rfc_9001_a1_keys() {
    check(
        &secrets(Version::V1, b"client in"),
        "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
        "1f369613dd76d5467730efcbe3b1a22d",
        "fa044b2f42a3fd3b46fb255c",
        "9f50449e04a0e810283a1e9933adedd2",
    );
    check(
        &secrets(Version::V1, b"server in"),
        "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b",
        "cf3a5331653c364c88f0f379b6067e37",
        "0ac1493ca1905853b0bba03e",
        "c206b8d9b9f0f37644430b490eeaa314",
    );
}

#[test]
fn rfc_9369_a1_keys() {
    check(
        &secrets(Version::V2, b"client in"),
        "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
        "8b1a0bc121284290a29e0971b5cd045d",
        "91f73e2351d8fa91660e909f",
        "45b95e15235d6f45a6b19cbcb0294ba9",
    );
    check(
        &secrets(Version::V2, b"server in"),
        "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1",
        "82db637861d55e1d011f19ea71d5d2a7",
        "dd13c276499c0249d3310652",
        "edf6d05c83121201b436e16877593c3a",
    );
}

/// Opens an appendix's packet and checks each step against the RFC's intermediate values.
fn open_appendix(version: Version, protected: &str, header: &str, sample: &str, mask: &str) {
    let packet = hex(protected);
    let keys = Keys::new(&secrets(version, b"client in")).unwrap();
    assert_eq!(keys.mask(&hex(sample)).unwrap().to_vec(), hex(mask), "mask");
    let h = long_header(&packet).unwrap();
    assert_eq!(
        (h.version, h.kind, h.dcid, h.len),
        (version, Kind::Initial, &hex(DCID)[..], packet.len())
    );
    let opened = keys.open(&packet, &h, None).unwrap();
    let header = hex(header);
    assert_eq!(opened.first, header[0], "first byte, unprotected");
    assert_eq!(opened.pn, 2, "the header's packet number");
    assert_eq!(opened.plaintext, rfc_payload());
    let hello = parse_client_hello(&[&packet]).unwrap();
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    assert_eq!(hello.alpn, ["alpn"]);
    assert_eq!(
        (hello.legacy_version, hello.supported_versions),
        (0x0303, vec![0x0304])
    );
}

#[test]
fn rfc_9001_a2_client_initial() {
    open_appendix(
        Version::V1,
        V1_PROTECTED,
        V1_HEADER,
        "d1b1c98dd7689fb8ec11d242b123dc9b",
        "437b9aec36",
    );
    // The test's own packet writer, used below, writes the appendix's packet byte for byte.
    assert_eq!(
        initial(Version::V1, &hex(DCID), 2, &rfc_payload()),
        hex(V1_PROTECTED)
    );
}

#[test]
fn rfc_9369_a2_client_initial() {
    open_appendix(
        Version::V2,
        V2_PROTECTED,
        V2_HEADER,
        "ffe67b6abcdb4298b485dd04de806071",
        "94a0c95e80",
    );
    assert_eq!(
        initial(Version::V2, &hex(DCID), 2, &rfc_payload()),
        hex(V2_PROTECTED)
    );
}

/// Writes a protected client Initial: no Source Connection ID, no token, a 4-byte packet number, a
/// two-byte Length (RFC 9000 §17.2.2), as the appendices' packet is written.
fn initial(version: Version, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    initial_with(version, dcid, pn, frames, 0)
}

/// Like [`initial`], with `reserved` or-ed into the first byte before protection.
fn initial_with(version: Version, dcid: &[u8], pn: u32, frames: &[u8], reserved: u8) -> Vec<u8> {
    let keys = Keys::new(&Secrets::initial(version, dcid, b"client in").unwrap()).unwrap();
    let (ty, wire) = match version {
        Version::V1 => (0u8, packet::VERSION_1),
        Version::V2 => (1, packet::VERSION_2),
    };
    let mut header = vec![0xc0 | ty << 4 | reserved | 0x03];
    header.extend(wire.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend(dcid);
    header.extend([0, 0]); // SCID length, token length
    header.extend((0x4000 | (4 + frames.len() + 16) as u16).to_be_bytes());
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().rev().zip(u64::from(pn).to_le_bytes()) {
        *n ^= p;
    }
    let mut body = frames.to_vec();
    let tag = keys
        .aead
        .encrypt_inout_detached(
            &Nonce::<aes_gcm::Aes128Gcm>::from(nonce),
            &header,
            body.as_mut_slice().into(),
        )
        .unwrap();
    body.extend_from_slice(&tag);
    let mask = keys.mask(&body[..16]).unwrap();
    header[0] ^= mask[0] & 0x0f;
    for (b, m) in header[pn_offset..].iter_mut().zip(&mask[1..]) {
        *b ^= m;
    }
    header.extend(body);
    header
}

/// A CRYPTO frame (RFC 9000 §19.6) with 4-byte varints.
fn crypto(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend((0x8000_0000 | offset as u32).to_be_bytes());
    f.extend((0x8000_0000 | data.len() as u32).to_be_bytes());
    f.extend(data);
    f
}

/// Frames padded to make a packet of at least 1200 bytes.
fn padded(frames: &[u8]) -> Vec<u8> {
    let mut f = frames.to_vec();
    f.resize(f.len().max(1200 - 32), 0);
    f
}

/// A TLS ClientHello handshake message naming `sni`, with ALPN h3 and a padding extension (RFC 7685)
/// of `pad` bytes standing in for a post-quantum key share.
fn hello(sni: &str, pad: usize) -> Vec<u8> {
    let ext = |ty: u16, data: &[u8]| {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend((data.len() as u16).to_be_bytes());
        e.extend(data);
        e
    };
    let mut name = vec![0];
    name.extend((sni.len() as u16).to_be_bytes());
    name.extend(sni.as_bytes());
    let mut list = (name.len() as u16).to_be_bytes().to_vec();
    list.extend(name);
    let mut exts = ext(0, &list);
    exts.extend(ext(16, &[0, 3, 2, b'h', b'3']));
    exts.extend(ext(43, &[2, 3, 4]));
    exts.extend(ext(21, &vec![0; pad]));
    let mut body = vec![3, 3];
    body.extend([7; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

const CID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// `msg` cut at `cut` into two CRYPTO frames, one Initial datagram each (packet numbers 0 and 1).
fn two_datagrams(version: Version, msg: &[u8], cut: usize) -> [Vec<u8>; 2] {
    [
        initial(version, &CID, 0, &padded(&crypto(0, &msg[..cut]))),
        initial(version, &CID, 1, &padded(&crypto(cut, &msg[cut..]))),
    ]
}

fn sni(r: Result<ClientHello, QuicError>) -> Result<String, QuicError> {
    r.map(|h| h.sni.unwrap_or_default())
}

#[test]
fn a_hello_across_two_datagrams_in_either_order() {
    // 1,700 bytes: as large as Chrome's hello with an X25519MLKEM768 key share.
    let msg = hello("www.example.org", 1600);
    for version in [Version::V1, Version::V2] {
        let [a, b] = two_datagrams(version, &msg, 1000);
        assert_eq!(parse_client_hello(&[&a]), Err(QuicError::Incomplete));
        assert_eq!(parse_client_hello(&[&b]), Err(QuicError::Incomplete));
        assert_eq!(
            sni(parse_client_hello(&[&a, &b])),
            Ok("www.example.org".into())
        );
        assert_eq!(
            sni(parse_client_hello(&[&b, &a])),
            Ok("www.example.org".into()),
            "the second datagram first"
        );
        // A retransmission of the first (a new packet number, the same bytes) changes nothing.
        let again = initial(version, &CID, 2, &padded(&crypto(0, &msg[..1000])));
        assert_eq!(
            sni(parse_client_hello(&[&a, &again, &b])),
            Ok("www.example.org".into())
        );
    }
}

#[test]
fn crypto_frames_shuffled_within_packets_and_packets_coalesced() {
    // As Chrome's "chaos protection" writes its Initials: the hello cut into small CRYPTO frames out of
    // order, with PING and PADDING between them.
    let msg = hello("chaos.example", 1500);
    let cuts: Vec<usize> = (0..msg.len()).step_by(97).chain([msg.len()]).collect();
    let mut frames: Vec<Vec<u8>> = cuts
        .windows(2)
        .map(|w| crypto(w[0], &msg[w[0]..w[1]]))
        .collect();
    frames.reverse();
    frames.swap(1, 5);
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let half = if i % 2 == 0 { &mut first } else { &mut second };
        half.extend(f);
        half.extend([0x01, 0x00, 0x00]);
    }
    // Two packets coalesced in one datagram, the second padded to make the datagram 1200 bytes.
    let p1 = initial(Version::V1, &CID, 0, &first);
    let mut datagram = p1.clone();
    let fill = 1200usize.saturating_sub(p1.len() + second.len() + 40);
    second.resize(second.len() + fill, 0);
    datagram.extend(initial(Version::V1, &CID, 1, &second));
    assert!(datagram.len() >= 1200);
    assert_eq!(
        sni(parse_client_hello(&[&datagram])),
        Ok("chaos.example".into())
    );
    // Zero bytes after the packets (RFC 9000 §14.1 lets a client pad the datagram so) are ignored.
    let mut trailing = datagram.clone();
    trailing.extend([0; 30]);
    assert_eq!(
        sni(parse_client_hello(&[&trailing])),
        Ok("chaos.example".into())
    );
    // Without the second packet, the hello has gaps: incomplete.
    let alone = initial(Version::V1, &CID, 0, &padded(&first));
    assert_eq!(parse_client_hello(&[&alone]), Err(QuicError::Incomplete));
}

#[test]
fn packets_a_server_would_drop_are_skipped() {
    let msg = hello("www.example.org", 1600);
    let [a, b] = two_datagrams(Version::V1, &msg, 1000);
    // A later Initial that does not decrypt (here: written with other keys).
    let forged = initial(
        Version::V1,
        &[9; 8],
        1,
        &padded(&crypto(1000, &msg[1000..])),
    );
    assert_eq!(
        parse_client_hello(&[&a, &forged]),
        Err(QuicError::Incomplete)
    );
    assert_eq!(
        sni(parse_client_hello(&[&a, &forged, &b])),
        Ok("www.example.org".into())
    );
    // A later Initial in a datagram below 1200 bytes.
    let short = initial(Version::V1, &CID, 1, &crypto(1000, &msg[1000..]));
    assert!(short.len() < 1200);
    assert_eq!(
        parse_client_hello(&[&a, &short]),
        Err(QuicError::Incomplete)
    );
    // A second Initial with another DCID in the same datagram (RFC 9000 §12.2): ignored.
    let mut coalesced = initial(Version::V1, &CID, 0, &crypto(0, &msg[..1000]));
    coalesced.extend(initial(
        Version::V1,
        &[9; 8],
        1,
        &padded(&crypto(1000, &msg[1000..])),
    ));
    assert_eq!(
        parse_client_hello(&[&coalesced]),
        Err(QuicError::Incomplete)
    );
    // 0-RTT or Handshake packets before any Initial: waited past.
    let mut zero_rtt = a.clone();
    zero_rtt[0] = (zero_rtt[0] & 0xcf) | 0x10;
    assert_eq!(parse_client_hello(&[&zero_rtt]), Err(QuicError::Incomplete));
    assert_eq!(
        sni(parse_client_hello(&[&zero_rtt, &a, &b])),
        Ok("www.example.org".into())
    );
}

#[test]
fn initials_that_break_the_protocol_are_malformed() {
    let msg = hello("www.example.org", 100);
    let one = |frames: &[u8]| parse_client_hello(&[initial(Version::V1, &CID, 0, &padded(frames))]);
    assert_eq!(sni(one(&crypto(0, &msg))), Ok("www.example.org".into()));
    let mut stream_frame = crypto(0, &msg);
    stream_frame.extend([0x08, 0x00, 0x01, b'x']);
    assert_eq!(
        one(&stream_frame),
        Err(QuicError::Malformed),
        "a STREAM frame"
    );
    let mut conflict = crypto(0, &msg);
    let mut changed = msg[10..20].to_vec();
    changed[0] ^= 1;
    conflict.extend(crypto(10, &changed));
    assert_eq!(
        one(&conflict),
        Err(QuicError::Malformed),
        "two copies differ"
    );
    let mut agree = crypto(0, &msg);
    agree.extend(crypto(10, &msg[10..20]));
    assert_eq!(
        sni(one(&agree)),
        Ok("www.example.org".into()),
        "two copies agree"
    );
    let mut beyond = crypto(0, &msg);
    beyond.extend(crypto(msg.len() + 5, b"more"));
    assert_eq!(
        one(&beyond),
        Err(QuicError::Malformed),
        "bytes past the hello"
    );
    let mut late = crypto(10, &msg[10..]);
    late.extend(crypto(msg.len(), b"x"));
    late.extend(crypto(0, &msg[..10]));
    assert_eq!(
        one(&late),
        Err(QuicError::Malformed),
        "past the hello, its header last"
    );
    let not_hello = crypto(0, &[2, 0, 0, 4, 0, 0, 0, 0]);
    assert_eq!(one(&not_hello), Err(QuicError::Malformed), "a ServerHello");
    assert_eq!(
        one(&[0x01]),
        Err(QuicError::Incomplete),
        "PING and PADDING only"
    );
    let reserved = initial_with(Version::V1, &CID, 0, &padded(&crypto(0, &msg)), 0x04);
    assert_eq!(
        parse_client_hello(&[&reserved]),
        Err(QuicError::Malformed),
        "reserved bits"
    );
    // The first Initial does not decrypt: not QUIC.
    let mut broken = initial(Version::V1, &CID, 0, &padded(&crypto(0, &msg)));
    let last = broken.len() - 1;
    broken[last] ^= 1;
    assert_eq!(parse_client_hello(&[&broken]), Err(QuicError::Malformed));
    // The first Initial in a datagram below 1200 bytes.
    let short = initial(Version::V1, &CID, 0, &crypto(0, &msg));
    assert_eq!(parse_client_hello(&[&short]), Err(QuicError::Malformed));
}

#[test]
fn other_versions_are_quic_but_not_read() {
    let mut draft29 = initial(
        Version::V1,
        &CID,
        0,
        &padded(&crypto(0, &hello("a.example", 10))),
    );
    draft29[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
    assert_eq!(parse_client_hello(&[&draft29]), Err(QuicError::NotInitial));
    assert_eq!(
        parse_client_hello(&[[0xc0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0]]),
        Err(QuicError::NotInitial),
        "version negotiation"
    );
}

#[test]
fn bounds() {
    let msg = hello("www.example.org", 1600);
    // More CRYPTO frames than kept: one byte each.
    let frames: Vec<u8> = (0..MAX_PIECES + 1)
        .flat_map(|i| crypto(i, &msg[i..=i]))
        .collect();
    let many = initial(Version::V1, &CID, 0, &frames);
    assert_eq!(parse_client_hello(&[&many]), Err(QuicError::Malformed));
    // A frame past the largest stream.
    let far = initial(Version::V1, &CID, 0, &padded(&crypto(MAX_CRYPTO_LEN, b"x")));
    assert_eq!(parse_client_hello(&[&far]), Err(QuicError::Malformed));
    // As many datagrams as are read, the hello still incomplete.
    let part = initial(Version::V1, &CID, 0, &padded(&crypto(0, &msg[..100])));
    let datagrams = vec![part; MAX_DATAGRAMS];
    assert_eq!(parse_client_hello(&datagrams), Err(QuicError::Malformed));
    assert_eq!(
        parse_client_hello(&datagrams[..MAX_DATAGRAMS - 1]),
        Err(QuicError::Incomplete)
    );
}

#[test]
fn garbage_never_panics() {
    let packet = hex(V1_PROTECTED);
    for n in 0..packet.len() {
        let _ = parse_client_hello(&[&packet[..n]]);
    }
    // Bit flips in the header and the first bytes of the payload.
    for i in 0..40 {
        for bit in 0..8 {
            let mut p = packet.clone();
            p[i] ^= 1 << bit;
            let _ = parse_client_hello(&[&p]);
            let _ = parse_client_hello(&[&packet, &p]);
        }
    }
    let mut next = crate::testutil::xorshift(0x5eed);
    for i in 0..1000 {
        let len = (next() % 1400) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(b) = d.get_mut(..6) {
            b.copy_from_slice(&[0xc3, 0, 0, 0, 1, (next() % 24) as u8]);
        }
        let _ = parse_client_hello(&[&d]);
        if i % 8 == 0 {
            let _ = parse_client_hello(&[&packet, &d]);
        }
    }
    // Frames and CRYPTO pieces of any kind, without the encryption around them (fast, so many more).
    for _ in 0..10_000 {
        let len = (next() % 48) as usize;
        let frames: Vec<u8> = (0..len)
            .map(|_| match next() % 4 {
                0 => [0x00, 0x01, 0x02, 0x03, 0x06, 0x1c][(next() % 6) as usize],
                _ => next() as u8,
            })
            .collect();
        let mut initials = Initials::default();
        if frames::crypto_pieces(&frames, &mut initials.pieces).is_ok() {
            let _ = initials.reassemble();
        }
    }
    let msg = hello("www.example.org", 300);
    for _ in 0..2_000 {
        let mut initials = Initials::default();
        for _ in 0..(next() % 8) {
            let at = (next() % (msg.len() as u64 + 8)) as usize;
            let end = (at + (next() % 200) as usize).min(msg.len());
            let mut data = msg.get(at..end).unwrap_or_default().to_vec();
            if next().is_multiple_of(8) {
                data.push(next() as u8);
            }
            initials.pieces.push((at as u64, data));
        }
        let _ = initials.reassemble();
    }
    // Decrypted frames of any kind.
    for _ in 0..300 {
        let len = (next() % 64) as usize;
        let frames: Vec<u8> = (0..len).map(|_| (next() % 8) as u8).collect();
        let _ = parse_client_hello(&[initial(Version::V1, &CID, 0, &padded(&frames))]);
    }
}

/// The engine holds a QUIC flow's datagrams until its ClientHello is whole, then decides by its name.
#[test]
fn the_engine_waits_for_the_whole_hello_and_decides_by_sni() {
    use crate::decision::{Decision, Reason, Verdict};
    use crate::inspect::detect::App;
    use crate::{Engine, Policy, Timestamp};
    let policy = "policy loc net DROP\n\
                  ACCEPT loc net udp 443 sni=good.test\n\
                  DROP loc net udp 443\n";
    let engine = Engine::new(Policy::compile("p", policy).unwrap());
    let udp = |payload: &[u8]| {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
            .udp(50000, 443)
            .write(&mut out, payload)
            .unwrap();
        out
    };
    for (name, verdict, rule) in [
        ("good.test", Verdict::Accept, 0),
        ("evil.test", Verdict::Drop, 1),
    ] {
        let [a, b] = two_datagrams(Version::V1, &hello(name, 1600), 1000);
        let mut table = engine.new_flow_table();
        table.keep_finished(true);
        let now = Timestamp::from_secs(1);
        // The second datagram first: the flow waits for the first.
        assert_eq!(
            engine.decide(&mut table, &udp(&b), now, 0).reason,
            Reason::Held
        );
        let decided = Decision::new(verdict, Reason::Rule(rule));
        assert_eq!(
            engine.decide(&mut table, &udp(&a), now, 1),
            decided,
            "{name}"
        );
        assert_eq!(table.drain_released().collect::<Vec<_>>(), [(0, decided)]);
        table.finish_all();
        let rec = table.drain_finished().next().unwrap();
        let payload = &rec.inspected.as_ref().unwrap().payload;
        assert_eq!(payload.app, Some(App::Quic));
        assert_eq!(
            payload.tls.as_ref().and_then(|h| h.sni.as_deref()),
            Some(name)
        );
        assert_eq!(
            payload.tls.as_ref().map(|h| h.alpn.clone()),
            Some(vec!["h3".into()])
        );
    }
}

#[test]
fn what_read_datagrams_makes_of_it() {
    use crate::inspect::detect::App;
    use crate::inspect::read_datagrams;
    let packet = hex(V1_PROTECTED);
    let p = read_datagrams(&[&packet]).unwrap();
    assert_eq!(
        (p.app, p.tls.and_then(|h| h.sni)),
        (Some(App::Quic), Some("example.com".into()))
    );
    let [a, _] = two_datagrams(Version::V2, &hello("x.example", 1600), 1000);
    assert_eq!(read_datagrams(&[&a]), None, "the hello is not whole yet");
    let mut broken = packet.clone();
    broken[100] ^= 1;
    assert_eq!(read_datagrams(&[&broken]).unwrap().app, Some(App::Unknown));
    let mut draft = packet;
    draft[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
    let p = read_datagrams(&[&draft]).unwrap();
    assert_eq!((p.app, p.tls), (Some(App::Quic), None));
}

#[test]
fn decrypted_payloads_read_as_the_opened_packets_do() {
    // RFC 9001 A.2's payload, whole, as the fuzz target's seed feeds it.
    let hello = parse_decrypted(&[rfc_payload()]).unwrap();
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    assert_eq!(
        parse_client_hello(&[hex(V1_PROTECTED)]).unwrap().sni,
        hello.sni
    );
    // The hello in two CRYPTO frames, the second packet first.
    let msg = &hex(CRYPTO_FRAME)[4..];
    let (a, b) = msg.split_at(100);
    let got = parse_decrypted(&[crypto(100, b), crypto(0, a)]).unwrap();
    assert_eq!(got.sni, hello.sni);
    assert_eq!(
        parse_decrypted(&[crypto(0, a)]).unwrap_err(),
        QuicError::Incomplete
    );
    assert_eq!(
        parse_decrypted(&[[0x08u8]]).unwrap_err(),
        QuicError::Malformed
    );
}

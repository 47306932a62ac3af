use super::*;
use Detection::NeedMore;

fn tcp(c: &[u8]) -> Detection {
    detect(Transport::Tcp, c, None)
}

fn udp(c: &[u8]) -> Detection {
    detect(Transport::Udp, c, None)
}

fn app(a: App) -> Detection {
    Detection::App(a)
}

/// Every strict prefix of `whole` is `NeedMore` over TCP, and `whole` is `want`.
fn prefixes_need_more(whole: &[u8], server: Option<&[u8]>, want: App) {
    for n in 0..whole.len() {
        assert_eq!(
            detect(Transport::Tcp, &whole[..n], server),
            NeedMore,
            "{want:?}: prefix {:?}",
            &whole[..n]
        );
    }
    assert_eq!(detect(Transport::Tcp, whole, server), app(want));
}

#[test]
fn names_round_trip() {
    for a in App::ALL {
        assert_eq!(App::from_name(a.name()), Some(a));
    }
    assert_eq!(App::from_name("TLS"), Some(App::Tls));
    assert_eq!(App::from_name("wg"), None);
    assert_eq!(App::from_name(""), None);
}

#[test]
fn http_after_empty_lines_and_in_any_case() {
    assert_eq!(
        detect(Transport::Tcp, b"\r\nGET / HTTP/1.1\r\n", None),
        Detection::App(App::Http)
    );
    assert_eq!(
        detect(Transport::Tcp, b"get / HTTP/1.1\r\n", None),
        Detection::App(App::Http)
    );
    assert_eq!(
        detect(Transport::Tcp, b"\r\n\r\n", None),
        Detection::NeedMore
    );
}

#[test]
fn http_methods() {
    for m in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"POST /x HTTP/1.1\r\n",
        b"HEAD / HTTP/1.0\r\n",
        b"PUT /a HTTP/1.1\r\n",
        b"DELETE /a HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\n",
        b"PATCH /a HTTP/1.1\r\n",
        b"TRACE / HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
    ] {
        assert_eq!(tcp(m), app(App::Http), "{:?}", String::from_utf8_lossy(m));
    }
    prefixes_need_more(b"CONNECT ", None, App::Http);
    // A tab, a longer token: not a method of RFC 9110 (lower case is read: see `http`).
    for m in [&b"GET\t/"[..], b"GETS / x", b"POSTING x"] {
        assert_eq!(
            tcp(m),
            app(App::Unknown),
            "{:?}",
            String::from_utf8_lossy(m)
        );
    }
    // Not HTTP over UDP.
    assert_eq!(udp(b"GET / HTTP/1.1\r\n\r\n"), app(App::Unknown));
}

#[test]
fn tls_record_header() {
    let hello_start: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
    assert_eq!(tcp(hello_start), app(App::Tls));
    prefixes_need_more(&hello_start[..5], None, App::Tls);
    for bad in [
        &[0x16, 0x03, 0x05, 0x00, 0x10][..],
        &[0x16, 0x03, 0x01, 0x00, 0x00],
        &[0x16, 0x03, 0x01, 0x48, 0x01],
        &[0x17, 0x03, 0x03, 0x00, 0x20],
        &[0x16, 0x02, 0x00, 0x00, 0x20],
    ] {
        assert_ne!(tcp(bad), app(App::Tls), "{bad:02x?}");
    }
}

#[test]
fn ssh_either_side() {
    prefixes_need_more(b"SSH-", None, App::Ssh);
    assert_eq!(tcp(b"SSH-2.0-OpenSSH_9.6\r\n"), app(App::Ssh));
    // The server's banner decides before the client has said anything.
    let banner: &[u8] = b"SSH-2.0-OpenSSH_7.4\r\n";
    assert_eq!(detect(Transport::Tcp, b"", Some(banner)), app(App::Ssh));
    assert_eq!(tcp(b"SSH_2.0"), app(App::Unknown));
}

#[test]
fn socks() {
    // SOCKS5: one method (no auth), two methods, then a pipelined CONNECT request.
    prefixes_need_more(&[0x05, 0x01, 0x00], None, App::Socks);
    assert_eq!(tcp(&[0x05, 0x02, 0x00, 0x02]), app(App::Socks));
    assert_eq!(
        tcp(&[0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, 0x0b]),
        app(App::Socks)
    );
    // NMETHODS 0; a 0xFF method; more bytes than the methods, not a request.
    assert_ne!(tcp(&[0x05, 0x00]), app(App::Socks));
    assert_ne!(tcp(&[0x05, 0x01, 0xff]), app(App::Socks));
    assert_eq!(
        tcp(&[0x05, 0x01, 0x00, 0x47, 0x45, 0x54]),
        app(App::Unknown)
    );
    // SOCKS4 CONNECT 10.0.0.1:80 user "bob"; SOCKS4a to example.com.
    let v4: &[u8] = &[0x04, 0x01, 0x00, 0x50, 10, 0, 0, 1, b'b', b'o', b'b', 0];
    prefixes_need_more(v4, None, App::Socks);
    let v4a: &[u8] = &[
        0x04, 0x01, 0x01, 0xbb, 0, 0, 0, 1, 0, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.',
        b'c', b'o', b'm', 0,
    ];
    prefixes_need_more(v4a, None, App::Socks);
    // Bad command; data after the request.
    assert_ne!(tcp(&[0x04, 0x03, 0, 80, 10, 0, 0, 1, 0]), app(App::Socks));
    assert_ne!(
        tcp(&[0x04, 0x01, 0, 80, 10, 0, 0, 1, 0, 1]),
        app(App::Socks)
    );
}

/// A P_CONTROL_HARD_RESET_CLIENT_V2 without tls-auth: opcode 7 key 0, session id, no acks,
/// packet id 0.
const OVPN_RESET: [u8; 14] = [
    0x38, 0x8d, 0x1a, 0x44, 0x02, 0x9c, 0x5e, 0x71, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn openvpn() {
    let mut over_tcp = vec![0x00, 0x0e];
    over_tcp.extend_from_slice(&OVPN_RESET);
    prefixes_need_more(&over_tcp, None, App::OpenVpn);
    assert_eq!(udp(&OVPN_RESET), app(App::OpenVpn));
    // V1 (opcode 1) and V3 (opcode 10) resets.
    let mut v3 = OVPN_RESET.to_vec();
    v3[0] = 10 << 3;
    assert_eq!(udp(&v3), app(App::OpenVpn));
    v3[0] = 1 << 3;
    assert_eq!(udp(&v3), app(App::OpenVpn));
    // Key id 1, a data packet (P_DATA_V2 = 9), too short.
    let mut bad = OVPN_RESET.to_vec();
    bad[0] = 0x39;
    assert_eq!(udp(&bad), app(App::Unknown));
    bad[0] = 9 << 3;
    assert_eq!(udp(&bad), app(App::Unknown));
    assert_eq!(udp(&OVPN_RESET[..13]), app(App::Unknown));
}

#[test]
fn wireguard() {
    let mut init = vec![0x01, 0x00, 0x00, 0x00];
    init.resize(148, 0x5a);
    assert_eq!(udp(&init), app(App::WireGuard));
    let mut data = vec![0x04, 0x00, 0x00, 0x00];
    data.resize(32, 0x77);
    assert_eq!(udp(&data), app(App::WireGuard));
    // Wrong length, nonzero reserved bytes, data too short, and not over TCP.
    assert_eq!(udp(&init[..147]), app(App::Unknown));
    let mut reserved = init.clone();
    reserved[2] = 1;
    assert_eq!(udp(&reserved), app(App::Unknown));
    assert_eq!(udp(&data[..31]), app(App::Unknown));
    assert_ne!(tcp(&init), app(App::WireGuard));
}

/// The start of a QUIC v1 Initial: long header, type Initial, version 1, DCID 8, SCID 0.
const QUIC_INITIAL: [u8; 20] = [
    0xc3, 0x00, 0x00, 0x00, 0x01, 0x08, 0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08, 0x00, 0x00,
    0x44, 0x9e, 0x7b, 0x9a,
];

#[test]
fn quic() {
    assert_eq!(udp(&QUIC_INITIAL), app(App::Quic));
    let mut v2 = QUIC_INITIAL;
    v2[1..5].copy_from_slice(&[0x6b, 0x33, 0x43, 0xcf]);
    assert_eq!(udp(&v2), app(App::Quic));
    let mut draft29 = QUIC_INITIAL;
    draft29[1..5].copy_from_slice(&[0xff, 0x00, 0x00, 0x1d]);
    assert_eq!(udp(&draft29), app(App::Quic));
    // Short header; unknown version; a 21-byte DCID; cut inside the DCID.
    let mut short = QUIC_INITIAL;
    short[0] = 0x43;
    assert_eq!(udp(&short), app(App::Unknown));
    let mut unknown = QUIC_INITIAL;
    unknown[4] = 3;
    assert_eq!(udp(&unknown), app(App::Unknown));
    let mut long_cid = QUIC_INITIAL;
    long_cid[5] = 21;
    assert_eq!(udp(&long_cid), app(App::Unknown));
    assert_eq!(udp(&QUIC_INITIAL[..10]), app(App::Unknown));
}

/// A query for www.example.com A IN with an EDNS OPT record counted (not included).
const DNS_QUERY: [u8; 33] = [
    0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0x00,
    0x01, 0x00, 0x01,
];

#[test]
fn dns_udp_and_tcp() {
    assert_eq!(udp(&DNS_QUERY), app(App::Dns));
    let mut over_tcp = vec![0x00, DNS_QUERY.len() as u8];
    over_tcp.extend_from_slice(&DNS_QUERY);
    prefixes_need_more(&over_tcp, None, App::Dns);
    // A response (QR set); QDCOUNT 0 and 17; a bad class; a label running past the datagram; a
    // compression pointer as first name; the TCP length too short for the question.
    let mut resp = DNS_QUERY;
    resp[2] |= 0x80;
    assert_eq!(udp(&resp), app(App::Unknown));
    for qd in [0u8, 17] {
        let mut q = DNS_QUERY;
        q[5] = qd;
        assert_eq!(udp(&q), app(App::Unknown));
    }
    let mut class = DNS_QUERY;
    class[32] = 2;
    assert_eq!(udp(&class), app(App::Unknown));
    assert_eq!(udp(&DNS_QUERY[..30]), app(App::Unknown));
    let mut ptr = DNS_QUERY.to_vec();
    ptr.splice(12..29, [0xc0, 0x0c]);
    assert_eq!(udp(&ptr), app(App::Unknown));
    let mut short_len = over_tcp.clone();
    short_len[1] = 20;
    assert_eq!(tcp(&short_len), app(App::Unknown));
    // mDNS's unicast-response bit in QCLASS.
    let mut mdns = DNS_QUERY;
    mdns[31] = 0x80;
    assert_eq!(udp(&mdns), app(App::Dns));
}

#[test]
fn ftp() {
    let greeting: &[u8] = b"220 ProFTPD Server ready.\r\n";
    prefixes_need_more(b"USER ", Some(greeting), App::Ftp);
    assert_eq!(
        detect(Transport::Tcp, b"USER anonymous\r\n", Some(greeting)),
        app(App::Ftp)
    );
    for first in [
        &b"AUTH TLS\r\n"[..],
        b"feat\r\n",
        b"SYST\r\n",
        b"OPTS UTF8 ON\r\n",
    ] {
        assert_eq!(detect(Transport::Tcp, first, Some(greeting)), app(App::Ftp));
    }
    let multi: &[u8] = b"220-Welcome\r\n220 ready\r\n";
    assert_eq!(
        detect(Transport::Tcp, b"USER x\r\n", Some(multi)),
        app(App::Ftp)
    );
    // SMTP greets with 220 too; no greeting at all; another greeting.
    assert_eq!(
        detect(
            Transport::Tcp,
            b"EHLO client.example\r\n",
            Some(b"220 mx ESMTP\r\n")
        ),
        app(App::Unknown)
    );
    assert_eq!(tcp(b"USER anonymous\r\n"), app(App::Unknown));
    assert_eq!(
        detect(Transport::Tcp, b"USER x\r\n", Some(b"+OK POP3 ready\r\n")),
        app(App::Unknown)
    );
    assert_eq!(
        detect(Transport::Tcp, b"USERS\r\n", Some(greeting)),
        app(App::Unknown)
    );
}

#[test]
fn false_positives() {
    // A DNS query whose name reads "GET " is DNS over UDP, and over TCP its length prefix
    // comes first, so it is not HTTP either.
    let mut q = DNS_QUERY.to_vec();
    q.splice(12..16, [4, b'G', b'E', b'T']);
    q.splice(16..16, [b' ']);
    assert_eq!(udp(&q), app(App::Dns));
    let mut t = vec![0x00, q.len() as u8];
    t.extend_from_slice(&q);
    assert_eq!(tcp(&t), app(App::Dns));
    // HTTP over TCP is not DNS: "GE" as a length, "HT" as QDCOUNT.
    assert_eq!(tcp(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), app(App::Http));
    // A DNS id that looks like an OpenVPN reset opcode (0x38) stays DNS.
    let mut id = DNS_QUERY;
    id[0] = 0x38;
    assert_eq!(udp(&id), app(App::Dns));
    // Text protocols that are not in the list.
    for other in [
        &b"EHLO mail.example\r\n"[..],
        b"* OK IMAP4rev1 ready\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"BitTorrent protocol\x13",
    ] {
        assert_eq!(tcp(other), app(App::Unknown));
    }
    // TLS application data mid-stream; random bytes.
    assert_eq!(
        tcp(&[0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3]),
        app(App::Unknown)
    );
    assert_eq!(udp(&[0x42; 60]), app(App::Unknown));
    assert_eq!(udp(&[]), app(App::Unknown));
}

#[test]
fn need_more_is_bounded() {
    assert_eq!(tcp(b""), NeedMore);
    assert_eq!(tcp(b"G"), NeedMore);
    assert_eq!(tcp(b"X"), app(App::Unknown));
    // An OpenVPN-looking length and opcode waits for its packet, but not forever.
    let mut ovpn = vec![0x05, 0x00, 0x38];
    ovpn.resize(1281, 0);
    assert_eq!(tcp(&ovpn), NeedMore);
    // SOCKS4 user id without its NUL: bounded at 255 bytes.
    let mut s4 = vec![0x04, 0x01, 0x00, 0x50, 10, 0, 0, 1];
    s4.resize(8 + 255, b'u');
    assert_eq!(tcp(&s4), NeedMore);
    s4.push(b'u');
    assert_eq!(tcp(&s4), app(App::Unknown));
    let long = vec![0x00u8; DECIDE_BY];
    assert_eq!(tcp(&long), app(App::Unknown));
}

/// `n` bytes of a seeded generator: what a fully encrypted protocol's first packet looks like.
fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut next = crate::testutil::xorshift(seed);
    (0..n).map(|_| (next() >> 24) as u8).collect()
}

#[test]
fn random_bytes_are_encrypted_on_tcp_and_udp() {
    // Shadowsocks AEAD: a 32-byte salt, the sealed length (2 + 16 tag), the sealed first chunk
    // (here 100 + 16 tag): all of it indistinguishable from random bytes.
    let ss = random(7, 32 + 18 + 116);
    assert_eq!(tcp(&ss), app(App::Encrypted));
    assert_eq!(udp(&ss), app(App::Encrypted));
    // Of 1,000 random payloads of 64 to 1,400 bytes, nearly all are encrypted. The others are
    // exempt by a rule (a printable start, a popcount at the edge), as for the Great Firewall,
    // or match a weak signature: an OpenVPN reset over UDP is any first byte 0x08, 0x38 or 0x50.
    let mut hits = 0;
    for seed in 1..=1000u64 {
        let n = 64 + (seed as usize * 37) % 1337;
        let b = random(seed, n);
        match udp(&b) {
            Detection::App(App::Encrypted) => hits += 1,
            Detection::App(App::OpenVpn) => assert!(matches!(b[0], 0x08 | 0x38 | 0x50)),
            other => assert_eq!(other, app(App::Unknown), "{:02x?}", &b[..8]),
        }
    }
    assert!(hits >= 960, "{hits} of 1000 random payloads");
}

#[test]
fn the_exemptions() {
    let base = random(7, 200);
    assert!(looks_encrypted(&base));
    // Ex1: popcount per byte out of 3.4..4.6 (every byte's top bit cleared, or set).
    let low: Vec<u8> = base.iter().map(|b| b & 0x3f).collect();
    let high: Vec<u8> = base.iter().map(|b| b | 0xc1).collect();
    assert!(!looks_encrypted(&low) && !looks_encrypted(&high));
    // Ex2: six printable bytes first (five are not enough).
    let mut six = base.clone();
    six[..6].copy_from_slice(b"abcdef");
    assert!(!looks_encrypted(&six));
    let mut five = base.clone();
    five[..6].copy_from_slice(b"abcde\x01");
    assert!(looks_encrypted(&five));
    // Ex3: more than half printable; Ex4: a run of 21 printable bytes (20 are not enough).
    let half: Vec<u8> = base
        .iter()
        .enumerate()
        .map(|(i, &b)| if i % 3 == 0 { b } else { b'a' + b % 26 })
        .collect();
    assert!(!looks_encrypted(&half));
    let mut run = base.clone();
    run[50..71].copy_from_slice(&[b'x'; 21]);
    run[49] = 0x80;
    run[71] = 0x80;
    assert!(!looks_encrypted(&run));
    run[70] = 0x80;
    assert!(looks_encrypted(&run), "a run of 20");
    // Ex5: a TLS record header of any content type; fewer than 16 bytes.
    let mut tls = base.clone();
    tls[..3].copy_from_slice(&[0x17, 0x03, 0x03]);
    assert!(!looks_encrypted(&tls));
    assert_eq!(tcp(&tls), app(App::Unknown));
    assert!(!looks_encrypted(&base[..15]) && looks_encrypted(&base[..16]));
}

#[test]
fn known_protocols_are_never_encrypted() {
    // A WireGuard initiation is random after its 4-byte header; a QUIC Initial after its header.
    let mut wg = vec![0x01, 0x00, 0x00, 0x00];
    wg.extend(random(3, 144));
    assert_eq!(udp(&wg), app(App::WireGuard));
    let mut quic = QUIC_INITIAL.to_vec();
    quic.extend(random(4, 1180));
    assert_eq!(udp(&quic), app(App::Quic));
    // An OpenVPN reset over TCP with a random tls-crypt body.
    let mut ovpn = vec![0x00, 0x80, 0x38];
    ovpn.extend(random(5, 127));
    assert_eq!(tcp(&ovpn), app(App::OpenVpn));
}

#[test]
fn garbage_never_panics() {
    let mut next = crate::testutil::xorshift(0x2545_f491_4f6c_dd1d);
    let seeds: [&[u8]; 6] = [
        &DNS_QUERY,
        &QUIC_INITIAL,
        &OVPN_RESET,
        &[0x05, 0x02, 0x00, 0x01],
        &[0x04, 0x01, 0, 80, 0, 0, 0, 1, b'u', 0, b'h', 0],
        b"220 x\r\n",
    ];
    for _ in 0..50_000 {
        let seed = seeds[(next() % seeds.len() as u64) as usize];
        let mut s = seed.to_vec();
        for _ in 0..(next() % 4) {
            let r = next();
            if !s.is_empty() {
                let i = (r as usize) % s.len();
                s[i] = (r >> 40) as u8;
            }
        }
        let cut = (next() as usize) % (s.len() + 1);
        let server = if next().is_multiple_of(2) {
            Some(seed)
        } else {
            None
        };
        for t in [Transport::Tcp, Transport::Udp] {
            let _ = detect(t, &s[..cut], server);
        }
    }
}

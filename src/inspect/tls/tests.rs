use super::*;

/// Wraps a handshake message in one record.
fn record(fragment: &[u8]) -> Vec<u8> {
    let mut out = vec![22, 3, 1];
    out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
    out.extend_from_slice(fragment);
    out
}

/// Wraps a handshake message in records cut at `cuts` (offsets into the message).
fn records(msg: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&msg.len())) {
        out.extend(record(&msg[start..cut]));
        start = cut;
    }
    out
}

/// A handshake message (type 1) around `body`.
fn handshake(body: &[u8]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

fn ext(ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut out = ext_type.to_be_bytes().to_vec();
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn sni_ext(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name);
    let mut list = (entry.len() as u16).to_be_bytes().to_vec();
    list.extend(entry);
    ext(0, &list)
}

/// A ClientHello body with the given extensions block contents (None: no block at all).
fn body(extensions: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![0x03, 0x03];
    out.extend_from_slice(&[0xab; 32]); // random
    out.extend_from_slice(&[32]);
    out.extend_from_slice(&[0x11; 32]); // session id
    out.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // two suites
    out.extend_from_slice(&[0x01, 0x00]); // null compression
    if let Some(e) = extensions {
        out.extend_from_slice(&(e.len() as u16).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// A TLS 1.3-style hello: SNI, ALPN h2 + http/1.1, supported_versions (GREASE, 1.3, 1.2).
const HELLO_EXTS: &[u8] = &[
    0x00, 0x00, 0x00, 0x13, // server_name, 19 bytes
    0x00, 0x11, 0x00, 0x00, 0x0e, b'W', b'w', b'w', b'.', b'E', b'x', b'a', b'm', b'p', b'l', b'e',
    b'.', b'o', b'r', // list 17, host_name, 14: "Www.Example.or"
    0x00, 0x10, 0x00, 0x0e, // ALPN, 14 bytes
    0x00, 0x0c, 0x02, b'h', b'2', 0x08, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1', 0x00, 0x2b,
    0x00, 0x07, // supported_versions, 7 bytes
    0x06, 0x1a, 0x1a, 0x03, 0x04, 0x03, 0x03, //
    0x00, 0x17, 0x00, 0x00, // extended_master_secret, empty
];

fn hello_msg() -> Vec<u8> {
    handshake(&body(Some(HELLO_EXTS)))
}

fn expected() -> ClientHello {
    ClientHello {
        sni: Some("www.example.or".into()),
        alpn: vec!["h2".into(), "http/1.1".into()],
        ech: false,
        legacy_version: 0x0303,
        supported_versions: vec![0x1a1a, 0x0304, 0x0303],
        cipher_suites: vec![0x1301, 0xc02f],
        extensions: vec![0, 16, 43, 23],
        signature_algorithms: Vec::new(),
        alpn_first: b"h2".to_vec(),
    }
}

#[test]
fn one_record() {
    let stream = record(&hello_msg());
    assert_eq!(parse_client_hello(&stream), Ok(expected()));
    // Whatever follows the hello's record (ChangeCipherSpec, early data) is not looked at.
    let mut more = stream.clone();
    more.extend_from_slice(&[20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xde, 0xad]);
    assert_eq!(parse_client_hello(&more), Ok(expected()));
}

#[test]
fn a_bare_handshake_message() {
    let msg = hello_msg();
    assert_eq!(parse_handshake(&msg), Ok(expected()));
    for n in 0..msg.len() {
        assert_eq!(parse_handshake(&msg[..n]), Err(TlsError::Incomplete));
    }
    let mut more = msg.clone();
    more.push(0);
    assert_eq!(parse_handshake(&more), Err(TlsError::Malformed));
    assert_eq!(parse_handshake(&record(&msg)), Err(TlsError::Malformed));
}

#[test]
fn every_strict_prefix_is_incomplete() {
    let msg = hello_msg();
    for stream in [
        record(&msg),
        records(&msg, &[2]),
        records(&msg, &[4, 60]),
        records(&msg, &[1, 2, 3, 90, 91]),
    ] {
        assert_eq!(parse_client_hello(&stream), Ok(expected()));
        for n in 0..stream.len() {
            assert_eq!(
                parse_client_hello(&stream[..n]),
                Err(TlsError::Incomplete),
                "prefix of {n} bytes"
            );
        }
    }
}

#[test]
fn split_into_two_and_three_records() {
    let msg = hello_msg();
    for cut in 1..msg.len() {
        assert_eq!(
            parse_client_hello(&records(&msg, &[cut])),
            Ok(expected()),
            "cut at {cut}"
        );
    }
    for (a, b) in [
        (1, 2),
        (3, 4),
        (4, 5),
        (10, 100),
        (50, 51),
        (2, msg.len() - 1),
    ] {
        assert_eq!(parse_client_hello(&records(&msg, &[a, b])), Ok(expected()));
    }
}

#[test]
fn literal_two_record_hello() {
    // A minimal hello with no extensions, its 4-byte handshake header in a record of its own.
    let stream: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x04, // record: handshake, 4 bytes
        0x01, 0x00, 0x00, 0x29, // ClientHello, 41 bytes
        0x16, 0x03, 0x01, 0x00, 0x29, // record: handshake, 41 bytes
        0x03, 0x01, // TLS 1.0
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 31,   // random
        0x00, // no session id
        0x00, 0x02, 0x00, 0x2f, // one suite
        0x01, 0x00, // null compression
    ];
    let hello = parse_client_hello(stream).unwrap();
    assert_eq!(
        hello,
        ClientHello {
            legacy_version: 0x0301,
            cipher_suites: vec![0x002f],
            ..ClientHello::default()
        }
    );
}

#[test]
fn no_sni() {
    let exts = ext(0x0017, &[]);
    let hello = parse_client_hello(&record(&handshake(&body(Some(&exts))))).unwrap();
    assert_eq!(hello.sni, None);
    assert!(hello.alpn.is_empty() && hello.supported_versions.is_empty() && !hello.ech);
    // An empty extensions block is allowed too (RFC 8446 says <8..>, older stacks send 0).
    let hello = parse_client_hello(&record(&handshake(&body(Some(&[]))))).unwrap();
    assert_eq!(hello.sni, None);
}

#[test]
fn ech_with_outer_sni() {
    let mut exts = sni_ext(b"public.example.com");
    // ECHClientHello: outer(0), cipher suite, config id, enc, payload (contents not checked).
    exts.extend(ext(
        0xfe0d,
        &[
            0x00, 0x00, 0x01, 0x00, 0x01, 0x2a, 0x00, 0x02, 0xaa, 0xbb, 0x00, 0x01, 0xcc,
        ],
    ));
    let hello = parse_client_hello(&record(&handshake(&body(Some(&exts))))).unwrap();
    assert!(hello.ech);
    assert_eq!(hello.sni.as_deref(), Some("public.example.com"));
}

#[test]
fn not_tls() {
    for s in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"SSH-2.0-x\r\n",
        &[0x17, 0x03, 0x03, 0x00, 0x10],
        &[0x16, 0x02],
        &[0x16, 0x03, 0x05],
        &[0x80, 0x2e, 0x01, 0x00, 0x02], // SSLv2-format hello
        &[0x00],
    ] {
        assert_eq!(parse_client_hello(s), Err(TlsError::NotTls), "{s:02x?}");
        assert!(!looks_like_tls(s));
    }
    assert!(looks_like_tls(&[0x16]));
    assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02, 0x00]));
    assert!(!looks_like_tls(&[]));
}

#[test]
fn record_level_malformed() {
    let msg = hello_msg();
    // A non-handshake record before the hello is complete.
    let mut s = record(&msg[..10]);
    s.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    assert_eq!(parse_client_hello(&s), Err(TlsError::Malformed));
    // ... detected from its first byte.
    assert_eq!(parse_client_hello(&s[..16]), Err(TlsError::Malformed));
    // A zero-length record; an oversized one.
    assert_eq!(
        parse_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x00]),
        Err(TlsError::Malformed)
    );
    assert_eq!(
        parse_client_hello(&[0x16, 0x03, 0x01, 0x48, 0x01]),
        Err(TlsError::Malformed)
    );
    // A ServerHello (type 2).
    assert_eq!(
        parse_client_hello(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
        Err(TlsError::Malformed)
    );
    // A 16 MiB - 1 handshake length.
    assert_eq!(
        parse_client_hello(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff]),
        Err(TlsError::Malformed)
    );
    // The record completing the hello says it holds more than the hello.
    let mut s = vec![0x16, 0x03, 0x01];
    s.extend_from_slice(&(msg.len() as u16 + 1).to_be_bytes());
    s.extend_from_slice(&msg);
    assert_eq!(parse_client_hello(&s), Err(TlsError::Malformed));
}

fn with_exts(exts: &[u8]) -> Result<ClientHello, TlsError> {
    parse_client_hello(&record(&handshake(&body(Some(exts)))))
}

#[test]
fn duplicate_extensions_are_malformed() {
    let mut exts = ext(0x0017, &[]);
    exts.extend(ext(0x0017, &[]));
    assert_eq!(with_exts(&exts), Err(TlsError::Malformed));
    let mut exts = sni_ext(b"a.example");
    exts.extend(sni_ext(b"b.example"));
    assert_eq!(with_exts(&exts), Err(TlsError::Malformed));
}

#[test]
fn server_name_rules() {
    assert_eq!(
        with_exts(&sni_ext(b"API.Example.COM"))
            .unwrap()
            .sni
            .as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        with_exts(&sni_ext(b"_srv.x-y.example"))
            .unwrap()
            .sni
            .as_deref(),
        Some("_srv.x-y.example")
    );
    let long_ok = [
        b"a".repeat(63),
        b"b".repeat(63),
        b"c".repeat(63),
        b"d".repeat(61),
    ]
    .join(&b'.');
    assert_eq!(long_ok.len(), 253);
    assert!(with_exts(&sni_ext(&long_ok)).is_ok());
    for bad in [
        &b"evil.com\0.good.com"[..],
        b"evil.com good.com",
        b"",
        b".example.com",
        b"example.com.",
        b"a..b",
        b"caf\xc3\xa9.example",
        b"[::1]",
        &[b'a'; 64],
    ] {
        assert_eq!(
            with_exts(&sni_ext(bad)),
            Err(TlsError::Malformed),
            "{bad:?}"
        );
    }
    let mut too_long = long_ok.clone();
    too_long.extend_from_slice(b"e");
    assert_eq!(with_exts(&sni_ext(&too_long)), Err(TlsError::Malformed));
    // Two entries in one list; an unknown name_type; an empty list; list length too long.
    let two = ext(0, &[0, 10, 0, 0, 1, b'a', 0, 0, 2, b'b', b'c']);
    let other_type = ext(0, &[0, 4, 1, 0, 1, b'a']);
    let empty_list = ext(0, &[0, 0]);
    let overlong = ext(0, &[0, 9, 0, 0, 1, b'a']);
    for e in [two, other_type, empty_list, overlong, ext(0, &[])] {
        assert_eq!(with_exts(&e), Err(TlsError::Malformed), "{e:02x?}");
    }
}

#[test]
fn alpn_and_versions_rules() {
    for e in [
        ext(16, &[0, 0]),                // empty list
        ext(16, &[0, 1, 0]),             // empty name
        ext(16, &[0, 3, 2, b'h']),       // name runs out
        ext(16, &[0, 2, 2, b'h', b'2']), // name runs past the list
        ext(43, &[3, 3, 4, 3]),          // odd list
        ext(43, &[0]),                   // empty list
        ext(43, &[2, 3, 4, 0]),          // trailing byte
        ext(13, &[0, 0]),                // no signature algorithm
        ext(13, &[0, 3, 4, 3, 8]),       // odd list
        ext(13, &[0, 2, 4, 3, 8]),       // trailing byte
    ] {
        assert_eq!(with_exts(&e), Err(TlsError::Malformed), "{e:02x?}");
    }
    let h = with_exts(&ext(16, &[0, 3, 2, 0xff, b'2'])).unwrap();
    assert_eq!(h.alpn, vec!["\u{fffd}2".to_string()]);
}

#[test]
fn fingerprint_lists_in_the_clients_order() {
    let mut exts = ext(0x3a3a, &[]); // GREASE
    exts.extend(ext(13, &[0, 6, 0x08, 0x04, 0x04, 0x03, 0x0a, 0x0a]));
    exts.extend(ext(16, &[0, 6, 2, 0xba, 0xad, 2, b'h', b'2']));
    exts.extend(sni_ext(b"a.example"));
    let h = with_exts(&exts).unwrap();
    assert_eq!(h.extensions, [0x3a3a, 13, 16, 0]);
    assert_eq!(h.signature_algorithms, [0x0804, 0x0403, 0x0a0a]);
    assert_eq!(h.cipher_suites, [0x1301, 0xc02f]);
    assert_eq!(h.alpn_first, [0xba, 0xad]);
    assert_eq!(h.alpn, ["\u{fffd}\u{fffd}", "h2"]);
}

#[test]
fn body_length_rules() {
    let good = body(Some(HELLO_EXTS));
    // Trailing byte after the extensions block.
    let mut b = good.clone();
    b.push(0);
    assert_eq!(
        parse_client_hello(&record(&handshake(&b))),
        Err(TlsError::Malformed)
    );
    // Truncated at every length: each is a complete but short message, hence Malformed.
    for n in 0..good.len() {
        let r = parse_client_hello(&record(&handshake(&good[..n])));
        // Cut right after the compression methods it is a valid extension-less hello.
        if n == 2 + 32 + 33 + 6 + 2 {
            assert!(r.is_ok());
        } else {
            assert_eq!(r, Err(TlsError::Malformed), "body cut at {n}");
        }
    }
    // Session id longer than 32; odd cipher suite length; no compression methods.
    let mut b = good.clone();
    b[34] = 33;
    assert_eq!(
        parse_client_hello(&record(&handshake(&b))),
        Err(TlsError::Malformed)
    );
    let mut b = good.clone();
    b[2 + 32 + 33 + 1] = 3;
    assert_eq!(
        parse_client_hello(&record(&handshake(&b))),
        Err(TlsError::Malformed)
    );
    let mut b = good;
    b[2 + 32 + 33 + 6] = 0;
    assert_eq!(
        parse_client_hello(&record(&handshake(&b))),
        Err(TlsError::Malformed)
    );
}

/// A simple deterministic generator (xorshift), so the test needs no dependency.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn bit_flips_and_garbage_never_panic() {
    let msg = hello_msg();
    let base = records(&msg, &[7, 50]);
    for i in 0..base.len() {
        for bit in 0..8 {
            let mut s = base.clone();
            s[i] ^= 1 << bit;
            let _ = parse_client_hello(&s);
            let _ = looks_like_tls(&s);
        }
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        let mut s = base.clone();
        for _ in 0..(xorshift(&mut state) % 6 + 1) {
            let r = xorshift(&mut state);
            let i = (r as usize) % s.len();
            s[i] = (r >> 32) as u8;
        }
        let cut = (xorshift(&mut state) as usize) % (s.len() + 1);
        let _ = parse_client_hello(&s[..cut]);
    }
    for _ in 0..20_000 {
        let len = (xorshift(&mut state) % 64) as usize;
        let mut s: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
        if let Some(b) = s.first_mut() {
            *b = 22;
        }
        let _ = parse_client_hello(&s);
    }
}

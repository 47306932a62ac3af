//! The QUIC Initial reader, two ways: the bytes as a client's first datagram (long header, keys from
//! its Destination Connection ID, header protection, decryption, which random bytes almost never
//! pass); and as the payloads of decrypted Initial packets (frames, CRYPTO reassembly across
//! packets, the ClientHello and its JA4). For the second, the first byte says how many cuts (0 to 3)
//! split the rest into packets, and the next two bytes per cut where (big-endian, modulo the length).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::inspect::ja4::ja4;
use outgate::inspect::quic::{parse_client_hello, parse_decrypted};

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_hello(&[data]);
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let Some((at, body)) = rest.split_at_checked(2 * usize::from(cuts % 4)) else {
        return;
    };
    let mut ends: Vec<usize> = at
        .chunks_exact(2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])) % (body.len() + 1))
        .collect();
    ends.sort_unstable();
    ends.push(body.len());
    let mut start = 0;
    let plaintexts: Vec<&[u8]> = ends
        .iter()
        .map(|&end| {
            let piece = &body[start..end];
            start = end;
            piece
        })
        .collect();
    if let Ok(hello) = parse_decrypted(&plaintexts) {
        if let Some(sni) = &hello.sni {
            assert_eq!(sni, &sni.to_lowercase(), "the SNI is lower-cased");
        }
        let fp = ja4(&hello, true);
        assert_eq!(fp.len(), 36, "{fp}");
        assert!(fp.starts_with('q'), "{fp}");
    }
});

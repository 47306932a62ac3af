//! The payloads of synthetic traffic, as real clients and servers send them: a TLS 1.3 ClientHello with
//! its server name, the server's first flight, DNS queries and answers, NTP requests and replies, and a
//! fixed-seed pseudo-random filler. `examples/gen_fixtures/` builds its fixtures with the same ones.
//!
//! Contract: deterministic (the same arguments give the same bytes) and no panics on any argument; an
//! argument outside what a function documents gives a shorter payload, never a crash.

/// xorshift64 with a fixed seed: the only source of "randomness" in generated traffic.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random number (Marsaglia's xorshift64; a zero seed stays zero).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// In `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next().checked_rem(n).unwrap_or(0)
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }
}

/// `len` pseudo-random bytes, the same for the same `seed`.
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    (0..len).map(|_| (rng.next() >> 32) as u8).collect()
}

/// Appends a TLS application-data record of `len` bytes in total (5-byte header), its body taken from
/// `opaque` (shorter when `opaque` is).
pub fn tls_app_data(out: &mut Vec<u8>, len: usize, opaque: &[u8]) {
    let body = len
        .saturating_sub(5)
        .min(opaque.len())
        .min(usize::from(u16::MAX));
    out.extend_from_slice(&[0x17, 0x03, 0x03]);
    out.extend_from_slice(&(body as u16).to_be_bytes());
    out.extend_from_slice(&opaque[..body]);
}

/// Appends a TLS extension: type, length, body.
fn tls_ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// Wraps a handshake message body into a handshake header and a record.
fn tls_handshake_record(msg_type: u8, record_version: u8, body: &[u8]) -> Vec<u8> {
    let hs_len = (body.len() as u32).to_be_bytes();
    let mut r = vec![0x16, 0x03, record_version];
    r.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    r.push(msg_type);
    r.extend_from_slice(&hs_len[1..]);
    r.extend_from_slice(body);
    r
}

/// A TLS 1.3 ClientHello (as a browser sends it) for `sni`, padded to a 517-byte record like BoringSSL
/// does.
pub fn tls_client_hello(sni: &str, seed: u64) -> Vec<u8> {
    tls_client_hello_opt(Some(sni), seed)
}

/// The same ClientHello, without a server_name extension when `sni` is `None` (the padding extension
/// then grows to keep the 517 bytes).
pub fn tls_client_hello_opt(sni: Option<&str>, seed: u64) -> Vec<u8> {
    const RECORD_LEN: usize = 517;
    let rnd = filler(96, seed);
    let mut exts = Vec::with_capacity(512);
    if let Some(sni) = sni {
        let mut name = Vec::with_capacity(sni.len() + 5);
        name.extend_from_slice(&((sni.len() + 3) as u16).to_be_bytes());
        name.push(0); // host_name
        name.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        name.extend_from_slice(sni.as_bytes());
        tls_ext(&mut exts, 0x0000, &name);
    }
    tls_ext(&mut exts, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]); // groups
    tls_ext(&mut exts, 0x000b, &[1, 0]); // ec_point_formats
    let sigalgs = [0, 16, 4, 3, 8, 4, 4, 1, 5, 3, 8, 5, 5, 1, 8, 6, 6, 1];
    tls_ext(&mut exts, 0x000d, &sigalgs);
    tls_ext(&mut exts, 0x0010, b"\x00\x0c\x02h2\x08http/1.1"); // ALPN
    tls_ext(&mut exts, 0x002b, &[4, 3, 4, 3, 3]); // supported_versions
    tls_ext(&mut exts, 0x002d, &[1, 1]); // psk_key_exchange_modes
    let mut share = vec![0, 36, 0, 0x1d, 0, 32];
    share.extend_from_slice(&rnd[64..96]);
    tls_ext(&mut exts, 0x0033, &share);

    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&rnd[..32]); // random
    body.push(32);
    body.extend_from_slice(&rnd[32..64]); // legacy session id
    let suites = [
        0x1301u16, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
    ];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    // 5 (record) + 4 (handshake) + body + 2 (extensions length) + extensions
    let unpadded = 5 + 4 + body.len() + 2 + exts.len();
    if unpadded + 4 <= RECORD_LEN {
        tls_ext(&mut exts, 0x0015, &vec![0; RECORD_LEN - unpadded - 4]);
    }
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    tls_handshake_record(1, 0x01, &body)
}

/// Appends the server's first flight of `len` bytes: ServerHello, ChangeCipherSpec and one
/// application-data record carrying the encrypted rest (from `opaque`, at least 64 bytes of it).
pub fn tls_server_flight(out: &mut Vec<u8>, len: usize, seed: u64, opaque: &[u8]) {
    let rnd = filler(96, seed);
    let mut exts = Vec::with_capacity(48);
    tls_ext(&mut exts, 0x002b, &[3, 4]);
    let mut share = vec![0, 0x1d, 0, 32];
    share.extend_from_slice(&rnd[64..96]);
    tls_ext(&mut exts, 0x0033, &share);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&rnd[..32]);
    body.push(32);
    body.extend_from_slice(&rnd[32..64]);
    body.extend_from_slice(&[0x13, 0x01, 0]); // TLS_AES_128_GCM_SHA256, null
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let start = out.len();
    out.extend_from_slice(&tls_handshake_record(2, 0x03, &body));
    out.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
    let used = out.len() - start;
    tls_app_data(out, len.max(used + 64) - used, opaque);
}

/// Appends `name` in DNS label form.
pub(crate) fn dns_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// EDNS(0) OPT pseudo-record advertising a 4096-byte UDP payload size.
const EDNS_OPT: [u8; 11] = [0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0];

/// A standard recursive query for one name of type `qtype`, class IN, with an OPT record if `edns`.
pub fn dns_query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // standard query, RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    dns_name(&mut q, name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    if edns {
        q.extend_from_slice(&EDNS_OPT);
    }
    q
}

/// Response to `query` (one question, as [`dns_query`] builds it) with one answer record of the queried
/// type, pointing back at the question's name. Empty when `query` is not such a query.
pub fn dns_response(query: &[u8], ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let Some(name_len) = query.get(12..).and_then(|q| q.iter().position(|b| *b == 0)) else {
        return Vec::new();
    };
    let qend = 12 + name_len + 1 + 4;
    let (Some(question), Some(&edns)) = (query.get(12..qend), query.get(11)) else {
        return Vec::new();
    };
    let edns = edns == 1;
    let mut r = Vec::with_capacity(qend + 16 + rdata.len() + EDNS_OPT.len());
    r.extend_from_slice(&query[0..2]);
    r.extend_from_slice(&0x8180u16.to_be_bytes()); // response, RD, RA, NOERROR
    r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, u8::from(edns)]);
    r.extend_from_slice(question);
    r.extend_from_slice(&0xc00cu16.to_be_bytes());
    r.extend_from_slice(&question[question.len() - 4..]); // type + class
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    if edns {
        r.extend_from_slice(&EDNS_OPT);
    }
    r
}

const SEC: u64 = 1_000_000_000;

/// NTP timestamp (seconds since 1900 + 32-bit fraction) of a Unix time in nanoseconds.
fn ntp_time(ns: u64) -> [u8; 8] {
    let secs = ns / SEC + 2_208_988_800;
    let frac = ((ns % SEC) << 32) / SEC;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(secs as u32).to_be_bytes());
    out[4..].copy_from_slice(&(frac as u32).to_be_bytes());
    out
}

/// NTPv4 client request (mode 3) sent at `sent` (Unix nanoseconds).
pub fn ntp_request(sent: u64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x23; // LI 0, VN 4, mode 3
    p[2] = 6; // poll
    p[3] = 0xe9; // precision 2^-23
    p[40..48].copy_from_slice(&ntp_time(sent));
    p
}

/// NTPv4 server reply (mode 4) to `request`, received at `rx` and sent at `tx` (Unix nanoseconds).
pub fn ntp_reply(request: &[u8; 48], rx: u64, tx: u64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x24; // LI 0, VN 4, mode 4
    p[1] = 2; // stratum
    p[2] = request[2];
    p[3] = 0xe7;
    p[4..8].copy_from_slice(&0x0000_0120u32.to_be_bytes()); // root delay
    p[8..12].copy_from_slice(&0x0000_0210u32.to_be_bytes()); // root dispersion
    p[12..16].copy_from_slice(&[192, 0, 2, 1]); // reference id: upstream server
    p[16..24].copy_from_slice(&ntp_time(rx.saturating_sub(64 * SEC)));
    p[24..32].copy_from_slice(&request[40..48]);
    p[32..40].copy_from_slice(&ntp_time(rx));
    p[40..48].copy_from_slice(&ntp_time(tx));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_hello_carries_its_name_and_parses() {
        let hello = tls_client_hello("www.example.com", 7);
        assert_eq!(hello.len(), 517);
        let parsed = crate::inspect::tls::parse_client_hello(&hello);
        assert_eq!(
            parsed.map(|h| h.sni),
            Ok(Some("www.example.com".to_string()))
        );
    }

    #[test]
    fn dns_response_answers_the_query_and_refuses_garbage() {
        let q = dns_query(0xbe7c, "www.example.com", 1, true);
        let r = dns_response(&q, 300, &[198, 18, 0, 2]);
        assert_eq!(&r[..2], &[0xbe, 0x7c]);
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert!(r.ends_with(&EDNS_OPT));
        let question_end = q.len() - EDNS_OPT.len();
        for len in 0..question_end {
            assert!(dns_response(&q[..len], 300, &[]).is_empty(), "prefix {len}");
        }
    }

    #[test]
    fn odd_arguments_give_short_payloads_not_panics() {
        let mut out = Vec::new();
        tls_app_data(&mut out, 3, &[1, 2, 3]);
        assert_eq!(out, [0x17, 3, 3, 0, 0]);
        out.clear();
        tls_app_data(&mut out, 100, &[1, 2, 3]);
        assert_eq!(out, [0x17, 3, 3, 0, 3, 1, 2, 3]);
        let mut rng = Rng(1);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.range(5, 4), 5);
        assert_eq!(ntp_reply(&ntp_request(0), 0, 0)[1], 2);
    }
}

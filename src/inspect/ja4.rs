//! JA4, the TLS client fingerprint of FoxIO (BSD-3-Clause), from a parsed [`ClientHello`].
//!
//! The definition followed is FoxIO's `technical_details/JA4.md` (github.com/FoxIO-LLC/ja4). Only JA4
//! itself is here; the other JA4+ methods (JA4S, JA4H, JA4X, ...) are under another licence. A
//! fingerprint reads `t13d1516h2_8daaf6152771_e5627efa2ab1`:
//!
//! - `a`: `q` for QUIC, `t` for TLS over TCP; the version (the highest of supported_versions, else
//!   legacy_version: `13`, `12`, `11`, `10`, `s3`, else `00`); `d` with a server_name extension, `i`
//!   without; the number of cipher suites and of extensions, two digits each, at most 99; the first
//!   and last characters of the first ALPN name (`00` without ALPN).
//! - `b`: the first 12 hex digits of the SHA-256 of the cipher suites, as 4-digit lower-case hex,
//!   sorted, comma-separated (`000000000000` when there are none).
//! - `c`: the same of the extension types, sorted, without server_name (0) and ALPN (16), then `_`
//!   and the signature algorithms in the client's order (no `_` when there are none).
//!
//! GREASE values (RFC 8701: `0x?a?a` with both bytes equal) are left out everywhere, counts included.
//!
//! One choice where FoxIO's tools and its definition differ: an ALPN name whose first or last byte is
//! not an ASCII letter or digit is written as the first and last hex digit of the whole name (`0xba
//! 0xad` gives `bd`), as the definition says since January 2026; FoxIO's Python and Rust tools still
//! write `9` for a byte above 0x7f.

use sha2::{Digest, Sha256};

use super::tls::{ClientHello, EXT_ALPN, EXT_SERVER_NAME};

/// RFC 8701 §2: GREASE values for cipher suites, extensions, versions and signature algorithms are
/// 0x0A0A, 0x1A1A, ... 0xFAFA.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// The JA4 fingerprint of `hello`; `quic` when it came in QUIC Initial packets.
pub fn ja4(hello: &ClientHello, quic: bool) -> String {
    Parts::new(hello, quic, false).hashed()
}

/// JA4_r (`original` false: lists sorted, as hashed) or JA4_ro (`original` true: lists in the
/// client's order, server_name and ALPN kept): the fingerprint before hashing.
pub fn ja4_raw(hello: &ClientHello, quic: bool, original: bool) -> String {
    Parts::new(hello, quic, original).raw()
}

/// JA4_o: the hashed fingerprint of the lists in the client's order.
pub fn ja4_original(hello: &ClientHello, quic: bool) -> String {
    Parts::new(hello, quic, true).hashed()
}

/// The three parts before hashing.
struct Parts {
    a: String,
    ciphers: String,
    extensions: String,
    signatures: String,
}

impl Parts {
    fn new(hello: &ClientHello, quic: bool, original: bool) -> Parts {
        let mut ciphers = not_grease(&hello.cipher_suites);
        let mut extensions = not_grease(&hello.extensions);
        let a = format!(
            "{}{}{}{:02}{:02}{}",
            if quic { 'q' } else { 't' },
            version(hello),
            if extensions.contains(&EXT_SERVER_NAME) {
                'd'
            } else {
                'i'
            },
            ciphers.len().min(99),
            extensions.len().min(99),
            alpn(&hello.alpn_first),
        );
        if !original {
            ciphers.sort_unstable();
            extensions.retain(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN);
            extensions.sort_unstable();
        }
        Parts {
            a,
            ciphers: hex_list(&ciphers),
            extensions: hex_list(&extensions),
            signatures: hex_list(&not_grease(&hello.signature_algorithms)),
        }
    }

    /// The extension list, then `_` and the signature algorithms if there are any.
    fn c(&self) -> String {
        if self.signatures.is_empty() {
            self.extensions.clone()
        } else {
            format!("{}_{}", self.extensions, self.signatures)
        }
    }

    fn raw(&self) -> String {
        format!("{}_{}_{}", self.a, self.ciphers, self.c())
    }

    fn hashed(&self) -> String {
        let c = if self.extensions.is_empty() {
            String::new()
        } else {
            self.c()
        };
        format!("{}_{}_{}", self.a, hash12(&self.ciphers), hash12(&c))
    }
}

fn not_grease(values: &[u16]) -> Vec<u16> {
    values.iter().copied().filter(|&v| !is_grease(v)).collect()
}

fn hex_list(values: &[u16]) -> String {
    values
        .iter()
        .map(|v| format!("{v:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The first 12 lower-case hex digits of the SHA-256 of `text`; `000000000000` for an empty list.
fn hash12(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".into();
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The highest non-GREASE supported_versions value, else legacy_version, as two characters.
fn version(hello: &ClientHello) -> &'static str {
    let v = not_grease(&hello.supported_versions)
        .into_iter()
        .max()
        .unwrap_or(hello.legacy_version);
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The first and last characters of the first ALPN name when both are ASCII letters or digits (one
/// character counts as both), else the first and last hex digits of the name; `00` without ALPN.
fn alpn(first: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match (first.first(), first.last()) {
        (Some(&a), Some(&z)) if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() => {
            [char::from(a), char::from(z)].iter().collect()
        }
        (Some(&a), Some(&z)) => [HEX[usize::from(a >> 4)], HEX[usize::from(z & 0x0f)]]
            .iter()
            .map(|&b| char::from(b))
            .collect(),
        _ => "00".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(list: &str) -> Vec<u16> {
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| u16::from_str_radix(s, 16).unwrap())
            .collect()
    }

    /// A hello with the lists of a JA4_ro string (`a_ciphers_extensions_signatures`), its version
    /// and first ALPN name, and GREASE values added where clients put them.
    fn hello_of(ro: &str, alpn_first: &[u8]) -> ClientHello {
        let parts: Vec<&str> = ro.split('_').collect();
        let mut cipher_suites = vec![0x2a2a];
        cipher_suites.extend(hex(parts[1]));
        let mut extensions = vec![0x4a4a];
        extensions.extend(hex(parts[2]));
        extensions.push(0xfafa);
        let supported_versions = match &parts[0][1..3] {
            "13" => vec![0x8a8a, 0x0304, 0x0303],
            "12" => Vec::new(),
            v => panic!("version {v}"),
        };
        ClientHello {
            sni: extensions.contains(&0).then(|| "x.example".into()),
            alpn: vec![String::from_utf8_lossy(alpn_first).into_owned()],
            ech: false,
            legacy_version: 0x0303,
            supported_versions,
            cipher_suites,
            extensions,
            signature_algorithms: parts.get(3).map(|s| hex(s)).unwrap_or_default(),
            alpn_first: alpn_first.to_vec(),
        }
    }

    /// FoxIO's four outputs for one hello: JA4, JA4_r, JA4_o, JA4_ro.
    fn check(quic: bool, alpn_first: &[u8], want: [&str; 4]) {
        let h = hello_of(want[3], alpn_first);
        assert_eq!(ja4(&h, quic), want[0]);
        assert_eq!(ja4_raw(&h, quic, false), want[1]);
        assert_eq!(ja4_original(&h, quic), want[2]);
        assert_eq!(ja4_raw(&h, quic, true), want[3]);
    }

    #[test]
    fn definitions_example() {
        // technical_details/JA4.md, "Example" and "Raw Output".
        check(
            false,
            b"h2",
            [
                "t13d1516h2_8daaf6152771_e5627efa2ab1",
                "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
                "t13d1516h2_acb858a92679_18f69afefd3d",
                "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_0403,0804,0401,0503,0805,0501,0806,0601",
            ],
        );
        // "If there are no signature algorithms ... the string ends without an underscore".
        assert_eq!(
            hash12("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"),
            "6d807ffa2a79"
        );
    }

    #[test]
    fn foxio_test_data() {
        // python/test/testdata/tls12.pcap.json: Firefox, TLS 1.3.
        check(
            false,
            b"h2",
            [
                "t13d1715h2_5b57614c22b0_3d5424432f57",
                "t13d1715h2_002f,0035,009c,009d,1301,1302,1303,c009,c00a,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0015,0017,001c,0022,0023,002b,002d,0033,ff01_0403,0503,0603,0804,0805,0806,0401,0501,0601,0203,0201",
                "t13d1715h2_5b234860e130_014157ec0da2",
                "t13d1715h2_1301,1303,1302,c02b,c02f,cca9,cca8,c02c,c030,c00a,c009,c013,c014,009c,009d,002f,0035_0000,0017,ff01,000a,000b,0023,0010,0005,0022,0033,002b,000d,002d,001c,0015_0403,0503,0603,0804,0805,0806,0401,0501,0601,0203,0201",
            ],
        );
        // python/test/testdata/latest.pcapng.json, stream 3: TLS 1.2 without supported_versions
        // or ALPN.
        check(
            false,
            b"",
            [
                "t12d190800_d83cc789557e_7af1ed941c26",
                "t12d190800_000a,002f,0035,003c,003d,009c,009d,c009,c00a,c013,c014,c023,c024,c027,c028,c02b,c02c,c02f,c030_0005,000a,000b,000d,0017,0023,ff01_0804,0805,0806,0401,0501,0201,0403,0503,0203,0202,0601,0603",
                "t12d190800_e8d5f427a2c5_5e98404dd3cc",
                "t12d190800_c02c,c02b,c030,c02f,c024,c023,c028,c027,c00a,c009,c014,c013,009d,009c,003d,003c,0035,002f,000a_0000,0005,000a,000b,000d,0023,0017,ff01_0804,0805,0806,0401,0501,0201,0403,0503,0203,0202,0601,0603",
            ],
        );
    }

    #[test]
    fn non_alphanumeric_alpn() {
        // python/test/testdata/tls-non-ascii-alpn.pcapng.json: FoxIO's tools give
        // `t13d151699_8daaf6152771_e5627efa2ab1` for a first ALPN name of 0xba 0xad (read from the
        // capture with tshark); the definition's hex rule (see the module docs) gives `bd`.
        let ro = "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_ff01,0033,002d,0005,4469,000d,0010,0023,001b,002b,0000,0012,000a,0017,000b,0015_0403,0804,0401,0503,0805,0501,0806,0601";
        let h = hello_of(ro, &[0xba, 0xad]);
        assert_eq!(ja4(&h, false), "t13d1516bd_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn quic_from_foxio_capture() {
        // rust/ja4/src/snapshots/ja4__insta@quic-tls-handshake.pcapng.snap gives the fingerprint;
        // the lists are that capture's ClientHello as tshark 4.0 dissects it.
        let h = ClientHello {
            sni: Some("www.google.com".into()),
            alpn: vec!["h3".into()],
            legacy_version: 0x0303,
            supported_versions: vec![0x0304],
            cipher_suites: vec![0x1301, 0x1302, 0x1303],
            extensions: vec![45, 27, 17513, 13, 43, 0, 10, 57, 16, 51],
            signature_algorithms: hex("0403,0804,0401,0503,0805,0501,0806,0601,0201"),
            alpn_first: b"h3".to_vec(),
            ..ClientHello::default()
        };
        assert_eq!(ja4(&h, true), "q13d0310h3_55b375c5d22e_cd85d2d88918");
        assert_eq!(ja4(&h, false), "t13d0310h3_55b375c5d22e_cd85d2d88918");
    }

    #[test]
    fn alpn_characters() {
        // technical_details/JA4.md, "ALPN Extension Value".
        for (name, want) in [
            (&b"h2"[..], "h2"),
            (b"http/1.1", "h1"),
            (b"x", "xx"),
            (b"", "00"),
            (&[0xab], "ab"),
            (&[0x20], "20"),
            (&[0xab, 0xcd], "ad"),
            (&[0x20, 0x61], "21"),
            (&[0x30, 0xab], "3b"),
            (&[0x61, 0x20], "60"),
            (&[0x30, 0x31, 0xab, 0xcd], "3d"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
        ] {
            assert_eq!(alpn(name), want, "{name:02x?}");
        }
    }

    #[test]
    fn empty_lists_and_unknown_versions() {
        let h = ClientHello {
            legacy_version: 0x0303,
            supported_versions: vec![0x0304, 0xfb1a],
            ..ClientHello::default()
        };
        assert_eq!(ja4(&h, false), "t00i000000_000000000000_000000000000");
        assert_eq!(ja4_raw(&h, false, false), "t00i000000__");
        let grease_only = ClientHello {
            legacy_version: 0x0301,
            supported_versions: vec![0x0a0a],
            cipher_suites: vec![0x0a0a, 0xfafa],
            extensions: vec![0x1a1a],
            ..ClientHello::default()
        };
        assert_eq!(
            ja4(&grease_only, false),
            "t10i000000_000000000000_000000000000"
        );
        let many = ClientHello {
            cipher_suites: (1..=120).collect(),
            ..ClientHello::default()
        };
        assert!(ja4(&many, false).starts_with("t00i9900"));
    }

    #[test]
    fn grease_values() {
        let all: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        let want: Vec<u16> = (0..16u16)
            .map(|i| (i << 12) | 0x0a00 | (i << 4) | 0x0a)
            .collect();
        assert_eq!(all, want);
    }
}

//! The TLS ClientHello reader (TCP stream from its start), and the JA4 fingerprint of what it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::inspect::ja4::ja4;
use outgate::inspect::tls::{looks_like_tls, parse_client_hello};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_tls(data);
    if let Ok(hello) = parse_client_hello(data) {
        if let Some(sni) = &hello.sni {
            assert_eq!(sni, &sni.to_lowercase(), "the SNI is lower-cased");
        }
        // a (10 characters), `_`, b (12), `_`, c (12), whatever the hello holds.
        let fp = ja4(&hello, false);
        assert_eq!(fp.len(), 36, "{fp}");
        assert!(fp.is_ascii(), "{fp}");
    }
});

//! The TLS ClientHello reader (TCP stream from its start).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::inspect::tls::{looks_like_tls, parse_client_hello};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_tls(data);
    if let Ok(hello) = parse_client_hello(data)
        && let Some(sni) = &hello.sni
    {
        assert_eq!(sni, &sni.to_lowercase(), "the SNI is lower-cased");
    }
});

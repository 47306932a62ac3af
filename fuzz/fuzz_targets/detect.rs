//! Protocol detection and the payload reader built on it (what `app=` rules see).
//!
//! Input: a flags byte (bit 0: UDP, bit 1: the server spoke first), a split byte, then the bytes: with
//! bit 1, the first `split` of them are the server's first payload, the rest the client's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::inspect::detect::{Detection, Transport, detect};
use outgate::inspect::read_payload;

fuzz_target!(|data: &[u8]| {
    let [flags, split, rest @ ..] = data else {
        return;
    };
    let t = if flags & 1 == 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let (server, client) = if flags & 2 != 0 {
        let (s, c) = rest.split_at(usize::from(*split).min(rest.len()));
        (Some(s), c)
    } else {
        (None, rest)
    };
    let d = detect(t, client, server);
    if t == Transport::Udp {
        assert_ne!(d, Detection::NeedMore, "a UDP datagram is whole");
    }
    let _ = read_payload(t, client);
});

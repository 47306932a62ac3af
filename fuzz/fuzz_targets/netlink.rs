//! The queue client's netlink reader: any bytes as a datagram the kernel sent on the NFQUEUE socket
//! (messages, nfgenmsg, attributes, the NFQNL_MSG_PACKET fields), and the same bytes read as a
//! conntrack dump answer and as conntrack destroy events (the flow ends).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::nfqueue::conntrack::{parse_dump_datagram, parse_ends_datagram};
use outgate::nfqueue::queue::parse_datagram;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    parse_datagram(data, &mut out);
    for p in &out {
        assert!(
            p.payload.len() <= data.len(),
            "a payload is within its datagram"
        );
    }
    let _ = parse_dump_datagram(data);
    let mut ended = 0u64;
    let read = parse_ends_datagram(data, |_| ended += 1);
    assert_eq!(read.ended, ended, "every entry read is handed over");
});

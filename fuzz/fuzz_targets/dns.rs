//! The DNS query reader (one UDP datagram; a TCP stream from its start) and the echo summary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::inspect::dns::{parse_query, parse_tcp_query};
use outgate::inspect::echo::Echo;

fuzz_target!(|data: &[u8]| {
    for q in [parse_query(data), parse_tcp_query(data)].into_iter().flatten() {
        // The text form has no byte a label could hide a dot or a control character in.
        assert!(q.name.bytes().all(|b| b.is_ascii_graphic()), "{:?}", q.name);
        assert!(q.label_lens.iter().map(|&n| usize::from(n) + 1).sum::<usize>() < 256);
    }
    let e = Echo::new(true, 0, data, false);
    assert!(e.entropy <= 800);
});

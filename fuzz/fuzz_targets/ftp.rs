//! The FTP control-connection reader: line splitting, server replies (227/229) and client commands
//! (PORT/EPRT).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::inspect::ftp::{lines, parse_client_line, parse_server_line};

fuzz_target!(|data: &[u8]| {
    let (lines, tail) = lines(data);
    assert!(tail <= data.len());
    for line in lines {
        for dc in [parse_server_line(line), parse_client_line(line)]
            .into_iter()
            .flatten()
        {
            assert_ne!(dc.port, 0, "a data channel port is never 0");
        }
    }
    let _ = parse_server_line(data);
    let _ = parse_client_line(data);
});

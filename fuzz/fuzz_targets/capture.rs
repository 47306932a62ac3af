//! The capture reader (pcap and pcapng) and the link layers under it: any bytes as a capture file.
//! The reader takes a path, so each input is written to one temporary file (in /dev/shm when there
//! is one) and read back; every record's link layer is unwrapped and its IP packet parsed.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use outgate::packet::Packet;
use outgate::replay::capture::{CaptureReader, MAX_PACKET_LEN};
use outgate::replay::link::network_layer;

static FILE: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::Builder::new()
        .prefix("outgate-fuzz")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a temporary directory");
    let path = dir.path().join("input.cap");
    (dir, path)
});

fuzz_target!(|data: &[u8]| {
    let path = &FILE.1;
    std::fs::write(path, data).expect("writing the temporary capture");
    let Ok(mut reader) = CaptureReader::open(path) else {
        return;
    };
    let mut last = 0;
    while let Some(rec) = reader.next_record() {
        let Ok(rec) = rec else {
            break;
        };
        assert!(rec.number > last, "records are numbered upwards");
        last = rec.number;
        assert!(
            rec.data.len() <= MAX_PACKET_LEN,
            "no record longer than the maximum"
        );
        if let Ok(ip) = network_layer(rec.link, rec.data) {
            let _ = Packet::parse(ip);
        }
    }
});

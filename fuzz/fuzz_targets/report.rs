//! The log reader of `outgate report`: any bytes as a log (flow, HTTP and TLS JSON lines mixed), then
//! the report rendered both ways.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::report::report_from;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let r = report_from(&[("fuzz.jsonl".to_string(), text)]);
    let _ = r.is_empty();
    let _ = r.json();
    let _ = r.table();
});

//! The policy parser and compiler: any bytes as a policy file. Errors are fine; a panic, a hang or an
//! allocation past the bound is not. (`Policy::summary`, what `outgate check` prints, is left out: it
//! walks every port of every zone pair, half a second per input under the fuzzer.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::{Policy, Timestamp};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Policy::compile("fuzz.rules", &text) {
        Ok(p) => {
            let _ = p.zone_names();
            let _ = p.expiry_notes(Timestamp::from_secs(1_700_000_000));
        }
        Err(errors) => {
            assert!(
                !errors.is_empty(),
                "a failed compile gives at least one error"
            );
            for e in errors.iter().take(8) {
                let _ = e.to_string();
            }
        }
    }
});

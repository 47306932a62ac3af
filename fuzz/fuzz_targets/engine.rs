//! Packet parse + decide over a sequence of packets sharing one flow table, as a replay worker runs
//! them, under a policy whose rules need the payload (HTTP host/URL/method, TLS SNI, the protocol
//! spoken) and an FTP control port, with small table and inspection limits so eviction and the
//! inspection budgets are reached.
//!
//! Input: one mode byte (bit 0: hold packets of inspected flows as live does; bit 1: offloaded, as
//! live with the kernel's conntrack), then records of [len: u16 LE][dt: u8][len bytes of IP packet].
//! dt advances the clock: bit 7 clear, dt*10 ms; set, (dt & 0x7f)*10 s (past the flow timeouts).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use outgate::{Engine, Policy, Reason, Timestamp};

/// The fuzz policy; `fuzz/corpus/policy/` holds a copy so the policy target starts from it too.
const POLICY: &str = include_str!("../policy.rules");

static ENGINE: LazyLock<Engine> = LazyLock::new(|| match Policy::compile("fuzz.rules", POLICY) {
    Ok(p) => Engine::new(p),
    Err(e) => panic!("the fuzz policy does not compile: {e:?}"),
});

fuzz_target!(|data: &[u8]| {
    let engine = &*ENGINE;
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut table = engine.new_flow_table();
    table.keep_finished(true);
    table.set_hold(mode & 1 != 0);
    table.offloaded(mode & 2 != 0);
    let mut now = 1_700_000_000_000_000_000u64;
    let mut seq = 0u64;
    let mut held = 0usize;
    let mut answered = 0usize;
    while let [l0, l1, dt, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let (ip, next) = tail.split_at(len);
        rest = next;
        now += if dt & 0x80 == 0 {
            u64::from(*dt) * 10_000_000
        } else {
            u64::from(dt & 0x7f) * 10_000_000_000
        };
        seq += 1;
        let d = engine.decide(&mut table, ip, Timestamp::from_nanos(now), seq);
        if d.reason == Reason::Held {
            held += 1;
        }
        answered += table.drain_released().count();
        let _ = table.drain_finished().count();
        // Every decision can be explained: a rule line, or a reason.
        let _ = engine.policy().cite(d.reason);
    }
    table.finish_all();
    answered += table.drain_released().count();
    let _ = table.drain_finished().count();
    // Every packet gets exactly one verdict: each one held back is released by the end.
    assert_eq!(held, answered, "held packets left without a verdict");
});

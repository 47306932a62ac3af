//! The supervisor thread: systemd's watchdog, fed only while every worker answers, and the ruleset's jump
//! kept first in its hooks.
//!
//! - Watchdog: under `WatchdogSec=` systemd sets `WATCHDOG_USEC` (read by `sd-notify`, which also honours
//!   `WATCHDOG_PID`); `WATCHDOG=1` is sent at half that interval, and only while every worker went round
//!   its loop within the last 3 s (a worker wakes at least every 100 ms). A worker stuck in a loop or a lock starves it, and systemd kills and restarts
//!   the daemon: the documented fail mode, then a fresh start, instead of a queue nobody reads.
//! - Ruleset: ufw, firewalld and Docker insert their own jumps at position 1 of OUTPUT or FORWARD on
//!   every reload of theirs; a `ESTABLISHED,RELATED -j ACCEPT` above outgate's jump would pass a flow's
//!   packets after its handshake unread. Every few seconds the jump is checked and, if it is no longer
//!   first, put back first (`rules::ensure_first`): each repair is logged and counted
//!   (`outgate_ruleset_repairs_total`). With shaping, the mangle table's jumps to OUTGATE-SHAPE and its
//!   CLASSIFY rules too: a reload that flushes mangle would otherwise let SHAPE flows run at full speed.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::Live;
use crate::rules::{RulesConfig, ensure_first};

/// How often the ruleset's place is checked.
const RULESET_CHECK: Duration = Duration::from_secs(3);

pub(super) fn watch(live: &Live, ruleset: Option<&RulesConfig>) {
    let watchdog = sd_notify::watchdog_enabled()
        .filter(|every| !every.is_zero())
        .map(|every| every / 2);
    let mut next_ping = Instant::now();
    let mut next_check = Instant::now() + RULESET_CHECK;
    let mut last_error = String::new();
    while !live.stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if let Some(every) = watchdog
            && now >= next_ping
        {
            next_ping = now + every;
            if live.workers_up().iter().all(|up| *up) {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        }
        if let Some(cfg) = ruleset
            && now >= next_check
        {
            next_check = now + RULESET_CHECK;
            match ensure_first(cfg) {
                Ok(repairs) => {
                    for repair in &repairs {
                        eprintln!("outgate: ruleset: {repair}");
                    }
                    live.metrics
                        .ruleset_repairs
                        .fetch_add(repairs.len() as u64, Relaxed);
                    last_error.clear();
                }
                Err(e) => {
                    // Said once, not every few seconds, until it changes.
                    let e = e.to_string();
                    if e != last_error {
                        eprintln!("outgate: ruleset: cannot check the jump's place: {e}");
                        last_error = e;
                    }
                }
            }
        }
    }
}

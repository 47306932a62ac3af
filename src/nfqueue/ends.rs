//! Flow ends, live: a thread reads the kernel's conntrack destroy events (`conntrack::Ends`) and writes
//! one end line ([`EndLine`]) to the flow log for each flow whose mark holds outgate's verdict, with
//! the kernel's counts and times. Flows outgate did not decide (no verdict in the mark: other traffic,
//! per-message DNS and ICMP decisions, flows passed by the fail-open bypass) get none.
//!
//! Promises:
//! - It never touches a packet, nor waits on anything a worker waits on: lines go through the
//!   logger's bounded channel, of which they take at most half, so a burst of ends (a flushed table)
//!   cannot crowd out the workers' lines; an end line that finds no room is counted
//!   (`outgate_flow_ends_dropped_total`).
//! - Events the kernel could not deliver are counted (`outgate_flow_end_overruns_total`); a socket that
//!   cannot be opened, or fails, is said once on stderr, and the daemon goes on without end lines.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use super::Live;
use super::conntrack::{Ends, Entry};
use super::logger::{LogMsg, Sink};
use crate::log::{EndLine, endpoints, proto_name, rfc3339};
use crate::rules::Marks;
use crate::{Policy, Timestamp, Verdict};

/// How often the thread looks at the stop flag.
const TICK: Duration = Duration::from_millis(200);

/// The kernel settings the end lines' counts and times need, and what each gives.
const SYSCTLS: [(&str, &str); 2] = [
    ("net.netfilter.nf_conntrack_acct", "byte and packet counts"),
    ("net.netfilter.nf_conntrack_timestamp", "times"),
];

/// A kernel setting of this network namespace, as /proc/sys shows it (`None`: unreadable).
fn sysctl(name: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|v| v.trim().to_string())
}

/// Says on stderr which kernel settings would leave end lines missing or bare, then subscribes to
/// the destroy events. Called before the queues are bound: the kernel (with `nf_conntrack_events` at
/// its default, 2) gives an entry its events only when a listener exists as the entry is made, so a
/// flow decided before the subscription would never have its end. `None` (said on stderr) when the
/// socket cannot be opened: the daemon runs on without end lines.
pub(super) fn open() -> Option<Ends> {
    if sysctl("net.netfilter.nf_conntrack_events").as_deref() == Some("0") {
        eprintln!(
            "outgate: no flow end lines will come: net.netfilter.nf_conntrack_events is 0 (the kernel sends no conntrack events; 2, its default, or 1 turns them on)"
        );
    }
    for (name, what) in SYSCTLS {
        let value = sysctl(name);
        if value.as_deref() != Some("1") {
            eprintln!(
                "outgate: flow end lines will have no {what}: {name} is {} (`outgate rules --apply` sets it)",
                value.as_deref().unwrap_or("unreadable")
            );
        }
    }
    match Ends::open() {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("outgate: no flow end lines: the conntrack destroy events: {e}");
            None
        }
    }
}

/// Runs until the daemon stops.
pub(super) fn serve(live: &Live, mut ends: Ends) {
    let Some(log) = &live.log else { return };
    // End lines never take the second half of the logger's backlog: it stays for the workers' lines.
    let room = log.capacity().unwrap_or(usize::MAX) / 2;
    while !live.stop.load(Relaxed) {
        let read = ends.read(TICK, |entry| {
            let in_force = live.policy.load();
            let Some(line) = end_line(&entry, live.marks, in_force.engine.policy()) else {
                return;
            };
            if log.len() >= room {
                live.metrics.flow_ends_dropped.fetch_add(1, Relaxed);
                return;
            }
            let Ok(text) = serde_json::to_string(&line) else {
                return;
            };
            if log.try_send(LogMsg::Line(Sink::Flows, text)).is_err() {
                live.metrics.flow_ends_dropped.fetch_add(1, Relaxed);
            } else {
                live.metrics.flow_ends.fetch_add(1, Relaxed);
            }
        });
        match read {
            Ok(r) => {
                live.metrics
                    .flow_end_overruns
                    .fetch_add(r.overruns, Relaxed);
                live.metrics
                    .flow_ends_unreadable
                    .fetch_add(r.unreadable, Relaxed);
            }
            Err(e) => {
                eprintln!("outgate: no more flow end lines: the conntrack destroy events: {e}");
                return;
            }
        }
    }
}

/// The end line of `entry`, if its mark holds a verdict of outgate's (a class beside an accept makes it
/// `shape`, named as the policy in force names it).
pub(super) fn end_line(entry: &Entry, marks: Marks, policy: &Policy) -> Option<EndLine> {
    let verdict = marks.decode(entry.mark)?;
    let class = match verdict {
        Verdict::Accept => marks.decode_class(entry.mark),
        _ => None,
    };
    let verdict = if class.is_some() {
        Verdict::Shape
    } else {
        verdict
    };
    let o = &entry.orig;
    let (src, dst) = endpoints(o.proto, (o.src, o.sport), (o.dst, o.dport));
    let c = entry.counters;
    let time = |nanos: u64| rfc3339(Timestamp::from_nanos(nanos));
    let duration = entry
        .start
        .zip(entry.stop)
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1e9);
    Some(EndLine {
        end: true,
        ts: rfc3339(Timestamp::from_nanos(super::unix_nanos(SystemTime::now()))),
        proto: proto_name(o.proto),
        src,
        dst,
        icmp_type: o.icmp.map(|i| i.icmp_type),
        verdict: verdict.name(),
        // A class the policy in force no longer has (a reload took it away) by its number.
        class: class.map(|k| {
            policy
                .class_name(k)
                .map_or_else(|| format!("#{}", u32::from(k) + 1), str::to_string)
        }),
        packets: c.map(|c| c.orig_packets.saturating_add(c.reply_packets)),
        bytes: c.map(|c| c.orig_bytes.saturating_add(c.reply_bytes)),
        first_ts: entry.start.map(time),
        last_ts: entry.stop.map(time),
        duration,
        orig_packets: c.map(|c| c.orig_packets),
        orig_bytes: c.map(|c| c.orig_bytes),
        resp_packets: c.map(|c| c.reply_packets),
        resp_bytes: c.map(|c| c.reply_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nfqueue::conntrack::{Counters, IcmpTuple, Tuple};

    fn entry(mark: u32) -> Entry {
        Entry {
            orig: Tuple {
                src: "10.0.0.2".parse().unwrap(),
                dst: "192.0.2.1".parse().unwrap(),
                proto: 6,
                sport: 40000,
                dport: 443,
                icmp: None,
            },
            reply: None,
            master: None,
            mark,
            id: None,
            zone: 0,
            status: 0,
            counters: Some(Counters {
                orig_packets: 10,
                orig_bytes: 1000,
                reply_packets: 20,
                reply_bytes: 30000,
            }),
            start: Some(1_700_000_000_000_000_000),
            stop: Some(1_700_000_062_500_000_000),
        }
    }

    #[test]
    fn an_end_line_says_the_marks_verdict_and_the_kernels_counts() {
        let policy = Policy::compile(
            "p",
            "policy loc net DROP\nSHAPE(bulk) loc net tcp 443\nclass bulk 1mbit\n",
        )
        .unwrap();
        let marks = Marks::DEFAULT;
        let other = 0x7000_0000;
        let accepted = end_line(&entry(other | 0x100), marks, &policy).expect("a verdict");
        let v = serde_json::to_value(&accepted).unwrap();
        assert_eq!(v["end"], true);
        assert_eq!(
            (v["proto"].as_str(), v["src"].as_str()),
            (Some("tcp"), Some("10.0.0.2:40000"))
        );
        assert_eq!(v["dst"], "192.0.2.1:443");
        assert_eq!(
            (v["verdict"].as_str(), v.get("class")),
            (Some("accept"), None)
        );
        assert_eq!(
            (v["packets"].as_u64(), v["bytes"].as_u64()),
            (Some(30), Some(31000))
        );
        assert_eq!(
            (v["orig_bytes"].as_u64(), v["resp_bytes"].as_u64()),
            (Some(1000), Some(30000))
        );
        assert_eq!(v["first_ts"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(v["last_ts"], "2023-11-14T22:14:22.500000000Z");
        assert_eq!(v["duration"], 62.5);

        // Class index 0 (`bulk`, the policy's only class), written as 1 in the class bits, beside
        // an accept.
        let shaped = end_line(&entry(0x1100), marks, &policy).expect("a verdict");
        assert_eq!(
            (shaped.verdict, shaped.class.as_deref()),
            ("shape", Some("bulk"))
        );
        assert_eq!(
            end_line(&entry(0x200), marks, &policy).map(|l| l.verdict),
            Some("drop")
        );

        // No verdict of outgate's: nothing, whatever other software wrote.
        for mark in [0, other, 0x400, 0x500, other | 0xf000] {
            assert!(
                end_line(&entry(mark), marks, &policy).is_none(),
                "{mark:#x}"
            );
        }
    }

    #[test]
    fn an_end_line_reads_the_bits_the_admin_chose() {
        // `--mark-mask 0x700000` (classes in 0x7800000 above it), next to another program's 0xff.
        let marks = Marks::new(0x70_0000).unwrap();
        assert_eq!(marks.class_mask(), 0x780_0000);
        let policy = Policy::compile("p", "policy loc net ACCEPT\n").unwrap();
        let line = |mark: u32| end_line(&entry(mark), marks, &policy).map(|l| (l.verdict, l.class));
        assert_eq!(line(0xff | 0x10_0000), Some(("accept", None)));
        assert_eq!(line(0x100), None, "the default bits mean nothing here");
        assert_eq!(line(0x30_0000), Some(("reject", None)));
        // Class 2 of a policy that has none (a reload took the classes away): by its number.
        assert_eq!(
            line(0x10_0000 | 0x100_0000),
            Some(("shape", Some("#2".to_string())))
        );
    }

    #[test]
    fn an_end_line_without_the_kernels_counts_and_times_leaves_them_out() {
        let policy = Policy::compile("p", "policy loc net ACCEPT\n").unwrap();
        let mut e = entry(0x100);
        (e.counters, e.start, e.stop) = (None, None, None);
        e.orig.proto = 1;
        e.orig.icmp = Some(IcmpTuple {
            icmp_type: 8,
            code: 0,
            id: 7,
        });
        let v = serde_json::to_value(end_line(&e, Marks::DEFAULT, &policy).unwrap()).unwrap();
        assert_eq!(
            (v["src"].as_str(), v["icmp_type"].as_u64()),
            (Some("10.0.0.2"), Some(8))
        );
        for key in [
            "packets",
            "bytes",
            "first_ts",
            "last_ts",
            "duration",
            "orig_bytes",
        ] {
            assert!(v.get(key).is_none(), "{key}: {v}");
        }
    }
}

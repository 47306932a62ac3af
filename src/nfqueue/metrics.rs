//! Live counters, and the Prometheus text endpoint (`--metrics ADDR`) that exposes them.
//!
//! Workers only ever add to atomics (relaxed: each counter is independent), so counting costs no lock and
//! never waits. The HTTP endpoint is a plain thread answering every request with the current text; the
//! kernel's own drop counters are read from /proc/net/netfilter/nfnetlink_queue at that moment. New
//! flows per policy line belong to the policy in force (they start again at a reload, as the lines do).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::Live;
use super::queue::proc_stats;
use super::reload::{Held, InForce};
use crate::{Decision, Reason, Verdict};

/// Counters of one queue (one worker).
#[derive(Default)]
pub struct QueueCounters {
    pub queue: u16,
    pub packets: AtomicU64,
    /// Packets per verdict, indexed like [`Verdict::ALL`].
    pub verdicts: [AtomicU64; 4],
    pub malformed: AtomicU64,
    /// Flows decided and handed to the kernel (their later packets never come up).
    pub flows_offloaded: AtomicU64,
    /// TCP flows whose packets came without their SYN (open before the daemon, or lost by the kernel).
    pub flows_midstream: AtomicU64,
    /// Flows whose decision was not what they got (an audited line, or `--audit`).
    pub flows_not_enforced: AtomicU64,
    /// Receive-buffer overruns (ENOBUFS): survived, counted.
    pub enobufs: AtomicU64,
    /// Verdicts that could not be sent.
    pub verdict_errors: AtomicU64,
    /// Packets held back now, waiting for their flow's first payload (a gauge).
    pub held: AtomicU64,
    /// Flows whose wait was ended early to keep the inspection memory and held packets bounded.
    pub inspections_evicted: AtomicU64,
}

/// How the last reload (or the start) went.
#[derive(Clone, Debug, Default)]
pub struct LastReload {
    pub at: Option<SystemTime>,
    /// The policy's errors (`FILE:LINE:COL: message`), or why the kernel's flows could not be held to it.
    pub error: Option<String>,
    /// What holding the kernel's flows to the policy did.
    pub held: Held,
}

/// All live counters.
pub struct Metrics {
    pub queues: Vec<QueueCounters>,
    /// Flow-log lines dropped because the logger could not keep up.
    pub log_dropped: Arc<AtomicU64>,
    pub reloads: AtomicU64,
    pub reloads_refused: AtomicU64,
    pub last_reload: Mutex<LastReload>,
    /// Flows in the kernel cut because a reload (or the start) decided them again under a stricter policy.
    pub flows_cut: AtomicU64,
    /// Times the jump to outgate's chain was found away from first place and put back.
    pub ruleset_repairs: AtomicU64,
}

fn slot(v: Verdict) -> usize {
    Verdict::ALL.iter().position(|&x| x == v).unwrap_or(0)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A per-queue family: its name, type, help, and the counter it reads.
type PerQueue = (
    &'static str,
    &'static str,
    &'static str,
    fn(&QueueCounters) -> u64,
);

/// The per-queue families, in the order they are printed.
const PER_QUEUE: [PerQueue; 9] = [
    (
        "packets_total",
        "counter",
        "Packets received from the kernel queue.",
        |c| c.packets.load(Relaxed),
    ),
    (
        "malformed_total",
        "counter",
        "Packets decided as malformed.",
        |c| c.malformed.load(Relaxed),
    ),
    (
        "flows_offloaded_total",
        "counter",
        "Flows decided and handed to the kernel's conntrack mark.",
        |c| c.flows_offloaded.load(Relaxed),
    ),
    (
        "flows_not_enforced_total",
        "counter",
        "Flows whose decision was not what they got: an audited line, or --audit (per rule: rule_flows_total).",
        |c| c.flows_not_enforced.load(Relaxed),
    ),
    (
        "flows_midstream_total",
        "counter",
        "TCP flows whose packets reached the daemon without their SYN, decided from their middle.",
        |c| c.flows_midstream.load(Relaxed),
    ),
    (
        "held_packets",
        "gauge",
        "Packets held back until their flow's first payload decides it.",
        |c| c.held.load(Relaxed),
    ),
    (
        "inspections_evicted_total",
        "counter",
        "Waits for a first payload ended early (inspect-limit) to keep inspection memory bounded.",
        |c| c.inspections_evicted.load(Relaxed),
    ),
    (
        "enobufs_total",
        "counter",
        "Socket receive-buffer overruns (ENOBUFS).",
        |c| c.enobufs.load(Relaxed),
    ),
    (
        "verdict_errors_total",
        "counter",
        "Verdicts that could not be sent.",
        |c| c.verdict_errors.load(Relaxed),
    ),
];

impl Metrics {
    /// `log_dropped` is shared with the logger, which counts the lines it cannot write.
    pub fn new(queues: impl Iterator<Item = u16>, log_dropped: Arc<AtomicU64>) -> Metrics {
        Metrics {
            queues: queues
                .map(|queue| QueueCounters {
                    queue,
                    ..Default::default()
                })
                .collect(),
            log_dropped,
            reloads: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            last_reload: Mutex::new(LastReload::default()),
            flows_cut: AtomicU64::new(0),
            ruleset_repairs: AtomicU64::new(0),
        }
    }

    /// Counts one packet's decision on queue index `q`.
    pub fn count_packet(&self, q: usize, d: Decision) {
        if let Some(c) = self.queues.get(q) {
            c.packets.fetch_add(1, Relaxed);
            c.verdicts[slot(d.verdict)].fetch_add(1, Relaxed);
            if matches!(d.reason, Reason::Malformed(_) | Reason::OrphanFragment) {
                c.malformed.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts a newly decided flow on queue index `q`, and under its line in the policy in force;
    /// `enforced`: whether its packets got what the decision says.
    pub fn count_flow(
        &self,
        q: usize,
        in_force: &InForce,
        d: Decision,
        midstream: bool,
        enforced: bool,
    ) {
        if let Some(c) = self.queues.get(q) {
            c.flows_offloaded.fetch_add(1, Relaxed);
            if midstream {
                c.flows_midstream.fetch_add(1, Relaxed);
            }
            if !enforced {
                c.flows_not_enforced.fetch_add(1, Relaxed);
            }
        }
        in_force.count_flow(d);
    }

    /// Records how a reload or the start went.
    pub fn record_reload(&self, outcome: LastReload) {
        self.flows_cut.fetch_add(outcome.held.cut, Relaxed);
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, in_force: &InForce, workers_up: &[bool], audit: bool) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(
                out,
                "# HELP outgate_{name} {help}\n# TYPE outgate_{name} {kind}"
            );
            for (labels, v) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "outgate_{name} {v}");
                } else {
                    let _ = writeln!(out, "outgate_{name}{{{labels}}} {v}");
                }
            }
        };
        let per_queue = |f: &dyn Fn(&QueueCounters) -> u64| -> Vec<(String, f64)> {
            self.queues
                .iter()
                .map(|c| (format!("queue=\"{}\"", c.queue), f(c) as f64))
                .collect()
        };
        let one = |v: u64| vec![(String::new(), v as f64)];
        let policy = in_force.engine.policy();
        family(
            "mode",
            "gauge",
            "1 for the mode the daemon runs in: enforce, or audit (every packet accepted, decisions counted).",
            vec![(
                format!("mode=\"{}\"", if audit { "audit" } else { "enforce" }),
                1.0,
            )],
        );
        family(
            "policy_info",
            "gauge",
            "The policy in force: its file and hash (compare two gateways' hashes), and its generation.",
            vec![(
                format!(
                    "file=\"{}\",hash=\"{}\",generation=\"{}\"",
                    escape(policy.file()),
                    policy.hash(),
                    in_force.generation
                ),
                1.0,
            )],
        );
        family(
            "policy_loaded_timestamp_seconds",
            "gauge",
            "When the policy in force was loaded (Unix time).",
            vec![(String::new(), unix_seconds(in_force.loaded))],
        );
        let last = self
            .last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        family(
            "reloads_total",
            "counter",
            "Reloads (SIGHUP) by result: ok, or refused (the policy did not compile; the old one stays).",
            vec![
                ("result=\"ok\"".into(), self.reloads.load(Relaxed) as f64),
                (
                    "result=\"refused\"".into(),
                    self.reloads_refused.load(Relaxed) as f64,
                ),
            ],
        );
        family(
            "reload_last_timestamp_seconds",
            "gauge",
            "When the last reload (or the start) was tried (Unix time).",
            vec![(String::new(), last.at.map_or(0.0, unix_seconds))],
        );
        family(
            "reload_last_error_info",
            "gauge",
            "1 with the last reload's error as label while it stands; 0 when the last reload went well.",
            vec![match &last.error {
                Some(e) => (format!("error=\"{}\"", escape(e)), 1.0),
                None => ("error=\"\"".into(), 0.0),
            }],
        );
        let held = last.held;
        family(
            "reload_flows",
            "gauge",
            "The kernel's flows at the last reload (or start): checked against the policy, decided again \
             (their verdict changed), cut (now dropped or rejected).",
            vec![
                ("what=\"checked\"".into(), held.checked as f64),
                ("what=\"changed\"".into(), held.changed as f64),
                ("what=\"cut\"".into(), held.cut as f64),
            ],
        );
        family(
            "flows_cut_total",
            "counter",
            "Flows in the kernel cut because the policy in force no longer allows them.",
            one(self.flows_cut.load(Relaxed)),
        );
        family(
            "worker_up",
            "gauge",
            "1 while the queue's worker answers (it went round its loop in the last 3 s).",
            self.queues
                .iter()
                .zip(workers_up)
                .map(|(c, up)| (format!("queue=\"{}\"", c.queue), f64::from(u8::from(*up))))
                .collect(),
        );
        family(
            "ruleset_repairs_total",
            "counter",
            "Times the jump to outgate's chain was no longer first in its hook and was put back.",
            one(self.ruleset_repairs.load(Relaxed)),
        );
        for (name, kind, help, read) in PER_QUEUE {
            family(name, kind, help, per_queue(&read));
        }
        let verdicts = self
            .queues
            .iter()
            .flat_map(|c| {
                Verdict::ALL.iter().map(move |v| {
                    (
                        format!("queue=\"{}\",verdict=\"{}\"", c.queue, v.name()),
                        c.verdicts[slot(*v)].load(Relaxed) as f64,
                    )
                })
            })
            .collect();
        family(
            "verdicts_total",
            "counter",
            "Verdicts given, by kind.",
            verdicts,
        );
        let kernel = |f: &dyn Fn(super::queue::ProcQueueStats) -> u64| -> Vec<(String, f64)> {
            self.queues
                .iter()
                .filter_map(|c| {
                    proc_stats(c.queue).map(|s| (format!("queue=\"{}\"", c.queue), f(s) as f64))
                })
                .collect()
        };
        family(
            "queue_dropped_total",
            "counter",
            "Packets the kernel dropped because the queue was full.",
            kernel(&|s| s.queue_dropped),
        );
        family(
            "user_dropped_total",
            "counter",
            "Packets the kernel dropped because the socket buffer was full.",
            kernel(&|s| s.user_dropped),
        );
        let mut rules: Vec<(String, f64)> = Vec::new();
        for (i, c) in in_force.rule_flows.iter().enumerate() {
            let cite = policy.cite(Reason::Rule(i as u32)).unwrap_or_default();
            rules.push((
                format!("rule=\"{}\",kind=\"rule\"", escape(&cite)),
                c.load(Relaxed) as f64,
            ));
        }
        for (i, c) in in_force.policy_flows.iter().enumerate() {
            let cite = policy.cite(Reason::Policy(i as u32)).unwrap_or_default();
            rules.push((
                format!("rule=\"{}\",kind=\"policy\"", escape(&cite)),
                c.load(Relaxed) as f64,
            ));
        }
        rules.push((
            "rule=\"-\",kind=\"no-policy\"".into(),
            in_force.no_policy_flows.load(Relaxed) as f64,
        ));
        family(
            "rule_flows_total",
            "counter",
            "New flows decided under the policy in force, by the line that decided them.",
            rules,
        );
        family(
            "shaped_flows_total",
            "counter",
            "New flows the policy in force shapes, by class and its rate (their bytes: `tc -s class show`).",
            policy
                .classes()
                .iter()
                .zip(&in_force.shaped_flows)
                .map(|(class, c)| {
                    (
                        format!("class=\"{}\",rate=\"{}\"", escape(&class.name), class.rate),
                        c.load(Relaxed) as f64,
                    )
                })
                .collect(),
        );
        family(
            "log_lines_dropped_total",
            "counter",
            "Log lines dropped because the log could not keep up or could not be written (a full disk).",
            one(self.log_dropped.load(Relaxed)),
        );
        out
    }
}

/// Label values escape backslash, quote and newline (Prometheus text format).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves the metrics on `addr` from a background thread; returns once the socket is bound.
pub(super) fn serve(addr: SocketAddr, live: Arc<Live>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("outgate-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            // The request itself does not matter: every path answers with the metrics.
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let body = live.render_metrics();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        }
    })?;
    Ok(bound)
}

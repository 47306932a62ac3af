//! Live counters, and the Prometheus text endpoint (`--metrics ADDR`) that exposes them.
//!
//! Workers only ever add to atomics (relaxed: each counter is independent), so counting costs no lock and
//! never waits. The HTTP endpoint is a plain thread answering every request with the current text; the
//! kernel's own drop counters are read from /proc/net/netfilter/nfnetlink_queue at that moment.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::queue::proc_stats;
use crate::{Decision, Engine, Policy, Reason, Verdict};

/// Counters of one queue (one worker).
#[derive(Default)]
pub struct QueueCounters {
    pub queue: u16,
    pub packets: AtomicU64,
    /// Packets per verdict, indexed like [`Verdict::ALL`].
    pub verdicts: [AtomicU64; 3],
    pub malformed: AtomicU64,
    /// Flows decided and handed to the kernel (their later packets never come up).
    pub flows_offloaded: AtomicU64,
    /// Receive-buffer overruns (ENOBUFS): survived, counted.
    pub enobufs: AtomicU64,
    /// Verdicts the kernel refused, or that could not be sent.
    pub verdict_errors: AtomicU64,
}

/// All live counters.
pub struct Metrics {
    pub queues: Vec<QueueCounters>,
    /// New flows per rule (index = rule id), per policy line, and for the no-policy fallback.
    rule_flows: Vec<AtomicU64>,
    policy_flows: Vec<AtomicU64>,
    no_policy_flows: AtomicU64,
    /// Flow-log lines dropped because the logger could not keep up.
    pub log_dropped: AtomicU64,
}

fn slot(v: Verdict) -> usize {
    Verdict::ALL.iter().position(|&x| x == v).unwrap_or(0)
}

impl Metrics {
    pub fn new(queues: impl Iterator<Item = u16>, policy: &Policy) -> Metrics {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Metrics {
            queues: queues
                .map(|queue| QueueCounters {
                    queue,
                    ..Default::default()
                })
                .collect(),
            rule_flows: counters(policy.rules().len()),
            policy_flows: counters(policy.pair_policies().len()),
            no_policy_flows: AtomicU64::new(0),
            log_dropped: AtomicU64::new(0),
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

    /// Counts a newly decided flow on queue index `q`.
    pub fn count_flow(&self, q: usize, d: Decision) {
        if let Some(c) = self.queues.get(q) {
            c.flows_offloaded.fetch_add(1, Relaxed);
        }
        let counter = match d.reason {
            Reason::Rule(i) => self.rule_flows.get(i as usize),
            Reason::Policy(i) => self.policy_flows.get(i as usize),
            Reason::NoPolicy => Some(&self.no_policy_flows),
            _ => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, policy: &Policy) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
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
        let per_queue = |f: &dyn Fn(&QueueCounters) -> u64| -> Vec<(String, u64)> {
            self.queues
                .iter()
                .map(|c| (format!("queue=\"{}\"", c.queue), f(c)))
                .collect()
        };
        family(
            "packets_total",
            "counter",
            "Packets received from the kernel queue.",
            per_queue(&|c| c.packets.load(Relaxed)),
        );
        let verdicts = self
            .queues
            .iter()
            .flat_map(|c| {
                Verdict::ALL.iter().map(move |v| {
                    (
                        format!("queue=\"{}\",verdict=\"{}\"", c.queue, v.name()),
                        c.verdicts[slot(*v)].load(Relaxed),
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
        family(
            "malformed_total",
            "counter",
            "Packets decided as malformed.",
            per_queue(&|c| c.malformed.load(Relaxed)),
        );
        family(
            "flows_offloaded_total",
            "counter",
            "Flows decided and handed to the kernel's conntrack mark.",
            per_queue(&|c| c.flows_offloaded.load(Relaxed)),
        );
        family(
            "enobufs_total",
            "counter",
            "Socket receive-buffer overruns (ENOBUFS).",
            per_queue(&|c| c.enobufs.load(Relaxed)),
        );
        family(
            "verdict_errors_total",
            "counter",
            "Verdicts refused by the kernel.",
            per_queue(&|c| c.verdict_errors.load(Relaxed)),
        );
        let kernel = |f: &dyn Fn(super::queue::ProcQueueStats) -> u64| -> Vec<(String, u64)> {
            self.queues
                .iter()
                .filter_map(|c| {
                    proc_stats(c.queue).map(|s| (format!("queue=\"{}\"", c.queue), f(s)))
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
        let mut rules: Vec<(String, u64)> = Vec::new();
        for (i, c) in self.rule_flows.iter().enumerate() {
            let cite = policy.cite(Reason::Rule(i as u32)).unwrap_or_default();
            rules.push((
                format!("rule=\"{}\",kind=\"rule\"", escape(&cite)),
                c.load(Relaxed),
            ));
        }
        for (i, c) in self.policy_flows.iter().enumerate() {
            let cite = policy.cite(Reason::Policy(i as u32)).unwrap_or_default();
            rules.push((
                format!("rule=\"{}\",kind=\"policy\"", escape(&cite)),
                c.load(Relaxed),
            ));
        }
        rules.push((
            "rule=\"-\",kind=\"no-policy\"".into(),
            self.no_policy_flows.load(Relaxed),
        ));
        family(
            "rule_flows_total",
            "counter",
            "New flows decided, by the policy line that decided them.",
            rules,
        );
        family(
            "log_lines_dropped_total",
            "counter",
            "Flow-log lines dropped because the log could not keep up.",
            vec![(String::new(), self.log_dropped.load(Relaxed))],
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

/// Serves `render` on `addr` from a background thread; returns once the socket is bound.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    engine: Arc<Engine>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("outgate-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            // The request itself does not matter: every path answers with the metrics.
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let body = metrics.render(engine.policy());
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        }
    })?;
    Ok(bound)
}

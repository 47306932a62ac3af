//! Live counters, and the Prometheus text endpoint (`--metrics ADDR`) that exposes them.
//!
//! Workers only ever add to atomics (relaxed: each counter is independent), so counting costs no lock and
//! never waits. The HTTP endpoint is a plain thread answering every request with the current text, which
//! `prometheus-client` writes (text format 0.0.4) from what a scrape reads of the atomics; the kernel's
//! own drop counters are read from /proc/net/netfilter/nfnetlink_queue at that moment. New flows per
//! policy line belong to the policy in force (they start again at a reload, as the lines do).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Live;
use super::queue::{ProcQueueStats, proc_stats};
use super::reload::{Held, InForce};
use crate::{Decision, Reason, Verdict};

/// Counters of one queue (one worker).
#[derive(Default)]
pub(crate) struct QueueCounters {
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
    /// Flows the full flow table let go of (`option max-flows`), the longest idle decided ones first.
    pub flows_evicted: AtomicU64,
}

/// How the last reload (or the start) went.
#[derive(Clone, Debug, Default)]
pub(crate) struct LastReload {
    pub at: Option<SystemTime>,
    /// The policy's errors (`FILE:LINE:COL: message`), or why the kernel's flows could not be held to it.
    pub error: Option<String>,
    /// What holding the kernel's flows to the policy did.
    pub held: Held,
}

/// All live counters.
pub(crate) struct Metrics {
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
    /// Flow end lines handed to the logger, from the kernel's destroy events (`super::ends`).
    pub flow_ends: AtomicU64,
    /// Flow end lines dropped because the logger's backlog was half full.
    pub flow_ends_dropped: AtomicU64,
    /// Times the kernel dropped destroy events for lack of room (each may be many events).
    pub flow_end_overruns: AtomicU64,
    /// Destroy events that did not read.
    pub flow_ends_unreadable: AtomicU64,
}

fn slot(v: Verdict) -> usize {
    Verdict::ALL.iter().position(|&x| x == v).unwrap_or(0)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A per-queue family: its name, type, help, and the counter it reads.
type PerQueue = (&'static str, Kind, &'static str, fn(&QueueCounters) -> u64);

/// The per-queue families, in the order they are printed.
const PER_QUEUE: [PerQueue; 10] = [
    (
        "packets_total",
        Kind::Counter,
        "Packets received from the kernel queue.",
        |c| c.packets.load(Relaxed),
    ),
    (
        "malformed_total",
        Kind::Counter,
        "Packets decided as malformed.",
        |c| c.malformed.load(Relaxed),
    ),
    (
        "flows_offloaded_total",
        Kind::Counter,
        "Flows decided and handed to the kernel's conntrack mark.",
        |c| c.flows_offloaded.load(Relaxed),
    ),
    (
        "flows_not_enforced_total",
        Kind::Counter,
        "Flows whose decision was not what they got: an audited line, or --audit (per rule: rule_flows_total).",
        |c| c.flows_not_enforced.load(Relaxed),
    ),
    (
        "flows_midstream_total",
        Kind::Counter,
        "TCP flows whose packets reached the daemon without their SYN, decided from their middle.",
        |c| c.flows_midstream.load(Relaxed),
    ),
    (
        "held_packets",
        Kind::Gauge,
        "Packets held back until their flow's first payload decides it.",
        |c| c.held.load(Relaxed),
    ),
    (
        "inspections_evicted_total",
        Kind::Counter,
        "Waits for a first payload ended early (inspect-limit) to keep inspection memory bounded.",
        |c| c.inspections_evicted.load(Relaxed),
    ),
    (
        "flows_evicted_total",
        Kind::Counter,
        "Flows the full flow table let go of (option max-flows), the longest idle decided ones first.",
        |c| c.flows_evicted.load(Relaxed),
    ),
    (
        "enobufs_total",
        Kind::Counter,
        "Socket receive-buffer overruns (ENOBUFS).",
        |c| c.enobufs.load(Relaxed),
    ),
    (
        "verdict_errors_total",
        Kind::Counter,
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
            flow_ends: AtomicU64::new(0),
            flow_ends_dropped: AtomicU64::new(0),
            flow_end_overruns: AtomicU64::new(0),
            flow_ends_unreadable: AtomicU64::new(0),
        }
    }

    /// Counts one packet's decision on queue index `q`.
    pub(crate) fn count_packet(&self, q: usize, d: Decision) {
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
    pub(crate) fn count_flow(
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
    pub(crate) fn record_reload(&self, outcome: LastReload) {
        self.flows_cut.fetch_add(outcome.held.cut, Relaxed);
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
    }

    /// The Prometheus text exposition (format 0.0.4), written by `prometheus-client`.
    pub fn render(&self, in_force: &InForce, workers_up: &[bool], audit: bool) -> String {
        let mut registry = Registry::with_prefix("outgate");
        registry.register_collector(Box::new(self.scrape(in_force, workers_up, audit)));
        let mut out = String::new();
        // Writing to a String fails only if a value refuses to be written, which none of these does.
        let _ = prometheus_text::encode(&mut out, &registry);
        out
    }

    /// Every family's samples now, in the order they are printed.
    fn scrape(&self, in_force: &InForce, workers_up: &[bool], audit: bool) -> Scrape {
        let mut scrape = Scrape::default();
        let per_queue =
            |label: fn(&QueueCounters) -> u64, value: fn(u64) -> Value| -> Vec<Sample> {
                self.queues
                    .iter()
                    .map(|c| (vec![("queue", c.queue.to_string())], value(label(c))))
                    .collect()
            };
        let policy = in_force.engine.policy();
        scrape.gauge(
            "mode",
            "1 for the mode the daemon runs in: enforce, or audit (every packet accepted, decisions counted).",
            vec![(
                vec![("mode", if audit { "audit" } else { "enforce" }.into())],
                Value::Int(1),
            )],
        );
        scrape.gauge(
            "policy_info",
            "The policy in force: its file and hash (compare two gateways' hashes), and its generation.",
            vec![(
                vec![
                    ("file", policy.file().to_string()),
                    ("hash", policy.hash().to_string()),
                    ("generation", in_force.generation.to_string()),
                ],
                Value::Int(1),
            )],
        );
        scrape.gauge(
            "policy_loaded_timestamp_seconds",
            "When the policy in force was loaded (Unix time).",
            vec![(vec![], Value::Seconds(unix_seconds(in_force.loaded)))],
        );
        let last = self
            .last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        scrape.counter(
            "reloads_total",
            "Reloads (SIGHUP) by result: ok, or refused (the policy did not compile; the old one stays).",
            vec![
                (vec![("result", "ok".into())], Value::Int(self.reloads.load(Relaxed))),
                (
                    vec![("result", "refused".into())],
                    Value::Int(self.reloads_refused.load(Relaxed)),
                ),
            ],
        );
        scrape.gauge(
            "reload_last_timestamp_seconds",
            "When the last reload (or the start) was tried (Unix time).",
            vec![(
                vec![],
                last.at
                    .map_or(Value::Int(0), |at| Value::Seconds(unix_seconds(at))),
            )],
        );
        scrape.gauge(
            "reload_last_error_info",
            "1 with the last reload's error as label while it stands; 0 when the last reload went well.",
            vec![match last.error {
                Some(e) => (vec![("error", e)], Value::Int(1)),
                None => (vec![("error", String::new())], Value::Int(0)),
            }],
        );
        let held = last.held;
        scrape.gauge(
            "reload_flows",
            "The kernel's flows at the last reload (or start): checked against the policy, decided again \
             (their verdict changed), cut (now dropped or rejected).",
            [("checked", held.checked), ("changed", held.changed), ("cut", held.cut)]
                .into_iter()
                .map(|(what, n)| (vec![("what", what.to_string())], Value::Int(n)))
                .collect(),
        );
        scrape.counter(
            "flows_cut_total",
            "Flows in the kernel cut because the policy in force no longer allows them.",
            vec![(vec![], Value::Int(self.flows_cut.load(Relaxed)))],
        );
        scrape.gauge(
            "worker_up",
            "1 while the queue's worker answers (it went round its loop in the last 3 s).",
            self.queues
                .iter()
                .zip(workers_up)
                .map(|(c, up)| {
                    (
                        vec![("queue", c.queue.to_string())],
                        Value::Int(u64::from(*up)),
                    )
                })
                .collect(),
        );
        scrape.counter(
            "ruleset_repairs_total",
            "Times the jump to outgate's chain was no longer first in its hook and was put back.",
            vec![(vec![], Value::Int(self.ruleset_repairs.load(Relaxed)))],
        );
        for (name, kind, help, read) in PER_QUEUE {
            let samples = per_queue(read, Value::Int);
            match kind {
                Kind::Counter => scrape.counter(name, help, samples),
                Kind::Gauge => scrape.gauge(name, help, samples),
            }
        }
        let verdicts = self
            .queues
            .iter()
            .flat_map(|c| {
                Verdict::ALL.iter().map(move |v| {
                    (
                        vec![
                            ("queue", c.queue.to_string()),
                            ("verdict", v.name().to_string()),
                        ],
                        Value::Int(c.verdicts[slot(*v)].load(Relaxed)),
                    )
                })
            })
            .collect();
        scrape.counter("verdicts_total", "Verdicts given, by kind.", verdicts);
        let kernel = |f: fn(ProcQueueStats) -> u64| -> Vec<Sample> {
            self.queues
                .iter()
                .filter_map(|c| {
                    proc_stats(c.queue)
                        .map(|s| (vec![("queue", c.queue.to_string())], Value::Int(f(s))))
                })
                .collect()
        };
        scrape.counter(
            "queue_dropped_total",
            "Packets the kernel dropped because the queue was full.",
            kernel(|s| s.queue_dropped),
        );
        scrape.counter(
            "user_dropped_total",
            "Packets the kernel dropped because the socket buffer was full.",
            kernel(|s| s.user_dropped),
        );
        let line = |reason: Reason, kind: &str, n: &AtomicU64| -> Sample {
            let cite = policy.cite(reason).unwrap_or_default();
            (
                vec![("rule", cite), ("kind", kind.to_string())],
                Value::Int(n.load(Relaxed)),
            )
        };
        let mut rules: Vec<Sample> = Vec::new();
        for (i, n) in in_force.rule_flows.iter().enumerate() {
            rules.push(line(Reason::Rule(i as u32), "rule", n));
        }
        for (i, n) in in_force.policy_flows.iter().enumerate() {
            rules.push(line(Reason::Policy(i as u32), "policy", n));
        }
        rules.push((
            vec![("rule", "-".into()), ("kind", "no-policy".into())],
            Value::Int(in_force.no_policy_flows.load(Relaxed)),
        ));
        scrape.counter(
            "rule_flows_total",
            "New flows decided under the policy in force, by the line that decided them.",
            rules,
        );
        scrape.counter(
            "shaped_flows_total",
            "New flows the policy in force shapes, by class and its rate (their bytes: `tc -s class show`).",
            policy
                .classes()
                .iter()
                .zip(&in_force.shaped_flows)
                .map(|(class, n)| {
                    (
                        vec![("class", class.name.clone()), ("rate", class.rate.to_string())],
                        Value::Int(n.load(Relaxed)),
                    )
                })
                .collect(),
        );
        scrape.counter(
            "log_lines_dropped_total",
            "Log lines dropped because the log could not keep up or could not be written (a full disk).",
            vec![(vec![], Value::Int(self.log_dropped.load(Relaxed)))],
        );
        scrape.counter(
            "flow_ends_total",
            "Flow end lines handed to the logger, from the kernel's conntrack destroy events.",
            vec![(vec![], Value::Int(self.flow_ends.load(Relaxed)))],
        );
        scrape.counter(
            "flow_ends_dropped_total",
            "Flow end lines dropped because the log backlog was half full (the rest is kept for decisions).",
            vec![(vec![], Value::Int(self.flow_ends_dropped.load(Relaxed)))],
        );
        scrape.counter(
            "flow_end_overruns_total",
            "Times the kernel dropped conntrack destroy events for lack of room (their end lines are missing).",
            vec![(vec![], Value::Int(self.flow_end_overruns.load(Relaxed)))],
        );
        scrape.counter(
            "flow_ends_unreadable_total",
            "Conntrack destroy events that did not read.",
            vec![(vec![], Value::Int(self.flow_ends_unreadable.load(Relaxed)))],
        );
        scrape
    }
}

/// A sample's labels (in the order printed), and its value.
type Sample = (Vec<(&'static str, String)>, Value);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Gauge,
}

#[derive(Clone, Copy, Debug)]
enum Value {
    Int(u64),
    /// Unix time: printed as the shortest decimal that reads back the same.
    Seconds(f64),
}

/// One family: its full name (counters end in `_total`), help and samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    samples: Vec<Sample>,
}

/// What one scrape prints: read from the counters at the moment of the request.
#[derive(Debug, Default)]
struct Scrape(Vec<Family>);

impl Scrape {
    fn counter(&mut self, name: &'static str, help: &'static str, samples: Vec<Sample>) {
        self.0.push(Family {
            name,
            kind: Kind::Counter,
            help,
            samples,
        });
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, samples: Vec<Sample>) {
        self.0.push(Family {
            name,
            kind: Kind::Gauge,
            help,
            samples,
        });
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for family in &self.0 {
            // The crate adds `_total` to a counter's name itself.
            let (name, kind) = match family.kind {
                Kind::Counter => (
                    family.name.strip_suffix("_total").unwrap_or(family.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (family.name, MetricType::Gauge),
            };
            let mut metric = encoder.encode_descriptor(name, family.help, None, kind)?;
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                match (family.kind, *value) {
                    (Kind::Counter, Value::Int(n)) => ConstCounter::new(n).encode(sample)?,
                    (Kind::Counter, Value::Seconds(s)) => ConstCounter::new(s).encode(sample)?,
                    (Kind::Gauge, Value::Int(n)) => ConstGauge::new(n).encode(sample)?,
                    (Kind::Gauge, Value::Seconds(s)) => ConstGauge::new(s).encode(sample)?,
                }
            }
        }
        Ok(())
    }
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
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                prometheus_text::CONTENT_TYPE,
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        }
    })?;
    Ok(bound)
}

#[cfg(test)]
mod tests;

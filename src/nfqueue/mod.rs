//! The live edge: bind the NFQUEUE queues, run one worker per queue, log and count, reload, stop cleanly.
//!
//! Promises:
//! - Every packet that reaches the daemon gets exactly one verdict, also on reload and shutdown: on
//!   SIGTERM/SIGINT the workers stop receiving only after the socket is empty, answer what they hold
//!   (packets held for a first payload get their flow's `inspect-limit`), then unbind.
//! - Nothing blocks a worker: counters are atomics, the logs go through a bounded channel whose overflow is
//!   counted, not waited on; a reload is compiled on its own thread and swapped in atomically
//!   (`reload`).
//! - Fail-open or fail-closed is one choice: with fail-open the queue's overflow is accepted by the kernel
//!   (NFQA_CFG_F_FAIL_OPEN) and the ruleset adds `--queue-bypass` (no daemon: traffic flows); with
//!   fail-closed both drop. A worker that dies takes the daemon with it: the process ends with an error,
//!   its sockets close, the kernel treats that as "no daemon", and systemd's `Restart=` brings it back; a
//!   worker that stops answering starves systemd's watchdog, with the same end (`supervise`).
//!
//! `netlink` (the socket and the wire format) is the only module of the crate with `unsafe`; `queue` (NFQUEUE)
//! and `conntrack` (reading and re-marking the kernel's flows) are built on it. See `queue`'s header for why
//! the project carries its own netlink code instead of the nfq crate.

pub mod conntrack;
pub mod control;
mod ends;
mod logger;
pub mod metrics;
#[allow(unsafe_code)]
mod netlink;
pub mod queue;
pub mod reload;
mod supervise;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
pub use reload::Request;

use crate::rules::{Marks, RulesConfig};
use crate::{Engine, Policy};
use logger::LogMsg;
pub use logger::{LogTarget, Sink};
use metrics::Metrics;
use queue::{Queue, QueueConfig, QueueError};
use reload::{InForce, Memory};

/// Settings of `outgate run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Queue numbers, one worker each.
    pub queues: Vec<u16>,
    pub fail_open: bool,
    /// Outgate's bits of the mark, verdict and class bits: the same as the ruleset's (`outgate rules
    /// --mark-mask`, `--class-mask`).
    pub marks: Marks,
    /// Packets the kernel holds per queue waiting for a verdict.
    pub queue_maxlen: u32,
    /// Socket receive buffer per queue, bytes.
    pub rcvbuf: usize,
    /// One JSON line per decided flow.
    pub log: Option<LogTarget>,
    /// One JSON line per HTTP request a rule looked at.
    pub http_log: Option<LogTarget>,
    /// One JSON line per TLS ClientHello a rule looked at.
    pub tls_log: Option<LogTarget>,
    /// One JSON line per DNS query (each over UDP comes to the daemon while it is on).
    pub dns_log: Option<LogTarget>,
    /// One JSON line per ICMP echo request (each comes to the daemon while it is on).
    pub icmp_log: Option<LogTarget>,
    pub metrics: Option<SocketAddr>,
    /// The policy file SIGHUP re-reads (`None`: the built-in policy, which a reload leaves as it is).
    pub policy_path: Option<PathBuf>,
    /// Where the policy in force is remembered across restarts (`--state`).
    pub state: Option<PathBuf>,
    /// The installed iptables ruleset, kept first in its hooks (`None`: nothing to guard).
    pub ruleset: Option<RulesConfig>,
    /// `--audit`: every decision is made, logged and counted, and every packet is accepted.
    pub audit: bool,
    /// The control socket `outgate try` talks to (`--control`).
    pub control: Option<PathBuf>,
    /// Write an end line to the flow log for each decided flow the kernel ends (`--no-flow-ends`
    /// turns it off).
    pub flow_ends: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            queues: vec![0],
            fail_open: false,
            marks: Marks::DEFAULT,
            queue_maxlen: 16_384,
            rcvbuf: 64 << 20,
            log: None,
            http_log: None,
            tls_log: None,
            dns_log: None,
            icmp_log: None,
            metrics: None,
            policy_path: None,
            state: None,
            ruleset: None,
            audit: false,
            control: None,
            flow_ends: true,
        }
    }
}

/// Why the daemon could not start, or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("NFQUEUE {queue}: {source}{hint}")]
    Bind {
        queue: u16,
        source: QueueError,
        hint: &'static str,
    },
    #[error("{path}: cannot open the log: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("--metrics {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--control {path}: {source}")]
    Control {
        path: String,
        source: std::io::Error,
    },
    /// A worker died; the daemon stopped so that the fail mode applies (and systemd restarts it).
    #[error("{0}; stopped (every queue is let go: the fail mode applies until a restart)")]
    WorkerFailed(String),
}

/// What a run did, for the exit message.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub packets: u64,
    pub flows: u64,
}

/// A worker that went round its loop within this long is up (the loop wakes every 100 ms when idle).
const UP: Duration = Duration::from_secs(3);

/// What the workers, the reload and the supervisor share.
pub(crate) struct Live {
    pub policy: ArcSwap<InForce>,
    pub metrics: Metrics,
    pub marks: Marks,
    pub stop: Arc<AtomicBool>,
    /// Why a worker failed, if one did.
    failure: Mutex<Option<String>>,
    /// What each worker read of the flows it decided by their first payload.
    pub memories: Vec<Mutex<Memory>>,
    /// What the previous daemon read (from `--state`), and whether anything is left of it.
    pub restored: Mutex<Memory>,
    pub restored_any: AtomicBool,
    /// Milliseconds since `started` of each worker's last round, and the policy generation it runs.
    heartbeats: Vec<AtomicU64>,
    generations: Vec<AtomicU64>,
    pub log: Option<Sender<LogMsg>>,
    /// Which of the logs are written, indexed by [`Sink`]: lines for the others are not even made.
    pub sinks: [bool; logger::LOGS],
    /// Monotonic origin of the engine's time, and the wall-clock time at that origin (for logs).
    pub started: Instant,
    pub started_wall: SystemTime,
    /// Packets the kernel holds per queue: held packets may take at most half.
    pub queue_maxlen: u32,
    /// `--audit`: nothing is enforced.
    pub audit: bool,
}

/// Nanoseconds since the Unix epoch.
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Live {
    /// The wall clock at the daemon's start, in nanoseconds since the epoch: the engines' `now` counts
    /// from it.
    fn unix_start(&self) -> u64 {
        unix_nanos(self.started_wall)
    }

    /// Unix time now, as the engines see it.
    fn unix_now(&self) -> crate::Timestamp {
        crate::Timestamp::from_nanos(
            self.unix_start()
                .saturating_add(self.started.elapsed().as_nanos() as u64),
        )
    }

    /// The wall-clock time of `t` (engine time: since `started`, monotonic), reckoned back from the
    /// wall clock now, so a clock step since the start (NTP's first sync on a box without a clock, a
    /// laptop's suspend) does not shift it: the kernel's conntrack times, which the flow end lines
    /// carry, are read from the wall clock too.
    fn wall(&self, t: crate::Timestamp) -> String {
        let ago = self
            .started
            .elapsed()
            .saturating_sub(Duration::from_nanos(t.as_nanos()));
        let at = SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(self.started_wall);
        crate::log::rfc3339(crate::Timestamp::from_nanos(unix_nanos(at)))
    }

    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A worker's round: it is alive, and runs policy `generation`.
    fn beat(&self, index: usize, generation: u64) {
        if let (Some(h), Some(g)) = (self.heartbeats.get(index), self.generations.get(index)) {
            h.store(self.millis(), Relaxed);
            g.store(generation, Relaxed);
        }
    }

    fn workers_up(&self) -> Vec<bool> {
        let failed = self.failure().is_some();
        let now = self.millis();
        self.heartbeats
            .iter()
            .map(|h| !failed && now.saturating_sub(h.load(Relaxed)) <= UP.as_millis() as u64)
            .collect()
    }

    fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.policy.load(), &self.workers_up(), self.audit)
    }

    /// What a decided flow's packets get: its enforced action, or under `--audit` accepted.
    pub(crate) fn applied(&self, d: crate::Decision) -> crate::Action {
        if self.audit {
            crate::Action::ACCEPT
        } else {
            d.enforced_action()
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A worker failed: everything stops, so that the process ends and the fail mode applies.
    fn fail(&self, why: String) {
        eprintln!("outgate: {why}");
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.stop.store(true, Relaxed);
    }

    /// What a flow's first payload showed, if a worker (or the previous daemon) still knows it.
    fn recall(&self, key: &crate::flow::FlowKey) -> Option<crate::inspect::Payload> {
        let lock = |m: &Mutex<Memory>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned()
        };
        self.memories
            .iter()
            .find_map(lock)
            .or_else(|| lock(&self.restored))
    }

    /// Remembers what decided flow `rec` showed (or, decided without a payload, forgets what an earlier
    /// connection on its 4-tuple showed), in worker `index`'s memory.
    fn remember(&self, index: usize, rec: crate::flow::FlowRecord) {
        let Some(memory) = self.memories.get(index) else {
            return;
        };
        match rec.inspected {
            Some(i) => memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remember(rec.key, i.at, i.payload),
            None => {
                memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget(&rec.key);
                if self.restored_any.load(Relaxed) {
                    self.restored
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .forget(&rec.key);
                }
            }
        }
    }

    /// Waits (at most `patience`) until every worker that is up runs policy `generation`.
    fn wait_for_generation(&self, generation: u64, patience: Duration) {
        let until = Instant::now() + patience;
        while Instant::now() < until
            && self
                .generations
                .iter()
                .zip(self.workers_up())
                .any(|(g, up)| up && g.load(Relaxed) < generation)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Binds the queues and runs until `stop` is set (by the caller's signal handler) or a worker fails.
/// `requests` carries SIGHUP's reloads (the control socket adds `outgate try`'s). `ready` is called once
/// every queue is bound and the kernel's flows are held to the policy (systemd's READY=1).
pub fn run(
    policy: Policy,
    cfg: &RunConfig,
    stop: Arc<AtomicBool>,
    requests: (Sender<Request>, Receiver<Request>),
    ready: impl FnOnce(&Policy),
) -> Result<RunSummary, RunError> {
    // Before the queues: see `ends::open`.
    let ends = (cfg.flow_ends && cfg.log.is_some())
        .then(ends::open)
        .flatten();
    let mut queues = Vec::with_capacity(cfg.queues.len());
    for &queue_num in &cfg.queues {
        queues.push(bind(queue_num, cfg)?);
    }
    let log_dropped = Arc::new(AtomicU64::new(0));
    let logs = [
        cfg.log.clone(),
        cfg.http_log.clone(),
        cfg.tls_log.clone(),
        cfg.dns_log.clone(),
        cfg.icmp_log.clone(),
    ];
    let logger =
        logger::start(logs, log_dropped.clone()).map_err(|(path, source)| RunError::Log {
            path: path.display().to_string(),
            source,
        })?;
    let (log, log_thread) = logger.map_or((None, None), |(tx, t)| (Some(tx), Some(t)));
    let (started, started_wall) = (Instant::now(), SystemTime::now());
    let messages = cfg.dns_log.is_some() || cfg.icmp_log.is_some();
    let engine = Engine::new(policy)
        .with_clock(unix_nanos(started_wall))
        .with_messages(messages);
    let max_flows = engine.policy().options().flows.max_flows;
    let n = cfg.queues.len();
    let live = Arc::new(Live {
        policy: ArcSwap::from_pointee(InForce::new(engine, 1)),
        metrics: Metrics::new(cfg.queues.iter().copied(), log_dropped),
        marks: cfg.marks,
        stop,
        failure: Mutex::new(None),
        memories: (0..n).map(|_| Mutex::new(Memory::new(max_flows))).collect(),
        restored: Mutex::new(Memory::new(max_flows)),
        restored_any: AtomicBool::new(false),
        heartbeats: (0..n).map(|_| AtomicU64::new(0)).collect(),
        generations: (0..n).map(|_| AtomicU64::new(1)).collect(),
        log,
        sinks: [
            &cfg.log,
            &cfg.http_log,
            &cfg.tls_log,
            &cfg.dns_log,
            &cfg.icmp_log,
        ]
        .map(Option::is_some),
        started,
        started_wall,
        queue_maxlen: cfg.queue_maxlen,
        audit: cfg.audit,
    });
    reload::hold_at_start(&live, cfg.state.as_deref());
    if let Some(addr) = cfg.metrics {
        metrics::serve(addr, live.clone()).map_err(|source| RunError::Metrics { addr, source })?;
    }
    let control = match &cfg.control {
        Some(path) => Some(control::bind(path).map_err(|source| RunError::Control {
            path: path.display().to_string(),
            source,
        })?),
        None => None,
    };
    let (request_tx, reloads) = requests;
    ready(live.policy.load().engine.policy());
    std::thread::scope(|scope| {
        for (index, queue) in queues.iter_mut().enumerate() {
            let live = &live;
            scope.spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker::run(queue, index, live)
                }));
                let failed = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(why)) => Some(why),
                    Err(panic) => Some(
                        panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default(),
                    ),
                };
                if let Some(what) = failed {
                    live.fail(format!(
                        "the worker of NFQUEUE {} failed: {what}",
                        cfg.queues.get(index).copied().unwrap_or_default()
                    ));
                }
            });
        }
        scope.spawn(|| reload::serve(&live, &reloads, cfg));
        if let (Some(listener), Some(path)) = (&control, &cfg.control) {
            let (live, tx) = (&live, request_tx.clone());
            scope.spawn(move || control::serve(live, listener, path, &tx));
        }
        scope.spawn(|| supervise::watch(&live, cfg.ruleset.as_ref()));
        if let Some(ends) = ends {
            scope.spawn(|| ends::serve(&live, ends));
        }
    });
    for q in queues {
        // Closing the socket unbinds as well; an explicit unbind just says so to the kernel first.
        let _ = q.unbind();
    }
    if let (Some(path), None) = (&cfg.state, live.failure()) {
        reload::save_at_stop(&live, path);
    }
    if let (Some(log), Some(thread)) = (&live.log, log_thread) {
        let _ = log.send(LogMsg::Close);
        let _ = thread.join();
    }
    if let Some(why) = live.failure() {
        return Err(RunError::WorkerFailed(why));
    }
    let sum = |f: fn(&metrics::QueueCounters) -> u64| live.metrics.queues.iter().map(f).sum();
    Ok(RunSummary {
        packets: sum(|c| c.packets.load(Relaxed)),
        flows: sum(|c| c.flows_offloaded.load(Relaxed)),
    })
}

/// Binds one queue. Whole packets are copied: a policy with payload rules needs them, and a reload
/// may bring one.
fn bind(queue_num: u16, cfg: &RunConfig) -> Result<Queue, RunError> {
    let qc = QueueConfig {
        queue_num,
        copy_range: queue::MAX_COPY_RANGE,
        max_len: cfg.queue_maxlen,
        rcvbuf: cfg.rcvbuf,
        fail_open: cfg.fail_open,
        ..QueueConfig::default()
    };
    Queue::bind(&qc).map_err(|source| {
        let hint = match source {
            QueueError::PermissionDenied(_) => " (run as root, or with CAP_NET_ADMIN)",
            QueueError::QueueBusy { .. } => {
                " (is another outgate running? see /proc/net/netfilter/nfnetlink_queue)"
            }
            _ => "",
        };
        RunError::Bind {
            queue: queue_num,
            source,
            hint,
        }
    })
}

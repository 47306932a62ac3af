//! The live edge: bind the NFQUEUE queues, run one worker per queue, log and count, stop cleanly.
//!
//! Promises:
//! - Every packet that reaches the daemon gets exactly one verdict, also on shutdown: on SIGTERM/SIGINT
//!   the workers stop receiving only after the socket is empty, answer what they hold, then unbind.
//! - Nothing blocks a worker: counters are atomics, the flow log goes through a bounded channel whose
//!   overflow is counted, not waited on.
//! - Fail-open or fail-closed is one choice: with fail-open the queue's overflow is accepted by the kernel
//!   (NFQA_CFG_F_FAIL_OPEN) and the ruleset adds `--queue-bypass` (no daemon: traffic flows); with
//!   fail-closed both drop. A worker that dies closes its socket, which the kernel treats as "no daemon".
//!
//! `netlink` (the socket and the wire format) is the only module of the crate with `unsafe`; `queue` (NFQUEUE)
//! and `conntrack` (reading and re-marking the kernel's flows) are built on it. See `queue`'s header for why
//! the project carries its own netlink code instead of the nfq crate.

pub mod conntrack;
pub mod metrics;
#[allow(unsafe_code)]
mod netlink;
pub mod queue;
mod worker;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use crossbeam_channel::bounded;

use crate::Engine;
use crate::rules::Marks;
use metrics::Metrics;
use queue::{Queue, QueueConfig, QueueError};

/// The logs the daemon writes, in the order of [`RunConfig`]'s fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Flows = 0,
    Http = 1,
    Tls = 2,
}

fn open_log(target: &LogTarget) -> Result<Box<dyn Write + Send>, RunError> {
    Ok(match target {
        LogTarget::Stdout => Box::new(std::io::stdout()),
        LogTarget::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| RunError::Log {
                    path: p.display().to_string(),
                    source,
                })?,
        ),
    })
}

/// Where a log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

/// Settings of `outgate run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Queue numbers, one worker each.
    pub queues: Vec<u16>,
    pub fail_open: bool,
    /// Outgate's bits of the mark: the same as the ruleset's (`outgate rules --mark-mask`).
    pub marks: Marks,
    /// Bytes of each packet copied to userspace when no rule needs payload (else whole packets).
    pub copy_range: u32,
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
    pub metrics: Option<SocketAddr>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            queues: vec![0],
            fail_open: false,
            marks: Marks::DEFAULT,
            // IPv6 header with extension headers plus a full TCP header: enough for every port rule.
            copy_range: 256,
            queue_maxlen: 16_384,
            rcvbuf: 64 << 20,
            log: None,
            http_log: None,
            tls_log: None,
            metrics: None,
        }
    }
}

/// Why the daemon could not start.
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
}

/// What a run did, for the exit message.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub packets: u64,
    pub flows: u64,
}

/// Binds the queues and runs until `stop` is set (by the caller's signal handler).
/// `ready` is called once every queue is bound (systemd's READY=1).
pub fn run(
    engine: Arc<Engine>,
    cfg: &RunConfig,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> Result<RunSummary, RunError> {
    // Rules on HTTP hosts, SNI or the protocol spoken need whole packets; port rules only headers.
    let copy_range = if engine.policy().needs_payload() {
        queue::MAX_COPY_RANGE
    } else {
        cfg.copy_range
    };
    let mut queues = Vec::with_capacity(cfg.queues.len());
    for &queue_num in &cfg.queues {
        let qc = QueueConfig {
            queue_num,
            copy_range,
            max_len: cfg.queue_maxlen,
            rcvbuf: cfg.rcvbuf,
            fail_open: cfg.fail_open,
            ..QueueConfig::default()
        };
        let q = Queue::bind(&qc).map_err(|source| {
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
        })?;
        queues.push(q);
    }
    let metrics = Arc::new(Metrics::new(cfg.queues.iter().copied(), engine.policy()));
    if let Some(addr) = cfg.metrics {
        metrics::serve(addr, metrics.clone(), engine.clone())
            .map_err(|source| RunError::Metrics { addr, source })?;
    }
    // One logger thread writes every log; each line is tagged with its log.
    let targets = [&cfg.log, &cfg.http_log, &cfg.tls_log];
    let (log_tx, log_thread) = if targets.iter().all(|t| t.is_none()) {
        (None, None)
    } else {
        let mut outs: Vec<Option<std::io::BufWriter<Box<dyn Write + Send>>>> = Vec::new();
        for target in targets {
            outs.push(
                target
                    .as_ref()
                    .map(open_log)
                    .transpose()?
                    .map(std::io::BufWriter::new),
            );
        }
        let (tx, rx) = bounded::<(Sink, String)>(65_536);
        let thread = std::thread::spawn(move || {
            // Lines are flushed as the channel runs dry, so `tail -f` sees them promptly.
            while let Ok((sink, line)) = rx.recv() {
                if let Some(Some(w)) = outs.get_mut(sink as usize) {
                    let _ = writeln!(w, "{line}");
                }
                if rx.is_empty() {
                    for w in outs.iter_mut().flatten() {
                        let _ = w.flush();
                    }
                }
            }
            for w in outs.iter_mut().flatten() {
                let _ = w.flush();
            }
        });
        (Some(tx), Some(thread))
    };
    ready();
    let shared = worker::Shared {
        engine: &engine,
        marks: cfg.marks,
        metrics: &metrics,
        stop: &stop,
        log: log_tx,
        sinks: targets.map(|t| t.is_some()),
        started: Instant::now(),
        started_wall: SystemTime::now(),
    };
    std::thread::scope(|scope| {
        for (index, queue) in queues.iter_mut().enumerate() {
            let shared = &shared;
            scope.spawn(move || worker::run(queue, index, shared));
        }
    });
    for q in queues {
        // Closing the socket unbinds as well; an explicit unbind just says so to the kernel first.
        let _ = q.unbind();
    }
    drop(shared);
    if let Some(t) = log_thread {
        let _ = t.join();
    }
    let sum = |f: fn(&metrics::QueueCounters) -> u64| metrics.queues.iter().map(f).sum();
    Ok(RunSummary {
        packets: sum(|c| c.packets.load(std::sync::atomic::Ordering::Relaxed)),
        flows: sum(|c| c.flows_offloaded.load(std::sync::atomic::Ordering::Relaxed)),
    })
}

/// Tells systemd the service is ready (`Type=notify`), when started by it.
pub fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(abstract_name) => UnixAddr::from_abstract_name(abstract_name.as_bytes()),
        None => UnixAddr::from_pathname(&path),
    };
    if let (Ok(sock), Ok(addr)) = (UnixDatagram::unbound(), addr) {
        let _ = sock.send_to_addr(b"READY=1", &addr);
    }
}

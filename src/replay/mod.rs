//! The pcap edge: captures in, the engine's decisions out, as a report, flow lines and split captures.
//!
//! One reader thread (the caller's) reads records, strips the link layer and hands IP packets in batches
//! over bounded crossbeam channels to N workers, each with its own flow table. Packets are pinned to a
//! worker by a hash of their two addresses, so both directions of a flow, and all fragments of a datagram,
//! meet in one table: the verdicts are the same for any worker count (as long as no table reaches its
//! `max-flows` limit, whose evictions are reported).
//!
//! Several captures are replayed one after another as one stream, the way `tcpdump -C` splits one.
//! A capture that is corrupt part-way stops at the bad record, which is reported; what was read counts.

pub mod capture;
pub mod link;
pub mod report;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::flow::{FlowRecord, FlowTable, MessageRecord};
use crate::packet::dispatch_hash;
use crate::{Decision, Engine, Reason, Timestamp, Verdict};
use capture::{CaptureError, CaptureReader};
use link::network_layer;
pub use report::{Counters, ReplayReport};
use writer::CaptureWriter;

/// What to replay and what to write.
#[derive(Clone, Debug, Default)]
pub struct ReplayConfig {
    pub captures: Vec<PathBuf>,
    pub workers: usize,
    /// Keep every flow's record for [`ReplayReport::flows`] (`--flows`).
    pub keep_flows: bool,
    pub write_accepted: Option<PathBuf>,
    pub write_dropped: Option<PathBuf>,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// `--audit`: nothing is enforced; every packet counts as accepted, its decision as what would be.
    pub audit: bool,
}

/// Errors that stop a replay before it starts or while writing its outputs.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file that cannot be opened or is not a capture (the error names it).
    #[error("{0}")]
    Capture(#[from] CaptureError),
    /// A capture damaged in its header: the error names the record, this the file.
    #[error("{}: {source}", path.display())]
    Damaged { path: PathBuf, source: CaptureError },
    #[error("{path}: {message}")]
    Write { path: String, message: String },
}

const BATCH: usize = 512;
const BATCH_BYTES: usize = 512 * 1024;

struct Item {
    start: u32,
    len: u32,
    ts: Timestamp,
    seq: u64,
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    items: Vec<Item>,
}

impl Batch {
    fn push(&mut self, ip: &[u8], ts: Timestamp, seq: u64) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(ip);
        self.items.push(Item {
            start,
            len: ip.len() as u32,
            ts,
            seq,
        });
    }

    fn is_full(&self) -> bool {
        self.items.len() >= BATCH || self.data.len() >= BATCH_BYTES
    }
}

/// One worker's state: its flow table and what it has counted.
struct Worker<'e> {
    engine: &'e Engine,
    table: FlowTable,
    keep_flows: bool,
    keep_verdicts: bool,
    out: WorkerOutput,
}

/// What one worker hands back at the end.
struct WorkerOutput {
    counters: Counters,
    flows: Vec<FlowRecord>,
    messages: Vec<MessageRecord>,
    /// (packet seq, verdict), kept only when packets are to be written out.
    verdicts: Vec<(u64, Verdict)>,
}

impl WorkerOutput {
    fn count(&mut self, seq: u64, decision: Decision, keep_verdict: bool) {
        self.counters.count_packet(decision);
        if keep_verdict {
            // The split captures get what the packet got.
            self.verdicts
                .push((seq, self.counters.applied(decision).verdict));
        }
    }
}

impl<'e> Worker<'e> {
    fn new(engine: &'e Engine, cfg: &ReplayConfig, keep_verdicts: bool) -> Worker<'e> {
        let keep_flows = cfg.keep_flows;
        let mut table = engine.new_flow_table();
        table.keep_finished(true);
        // The DNS and ICMP logs' messages come with the flows' records (see Engine::with_messages).
        table.keep_messages(keep_flows && engine.per_message());
        let out = WorkerOutput {
            counters: Counters {
                audit: cfg.audit,
                ..Counters::default()
            },
            flows: Vec::new(),
            messages: Vec::new(),
            verdicts: Vec::new(),
        };
        Worker {
            engine,
            table,
            keep_flows,
            keep_verdicts,
            out,
        }
    }

    fn decide(&mut self, ip: &[u8], ts: Timestamp, seq: u64) {
        let decision = self.engine.decide(&mut self.table, ip, ts, seq);
        // Packets held back until their flow was decided get its decision now, before this one.
        if self.table.has_released() {
            self.absorb_released();
        }
        if decision.reason != Reason::Held {
            self.out.count(seq, decision, self.keep_verdicts);
        }
    }

    /// Counts the held packets whose flows were decided.
    fn absorb_released(&mut self) {
        for (seq, decision) in self.table.drain_released() {
            self.out.count(seq, decision, self.keep_verdicts);
        }
    }

    /// Counts (and keeps, if asked) the flows that left the table.
    fn absorb_finished(&mut self) {
        self.out.messages.extend(self.table.drain_messages());
        for rec in self.table.drain_finished() {
            self.out.counters.count_flow(&rec);
            if self.keep_flows {
                self.out.flows.push(rec);
            }
        }
    }

    fn finish(mut self) -> WorkerOutput {
        self.table.finish_all();
        self.absorb_released();
        self.absorb_finished();
        self.out.counters.flow_table = self.table.stats();
        self.out
    }
}

/// A worker thread: decides the batches it is sent, hands the empty batches back for reuse.
fn worker_thread(
    mut w: Worker<'_>,
    input: Receiver<Batch>,
    recycle: Sender<Batch>,
) -> WorkerOutput {
    for mut batch in input {
        for item in &batch.items {
            let start = item.start as usize;
            let ip = batch
                .data
                .get(start..start + item.len as usize)
                .unwrap_or(&[]);
            w.decide(ip, item.ts, item.seq);
        }
        w.absorb_finished();
        batch.items.clear();
        batch.data.clear();
        // The reader may have finished already; then the batch is simply dropped.
        let _ = recycle.send(batch);
    }
    w.finish()
}

/// Replays the captures through `engine`.
pub fn replay(engine: &Engine, cfg: &ReplayConfig) -> Result<ReplayReport, ReplayError> {
    // Open every capture first: a missing or non-capture file fails the run before any work.
    let mut readers = cfg
        .captures
        .iter()
        .map(|p| open_capture(p))
        .collect::<Result<Vec<_>, _>>()?;
    let workers = cfg.workers.max(1);
    let keep_verdicts = cfg.write_accepted.is_some() || cfg.write_dropped.is_some();
    let started = Instant::now();
    let progress = report::Progress::new(cfg.progress);

    let mut report = ReplayReport::new(cfg, workers);
    let outputs: Vec<WorkerOutput> = if workers == 1 {
        // One worker decides inline on the reading thread: no channel, no copy of the packet.
        let mut w = Worker::new(engine, cfg, keep_verdicts);
        let mut seq = 0u64;
        for (path, reader) in cfg.captures.iter().zip(readers.iter_mut()) {
            read_capture(path, reader, &mut report, &mut seq, |ip, ts, seq| {
                w.decide(ip, ts, seq);
                if seq % BATCH as u64 == 0 {
                    w.absorb_finished();
                }
                progress.tick(seq);
            });
        }
        vec![w.finish()]
    } else {
        dispatch(
            engine,
            cfg,
            workers,
            keep_verdicts,
            &mut readers,
            &mut report,
            &progress,
        )
    };
    progress.finish();

    let mut verdicts: Vec<(u64, Verdict)> = Vec::new();
    for out in outputs {
        report.counters.merge(&out.counters);
        report.flows.extend(out.flows);
        report.messages.extend(out.messages);
        verdicts.extend(out.verdicts);
    }
    report.flows.sort_by_key(|r| (r.flow.first_seq, r.key));
    report.messages.sort_by_key(|m| m.seq);
    if keep_verdicts {
        verdicts.sort_unstable_by_key(|&(seq, _)| seq);
        write_split(cfg, &verdicts)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The reader's side with several workers: dispatch by address hash in batches, then collect.
fn dispatch(
    engine: &Engine,
    cfg: &ReplayConfig,
    workers: usize,
    keep_verdicts: bool,
    readers: &mut [CaptureReader],
    report: &mut ReplayReport,
    progress: &report::Progress,
) -> Vec<WorkerOutput> {
    std::thread::scope(|scope| {
        let (recycle_tx, recycle_rx) = unbounded::<Batch>();
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = bounded::<Batch>(8);
            let w = Worker::new(engine, cfg, keep_verdicts);
            let recycle = recycle_tx.clone();
            senders.push(tx);
            handles.push(scope.spawn(move || worker_thread(w, rx, recycle)));
        }
        drop(recycle_tx);
        let mut pending: Vec<Batch> = (0..workers).map(|_| Batch::default()).collect();
        let mut seq = 0u64;
        for (path, reader) in cfg.captures.iter().zip(readers.iter_mut()) {
            read_capture(path, reader, report, &mut seq, |ip, ts, seq| {
                let w = (dispatch_hash(ip) % workers as u64) as usize;
                pending[w].push(ip, ts, seq);
                if pending[w].is_full() {
                    let fresh = recycle_rx.try_recv().unwrap_or_default();
                    let full = std::mem::replace(&mut pending[w], fresh);
                    // A worker only stops when its channel closes, so a send can only fail if it
                    // panicked; the join below reports that.
                    let _ = senders[w].send(full);
                }
                progress.tick(seq);
            });
        }
        for (w, batch) in pending.into_iter().enumerate() {
            if !batch.items.is_empty() {
                let _ = senders[w].send(batch);
            }
        }
        drop(senders);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Opens a capture; an error about a record (a damaged header) is given the file's name too.
fn open_capture(path: &Path) -> Result<CaptureReader, ReplayError> {
    CaptureReader::open(path).map_err(|e| match e.record() {
        Some(_) => ReplayError::Damaged {
            path: path.to_path_buf(),
            source: e,
        },
        None => ReplayError::Capture(e),
    })
}

/// Reads one capture to its end or its first bad record, feeding IP packets to `dispatch`.
fn read_capture(
    path: &Path,
    reader: &mut CaptureReader,
    report: &mut ReplayReport,
    seq: &mut u64,
    mut dispatch: impl FnMut(&[u8], Timestamp, u64),
) {
    while let Some(record) = reader.next_record() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(format!("{}: {e}", path.display()));
                return;
            }
        };
        report.counters.records += 1;
        match network_layer(record.link, record.data) {
            Ok(ip) => dispatch(ip, record.ts, *seq),
            Err(e) => report.counters.count_unsupported(e, record.link),
        }
        *seq += 1;
    }
}

/// The second pass of `--write-accepted` / `--write-dropped`: copies each decided packet to its file.
fn write_split(cfg: &ReplayConfig, verdicts: &[(u64, Verdict)]) -> Result<(), ReplayError> {
    let open = |p: &Option<PathBuf>| -> Result<Option<CaptureWriter>, ReplayError> {
        p.as_ref()
            .map(|p| CaptureWriter::create(p).map_err(|e| write_error(p, e)))
            .transpose()
    };
    let (mut accepted, mut dropped) = (open(&cfg.write_accepted)?, open(&cfg.write_dropped)?);
    let mut next = verdicts.iter().peekable();
    let mut seq = 0u64;
    for path in &cfg.captures {
        let mut reader = open_capture(path)?;
        while let Some(Ok(record)) = reader.next_record() {
            let this = seq;
            seq += 1;
            let Ok(ip) = network_layer(record.link, record.data) else {
                continue;
            };
            let Some(&&(s, verdict)) = next.peek() else {
                break;
            };
            if s != this {
                continue;
            }
            next.next();
            let out = match verdict {
                Verdict::Accept | Verdict::Shape => {
                    accepted.as_mut().map(|w| (w, &cfg.write_accepted))
                }
                Verdict::Drop | Verdict::Reject => {
                    dropped.as_mut().map(|w| (w, &cfg.write_dropped))
                }
            };
            if let Some((w, p)) = out {
                // The file holds the IP packet only: its original length loses the link header too.
                let link_len = record.data.len().saturating_sub(ip.len()) as u32;
                w.write(record.ts, ip, record.orig_len.saturating_sub(link_len))
                    .map_err(|e| write_error(p.as_deref().unwrap_or(path), e))?;
            }
        }
    }
    for (w, p) in [
        (accepted, &cfg.write_accepted),
        (dropped, &cfg.write_dropped),
    ] {
        if let (Some(w), Some(p)) = (w, p) {
            w.finish().map_err(|e| write_error(p, e))?;
        }
    }
    Ok(())
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

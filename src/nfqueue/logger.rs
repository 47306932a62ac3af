//! The logger thread: every log the daemon writes goes through it, so no worker ever waits on a disk.
//!
//! Workers hand lines over a bounded channel with `try_send`; a line the channel cannot take is counted
//! (`outgate_log_lines_dropped_total`), never waited for; so is a line the logger cannot write (a full
//! disk), which is said once on stderr, as is the log's recovery. `Reopen` (sent on SIGHUP) closes and
//! reopens every file, for logrotate; a file that cannot be reopened keeps the old handle and says so
//! on stderr. `Close` ends the thread once every line before it is written.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

/// The logs the daemon writes, in the order of `RunConfig`'s fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Flows = 0,
    Http = 1,
    Tls = 2,
    Dns = 3,
    Icmp = 4,
}

/// How many logs there are: one per [`Sink`].
pub const LOGS: usize = 5;

/// Where a log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

/// What the logger is sent.
pub(crate) enum LogMsg {
    Line(Sink, String),
    /// Close and reopen the log files (logrotate moved them).
    Reopen,
    /// Write what is left and end (the daemon stops).
    Close,
}

/// Lines waiting for the disk; past this, lines are dropped and counted.
const BACKLOG: usize = 65_536;

fn open(target: &LogTarget) -> std::io::Result<Box<dyn Write + Send>> {
    let out: Box<dyn Write + Send> = match target {
        LogTarget::Stdout => Box::new(std::io::stdout()),
        LogTarget::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
    };
    Ok(out)
}

/// The running logger: where to send lines, and the thread to join once `Close` is sent.
pub(super) type Logger = (Sender<LogMsg>, JoinHandle<()>);

/// Opens the logs and starts the logger. `None` when no log is asked for. An unopenable file is an
/// error naming it. Lines the logger cannot write (a full disk, a closed pipe) are added to `dropped`.
pub(super) fn start(
    targets: [Option<LogTarget>; LOGS],
    dropped: Arc<AtomicU64>,
) -> Result<Option<Logger>, (PathBuf, std::io::Error)> {
    if targets.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut outs = Vec::with_capacity(targets.len());
    for target in &targets {
        let out = match target {
            Some(t) => Some(Out::new(open(t).map_err(|e| (path_of(t), e))?)),
            None => None,
        };
        outs.push(out);
    }
    let (tx, rx) = bounded::<LogMsg>(BACKLOG);
    let thread = std::thread::Builder::new()
        .name("outgate-log".into())
        .spawn(move || write_lines(&rx, &targets, outs, &dropped))
        .map_err(|e| (PathBuf::from("<logger thread>"), e))?;
    Ok(Some((tx, thread)))
}

fn path_of(t: &LogTarget) -> PathBuf {
    match t {
        LogTarget::Stdout => PathBuf::from("-"),
        LogTarget::File(p) => p.clone(),
    }
}

/// Bytes gathered before a write.
const CHUNK: usize = 64 * 1024;

/// One log: lines gathered in `buf` and written whole, so that a failed write is counted in lines.
struct Out {
    file: Box<dyn Write + Send>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    /// Lines dropped since the log last failed, while it fails.
    failing: Option<u64>,
}

impl Out {
    fn new(file: Box<dyn Write + Send>) -> Out {
        Out {
            file,
            buf: Vec::with_capacity(CHUNK),
            lines: 0,
            failing: None,
        }
    }

    fn push(&mut self, line: &str, target: &LogTarget, dropped: &AtomicU64) {
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.lines += 1;
        if self.buf.len() >= CHUNK {
            self.write(target, dropped);
        }
    }

    /// Writes what is gathered. On failure its lines are dropped and counted (some of their bytes may
    /// have reached the file), and the failure is said once, as is the end of it.
    fn write(&mut self, target: &LogTarget, dropped: &AtomicU64) {
        if self.buf.is_empty() {
            return;
        }
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.flush());
        match (result, self.failing) {
            (Ok(()), Some(lost)) => {
                eprintln!(
                    "outgate: {}: the log is written again ({lost} lines were dropped)",
                    path_of(target).display()
                );
                self.failing = None;
            }
            (Ok(()), None) => {}
            (Err(e), failing) => {
                dropped.fetch_add(self.lines, Relaxed);
                if failing.is_none() {
                    eprintln!(
                        "outgate: {}: cannot write the log ({e}); its lines are dropped and counted \
                         (outgate_log_lines_dropped_total) until it can",
                        path_of(target).display()
                    );
                }
                self.failing = Some(failing.unwrap_or(0) + self.lines);
            }
        }
        self.buf.clear();
        self.lines = 0;
    }
}

fn write_lines(
    rx: &Receiver<LogMsg>,
    targets: &[Option<LogTarget>; LOGS],
    mut outs: Vec<Option<Out>>,
    dropped: &AtomicU64,
) {
    let write_all = |outs: &mut Vec<Option<Out>>| {
        for (out, target) in outs.iter_mut().zip(targets) {
            if let (Some(w), Some(t)) = (out.as_mut(), target) {
                w.write(t, dropped);
            }
        }
    };
    // Lines are written as the channel runs dry, so `tail -f` sees them promptly.
    while let Ok(msg) = rx.recv() {
        match msg {
            LogMsg::Line(sink, line) => {
                if let (Some(Some(w)), Some(Some(t))) =
                    (outs.get_mut(sink as usize), targets.get(sink as usize))
                {
                    w.push(&line, t, dropped);
                }
            }
            LogMsg::Close => break,
            LogMsg::Reopen => {
                write_all(&mut outs);
                for (out, target) in outs.iter_mut().zip(targets) {
                    if let (Some(w), Some(t @ LogTarget::File(_))) = (out.as_mut(), target) {
                        match open(t) {
                            Ok(fresh) => w.file = fresh,
                            Err(e) => eprintln!(
                                "outgate: {}: cannot reopen the log, writing on to the old file: {e}",
                                path_of(t).display()
                            ),
                        }
                    }
                }
            }
        }
        if rx.is_empty() {
            write_all(&mut outs);
        }
    }
    write_all(&mut outs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_their_files_and_reopen_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows.jsonl");
        let (tx, thread) = start(
            [Some(LogTarget::File(flows.clone())), None, None, None, None],
            Arc::default(),
        )
        .unwrap()
        .unwrap();
        tx.send(LogMsg::Line(Sink::Flows, "one".into())).unwrap();
        tx.send(LogMsg::Line(Sink::Http, "nowhere".into())).unwrap();
        // logrotate: the file is moved away, then the daemon is told.
        let rotated = dir.path().join("flows.jsonl.1");
        while std::fs::read_to_string(&flows).unwrap_or_default() != "one\n" {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::fs::rename(&flows, &rotated).unwrap();
        tx.send(LogMsg::Reopen).unwrap();
        tx.send(LogMsg::Line(Sink::Flows, "two".into())).unwrap();
        drop(tx);
        thread.join().unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&flows).unwrap(), "two\n");
    }

    #[test]
    fn an_unwritable_log_is_an_error_naming_it() {
        let err = start(
            [
                None,
                Some(LogTarget::File("/nonexistent/dir/http.jsonl".into())),
                None,
                None,
                None,
            ],
            Arc::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err.0, PathBuf::from("/nonexistent/dir/http.jsonl"));
    }
}

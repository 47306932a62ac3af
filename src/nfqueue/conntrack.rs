//! ctnetlink client: read every conntrack entry of a network namespace, and rewrite bits of their marks,
//! so that a policy reload can re-decide the flows already in the kernel.
//!
//! Promises:
//! - Kernel messages are read bounds-checked and never panic; an entry that does not read is counted in
//!   [`Dump::unreadable`], never fatal.
//! - [`Conntrack::set_mark`] and [`Conntrack::set_marks`] change only the bits of `mask`, whatever the
//!   value holds outside them.
//! - Updates do not wait a round trip each: [`Conntrack::set_marks`] sends them hundreds to a `send()`,
//!   matches the kernel's answers by sequence number, and sends again (updates are idempotent) the few
//!   whose answer the kernel had no room to deliver, so every update is counted once: updated, gone or
//!   failed.
//!
//! The socket belongs to the network namespace of the thread that opens it, like the queues: the daemon
//! runs in the namespace of the flows it filters. Reading and writing needs CAP_NET_ADMIN there.

mod ends;
mod wire;

pub use ends::{Ends, EndsRead, parse_ends_datagram};

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use super::netlink::{
    Event, MAX_SEND, Messages, NLMSG_DONE, NLMSG_ERROR, Next, Slots, Socket, SysError,
};
use wire::{IPCTNL_MSG_CT_NEW, UPDATE_MAX_LEN};

/// One direction of a connection as conntrack keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 47 GRE, ...).
    pub proto: u8,
    /// Ports for TCP, UDP, UDP-Lite, SCTP and DCCP, the keys for GRE; 0 for the others.
    pub sport: u16,
    pub dport: u16,
    /// For ICMP and ICMPv6 (and only those).
    pub icmp: Option<IcmpTuple>,
}

/// What identifies an ICMP or ICMPv6 flow: an echo's type, code and identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpTuple {
    pub icmp_type: u8,
    pub code: u8,
    pub id: u16,
}

/// A conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The direction of the first packet.
    pub orig: Tuple,
    /// The direction of the answers (always given by the kernel).
    pub reply: Option<Tuple>,
    /// For an expected connection (an FTP data channel, say), the original tuple of the connection that
    /// expected it.
    pub master: Option<Tuple>,
    pub mark: u32,
    /// The kernel's id of the entry (CTA_ID).
    pub id: Option<u32>,
    /// The zone the original tuple is looked up in (0: the default zone).
    pub zone: u16,
    /// IPS_* bits of `linux/netfilter/nf_conntrack_common.h` (2 SEEN_REPLY, 4 ASSURED, ...).
    pub status: u32,
    /// Packets and bytes per direction: only for an entry that began while `net.netfilter.nf_conntrack_acct`
    /// was 1.
    pub counters: Option<Counters>,
    /// When the entry began and ended, nanoseconds since the Unix epoch: only for an entry that began
    /// while `net.netfilter.nf_conntrack_timestamp` was 1; `stop` only once it ended.
    pub start: Option<u64>,
    pub stop: Option<u64>,
}

/// Packets and bytes of a conntrack entry (CTA_COUNTERS_ORIG and CTA_COUNTERS_REPLY), IP headers
/// included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sent in the original direction (by the initiator).
    pub orig_packets: u64,
    pub orig_bytes: u64,
    /// Sent in the reply direction.
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

/// Every entry a dump read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    pub entries: Vec<Entry>,
    /// Entries that did not read, and datagrams whose rest did not (each counted once).
    pub unreadable: u64,
}

/// What [`Conntrack::set_marks`] did, one count per update asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetMarks {
    pub updated: u64,
    /// The entry was no longer there (ENOENT).
    pub gone: u64,
    /// The kernel refused the update, or its answer never came (then counted with ENOBUFS).
    pub failed: u64,
    /// The errno of the last failure.
    pub last_errno: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("{op}: {err}")]
    Io { op: &'static str, err: io::Error },
    #[error("the kernel refused the {op}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { op: &'static str, errno: i32 },
    /// The kernel dropped part of a dump for lack of room in the socket's receive buffer; a new dump
    /// may succeed.
    #[error("the conntrack dump lost messages (netlink receive buffer overrun)")]
    Overrun,
    #[error("unreadable answer from the kernel: {0}")]
    Protocol(&'static str),
}

impl From<SysError> for ConntrackError {
    fn from(e: SysError) -> Self {
        ConntrackError::Io {
            op: e.op,
            err: e.err,
        }
    }
}

/// How long to wait for the next answer of the kernel.
const PATIENCE: Duration = Duration::from_secs(5);

/// The receive buffer asked for. The answers to a window of updates wait there until they are read.
const RCVBUF: usize = 4 << 20;

/// Room one answer to an update takes in the receive buffer (its socket buffer's truesize): 832 bytes
/// on Linux 6.18 x86-64, the Rmem of /proc/net/netlink with 200 answers queued over 200. Twice that,
/// for margin.
const ANSWER_COST: usize = 2 * 832;

/// A dump datagram is at most 32 KiB: netlink_dump() allocates the size of the largest read so far,
/// capped at 32 KiB less the skb overhead (netlink_recvmsg()).
const DUMP_SLOT: usize = 32 << 10;

/// An answer to an update is 36 bytes with NETLINK_CAP_ACK, 36 plus the request (at most
/// [`UPDATE_MAX_LEN`]) without.
const ANSWER_SLOT: usize = 256;

/// Times an update whose answer was lost is sent again.
const RETRIES: usize = 3;

/// A ctnetlink socket.
#[derive(Debug)]
pub struct Conntrack {
    sock: Socket,
    seq: u32,
    /// Updates per `send()`: as many as the receive buffer holds the answers of (twice over), and as a
    /// send takes.
    window: usize,
    dump_slots: Slots,
    answer_slots: Slots,
    txbuf: Vec<u8>,
}

impl Conntrack {
    /// Opens a ctnetlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Conntrack, ConntrackError> {
        let sock = Socket::open(libc::NETLINK_NETFILTER)?;
        let rcvbuf = sock.set_rcvbuf(RCVBUF)?;
        let window = (rcvbuf / 2 / ANSWER_COST).clamp(1, MAX_SEND / UPDATE_MAX_LEN);
        Ok(Conntrack {
            sock,
            seq: 0,
            window,
            dump_slots: Slots::new(DUMP_SLOT, 8),
            answer_slots: Slots::new(ANSWER_SLOT, window),
            txbuf: Vec::with_capacity(MAX_SEND),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Every entry of this network namespace, both families, in one dump (the kernel answers in many
    /// datagrams, ended by NLMSG_DONE). The kernel walks its table while flows come and go: an entry
    /// created or deleted during the dump may be missing from it.
    pub fn dump(&mut self) -> Result<Dump, ConntrackError> {
        let seq = self.next_seq();
        self.txbuf.clear();
        wire::put_dump(&mut self.txbuf, seq);
        let mut reader = DumpReader::new(seq);
        self.sock
            .exchange(&mut self.dump_slots, &self.txbuf, PATIENCE, |event| {
                reader.on(event)
            })?;
        reader.finish()
    }

    /// Sets the bits `mask` of the entry's mark to those of `value` (the other bits stay), finding the
    /// entry by its original tuple and zone. `Ok(false)` when the entry is gone (ENOENT). The kernel does
    /// not check the entry's id on an update (see `put_update` in conntrack/wire.rs for what it does):
    /// if the connection ended and a new one took the same tuple, the new one is updated.
    pub fn set_mark(
        &mut self,
        entry: &Entry,
        value: u32,
        mask: u32,
    ) -> Result<bool, ConntrackError> {
        let mut answer = 0;
        self.update(&[(entry, value)], mask, |errno| answer = errno)?;
        match answer {
            0 => Ok(true),
            libc::ENOENT => Ok(false),
            errno => Err(ConntrackError::Kernel {
                op: "conntrack mark update",
                errno,
            }),
        }
    }

    /// [`Conntrack::set_mark`] for many entries (each with its value, all with the same mask), without
    /// a round trip each. An error is returned only when the socket fails or the kernel stops answering;
    /// what the kernel refuses is counted.
    pub fn set_marks(
        &mut self,
        updates: &[(&Entry, u32)],
        mask: u32,
    ) -> Result<SetMarks, ConntrackError> {
        let mut done = SetMarks::default();
        self.update(updates, mask, |errno| match errno {
            0 => done.updated += 1,
            libc::ENOENT => done.gone += 1,
            errno => {
                done.failed += 1;
                done.last_errno = Some(errno);
            }
        })?;
        Ok(done)
    }

    /// Sends the updates a window at a time and calls `answered(errno)` once per update (0 for done,
    /// ENOBUFS for an answer still missing after the retries).
    fn update(
        &mut self,
        updates: &[(&Entry, u32)],
        mask: u32,
        mut answered: impl FnMut(i32),
    ) -> Result<(), ConntrackError> {
        let mut todo: Vec<usize> = (0..updates.len()).collect();
        for _ in 0..=RETRIES {
            let mut unanswered = Vec::new();
            let mut rest = &todo[..];
            while !rest.is_empty() {
                let (window, more) = rest.split_at(self.window.min(rest.len()));
                rest = more;
                let first = self.seq.wrapping_add(1);
                self.txbuf.clear();
                for &i in window {
                    let seq = self.next_seq();
                    let (entry, value) = updates[i];
                    wire::put_update(&mut self.txbuf, seq, entry, value, mask);
                }
                let mut answers = Answers::new(first, window.len());
                self.sock
                    .exchange(&mut self.answer_slots, &self.txbuf, PATIENCE, |event| {
                        answers.on(event)
                    })?;
                if answers.lost {
                    // The receive buffer held fewer answers than it should: send fewer at a time.
                    self.window = (self.window / 2).max(1);
                }
                for (&i, answer) in window.iter().zip(answers.errnos) {
                    match answer {
                        Some(errno) => answered(errno),
                        None => unanswered.push(i),
                    }
                }
            }
            if unanswered.is_empty() {
                return Ok(());
            }
            todo = unanswered;
        }
        todo.iter().for_each(|_| answered(libc::ENOBUFS));
        Ok(())
    }
}

/// Reads one datagram as an answer to a dump request whose sequence number its first message carries,
/// the way [`Conntrack::dump`] reads what the socket receives. Public for the fuzz targets (`fuzz/`),
/// which feed it arbitrary bytes as if the kernel had sent them.
pub fn parse_dump_datagram(datagram: &[u8]) -> Dump {
    let mut msgs = Messages::new(datagram).peekable();
    let seq = msgs.peek().and_then(|m| m.ok()).map_or(0, |m| m.seq);
    let mut reader = DumpReader::new(seq);
    for msg in msgs {
        let event = msg.map_or(Event::Malformed, Event::Msg);
        if reader.on(event) == Next::Done {
            break;
        }
    }
    reader.dump
}

/// Collects the answer to one dump request from what the socket receives.
struct DumpReader {
    seq: u32,
    dump: Dump,
    /// The errno of NLMSG_DONE (0: complete) or of an NLMSG_ERROR; `Some(None)` when unreadable.
    end: Option<Option<i32>>,
    lost: bool,
}

impl DumpReader {
    fn new(seq: u32) -> Self {
        DumpReader {
            seq,
            dump: Dump::default(),
            end: None,
            lost: false,
        }
    }

    fn on(&mut self, event: Event<'_>) -> Next {
        match event {
            // What is left of an earlier dump that failed half-way.
            Event::Msg(m) if m.seq != self.seq => {}
            Event::Msg(m) if m.ty == IPCTNL_MSG_CT_NEW => match wire::parse_entry(m) {
                Some(entry) => self.dump.entries.push(entry),
                None => self.dump.unreadable += 1,
            },
            Event::Msg(m) if m.ty == NLMSG_DONE || m.ty == NLMSG_ERROR => {
                self.end = Some(m.errno());
                return Next::Done;
            }
            Event::Msg(_) | Event::Idle => {}
            Event::Malformed | Event::Truncated => self.dump.unreadable += 1,
            // Read on to NLMSG_DONE all the same, so the next dump finds the socket idle.
            Event::Overrun => self.lost = true,
        }
        Next::More
    }

    fn finish(self) -> Result<Dump, ConntrackError> {
        match self.end {
            _ if self.lost => Err(ConntrackError::Overrun),
            Some(Some(0)) => Ok(self.dump),
            Some(Some(errno)) => Err(ConntrackError::Kernel {
                op: "conntrack dump",
                errno,
            }),
            _ => Err(ConntrackError::Protocol("the end of a conntrack dump")),
        }
    }
}

/// Collects the answers to a window of updates, whose sequence numbers start at `first`.
struct Answers {
    first: u32,
    errnos: Vec<Option<i32>>,
    left: usize,
    lost: bool,
}

impl Answers {
    fn new(first: u32, count: usize) -> Self {
        Answers {
            first,
            errnos: vec![None; count],
            left: count,
            lost: false,
        }
    }

    fn on(&mut self, event: Event<'_>) -> Next {
        match event {
            Event::Msg(m) if m.ty == NLMSG_ERROR => {
                let k = m.seq.wrapping_sub(self.first) as usize;
                if let Some(answer) = self.errnos.get_mut(k)
                    && answer.is_none()
                    && let Some(errno) = m.errno()
                {
                    *answer = Some(errno);
                    self.left -= 1;
                }
            }
            // An answer dropped by the kernel, or one that did not read (never seen from Linux).
            Event::Overrun | Event::Malformed | Event::Truncated => self.lost = true,
            // The kernel ran every request inside send() and queued each answer then (Socket::send in
            // netlink.rs): once the socket is drained after a loss, a missing answer is lost.
            Event::Idle if self.lost => return Next::Done,
            _ => {}
        }
        if self.left == 0 {
            Next::Done
        } else {
            Next::More
        }
    }
}

#[cfg(test)]
mod tests;

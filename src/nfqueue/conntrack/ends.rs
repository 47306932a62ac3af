//! The kernel's word that a flow ended: ctnetlink destroy events (multicast group
//! NFNLGRP_CONNTRACK_DESTROY), each a conntrack entry as it was at its end, with its counters and
//! timestamps when the kernel keeps them (`net.netfilter.nf_conntrack_acct`,
//! `net.netfilter.nf_conntrack_timestamp`).
//!
//! Promises:
//! - Events are read bounds-checked and never panic; one that does not read is counted, never fatal.
//! - Nothing is waited on longer than the caller's timeout, so a caller can look at a stop flag.
//! - Events the kernel could not deliver (the receive buffer was full: ENOBUFS) are counted as
//!   overruns. The kernel says that some were lost, not how many.
//!
//! Only the kernel, or a process with CAP_NET_ADMIN in the namespace (which could as well rewrite
//! the marks themselves), sends to a netfilter multicast group or to another socket's port: nfnetlink
//! does not allow it otherwise (netlink_sendmsg(), NL_CFG_F_NONROOT_SEND).

use std::time::Duration;

use super::super::netlink::{Messages, Slots, Socket};
use super::wire::{self, IPCTNL_MSG_CT_DELETE};
use super::{ConntrackError, Entry};

/// NFNLGRP_CONNTRACK_DESTROY of `linux/netfilter/nfnetlink.h`.
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// The receive buffer asked for (the kernel doubles it for its bookkeeping: 128 MiB, some 100,000
/// events at a truesize of about 1 KiB each, taken only while events wait). The kernel's garbage
/// collection reaps expired entries in batches, and each is an event at once: 16 MiB asked overran 5
/// times in a 90 s soak of 11,000 new UDP flows a second (HARDENING.md, "Soak").
const RCVBUF: usize = 64 << 20;

/// An event is one message of at most a few hundred bytes (ctnetlink_nlmsg_size()).
const SLOT: usize = 2048;
const SLOTS: usize = 64;
/// Receives per [`Ends::read`] at most: 4,096 events.
const BATCHES: usize = 64;

/// What one [`Ends::read`] saw besides the entries it handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndsRead {
    /// Entries handed to the caller.
    pub ended: u64,
    /// Events or datagrams that did not read.
    pub unreadable: u64,
    /// Times the kernel dropped events for lack of room in the receive buffer.
    pub overruns: u64,
}

/// A socket subscribed to the conntrack destroy events of the calling thread's network namespace.
#[derive(Debug)]
pub struct Ends {
    sock: Socket,
    slots: Slots,
}

impl Ends {
    /// Opens a ctnetlink socket and joins the destroy events. Needs CAP_NET_ADMIN.
    pub fn open() -> Result<Ends, ConntrackError> {
        let sock = Socket::open(libc::NETLINK_NETFILTER)?;
        sock.set_rcvbuf(RCVBUF)?;
        sock.join_group(NFNLGRP_CONNTRACK_DESTROY)?;
        Ok(Ends {
            sock,
            slots: Slots::new(SLOT, SLOTS),
        })
    }

    /// Waits up to `timeout` for events, then hands `on` every entry that ended, until the socket is
    /// empty or `BATCHES` receives were read (so a caller looks at its stop flag even while a
    /// flushed table's events pour in).
    pub fn read(
        &mut self,
        timeout: Duration,
        mut on: impl FnMut(Entry),
    ) -> Result<EndsRead, ConntrackError> {
        let mut seen = EndsRead::default();
        if !self.sock.poll(timeout)? {
            return Ok(seen);
        }
        for _ in 0..BATCHES {
            let n = match self.sock.recv(&mut self.slots, false) {
                Ok(n) => n,
                Err(e) if e.is_overrun() => {
                    seen.overruns += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Ok(seen);
            }
            for datagram in self.slots.datagrams() {
                let Ok(bytes) = datagram else {
                    seen.unreadable += 1;
                    continue;
                };
                let got = parse_ends_datagram(bytes, &mut on);
                seen.ended += got.ended;
                seen.unreadable += got.unreadable;
            }
        }
        Ok(seen)
    }
}

/// Reads one datagram of destroy events, handing `on` each entry. Public for the fuzz targets
/// (`fuzz/`), which feed it arbitrary bytes as if the kernel had sent them.
pub fn parse_ends_datagram(datagram: &[u8], mut on: impl FnMut(Entry)) -> EndsRead {
    let mut seen = EndsRead::default();
    for msg in Messages::new(datagram) {
        match msg {
            Ok(m) if m.ty == IPCTNL_MSG_CT_DELETE => match wire::parse_entry(m) {
                Some(entry) => {
                    seen.ended += 1;
                    on(entry);
                }
                None => seen.unreadable += 1,
            },
            Ok(_) => {}
            Err(_) => {
                seen.unreadable += 1;
                break;
            }
        }
    }
    seen
}

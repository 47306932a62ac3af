//! The netlink socket and wire format under the NFQUEUE client (`queue`) and the conntrack client
//! (`conntrack`): the socket here, building and reading messages in `wire`.
//!
//! Promises:
//! - Every `unsafe` of the crate is in this file: the socket's system calls, each block with a
//!   `// SAFETY:` note. Everything above it builds and reads messages as plain byte slices.
//! - Reading never panics and never reads past a length: [`Messages`] and [`Attrs`] check every length
//!   field against the bytes that are really there, yield [`Malformed`] for the first one that does not
//!   fit, and stop. Kernel messages are untrusted input, like packets.
//! - Messages are built whole into a caller's buffer ([`begin_msg`] .. [`end_msg`]), so several go out
//!   in one `send()`: the kernel runs every message of a datagram, in order (see [`Socket::send`]).
//!
//! Protocol reference: `linux/netlink.h`, `linux/netfilter/nfnetlink.h`.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// NLM_F_ROOT | NLM_F_MATCH: every object of the table, in as many datagrams as it takes.
pub const NLM_F_DUMP: u16 = 0x300;

const NLA_F_NESTED: u16 = 0x8000;
/// An attribute's type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFNETLINK_V0: u8 = 0;

/// The most bytes handed to one `send()`. netlink_sendmsg() refuses a datagram longer than the socket's
/// send buffer less 32 bytes (EMSGSIZE), and the default send buffer (net.core.wmem_default) is 208 KiB.
pub const MAX_SEND: usize = 64 * 1024;

/// A failed system call (or [`io::ErrorKind::TimedOut`] when the kernel did not answer in time).
#[derive(Debug)]
pub struct SysError {
    pub op: &'static str,
    pub err: io::Error,
}

impl SysError {
    fn last(op: &'static str) -> SysError {
        SysError {
            op,
            err: io::Error::last_os_error(),
        }
    }

    /// ENOBUFS from a receive: the kernel dropped messages for this socket because its receive buffer
    /// was full. The socket stays usable.
    pub fn is_overrun(&self) -> bool {
        self.err.raw_os_error() == Some(libc::ENOBUFS)
    }
}

/// An AF_NETLINK socket bound to a port id the kernel picked, talking to the kernel (port 0).
/// Closing it (drop) ends whatever the kernel tied to it, such as a queue binding.
#[derive(Debug)]
pub struct Socket {
    /// Closed on drop unless `lost`.
    fd: ManuallyDrop<OwnedFd>,
    portid: u32,
    /// The descriptor was found closed under us (EBADF): it is not ours to close any more, and its
    /// number may already belong to another file.
    lost: AtomicBool,
}

impl Drop for Socket {
    fn drop(&mut self) {
        if !self.lost.load(Ordering::Relaxed) {
            // SAFETY: `fd` is dropped here once, and never used after.
            unsafe { ManuallyDrop::drop(&mut self.fd) };
        }
    }
}

impl Socket {
    /// Opens a socket of netlink `protocol` (NETLINK_NETFILTER, ...) and binds it. Errors are answered
    /// with NETLINK_CAP_ACK: the error's header without a copy of the whole request.
    pub fn open(protocol: libc::c_int) -> Result<Socket, SysError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use and wrapped at
        // once in an OwnedFd, which closes it.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(SysError::last("socket(AF_NETLINK)"));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: sockaddr_nl is plain old data and all-zero is a valid value (nl_pid 0: the kernel
        // picks the port id).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let salen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `sa` is a valid sockaddr_nl of the length passed, and the descriptor is open.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast::<libc::sockaddr>(),
                salen,
            )
        };
        if rc < 0 {
            return Err(SysError::last("bind(AF_NETLINK)"));
        }
        let mut len = salen;
        // SAFETY: getsockname writes at most `len` bytes into `sa`, which is that large.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&raw mut sa).cast::<libc::sockaddr>(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(SysError::last("getsockname(AF_NETLINK)"));
        }
        let sock = Socket {
            fd: ManuallyDrop::new(fd),
            portid: sa.nl_pid,
            lost: AtomicBool::new(false),
        };
        // Without it an error echoes the whole request; kernels before 4.3 lack the option, and then
        // the answers are only longer.
        let _ = sock.setsockopt_int(libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
        Ok(sock)
    }

    /// The port id the kernel gave this socket (the `portid` column of /proc/net/netfilter/*).
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// Notes an error that says the descriptor was closed under us, so that drop leaves it alone.
    fn check(&self, err: SysError) -> SysError {
        if err.err.raw_os_error() == Some(libc::EBADF) {
            self.lost.store(true, Ordering::Relaxed);
        }
        err
    }

    /// Sets the receive buffer to `bytes`: SO_RCVBUFFORCE, which ignores net.core.rmem_max but needs
    /// CAP_NET_ADMIN, else SO_RCVBUF (capped by rmem_max). Returns the size in force, which the kernel
    /// reports doubled (its bookkeeping overhead).
    pub fn set_rcvbuf(&self, bytes: usize) -> Result<usize, SysError> {
        let val = bytes.min(i32::MAX as usize / 2) as libc::c_int;
        if self
            .setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, val)
            .is_err()
        {
            self.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF, val)
                .map_err(|err| SysError {
                    op: "setsockopt(SO_RCVBUF)",
                    err,
                })?;
        }
        let mut got: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` (the size of a c_int) bytes into `got`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw mut got).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(SysError::last("getsockopt(SO_RCVBUF)"));
        }
        Ok(got.max(0) as usize)
    }

    /// Joins multicast group `group` of the socket's protocol (for NETLINK_NETFILTER, an NFNLGRP_*
    /// number), so the kernel's events of that group arrive on it. Needs CAP_NET_ADMIN for the
    /// netfilter groups.
    pub fn join_group(&self, group: u32) -> Result<(), SysError> {
        let group = libc::c_int::try_from(group).unwrap_or(libc::c_int::MAX);
        self.setsockopt_int(libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, group)
            .map_err(|err| SysError {
                op: "setsockopt(NETLINK_ADD_MEMBERSHIP)",
                err,
            })
    }

    fn setsockopt_int(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        val: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: passes a pointer to a live c_int and its exact size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const val).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout` for something to read (or a pending error such as ENOBUFS). `Ok(false)` on
    /// timeout and on EINTR, so a caller can look at a stop flag between calls.
    pub fn poll(&self, timeout: Duration) -> Result<bool, SysError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfd` is one valid pollfd and nfds is 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let err = SysError::last("poll");
            return match err.err.raw_os_error() {
                Some(libc::EINTR) => Ok(false),
                _ => Err(err),
            };
        }
        if pfd.revents & libc::POLLNVAL != 0 {
            // The descriptor is no longer open (closed under us): no receive can ever succeed.
            return Err(self.check(SysError {
                op: "poll",
                err: io::Error::from_raw_os_error(libc::EBADF),
            }));
        }
        Ok(rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR) != 0)
    }

    /// Sends `buf`, one or more whole messages, as one datagram to the kernel.
    ///
    /// The kernel handles a datagram inside this call: netlink_unicast() hands it to the protocol's
    /// input function (for NETLINK_NETFILTER nfnetlink_rcv(), net/netfilter/nfnetlink.c), which passes
    /// it to netlink_rcv_skb() (net/netlink/af_netlink.c, Linux 6.18). That loop runs every message in
    /// order, answers one that fails with an error message (and one with NLM_F_ACK with an ACK), and goes
    /// on with the next. So when `send` returns, every answer is in this socket's receive queue, or was
    /// dropped there for lack of room (ENOBUFS on the next receive).
    pub fn send(&self, buf: &[u8]) -> Result<(), SysError> {
        loop {
            // SAFETY: `buf` is an initialised slice of buf.len() bytes; the socket is unconnected, so
            // the datagram goes to the default destination, the kernel.
            let rc = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    0,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let err = SysError::last("send(AF_NETLINK)");
            if err.err.raw_os_error() != Some(libc::EINTR) {
                return Err(self.check(err));
            }
        }
    }

    /// Receives up to one datagram per slot with one recvmmsg(). With `wait` it blocks for the first
    /// datagram (then takes what is queued); without, it returns `Ok(0)` when nothing is queued. The
    /// datagrams are read with [`Slots::datagrams`]. An error with [`SysError::is_overrun`] means the
    /// kernel dropped messages since the last call.
    pub fn recv(&self, slots: &mut Slots, wait: bool) -> Result<usize, SysError> {
        slots.filled.clear();
        let size = slots.size;
        let mut iovs: Vec<libc::iovec> = slots
            .buf
            .chunks_exact_mut(size)
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast::<libc::c_void>(),
                iov_len: slot.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain old data and all-zero is a valid value (no name, no control
                // data).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        loop {
            // SAFETY: `hdrs` holds hdrs.len() valid mmsghdr, each pointing at one iovec of `iovs`, which
            // describes its own disjoint `size`-byte slot of slots.buf. Nothing else touches `iovs` or the
            // buffer while the call runs, and all of them outlive it.
            let rc = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    hdrs.len() as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                let n = rc as usize;
                slots.filled.extend(hdrs.iter().take(n).map(|h| {
                    (
                        h.msg_len as usize,
                        h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                    )
                }));
                return Ok(n);
            }
            let err = SysError::last("recvmmsg(AF_NETLINK)");
            match err.err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(0),
                _ => return Err(self.check(err)),
            }
        }
    }

    /// Sends `request` (skipped when empty), then hands `on` everything that arrives until it answers
    /// [`Next::Done`]. Every message of the datagrams already received is still handed over after that,
    /// so nothing the caller must keep (a queued packet, say) is dropped. Fails when nothing arrives for
    /// `patience` while `on` still wants more.
    pub fn exchange(
        &self,
        slots: &mut Slots,
        request: &[u8],
        patience: Duration,
        mut on: impl FnMut(Event<'_>) -> Next,
    ) -> Result<(), SysError> {
        if !request.is_empty() {
            self.send(request)?;
        }
        let mut deadline = Instant::now() + patience;
        loop {
            let received = match self.recv(slots, false) {
                Ok(n) => n,
                Err(e) if e.is_overrun() => {
                    if on(Event::Overrun) == Next::Done {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if received == 0 {
                if on(Event::Idle) == Next::Done {
                    return Ok(());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(SysError {
                        op: "waiting for the kernel's answer",
                        err: io::ErrorKind::TimedOut.into(),
                    });
                }
                self.poll(left)?;
                continue;
            }
            deadline = Instant::now() + patience;
            let mut done = false;
            for datagram in slots.datagrams() {
                let Ok(bytes) = datagram else {
                    done |= on(Event::Truncated) == Next::Done;
                    continue;
                };
                for msg in Messages::new(bytes) {
                    let event = match msg {
                        Ok(msg) => Event::Msg(msg),
                        Err(Malformed) => Event::Malformed,
                    };
                    done |= on(event) == Next::Done;
                }
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// What [`Socket::exchange`] hands its caller.
#[derive(Debug)]
pub enum Event<'a> {
    /// One message of a received datagram.
    Msg(NlMsg<'a>),
    /// A datagram that does not parse from here on: the rest of it is lost.
    Malformed,
    /// A datagram longer than a receive slot: lost.
    Truncated,
    /// The kernel dropped messages for this socket (ENOBUFS): its receive buffer was full.
    Overrun,
    /// Nothing is queued on the socket right now.
    Idle,
}

/// Whether [`Socket::exchange`] should go on receiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    More,
    Done,
}

/// The receive buffer of [`Socket::recv`]: `count` slots of `size` bytes, one datagram each.
#[derive(Debug)]
pub struct Slots {
    buf: Vec<u8>,
    size: usize,
    /// Per datagram of the last receive: its length, and whether it was longer than its slot.
    filled: Vec<(usize, bool)>,
}

/// A datagram that did not fit its slot; the kernel dropped the rest of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated;

impl Slots {
    pub fn new(size: usize, count: usize) -> Slots {
        let (size, count) = (size.max(NLMSG_HDRLEN), count.max(1));
        Slots {
            buf: vec![0; size * count],
            size,
            filled: Vec::with_capacity(count),
        }
    }

    /// The datagrams of the last [`Socket::recv`], in the order they came.
    pub fn datagrams(&self) -> impl Iterator<Item = Result<&[u8], Truncated>> + '_ {
        self.filled
            .iter()
            .enumerate()
            .map(|(i, &(len, truncated))| {
                let start = i * self.size;
                match self.buf.get(start..start + len.min(self.size)) {
                    Some(bytes) if !truncated => Ok(bytes),
                    _ => Err(Truncated),
                }
            })
    }
}

mod wire;

pub use wire::*;

#[cfg(test)]
mod tests;

//! outgate: a userspace outbound packet filter, and a replayer that runs captures through the same engine.
//!
//! ```text
//!    IO edge                core: no IO, no clock, no threads                     IO edge
//!    nfqueue (live) ──┐                                                         ┌─> verdict (+mark)
//!                     ├─ &[u8] ─> Packet ─> FlowKey ─> FlowTable ─(known)──────┤
//!    replay/ ─────────┘  (IP)     packet    flow       flow       └─(new)─> policy ─> Decision
//!                                                                                    {Verdict, Reason}
//! ```
//!
//! Invariants, each stated again at the top of its module:
//! - Untrusted bytes never panic: any packet, any capture. A packet that cannot be read is a decision
//!   ([`decision::Reason::Malformed`]), counted, not an error.
//! - Every decision can be explained: it carries the policy line that made it, or the reason no line did.
//! - The policy is compiled once into an immutable value; a policy that fails to compile yields errors
//!   (`FILE:LINE:COL: message`), never a half-working policy.
//! - Replay gives the same verdicts whatever the worker count: flows are pinned to workers by hash, and
//!   time is the capture's.
//! - Memory is bounded: the flow table has a maximum and evicts the longest-idle flows at it.
//! - No `unsafe` outside `nfqueue/netlink.rs`, the netlink socket under [`nfqueue::queue`] and
//!   [`nfqueue::conntrack`].

#![deny(unsafe_code)]

pub mod bench;
pub mod calendar;
pub mod decision;
pub mod diff;
pub mod engine;
pub mod flow;
pub mod inspect;
pub mod learn;
pub mod log;
pub mod nfqueue;
pub mod packet;
pub mod policy;
pub mod probe;
pub mod replay;
pub mod report;
pub mod rules;
#[cfg(test)]
mod testutil;

pub use decision::{Action, Decision, Reason, Verdict};
pub use engine::Engine;
pub use policy::Policy;

/// A point in time in nanoseconds: since the Unix epoch in replay (capture time), monotonic live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }
}

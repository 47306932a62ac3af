//! Messages: DNS queries over UDP and ICMP echo messages, each kept with its own decision for the DNS
//! and ICMP logs. A flow of them (one DNS client socket, one ping session) is one flow in the table;
//! its messages are recorded one by one while `keep_messages` is on, until the caller drains them.

use std::net::IpAddr;

use super::FlowTable;
use crate::Timestamp;
use crate::decision::Decision;
use crate::inspect::dns::Query;
use crate::inspect::echo::Echo;

/// What a message carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Dns(Query),
    Echo(Echo),
}

/// One message with its decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// The caller's ordinal of the packet (replay sorts by it).
    pub seq: u64,
    pub at: Timestamp,
    /// The querier, or the pinger (for an echo reply, its receiver), with its port (0 for ICMP).
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub decision: Decision,
    pub message: Message,
}

impl FlowTable {
    /// When on, each message the engine reads is kept for [`FlowTable::drain_messages`].
    pub fn keep_messages(&mut self, keep: bool) {
        self.keep_messages = keep;
    }

    pub(crate) fn keeps_messages(&self) -> bool {
        self.keep_messages
    }

    pub(crate) fn push_message(&mut self, rec: MessageRecord) {
        if self.keep_messages {
            self.messages.push(rec);
        }
    }

    /// Whether the packet the engine decided last got its decision as one message (a DNS query over
    /// UDP, an echo request: see `policy::terms`), not as its flow's: live, the kernel is then not
    /// told to remember it, so the flow's next message comes to the daemon too.
    pub fn last_per_message(&self) -> bool {
        self.last_per_message
    }

    pub(crate) fn set_last_per_message(&mut self, on: bool) {
        self.last_per_message = on;
    }

    /// Messages read since the last call, in the order they came.
    pub fn drain_messages(&mut self) -> std::vec::Drain<'_, MessageRecord> {
        self.messages.drain(..)
    }
}

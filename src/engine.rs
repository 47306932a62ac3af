//! `Engine::decide`: the hot path, one packet in, one [`Decision`] out.
//!
//! Read top to bottom: parse the IP packet (a packet that cannot be read is a decision, never an error);
//! find its flow (both directions meet one entry); a known flow answers from the table, a new flow asks the
//! policy once. No IO, no clock, no threads: time is an argument, and the flow table belongs to the caller
//! (one per worker), so the engine itself is immutable and shared by every worker.

use crate::Timestamp;
use crate::decision::{Decision, Reason};
use crate::flow::{FlowKey, FlowTable};
use crate::packet::Packet;
use crate::policy::Policy;

/// The compiled policy plus the decision procedure around it.
pub struct Engine {
    policy: Policy,
}

impl Engine {
    pub fn new(policy: Policy) -> Engine {
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A flow table sized and timed by the policy's options, for one worker.
    pub fn new_flow_table(&self) -> FlowTable {
        FlowTable::new(self.policy.options().flows)
    }

    /// Decides one IP packet. `now` is capture time (replay) or monotonic time (live); `seq` is the
    /// caller's ordinal of the packet, kept as the flow's first-packet order.
    pub fn decide(&self, flows: &mut FlowTable, ip: &[u8], now: Timestamp, seq: u64) -> Decision {
        let malformed = self.policy.options().malformed;
        let packet = match Packet::parse(ip) {
            Ok(p) => p,
            Err(m) => {
                return Decision {
                    verdict: malformed,
                    reason: Reason::Malformed(m),
                };
            }
        };
        match FlowKey::of(&packet) {
            Some(key) => {
                flows.decide_or_insert(&packet, key, now, seq, || self.policy.evaluate(&packet))
            }
            // A later fragment has no ports: it follows its first fragment's flow, or is an orphan.
            None => flows.follow_fragment(&packet, now).unwrap_or(Decision {
                verdict: malformed,
                reason: Reason::OrphanFragment,
            }),
        }
    }
}

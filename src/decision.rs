//! `Decision`: what the engine answers for one packet, and why.
//!
//! Every decision can be explained: the [`Reason`] names the policy line that made it (a rule or a zone-pair
//! policy) or the cause that needed no line (malformed input, an orphan fragment, no policy for the pair).
//! Decisions are small `Copy` values so the hot path never allocates; [`crate::policy::Policy::cite`] turns
//! a reason into `file:line` text.

use crate::packet::Malformed;

/// The verdict given to a packet (and to its flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Accept,
    Drop,
    /// Drop and tell the sender (TCP reset, ICMP port unreachable) so it fails at once instead of hanging.
    Reject,
    /// Accept, through a slow traffic class ([`Decision::class`]): the flow works, slowly, instead of
    /// breaking.
    Shape,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Accept,
        Verdict::Drop,
        Verdict::Reject,
        Verdict::Shape,
    ];

    /// What the kernel can be told to do with a flow: a shaped flow is accepted, with its class beside
    /// the verdict.
    pub const KERNEL: [Verdict; 3] = [Verdict::Accept, Verdict::Drop, Verdict::Reject];

    /// The lower-case name used in logs and JSON (`accept`, `drop`, `reject`, `shape`).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
            Verdict::Shape => "shape",
        }
    }

    /// Parses a plain policy action keyword (case-insensitive): ACCEPT, DROP, REJECT or SHAPE.
    pub(crate) fn from_keyword(word: &str) -> Option<Verdict> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(word))
    }

    /// Whether the flow's packets go on (accepted or shaped).
    pub fn passes(self) -> bool {
        matches!(self, Verdict::Accept | Verdict::Shape)
    }

    /// The verdict the kernel applies: a shaped flow is accepted (into its class).
    pub(crate) fn in_kernel(self) -> Verdict {
        match self {
            Verdict::Shape => Verdict::Accept,
            v => v,
        }
    }
}

/// What a flow's packets get: a verdict, and for [`Verdict::Shape`] the traffic class (an index into
/// the policy's classes; 0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Action {
    pub verdict: Verdict,
    pub class: u8,
}

impl Action {
    pub const ACCEPT: Action = Action {
        verdict: Verdict::Accept,
        class: 0,
    };

    pub const fn of(verdict: Verdict) -> Action {
        Action { verdict, class: 0 }
    }
}

/// Index of a rule in [`crate::policy::Policy::rules`].
pub(crate) type RuleId = u32;
/// Index of a zone-pair policy in [`crate::policy::Policy::pair_policies`].
pub(crate) type PolicyId = u32;

/// Why a packet got its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A rule matched the flow's first packet.
    Rule(RuleId),
    /// No rule matched; the zone pair's policy line decided.
    Policy(PolicyId),
    /// No rule matched and no policy line covers the zone pair: the built-in fallback (DROP).
    NoPolicy,
    /// The packet could not be read far enough to decide (`option malformed` sets the verdict).
    Malformed(Malformed),
    /// A non-first fragment whose first fragment was not seen, so its ports are unknown
    /// (`option malformed` sets the verdict).
    OrphanFragment,
    /// A rule needs the flow's first payload (HTTP host, TLS SNI, app protocol): while the flow waits
    /// for it, its packets without payload (the handshake) pass; this is not yet the flow's decision.
    Inspecting,
    /// The first payload did not come, or did not parse, within the inspection budget
    /// (`option inspect-limit` sets the verdict).
    InspectLimit,
    /// The data connection an accepted FTP control connection announced (PASV, EPSV, PORT, EPRT).
    FtpData,
    /// A TCP flow seen first in its middle (it began before the capture, or before the daemon held
    /// it), whose decision needs a first payload that can no longer be read (`option midstream`).
    Midstream,
    /// Overlapping copies of the flow's first payload differ, so what the server reads cannot be
    /// known (`option inspect-limit` sets the verdict).
    AmbiguousStream,
    /// Not a decision: the packet is held back until its flow is decided, and gets that decision then
    /// ([`crate::flow::FlowTable::drain_released`]). Its verdict is `Drop`, should anything read it.
    Held,
}

impl Reason {
    /// The stable name used in logs and JSON (`"reason"` key).
    pub fn kind(self) -> &'static str {
        match self {
            Reason::Rule(_) => "rule",
            Reason::Policy(_) => "policy",
            Reason::NoPolicy => "no-policy",
            Reason::Malformed(_) => "malformed",
            Reason::OrphanFragment => "orphan-fragment",
            Reason::Inspecting => "inspecting",
            Reason::InspectLimit => "inspect-limit",
            Reason::FtpData => "ftp-data",
            Reason::Midstream => "midstream",
            Reason::AmbiguousStream => "ambiguous-stream",
            Reason::Held => "held",
        }
    }
}

/// A verdict with its reason: what the policy says of a flow, and, when that is not enforced, what the
/// flow gets instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    /// For [`Verdict::Shape`]: the traffic class, an index into the policy's classes.
    pub class: u8,
    /// When the line that decided is only audited (`AUDIT(...)`): what the flow gets instead, from the
    /// rest of the policy. `None`: the decision is enforced.
    pub applied: Option<Action>,
}

impl Decision {
    pub const fn new(verdict: Verdict, reason: Reason) -> Decision {
        Decision {
            verdict,
            reason,
            class: 0,
            applied: None,
        }
    }

    /// What the policy says: verdict and class.
    pub fn action(&self) -> Action {
        Action {
            verdict: self.verdict,
            class: self.class,
        }
    }

    /// What the flow's packets get: the decision, or what an audited line leaves them.
    pub(crate) fn enforced_action(&self) -> Action {
        self.applied.unwrap_or(self.action())
    }

    /// Whether the decision is what the packets get.
    pub fn enforced(&self) -> bool {
        self.applied.is_none()
    }
}

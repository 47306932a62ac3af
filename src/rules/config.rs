//! What a ruleset is made of: where it filters, which queues, which interfaces, how it fails.

use std::fmt;
use std::str::FromStr;

use super::{Marks, RulesError, Shaping, SourceLimit, shape};

/// Where outgate filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Packets this host sends (OUTPUT), loopback excluded.
    Host,
    /// Packets this host forwards from the LAN interface to the WAN interface (FORWARD).
    Gateway,
}

impl FromStr for Mode {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(Mode::Host),
            "gateway" => Ok(Mode::Gateway),
            _ => Err(RulesError::Mode(s.to_string())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Host => "host",
            Mode::Gateway => "gateway",
        })
    }
}

/// Which kernel interface carries the ruleset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `iptables` and `ip6tables` (legacy or nf_tables based).
    Iptables,
    /// One `table inet outgate` for both families.
    Nft,
}

impl FromStr for Backend {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iptables" => Ok(Backend::Iptables),
            "nft" => Ok(Backend::Nft),
            _ => Err(RulesError::Backend(s.to_string())),
        }
    }
}

/// IP version of an iptables ruleset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The `iptables` command of this family; `-restore` is appended for the restore tool.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    pub(super) fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The NFQUEUE numbers the daemon listens on, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRange {
    pub first: u16,
    pub last: u16,
}

impl QueueRange {
    /// One queue.
    pub const fn one(queue: u16) -> Self {
        QueueRange {
            first: queue,
            last: queue,
        }
    }

    /// How many queues; 0 for a reversed range (which [`RulesConfig::validate`] rejects).
    pub fn len(self) -> u32 {
        (u32::from(self.last) + 1).saturating_sub(u32::from(self.first))
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl Default for QueueRange {
    fn default() -> Self {
        QueueRange::one(0)
    }
}

/// Parses `N` or `N-M` (also iptables' `N:M`), N ≤ M ≤ 65535.
impl FromStr for QueueRange {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RulesError::Queues(s.to_string());
        // Digits only: `u16::from_str` would also take a sign.
        let number = |t: &str| {
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse::<u16>().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let range = match s.split_once(['-', ':']) {
            None => QueueRange::one(number(s)?),
            Some((a, b)) => QueueRange {
                first: number(a)?,
                last: number(b)?,
            },
        };
        if range.is_empty() {
            return Err(bad());
        }
        Ok(range)
    }
}

impl fmt::Display for QueueRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// What `outgate rules` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    pub queues: QueueRange,
    pub mode: Mode,
    /// Gateway mode: the interface the filtered traffic comes from (required; not allowed in host mode).
    pub lan: Option<String>,
    /// Gateway mode: the interface it leaves by (required). Host mode: filter only this egress interface.
    pub wan: Option<String>,
    /// Undecided packets pass while no daemon listens (`--queue-bypass`); otherwise they are dropped.
    pub fail_open: bool,
    /// Outgate's bits of the packet and conntrack marks.
    pub marks: Marks,
    /// At most this many packets per source address go to the queues; the rest are dropped.
    pub limit_per_source: Option<SourceLimit>,
    /// The policy's traffic classes, set up in traffic control (`--policy` with classes).
    pub shaping: Option<Shaping>,
    /// For a daemon that audits (`run --audit`): the ruleset is the same; its description says so, for
    /// the admin reading `iptables -S`, and `outgate run` checks it.
    pub audit: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            queues: QueueRange::default(),
            mode: Mode::Host,
            lan: None,
            wan: None,
            fail_open: false,
            marks: Marks::DEFAULT,
            limit_per_source: None,
            shaping: None,
            audit: false,
        }
    }
}

impl RulesConfig {
    /// Checks everything that goes into a command line: interface names, their presence per mode, queues.
    pub fn validate(&self) -> Result<(), RulesError> {
        if self.queues.is_empty() {
            return Err(RulesError::Queues(format!(
                "{}-{}",
                self.queues.first, self.queues.last
            )));
        }
        for (option, name) in [("lan", &self.lan), ("wan", &self.wan)] {
            if let Some(name) = name {
                check_interface(option, name)?;
            }
        }
        match self.mode {
            Mode::Gateway => {
                for (option, name) in [("lan", &self.lan), ("wan", &self.wan)] {
                    if name.is_none() {
                        return Err(RulesError::MissingInterface(option));
                    }
                }
            }
            Mode::Host => {
                if self.lan.is_some() {
                    return Err(RulesError::LanInHostMode);
                }
            }
        }
        if let Some(shaping) = &self.shaping {
            shape::check(self, shaping)?;
        }
        Ok(())
    }
}

/// Linux interface names (IFNAMSIZ − 1 bytes), restricted to characters that are safe on a command line
/// and in nft strings. A trailing `+` is iptables' prefix wildcard (`nft`: `*`).
fn check_interface(option: &'static str, name: &str) -> Result<(), RulesError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > 15 {
        Some("longer than 15 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b))
    {
        Some("only letters, digits and . _ - + @ are allowed")
    } else if name.starts_with('-') {
        Some("must not start with '-'")
    } else if name == "." || name == ".." {
        Some("not a valid interface name")
    } else if name == "lo" {
        Some("loopback is never filtered")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RulesError::Interface {
            option,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::host;

    #[test]
    fn queue_ranges_parse_strictly() {
        assert_eq!("0".parse::<QueueRange>().ok(), Some(QueueRange::one(0)));
        assert_eq!(
            "0-3".parse::<QueueRange>().ok(),
            Some(QueueRange { first: 0, last: 3 })
        );
        assert_eq!(
            "4:7".parse::<QueueRange>().ok(),
            Some(QueueRange { first: 4, last: 7 })
        );
        assert_eq!(
            "65535".parse::<QueueRange>().ok(),
            Some(QueueRange::one(65535))
        );
        for bad in [
            "", "-", "3-1", "+1", "1-", "-1", "65536", "0-3-4", " 1", "a", "1 - 3",
        ] {
            let err = bad.parse::<QueueRange>().expect_err(bad);
            assert!(err.to_string().starts_with("invalid queue range"), "{err}");
        }
        assert_eq!(QueueRange { first: 0, last: 3 }.to_string(), "0-3");
        assert_eq!(QueueRange { first: 3, last: 3 }.len(), 1);
        let reversed = RulesConfig {
            queues: QueueRange { first: 3, last: 1 },
            ..host("0")
        };
        assert!(reversed.validate().is_err());
    }

    #[test]
    fn modes_and_backends_parse() {
        assert_eq!("host".parse::<Mode>().ok(), Some(Mode::Host));
        assert_eq!("gateway".parse::<Mode>().ok(), Some(Mode::Gateway));
        assert_eq!("nft".parse::<Backend>().ok(), Some(Backend::Nft));
        assert_eq!("iptables".parse::<Backend>().ok(), Some(Backend::Iptables));
        assert!("router".parse::<Mode>().is_err());
        assert!("ebtables".parse::<Backend>().is_err());
    }
}

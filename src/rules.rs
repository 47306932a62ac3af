//! Placeholder until the ruleset generator lands: the mark contract shared with the daemon.

/// outgate's bits of the packet mark and the conntrack mark.
pub const MARK_MASK: u32 = 0x0000_0f00;
pub const MARK_ACCEPT: u32 = 0x100;
pub const MARK_DROP: u32 = 0x200;
pub const MARK_REJECT: u32 = 0x300;

/// Queue numbers: `0` or `0-3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRange {
    pub first: u16,
    pub last: u16,
}

impl std::str::FromStr for QueueRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a queue number or range like 0-3");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (first, last) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if first > last {
            return Err(format!("'{s}': the range must run upwards"));
        }
        Ok(QueueRange { first, last })
    }
}

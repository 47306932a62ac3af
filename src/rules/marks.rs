//! Outgate's bits of the packet mark and the conntrack mark: the contract between the ruleset and the
//! daemon.
//!
//! The bits are one contiguous run (the mask) chosen by the admin, because other software (WireGuard,
//! multi-WAN, Kubernetes) marks packets too. Read as a number shifted down to bit 0, the run holds 0
//! (nothing yet), 1 accept, 2 drop, 3 reject, or 4 pending (the daemon passed the packet but has not
//! decided its flow); every other value is no verdict, and the ruleset drops it.

use std::fmt;
use std::str::FromStr;

use super::RulesError;
use crate::Verdict;

/// Outgate's bits of the packet mark and the conntrack mark, and the values it writes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    mask: u32,
}

const ACCEPT: u32 = 1;
const DROP: u32 = 2;
const REJECT: u32 = 3;
const PENDING: u32 = 4;

impl Marks {
    /// Bits 8 to 11, `0xf00`.
    pub const DEFAULT: Marks = Marks { mask: 0xf00 };

    /// Outgate's bits: one contiguous run of at least 3 bits (the values go up to 4).
    pub fn new(mask: u32) -> Result<Marks, RulesError> {
        let bad = |reason| RulesError::MarkMask {
            mask: format!("{mask:#x}"),
            reason,
        };
        if mask == 0 {
            return Err(bad("no bits set"));
        }
        let run = mask >> mask.trailing_zeros();
        if run & run.wrapping_add(1) != 0 {
            return Err(bad("the bits must be one contiguous run, like 0xf00"));
        }
        if run.count_ones() < 3 {
            return Err(bad("at least 3 bits are needed, like 0x700"));
        }
        Ok(Marks { mask })
    }

    pub fn mask(self) -> u32 {
        self.mask
    }

    fn value(self, n: u32) -> u32 {
        n << self.mask.trailing_zeros()
    }

    /// The value in outgate's bits that stands for `v`.
    pub fn verdict(self, v: Verdict) -> u32 {
        self.value(match v {
            // A shaped flow is accepted; its class has bits of its own.
            Verdict::Accept | Verdict::Shape => ACCEPT,
            Verdict::Drop => DROP,
            Verdict::Reject => REJECT,
        })
    }

    /// The value for "passed, still being inspected": the ruleset lets the packet on to the admin's rules
    /// and saves nothing, so the flow's next packet comes to the daemon again.
    pub fn pending(self) -> u32 {
        self.value(PENDING)
    }

    /// The verdict a mark's bits hold, if any (pending, empty and other values hold none).
    pub fn decode(self, mark: u32) -> Option<Verdict> {
        match (mark & self.mask) >> self.mask.trailing_zeros() {
            ACCEPT => Some(Verdict::Accept),
            DROP => Some(Verdict::Drop),
            REJECT => Some(Verdict::Reject),
            _ => None,
        }
    }
}

impl Default for Marks {
    fn default() -> Self {
        Marks::DEFAULT
    }
}

/// Parses `0xf000` (hexadecimal) or `61440` (decimal).
impl FromStr for Marks {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RulesError::MarkMask {
            mask: s.to_string(),
            reason: "expected a number like 0xf000",
        };
        // Digits only: `from_str_radix` would also take a sign.
        let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => (hex, 16),
            None => (s, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return Err(bad());
        }
        let mask = u32::from_str_radix(digits, radix).map_err(|_| bad())?;
        Marks::new(mask)
    }
}

impl fmt::Display for Marks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_values() {
        let m = Marks::DEFAULT;
        assert_eq!(m.mask(), 0xf00);
        assert_eq!(
            Verdict::KERNEL.map(|v| m.verdict(v)),
            [0x100, 0x200, 0x300],
            "accept, drop, reject"
        );
        assert_eq!(m.pending(), 0x400);
        assert_eq!(m.to_string(), "0xf00");
        assert_eq!(Marks::default(), m);
    }

    #[test]
    fn values_shift_into_any_mask() {
        for (mask, accept, pending) in [
            (0x7, 0x1, 0x4),
            (0xf000, 0x1000, 0x4000),
            (0x7_0000, 0x1_0000, 0x4_0000),
            (0xe000_0000, 0x2000_0000, 0x8000_0000),
            (0xffff_ffff, 0x1, 0x4),
        ] {
            let m = Marks::new(mask).expect("valid mask");
            assert_eq!(m.verdict(Verdict::Accept), accept, "{mask:#x}");
            assert_eq!(m.pending(), pending, "{mask:#x}");
            for v in Verdict::KERNEL {
                assert_eq!(m.verdict(v) & !mask, 0, "{mask:#x}: {v:?} outside the mask");
                assert_eq!(m.decode(m.verdict(v) | !mask), Some(v), "{mask:#x}");
            }
            assert_eq!(m.decode(m.pending()), None, "{mask:#x}");
            assert_eq!(m.decode(0), None, "{mask:#x}");
            assert_eq!(m.decode(!mask), None, "other bits are not outgate's");
        }
    }

    #[test]
    fn decode_reads_only_verdicts() {
        let m = Marks::DEFAULT;
        assert_eq!(m.decode(0x1_0100), Some(Verdict::Accept));
        assert_eq!(m.decode(0x300), Some(Verdict::Reject));
        for other in [0x0, 0x400, 0x500, 0xf00, 0x800] {
            assert_eq!(m.decode(other), None, "{other:#x}");
        }
    }

    #[test]
    fn masks_parse_and_are_checked() {
        assert_eq!("0xf000".parse::<Marks>().ok(), Marks::new(0xf000).ok());
        assert_eq!("0XF000".parse::<Marks>().ok(), Marks::new(0xf000).ok());
        assert_eq!("3840".parse::<Marks>().ok(), Some(Marks::DEFAULT));
        for (bad, reason) in [
            ("", "expected a number"),
            ("0x", "expected a number"),
            ("+3840", "expected a number"),
            ("-1", "expected a number"),
            ("0xf00 ", "expected a number"),
            ("f00", "expected a number"),
            ("0x1_0000_0000", "expected a number"),
            ("0x100000000", "expected a number"),
            ("0", "no bits"),
            ("0x3", "at least 3 bits"),
            ("0x300", "at least 3 bits"),
            ("0xf0f", "contiguous"),
            ("0x80000001", "contiguous"),
        ] {
            let err = bad.parse::<Marks>().expect_err(bad).to_string();
            assert!(err.starts_with("invalid mark mask"), "{bad:?}: {err}");
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
        let err = Marks::new(0x5).expect_err("not contiguous").to_string();
        assert_eq!(
            err,
            "invalid mark mask '0x5': the bits must be one contiguous run, like 0xf00"
        );
    }
}

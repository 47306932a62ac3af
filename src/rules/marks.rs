//! Outgate's bits of the packet mark and the conntrack mark: the contract between the ruleset and the
//! daemon.
//!
//! Two contiguous runs, chosen by the admin, because other software (WireGuard, multi-WAN, Kubernetes)
//! marks packets too:
//! - the verdict bits (`--mark-mask`, default `0xf00`). Read as a number shifted down to bit 0, they
//!   hold 0 (nothing yet), 1 accept, 2 drop, 3 reject, or 4 pending (the daemon passed the packet but
//!   has not decided its flow); every other value is no verdict, and the ruleset drops it.
//! - the class bits (`--class-mask`, default the four bits above the verdict bits: `0xf000`). A SHAPE
//!   verdict is an accept with a class: class index `c` (0 to 14, the policy's classes in order) is
//!   written as `c + 1`; 0 is "no class". They mean something only beside an accept, and only the
//!   conntrack mark's copy is read (by the shaping rules, see `super::shape`).
//!
//! The default class bits follow `--mark-mask`, so that a mask chosen before classes existed (say
//! `0xf000`, next to WireGuard) keeps working with its classes right above it (`0xf0000`).

use std::fmt;
use std::str::FromStr;

use super::RulesError;
use crate::decision::{Action, Verdict};

/// Outgate's bits of the packet mark and the conntrack mark, and the values it writes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    mask: u32,
    class_mask: u32,
}

const ACCEPT: u32 = 1;
const DROP: u32 = 2;
const REJECT: u32 = 3;
const PENDING: u32 = 4;

/// How many classes the class bits hold: values 1 to 15 in four bits (0 is "no class"), as many as a
/// policy may declare ([`crate::policy::action::MAX_CLASSES`]).
pub const CLASSES: u8 = 15;

impl Marks {
    /// Verdicts in bits 8 to 11 (`0xf00`), classes in bits 12 to 15 (`0xf000`).
    pub const DEFAULT: Marks = Marks {
        mask: 0xf00,
        class_mask: 0xf000,
    };

    /// Outgate's verdict bits: one contiguous run of at least 3 bits (the values go up to 4). The class
    /// bits are the four bits above them, or, when the run reaches past bit 27, the four below; choose
    /// others with [`Marks::with_class_mask`].
    pub fn new(mask: u32) -> Result<Marks, RulesError> {
        let bad = |reason| RulesError::MarkMask {
            mask: hex(mask),
            reason,
        };
        check_run(mask, 3).map_err(|reason| {
            bad(match reason {
                Run::Empty => "no bits set",
                Run::Gaps => "the bits must be one contiguous run, like 0xf00",
                Run::Short => "at least 3 bits are needed, like 0x700",
            })
        })?;
        let above = 32 - mask.leading_zeros();
        let below = mask.trailing_zeros();
        let class_mask = if above <= 28 {
            0xf << above
        } else if below >= 4 {
            0xf << (below - 4)
        } else {
            return Err(bad(
                "no four bits are left beside it for the traffic classes; choose a narrower run, like 0xf00",
            ));
        };
        Ok(Marks { mask, class_mask })
    }

    /// The same verdict bits, with the classes in `class_mask`: one contiguous run of at least 4 bits
    /// (15 classes), outside the verdict bits.
    pub fn with_class_mask(self, class_mask: u32) -> Result<Marks, RulesError> {
        let bad = |reason: String| RulesError::ClassMask {
            mask: hex(class_mask),
            reason,
        };
        check_run(class_mask, 4).map_err(|reason| {
            bad(match reason {
                Run::Empty => "no bits set".into(),
                Run::Gaps => "the bits must be one contiguous run, like 0xf000".into(),
                Run::Short => "at least 4 bits are needed (15 classes), like 0xf000".into(),
            })
        })?;
        if class_mask & self.mask != 0 {
            return Err(bad(format!(
                "it overlaps the mark mask {} (the verdict bits); choose bits outside it, like {}",
                hex(self.mask),
                hex(Marks::new(self.mask).map_or(0xf000, |m| m.class_mask))
            )));
        }
        Ok(Marks { class_mask, ..self })
    }

    /// The verdict bits (`--mark-mask`).
    pub fn mask(self) -> u32 {
        self.mask
    }

    /// The class bits (`--class-mask`).
    pub fn class_mask(self) -> u32 {
        self.class_mask
    }

    /// Both runs: every bit of the marks that is outgate's.
    pub(crate) fn full_mask(self) -> u32 {
        self.mask | self.class_mask
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

    /// The value in the class bits for class index `class` (0 to 14: `class + 1`); 0, "no class", for
    /// an index the bits cannot hold (a policy has at most 15 classes, so none does).
    pub fn class_value(self, class: u8) -> u32 {
        if class >= CLASSES {
            return 0;
        }
        (u32::from(class) + 1) << self.class_mask.trailing_zeros()
    }

    /// The class index a mark's class bits hold: `None` for 0 (no class) and for values above 15.
    pub(crate) fn decode_class(self, mark: u32) -> Option<u8> {
        let n = (mark & self.class_mask) >> self.class_mask.trailing_zeros();
        (1..=u32::from(CLASSES)).contains(&n).then(|| (n - 1) as u8)
    }

    /// Outgate's bits for a decided flow: its verdict as the kernel applies it, and for SHAPE its class
    /// (an accept with the class beside it). What the daemon writes, other bits of the mark kept:
    /// `mark & !full_mask() | action(a)`.
    pub fn action(self, a: Action) -> u32 {
        match a.verdict {
            Verdict::Shape => self.verdict(Verdict::Accept) | self.class_value(a.class),
            v => self.verdict(v),
        }
    }
}

impl Default for Marks {
    fn default() -> Self {
        Marks::DEFAULT
    }
}

/// Why a mask is not one contiguous run of enough bits.
enum Run {
    Empty,
    Gaps,
    Short,
}

fn check_run(mask: u32, min_bits: u32) -> Result<(), Run> {
    if mask == 0 {
        return Err(Run::Empty);
    }
    let run = mask >> mask.trailing_zeros();
    if run & run.wrapping_add(1) != 0 {
        return Err(Run::Gaps);
    }
    if run.count_ones() < min_bits {
        return Err(Run::Short);
    }
    Ok(())
}

fn hex(value: u32) -> String {
    format!("{value:#x}")
}

/// A mask as the command line gives it: `0xf000` (hexadecimal) or `61440` (decimal); `None` for
/// anything else.
pub fn parse_mask(s: &str) -> Option<u32> {
    // Digits only: `from_str_radix` would also take a sign.
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Parses the verdict bits, `0xf000` (hexadecimal) or `61440` (decimal), with their default class bits.
impl FromStr for Marks {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mask = parse_mask(s).ok_or_else(|| RulesError::MarkMask {
            mask: s.to_string(),
            reason: "expected a number like 0xf000",
        })?;
        Marks::new(mask)
    }
}

/// The verdict bits (`--mark-mask`); [`Marks::class_mask`] has the others.
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
        assert_eq!(m.class_mask(), 0xf000);
        assert_eq!(m.full_mask(), 0xff00);
        assert_eq!(
            Verdict::KERNEL.map(|v| m.verdict(v)),
            [0x100, 0x200, 0x300],
            "accept, drop, reject"
        );
        assert_eq!(m.pending(), 0x400);
        assert_eq!(m.to_string(), "0xf00");
        assert_eq!(Marks::default(), m);
        assert_eq!(Marks::new(0xf00).ok(), Some(m), "the default's class bits");
    }

    #[test]
    fn values_shift_into_any_mask() {
        for (mask, accept, pending, class_mask) in [
            (0x7, 0x1, 0x4, 0x78),
            (0xf000, 0x1000, 0x4000, 0xf_0000),
            (0x7_0000, 0x1_0000, 0x4_0000, 0x78_0000),
            (0xf000_0000, 0x1000_0000, 0x4000_0000, 0x0f00_0000),
            (0xe000_0000, 0x2000_0000, 0x8000_0000, 0x1e00_0000),
            (0xffff_fff0, 0x10, 0x40, 0xf),
        ] {
            let m = Marks::new(mask).expect("valid mask");
            assert_eq!(m.class_mask(), class_mask, "{mask:#x}");
            assert_eq!(m.verdict(Verdict::Accept), accept, "{mask:#x}");
            assert_eq!(m.pending(), pending, "{mask:#x}");
            for v in Verdict::KERNEL {
                assert_eq!(m.verdict(v) & !mask, 0, "{mask:#x}: {v:?} outside the mask");
                assert_eq!(m.decode(m.verdict(v) | !mask), Some(v), "{mask:#x}");
            }
            assert_eq!(m.decode(m.pending()), None, "{mask:#x}");
            assert_eq!(m.decode(0), None, "{mask:#x}");
            assert_eq!(m.decode(!mask), None, "other bits are not outgate's");
            for class in 0..CLASSES {
                let value = m.class_value(class);
                assert_eq!(value & !class_mask, 0, "{mask:#x}: class {class} outside");
                assert_eq!(m.decode_class(value | !class_mask), Some(class));
                assert_eq!(m.decode(value), None, "a class is no verdict");
            }
        }
    }

    #[test]
    fn decode_reads_only_verdicts() {
        let m = Marks::DEFAULT;
        assert_eq!(m.decode(0x1_0100), Some(Verdict::Accept));
        assert_eq!(m.decode(0x300), Some(Verdict::Reject));
        assert_eq!(
            m.decode(0x1300),
            Some(Verdict::Reject),
            "class bits are ignored"
        );
        for other in [0x0, 0x400, 0x500, 0xf00, 0x800, 0x1000] {
            assert_eq!(m.decode(other), None, "{other:#x}");
        }
    }

    #[test]
    fn classes_are_index_plus_one() {
        let m = Marks::DEFAULT;
        assert_eq!(m.class_value(0), 0x1000);
        assert_eq!(m.class_value(1), 0x2000);
        assert_eq!(m.class_value(14), 0xf000);
        assert_eq!(m.class_value(15), 0, "no such class: no class");
        assert_eq!(m.decode_class(0x1100), Some(0));
        assert_eq!(m.decode_class(0xf000), Some(14));
        assert_eq!(m.decode_class(0x0100), None, "0 is no class");
        let wide = m.with_class_mask(0xff_0000).expect("valid");
        assert_eq!(wide.class_value(2), 0x3_0000);
        assert_eq!(wide.decode_class(0x10_0000), None, "16 is no class");
        assert_eq!(
            m.action(Action {
                verdict: Verdict::Shape,
                class: 1
            }),
            0x2100,
            "accept and class 1"
        );
        assert_eq!(m.action(Action::of(Verdict::Drop)), 0x200);
        assert_eq!(m.action(Action::ACCEPT), 0x100);
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
            ("0xffffffff", "no four bits are left"),
            ("0x7ffffff8", "no four bits are left"),
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

    #[test]
    fn class_masks_are_checked() {
        let m = Marks::DEFAULT;
        assert_eq!(
            m.with_class_mask(0xf0000).map(Marks::class_mask).ok(),
            Some(0xf0000)
        );
        assert_eq!(
            m.with_class_mask(0xf).map(Marks::class_mask).ok(),
            Some(0xf)
        );
        for (bad, reason) in [
            (0, "no bits set"),
            (0x7000, "at least 4 bits"),
            (0xf0f000, "contiguous"),
            (0xf00, "overlaps the mark mask 0xf00"),
            (0x1fe0, "overlaps"),
        ] {
            let err = m.with_class_mask(bad).expect_err(reason).to_string();
            assert!(err.starts_with("invalid class mask"), "{bad:#x}: {err}");
            assert!(err.contains(reason), "{bad:#x}: {err}");
        }
        assert_eq!(
            m.with_class_mask(0xff0).expect_err("overlap").to_string(),
            "invalid class mask '0xff0': it overlaps the mark mask 0xf00 (the verdict bits); choose \
             bits outside it, like 0xf000"
        );
        assert_eq!(parse_mask("0xf000"), Some(0xf000));
        assert_eq!(parse_mask("61440"), Some(0xf000));
        assert_eq!(parse_mask("-1"), None);
    }
}

//! What a policy line does to the flows it matches: its action, and the traffic classes SHAPE sends them to.
//!
//! ```text
//! ACTION := ACCEPT | DROP | REJECT | SHAPE | SHAPE(CLASS) | AUDIT(ACCEPT|DROP|REJECT|SHAPE|SHAPE(CLASS))
//! class NAME RATE                      a traffic class, e.g. `class bulk 2mbit`
//! option shape-rate RATE               the class plain `SHAPE` uses (named `slow`)
//! ```
//!
//! SHAPE accepts the flow through a slow class instead of dropping it: a mistake in the policy makes a
//! program slow, not broken. AUDIT(...) trials a line: flows it matches are logged and counted with its
//! action, and get what the rest of the policy gives them (the following lines, then the zone pair's
//! policy; an audited policy line leaves them accepted). A macro takes any of these: `SSH(AUDIT(DROP))`.
//! RATE is a number with tc's units: `bit`, `kbit`, `mbit`, `gbit` (powers of 1000), or `bps`, `kbps`,
//! `mbps`, `gbps` (bytes per second).

use std::fmt;

use crate::decision::Verdict;

/// At most this many classes: their number lives in 4 bits of the conntrack mark (0 is "no class").
pub const MAX_CLASSES: usize = 15;

/// The class plain `SHAPE` uses, made by `option shape-rate`.
pub(crate) const DEFAULT_CLASS: &str = "slow";

/// A rate in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(pub u64);

impl Rate {
    /// `2mbit`, `500kbit`, `1gbit`, `64000bit`, `100kbps` (tc's units; at least 8 bit/s).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let lower = s.to_ascii_lowercase();
        let digits = lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(digits);
        let bad = || {
            format!(
                "'{s}' is not a rate (expected a number with bit, kbit, mbit, gbit, bps, kbps, mbps or gbps, like 2mbit)"
            )
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        let scale: u64 = match unit {
            "bit" => 1,
            "kbit" => 1_000,
            "mbit" => 1_000_000,
            "gbit" => 1_000_000_000,
            "bps" => 8,
            "kbps" => 8_000,
            "mbps" => 8_000_000,
            "gbps" => 8_000_000_000,
            _ => return Err(bad()),
        };
        let bits = n
            .checked_mul(scale)
            .filter(|b| (8..=1_000_000_000_000).contains(b))
            .ok_or_else(|| format!("'{s}': a rate from 8bit to 1000gbit"))?;
        Ok(Rate(bits))
    }

    #[cfg(test)]
    pub(crate) fn bits_per_second(self) -> u64 {
        self.0
    }
}

/// tc's own spelling (`2mbit`, `500kbit`, `64000bit`), which `tc` reads back.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match b {
            _ if b.is_multiple_of(1_000_000_000) => write!(f, "{}gbit", b / 1_000_000_000),
            _ if b.is_multiple_of(1_000_000) => write!(f, "{}mbit", b / 1_000_000),
            _ if b.is_multiple_of(1_000) => write!(f, "{}kbit", b / 1_000),
            _ => write!(f, "{b}bit"),
        }
    }
}

/// A traffic class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub rate: Rate,
    pub line: u32,
}

/// A line's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineAction {
    pub verdict: Verdict,
    /// For SHAPE: the index of its class among the policy's classes.
    pub class: u8,
    /// `AUDIT(...)`: logged and counted, not enforced.
    pub audit: bool,
}

/// Parses `text` (at column `col`) as a line's action, without a macro. `classes` are the class names
/// in index order.
pub fn parse(text: &str, col: u32, classes: &[String]) -> Result<LineAction, (u32, String)> {
    let (head, inner) = split_call(text, col)?;
    if head.eq_ignore_ascii_case("AUDIT") {
        let Some(inner) = inner else {
            return Err((col, "AUDIT needs an action: AUDIT(DROP)".into()));
        };
        let inner_col = col + head.len() as u32 + 1;
        if split_call(inner, inner_col)?
            .0
            .eq_ignore_ascii_case("AUDIT")
        {
            return Err((inner_col, "AUDIT(AUDIT(...)) audits nothing more".into()));
        }
        let action = parse(inner, inner_col, classes)?;
        return Ok(LineAction {
            audit: true,
            ..action
        });
    }
    if head.eq_ignore_ascii_case("SHAPE") {
        let name = inner.unwrap_or(DEFAULT_CLASS);
        let class = classes.iter().position(|c| c == name).ok_or_else(|| {
            let what = if inner.is_none() {
                "plain SHAPE needs `option shape-rate RATE` (its class), or name a class: SHAPE(bulk) with `class bulk 2mbit`".to_string()
            } else if classes.is_empty() {
                format!("unknown class '{name}': declare it, e.g. `class {name} 2mbit`")
            } else {
                format!(
                    "unknown class '{name}' (declared: {})",
                    classes.join(", ")
                )
            };
            (col, what)
        })?;
        return Ok(LineAction {
            verdict: Verdict::Shape,
            class: class as u8,
            audit: false,
        });
    }
    match (Verdict::from_keyword(head), inner) {
        (Some(verdict), None) => Ok(LineAction {
            verdict,
            class: 0,
            audit: false,
        }),
        _ => Err((
            col,
            format!(
                "unknown action '{text}' (expected ACCEPT, DROP, REJECT, SHAPE, SHAPE(CLASS) or AUDIT(ACTION))"
            ),
        )),
    }
}

/// `HEAD(INNER)` into its parts; a plain word has no inner part.
pub(crate) fn split_call(text: &str, col: u32) -> Result<(&str, Option<&str>), (u32, String)> {
    match text.split_once('(') {
        None => Ok((text, None)),
        Some((head, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or((col, format!("missing ')' in '{text}'")))?;
            Ok((head, Some(inner)))
        }
    }
}

/// Whether a token can start with an action (for telling rule lines from `SRC DST ACTION` policy lines).
pub(crate) fn looks_like_action(text: &str) -> bool {
    let head = text.split('(').next().unwrap_or(text);
    Verdict::from_keyword(head).is_some() || head.eq_ignore_ascii_case("AUDIT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn actions_parse() {
        let classes = names(&["slow", "bulk"]);
        let p = |t: &str| parse(t, 1, &classes);
        assert_eq!(p("DROP").unwrap().verdict, Verdict::Drop);
        assert_eq!(
            p("SHAPE").unwrap(),
            LineAction {
                verdict: Verdict::Shape,
                class: 0,
                audit: false
            }
        );
        assert_eq!(p("shape(bulk)").unwrap().class, 1);
        let a = p("AUDIT(SHAPE(bulk))").unwrap();
        assert!(a.audit && a.verdict == Verdict::Shape && a.class == 1);
        assert!(p("AUDIT(DROP)").unwrap().audit);
        for (bad, says) in [
            ("SHAPE(nope)", "unknown class 'nope' (declared: slow, bulk)"),
            ("AUDIT", "AUDIT needs an action"),
            ("AUDIT(AUDIT(DROP))", "audits nothing more"),
            ("AUDIT(DROP", "missing ')'"),
            ("ALLOW", "unknown action 'ALLOW'"),
            ("DROP(x)", "unknown action 'DROP(x)'"),
        ] {
            let e = p(bad).unwrap_err().1;
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse("SHAPE", 1, &[]).unwrap_err().1;
        assert!(e.contains("option shape-rate"), "{e}");
    }

    #[test]
    fn rates_parse_and_print_as_tc_does() {
        for (text, bits, shown) in [
            ("2mbit", 2_000_000, "2mbit"),
            ("500kbit", 500_000, "500kbit"),
            ("1Gbit", 1_000_000_000, "1gbit"),
            ("64000bit", 64_000, "64kbit"),
            ("100kbps", 800_000, "800kbit"),
            ("12345bit", 12_345, "12345bit"),
        ] {
            let r = Rate::parse(text).unwrap();
            assert_eq!(
                (r.bits_per_second(), r.to_string().as_str()),
                (bits, shown),
                "{text}"
            );
        }
        for bad in [
            "",
            "mbit",
            "2",
            "2 mbit",
            "-1mbit",
            "2mb",
            "1bit",
            "99999999999999mbit",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}

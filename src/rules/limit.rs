//! `--limit-per-source`: how many packets per source address may go to the queues.
//!
//! A flow dropped at its first packet leaves no conntrack entry, so every retry of it comes to the daemon
//! again; without a limit, one LAN client could keep the daemon busy for everyone. The limit is a token
//! bucket per source address in the kernel (iptables `hashlimit`, an nft dynamic set), in front of the
//! queue rule only: decided flows never meet it.

use std::fmt;
use std::str::FromStr;

use super::RulesError;

/// The largest rate and burst accepted; far above what one client should send to the daemon.
const MAX: u32 = 1_000_000;

/// The time unit of a [`Rate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
}

/// Packets per second or per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub unit: RateUnit,
}

impl Rate {
    /// The rate as `hashlimit` takes it and `iptables-save` prints it back (`200/sec`, `7/min`).
    pub(super) fn iptables(self) -> String {
        match self.unit {
            RateUnit::Second => format!("{}/sec", self.count),
            RateUnit::Minute => format!("{}/min", self.count),
        }
    }

    /// The rate in nft's `limit rate` syntax.
    pub(super) fn nft(self) -> String {
        self.to_string()
    }
}

/// Parses `N/second` or `N/minute` (also `s`, `sec`, `m`, `min`), 1 <= N <= 1000000. A per-minute count
/// divisible by 60 becomes per second, as `iptables-save` would print it.
impl FromStr for Rate {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| RulesError::Limit {
            option: "limit-per-source",
            value: s.to_string(),
            reason,
        };
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| bad("expected N/second or N/minute, like 200/second"))?;
        let count = number(count).ok_or_else(|| bad("expected a count from 1 to 1000000"))?;
        let unit = match unit {
            "second" | "sec" | "s" => RateUnit::Second,
            "minute" | "min" | "m" => RateUnit::Minute,
            _ => return Err(bad("the unit is second or minute")),
        };
        Ok(match unit {
            RateUnit::Minute if count % 60 == 0 => Rate {
                count: count / 60,
                unit: RateUnit::Second,
            },
            _ => Rate { count, unit },
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Digits only, 1 to [`MAX`].
pub(super) fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| (1..=MAX).contains(n))
}

/// A token bucket per source address: `rate` packets, and up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLimit {
    pub rate: Rate,
    pub burst: u32,
}

impl SourceLimit {
    /// `burst` defaults to the rate's count: a second's (or a minute's) worth at once, so a browser that
    /// opens many connections together is not cut.
    pub fn new(rate: Rate, burst: Option<u32>) -> Result<SourceLimit, RulesError> {
        let burst = burst.unwrap_or(rate.count);
        if !(1..=MAX).contains(&burst) {
            return Err(RulesError::Limit {
                option: "limit-burst",
                value: burst.to_string(),
                reason: "the burst is a count from 1 to 1000000",
            });
        }
        Ok(SourceLimit { rate, burst })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_as_iptables_save_does() {
        for (text, shown, iptables) in [
            ("200/second", "200/second", "200/sec"),
            ("5/s", "5/second", "5/sec"),
            ("1000000/sec", "1000000/second", "1000000/sec"),
            ("7/minute", "7/minute", "7/min"),
            ("90/min", "90/minute", "90/min"),
            ("120/m", "2/second", "2/sec"),
            ("60/minute", "1/second", "1/sec"),
        ] {
            let rate: Rate = text.parse().expect(text);
            assert_eq!(rate.to_string(), shown, "{text}");
            assert_eq!(rate.iptables(), iptables, "{text}");
            assert_eq!(shown.parse::<Rate>().ok(), Some(rate), "round trip");
        }
        for (bad, reason) in [
            ("200", "expected N/second"),
            ("", "expected N/second"),
            ("0/second", "from 1 to 1000000"),
            ("1000001/second", "from 1 to 1000000"),
            ("+5/second", "from 1 to 1000000"),
            ("5/hour", "second or minute"),
            ("5/second/3", "second or minute"),
            ("5 /second", "from 1 to 1000000"),
        ] {
            let err = bad.parse::<Rate>().expect_err(bad).to_string();
            assert!(err.starts_with("invalid --limit-per-source"), "{err}");
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }

    #[test]
    fn burst_defaults_to_the_rate() {
        let rate: Rate = "200/second".parse().expect("valid");
        assert_eq!(SourceLimit::new(rate, None).expect("valid").burst, 200);
        assert_eq!(SourceLimit::new(rate, Some(10)).expect("valid").burst, 10);
        assert!(SourceLimit::new(rate, Some(0)).is_err());
        assert!(SourceLimit::new(rate, Some(MAX + 1)).is_err());
    }
}

//! `until=`: a rule that expires. After its moment the line no longer matches: live from then on (the
//! daemon holds the kernel's flows to the policy at that moment, cutting those only the line allowed);
//! in replay by the capture's time.
//!
//! ```text
//! until=2026-12-31             the rule holds through that day: it expires at 2027-01-01T00:00Z
//! until=2026-12-31T18:00       it expires at 18:00 UTC that day
//! until=2026-12-31T18:00:30    ... 30 seconds later
//! until=2026-12-31T18:00+01:00 ... at 18:00 in UTC+1
//! ```
//!
//! Times are UTC unless an offset is given: the daemon's notion of time must not depend on the
//! machine's time zone setting.

use crate::calendar::{civil_from_days, epoch_day};

/// Seconds since the Unix epoch at which a line stops matching.
pub(crate) type Expiry = u64;

/// Parses `until=`'s value; the error says what is expected.
pub fn parse(value: &str) -> Result<Expiry, String> {
    let bad = || {
        format!(
            "'{value}' is not a date (expected YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS] with an optional Z or +HH:MM offset; UTC)"
        )
    };
    let (date, time) = match value.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let number = |s: &str, len: usize| -> Option<u64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d) = (
        number(y, 4).ok_or_else(bad)?,
        number(m, 2).ok_or_else(bad)?,
        number(d, 2).ok_or_else(bad)?,
    );
    let day_start = epoch_day(y, m, d).ok_or_else(bad)? * 86_400;
    let Some(time) = time else {
        // The whole of that day.
        return Ok(day_start + 86_400);
    };
    let (clock, offset): (&str, i64) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = time.find(['+', '-']) {
        let (c, o) = time.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':').ok_or_else(bad)?;
        let (oh, om) = (
            number(oh, 2).ok_or_else(bad)?,
            number(om, 2).ok_or_else(bad)?,
        );
        if oh > 23 || om > 59 {
            return Err(bad());
        }
        (c, sign * (oh * 3600 + om * 60) as i64)
    } else {
        (time, 0)
    };
    let mut fields = clock.split(':');
    let (Some(h), Some(min), sec, None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad());
    };
    let (h, min, sec) = (
        number(h, 2).ok_or_else(bad)?,
        number(min, 2).ok_or_else(bad)?,
        sec.map_or(Some(0), |s| number(s, 2)).ok_or_else(bad)?,
    );
    if h > 23 || min > 59 || sec > 59 {
        return Err(bad());
    }
    let local = (day_start + h * 3600 + min * 60 + sec) as i64;
    u64::try_from(local - offset).map_err(|_| bad())
}

/// `2026-12-31T18:00Z` (`18:00:30Z` when there are seconds), for messages.
pub fn show(at: Expiry) -> String {
    let (days, rem) = (at / 86_400, at % 86_400);
    let Some((y, m, d)) = civil_from_days(days) else {
        return format!("{at}s after 1970");
    };
    let seconds = if rem % 60 == 0 {
        String::new()
    } else {
        format!(":{:02}", rem % 60)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}{seconds}Z",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_utc_unless_an_offset_says_otherwise() {
        // 2026-12-31T00:00Z is 1798675200.
        assert_eq!(
            parse("2026-12-31"),
            Ok(1_798_675_200 + 86_400),
            "the whole day"
        );
        assert_eq!(parse("2026-12-31T18:00"), Ok(1_798_675_200 + 18 * 3600));
        assert_eq!(parse("2026-12-31T18:00Z"), Ok(1_798_675_200 + 18 * 3600));
        assert_eq!(
            parse("2026-12-31T18:00:30Z"),
            Ok(1_798_675_200 + 18 * 3600 + 30)
        );
        assert_eq!(
            parse("2026-12-31T18:00+01:00"),
            Ok(1_798_675_200 + 17 * 3600)
        );
        assert_eq!(
            parse("2026-12-31T18:00-00:30"),
            Ok(1_798_675_200 + 18 * 3600 + 1800)
        );
        assert_eq!(parse("2024-02-29"), Ok(19_783 * 86_400), "a leap day");
        assert_eq!(show(1_798_675_200 + 18 * 3600), "2026-12-31T18:00Z");
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "26-12-31",
            "2026-12-31T25:00",
            "2026-12-31T18",
            "2026-12-31T18:00:60",
            "2026-12-31T18:00:00:00",
            "2026-12-31T18:00:5",
            "2026/12/31",
            "2026-12-31T18:00+1",
            "tomorrow",
            "1969-12-31",
            "2026-12-31T18:00+24:00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

//! UTC calendar arithmetic and RFC 3339 times: what the logs write, what learn and diff read back,
//! and the dates of `until=`. Days count from 1970-01-01; nothing here knows time zones. The calendar
//! itself (days in a month, dates to days and back, printing) is `jiff`'s; what is read here is the
//! one fixed form the logs write.

use jiff::civil::Date;

use crate::Timestamp;

/// 1970-01-01, day 0.
const EPOCH: Date = jiff::civil::date(1970, 1, 1);

/// `2024-05-01T12:00:00.123456789Z`.
pub fn rfc3339(ts: Timestamp) -> String {
    let nanos = ts.as_nanos();
    // Every u64 of nanoseconds (up to the year 2554) is a time jiff can print.
    match jiff::Timestamp::from_nanosecond(i128::from(nanos)) {
        Ok(t) => format!("{t:.9}"),
        Err(_) => format!("{nanos}ns"),
    }
}

/// `2024-03-01T09:00:00.123456789Z` (as [`rfc3339`] writes it; fewer fraction digits,
/// none, or `+00:00` for `Z` are read too). `None` for anything else, and before 1970.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<u64> {
        let digits = b.get(from..to)?;
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
        })
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = s.get(19..)?;
    let mut nanos = 0u64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, d) in fraction.bytes().take(digits).enumerate() {
            if i < 9 {
                nanos += u64::from(d - b'0') * 10u64.pow(8 - i as u32);
            }
        }
        rest = &fraction[digits..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00" | "-00:00") {
        return None;
    }
    // A leap second (`:60`) counts as the first second of the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let secs = epoch_day(year, month, day)? * 86_400 + hour * 3600 + minute * 60 + second;
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .map(Timestamp::from_nanos)
}

/// Days since 1970-01-01 of the date `y-m-d`; `None` if there is no such date, or it is before 1970
/// (or after 9999).
pub(crate) fn epoch_day(y: u64, m: u64, d: u64) -> Option<u64> {
    if y < 1970 {
        return None;
    }
    let date = Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()?;
    let days = date.since(EPOCH).ok()?.get_days();
    u64::try_from(days).ok()
}

/// Days since 1970-01-01 -> (year, month, day); `None` past the year 9999.
pub fn civil_from_days(days: u64) -> Option<(u64, u64, u64)> {
    let span = jiff::Span::new().try_days(i64::try_from(days).ok()?).ok()?;
    let date = EPOCH.checked_add(span).ok()?;
    Some((
        u64::try_from(date.year()).ok()?,
        u64::try_from(date.month()).ok()?,
        u64::try_from(date.day()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(
            rfc3339(Timestamp::from_nanos(0)),
            "1970-01-01T00:00:00.000000000Z"
        );
        // 2000-02-29 (a leap day) 12:34:56.5
        assert_eq!(
            rfc3339(Timestamp::from_nanos(951_827_696_500_000_000)),
            "2000-02-29T12:34:56.500000000Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20.000000000Z"
        );
    }

    #[test]
    fn times_read_back_what_the_logs_write() {
        for nanos in [
            0,
            951_827_696_500_000_000,
            1_709_283_600_000_000_000,
            1_709_283_600_123_456_789,
            4_102_444_799_999_999_999,
        ] {
            let ts = Timestamp::from_nanos(nanos);
            assert_eq!(parse_rfc3339(&rfc3339(ts)), Some(ts), "{}", rfc3339(ts));
        }
        let t = |s| parse_rfc3339(s).map(Timestamp::as_nanos);
        assert_eq!(t("2024-03-01T09:00:00Z"), Some(1_709_283_600_000_000_000));
        assert_eq!(
            t("2024-03-01t09:00:00.5+00:00"),
            Some(1_709_283_600_500_000_000)
        );
        for bad in [
            "",
            "2024-03-01",
            "2024-03-01T09:00:00",
            "2024-02-30T09:00:00Z",
            "2023-02-29T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2024-03-01T24:00:00Z",
            "2024-03-01T09:00:00.Z",
            "2024-03-01T09:00:00+01:00",
            "2024-3-01T09:00:00Z",
            "２０２４-03-01T09:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_count_from_1970_and_back() {
        assert_eq!(epoch_day(1970, 1, 1), Some(0));
        assert_eq!(epoch_day(2000, 2, 29), Some(11_016));
        assert_eq!(epoch_day(2024, 3, 1), Some(19_783));
        assert_eq!(epoch_day(9999, 12, 31), Some(2_932_896));
        for bad in [
            (1969, 12, 31),
            (2023, 2, 29),
            (2100, 2, 29),
            (2024, 4, 31),
            (2024, 13, 1),
        ] {
            assert_eq!(epoch_day(bad.0, bad.1, bad.2), None, "{bad:?}");
        }
        for days in [0, 59, 11_016, 19_783, 2_932_896] {
            let (y, m, d) = civil_from_days(days).expect("a date");
            assert_eq!(epoch_day(y, m, d), Some(days));
        }
        assert_eq!(civil_from_days(2_932_897), None);
    }
}

//! UTC calendar arithmetic and RFC 3339 times: what the logs write, what learn and diff read back,
//! and the dates of `until=`. Days count from 1970-01-01; nothing here knows time zones.

use crate::Timestamp;

/// `2024-05-01T12:00:00.123456789Z`.
pub fn rfc3339(ts: Timestamp) -> String {
    let nanos = ts.as_nanos();
    let secs = nanos / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos % 1_000_000_000
    )
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
    if !(1..=12).contains(&month) {
        return None;
    }
    if year < 1970
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .map(Timestamp::from_nanos)
}

pub fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

pub fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date (Howard Hinnant's `days_from_civil`, for years from 1970).
pub fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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
}

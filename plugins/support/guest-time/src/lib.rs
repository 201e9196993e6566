//! A small RFC 3339 timestamp parser, enough to order timestamps the host records.
//!
//! The guest carries no date crate; this parser accepts `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`
//! (also `t`/space as separator and `z`) and must never guess a missing offset.

/// An instant as whole seconds since the Unix epoch plus nanoseconds, comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub secs: i64,
    pub nanos: u32,
}

/// Parses an RFC 3339 timestamp; the error names what was wrong.
pub fn parse(text: &str) -> Result<Instant, String> {
    let b = text.trim().as_bytes();
    let bad = |what: &str| format!("timestamp {text:?} is not RFC 3339: {what}");
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &b[range];
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("expected digits"));
        }
        Ok(part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(bad("bad separators"));
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad("missing 'T' between date and time"));
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("date out of range"));
    }
    // Second 60 is a leap second; it orders as the last second of the minute.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("time out of range"));
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(bad("empty fraction"));
        }
        for _ in (i - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(bad("offset out of range"));
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return Err(bad("missing or malformed offset")),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok(Instant { secs, nanos })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_offsets_agree() {
        assert_eq!(parse("1970-01-01T00:00:00Z").unwrap().secs, 0);
        assert_eq!(parse("2026-11-23T12:00:00Z").unwrap(), parse("2026-11-23T14:00:00+02:00").unwrap());
        assert_eq!(parse("2000-03-01T00:00:00Z").unwrap().secs, 951_868_800);
    }

    #[test]
    fn fractions_order_within_a_second() {
        let a = parse("2026-01-01T00:00:00.5Z").unwrap();
        let b = parse("2026-01-01T00:00:00.25Z").unwrap();
        assert_eq!(a.nanos, 500_000_000);
        assert!(b < a);
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in ["2026-01-01", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00", "x"]
        {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}

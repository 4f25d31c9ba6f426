//! UTC timestamps with microsecond precision.
//!
//! Parsing is hand-written rather than delegated to a date library because imports parse
//! one timestamp per row and this is on the hot path; the accepted grammar is small and
//! documented on [`Timestamp::parse`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("empty timestamp")]
    Empty,
    #[error("'{0}' is not a timestamp (expected RFC 3339 such as 2026-03-01T10:15:00Z, a date, or epoch seconds/milliseconds)")]
    Syntax(String),
    #[error("'{0}' is out of range (years 1900 to 2199 are accepted)")]
    OutOfRange(String),
}

pub const MICROS_PER_SECOND: i64 = 1_000_000;
const MIN_YEAR: i64 = 1900;
const MAX_YEAR: i64 = 2199;
/// Epoch numbers below this magnitude are seconds, above it milliseconds (1e11 s is year 5138).
const SECONDS_MILLIS_BOUNDARY: f64 = 1e11;

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs * MICROS_PER_SECOND)
    }

    pub fn plus_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }

    /// Builds a timestamp from civil UTC fields. Panics never; out-of-range input is an error.
    pub fn from_civil(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        micros: u32,
    ) -> Result<Self, TimestampError> {
        let describe =
            || format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
            || micros >= 1_000_000
        {
            return Err(TimestampError::Syntax(describe()));
        }
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(TimestampError::OutOfRange(describe()));
        }
        // A leap second is folded onto the last second of the minute.
        let second = second.min(59);
        let days = days_from_civil(year, month, day);
        let secs =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        Ok(Timestamp(secs * MICROS_PER_SECOND + i64::from(micros)))
    }

    /// Epoch seconds or milliseconds, told apart by magnitude (< 1e11 means seconds).
    pub fn from_epoch_number(n: f64) -> Result<Self, TimestampError> {
        if !n.is_finite() {
            return Err(TimestampError::Syntax(n.to_string()));
        }
        let micros = if n.abs() < SECONDS_MILLIS_BOUNDARY {
            n * 1e6
        } else {
            n * 1e3
        };
        let ts = Timestamp(micros.round() as i64);
        if !ts.in_range() {
            return Err(TimestampError::OutOfRange(n.to_string()));
        }
        Ok(ts)
    }

    fn in_range(self) -> bool {
        let (year, ..) = self.civil();
        (MIN_YEAR..=MAX_YEAR).contains(&year)
    }

    /// Parses the timestamp forms Omnitrail accepts:
    ///
    /// - RFC 3339 / ISO 8601: `2026-03-01T10:15:00Z`, `2026-03-01 10:15:00.123+02:00`,
    ///   offsets `Z`, `±HH:MM`, `±HHMM`, `±HH`; fractions to nanoseconds (cut to microseconds);
    ///   without an offset the time is taken as UTC;
    /// - a date alone, `2016-01-12`, meaning midnight UTC;
    /// - epoch seconds or milliseconds written as digits (`1767225600`, `1767225600000`).
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(TimestampError::Empty);
        }
        let syntax = || TimestampError::Syntax(s.to_string());
        let bytes = s.as_bytes();
        if bytes.len() < 10 || bytes[4] != b'-' {
            // Not a date: maybe an epoch number.
            let n: f64 = s.parse().map_err(|_| syntax())?;
            return Timestamp::from_epoch_number(n);
        }
        let mut cur = Cursor { b: bytes, i: 0 };
        let year = cur.digits(4).ok_or_else(syntax)? as i64;
        cur.expect(b'-').ok_or_else(syntax)?;
        let month = cur.digits(2).ok_or_else(syntax)?;
        cur.expect(b'-').ok_or_else(syntax)?;
        let day = cur.digits(2).ok_or_else(syntax)?;
        if cur.done() {
            return Timestamp::from_civil(year, month, day, 0, 0, 0, 0);
        }
        match cur.next() {
            Some(b'T' | b't' | b' ') => {}
            _ => return Err(syntax()),
        }
        let hour = cur.digits(2).ok_or_else(syntax)?;
        cur.expect(b':').ok_or_else(syntax)?;
        let minute = cur.digits(2).ok_or_else(syntax)?;
        let mut second = 0;
        let mut micros = 0u32;
        if cur.peek() == Some(b':') {
            cur.i += 1;
            second = cur.digits(2).ok_or_else(syntax)?;
            if matches!(cur.peek(), Some(b'.' | b',')) {
                cur.i += 1;
                let start = cur.i;
                let mut frac: u32 = 0;
                while let Some(d @ b'0'..=b'9') = cur.peek() {
                    if cur.i - start < 6 {
                        frac = frac * 10 + u32::from(d - b'0');
                    }
                    cur.i += 1;
                }
                let n = cur.i - start;
                if n == 0 || n > 9 {
                    return Err(syntax());
                }
                for _ in n..6 {
                    frac *= 10;
                }
                micros = frac;
            }
        }
        let offset_secs: i64 = match cur.next() {
            None => 0,
            Some(b'Z' | b'z') => 0,
            Some(sign @ (b'+' | b'-')) => {
                let h = cur.digits(2).ok_or_else(syntax)? as i64;
                let m = if cur.done() {
                    0
                } else {
                    if cur.peek() == Some(b':') {
                        cur.i += 1;
                    }
                    cur.digits(2).ok_or_else(syntax)? as i64
                };
                if h > 23 || m > 59 {
                    return Err(syntax());
                }
                let off = h * 3600 + m * 60;
                if sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            Some(_) => return Err(syntax()),
        };
        if !cur.done() {
            return Err(syntax());
        }
        let local =
            Timestamp::from_civil(year, month, day, hour, minute, second, micros).map_err(|e| {
                match e {
                    TimestampError::OutOfRange(_) => TimestampError::OutOfRange(s.to_string()),
                    _ => syntax(),
                }
            })?;
        let ts = Timestamp(local.0 - offset_secs * MICROS_PER_SECOND);
        if !ts.in_range() {
            return Err(TimestampError::OutOfRange(s.to_string()));
        }
        Ok(ts)
    }

    /// (year, month, day, hour, minute, second, micros) in UTC.
    pub fn civil(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let days = self.0.div_euclid(86_400 * MICROS_PER_SECOND);
        let rem = self.0.rem_euclid(86_400 * MICROS_PER_SECOND);
        let (y, m, d) = civil_from_days(days);
        let secs = rem / MICROS_PER_SECOND;
        (
            y,
            m,
            d,
            (secs / 3600) as u32,
            ((secs / 60) % 60) as u32,
            (secs % 60) as u32,
            (rem % MICROS_PER_SECOND) as u32,
        )
    }

    /// RFC 3339 in UTC; the fraction is written only when it is not zero.
    pub fn to_rfc3339(self) -> String {
        let (y, mo, d, h, mi, s, us) = self.civil();
        if us == 0 {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
        } else {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z")
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.b.get(self.i..self.i + n)?;
        let mut v = 0u32;
        for &c in slice {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        self.i += n;
        Some(v)
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> i64 {
        Timestamp::parse(s).unwrap().as_micros()
    }

    #[test]
    fn accepts_the_documented_forms() {
        let base = 1_772_360_100 * MICROS_PER_SECOND; // 2026-03-01T10:15:00Z
        assert_eq!(ts("2026-03-01T10:15:00Z"), base);
        assert_eq!(ts("2026-03-01 12:15:00+02:00"), base);
        assert_eq!(ts("2026-03-01T05:15:00-0500"), base);
        assert_eq!(ts("2026-03-01T11:15:00+01"), base);
        assert_eq!(ts("2026-03-01T10:15:00"), base);
        assert_eq!(ts("2026-03-01T10:15"), base);
        assert_eq!(ts("2026-03-01T10:15:00.123456789Z"), base + 123_456);
        assert_eq!(ts("2026-03-01T10:15:00.5Z"), base + 500_000);
        assert_eq!(
            ts("2026-03-01"),
            base - (10 * 3600 + 15 * 60) * MICROS_PER_SECOND
        );
        assert_eq!(ts("1772360100"), base);
        assert_eq!(ts("1772360100000"), base);
        assert_eq!(
            ts("2011-10-11 13:45:40.276000+02:00"),
            1_318_333_540_276_000
        );
    }

    #[test]
    fn rejects_nonsense_with_the_offending_text() {
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-03-01T25:00:00Z",
            "2026-03-01T10:15:00+25:00",
            "yesterday",
            "2026-03-01T10:15:00Zjunk",
            "2026-03-01T10:15:00.Z",
        ] {
            let err = Timestamp::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
        assert!(matches!(
            Timestamp::parse("1800-01-01"),
            Err(TimestampError::OutOfRange(_))
        ));
        assert!(matches!(
            Timestamp::from_epoch_number(1e20),
            Err(TimestampError::OutOfRange(_))
        ));
        assert_eq!(Timestamp::parse("  "), Err(TimestampError::Empty));
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(micros in -2_208_988_800_000_000i64..7_258_118_399_000_000i64) {
            let t = Timestamp::from_micros(micros);
            prop_assert_eq!(Timestamp::parse(&t.to_rfc3339()).unwrap(), t);
        }
    }
}

//! Time literals and durations, all in milliseconds.
//!
//! The engine stores timestamps as milliseconds since the Unix epoch (IoTDB's
//! default `timestamp_precision=ms`), so every literal is reduced to an `i64`
//! of milliseconds here:
//!
//! - ISO-8601 datetimes: `2023-11-14T22:13:20`, with `/` accepted in place of
//!   `-` in the date and a space in place of `T` (as IoTDB's grammar allows),
//!   an optional fraction of a second (`.SSS`; digits past the third are
//!   truncated, since the precision is milliseconds) and an optional offset
//!   `Z`, `+08:00` or `-05:30`. **A datetime without an offset is read as
//!   UTC**: the parser knows no session time zone (IoTDB would use the
//!   session's `zoneId`); a caller that wants local time must add the offset.
//! - Durations: one or more `<digits><unit>` pairs, `1h30m`, with units `ms`,
//!   `s`, `m`, `h`, `d`, `w`. Calendar units (`mo`, `y`) and sub-millisecond
//!   units (`us`, `ns`) are rejected because they have no fixed millisecond
//!   length at this precision.

/// Milliseconds per second, minute, hour, day and week.
const MILLIS_PER_SECOND: i64 = 1_000;
const MILLIS_PER_MINUTE: i64 = 60 * MILLIS_PER_SECOND;
const MILLIS_PER_HOUR: i64 = 60 * MILLIS_PER_MINUTE;
const MILLIS_PER_DAY: i64 = 24 * MILLIS_PER_HOUR;
const MILLIS_PER_WEEK: i64 = 7 * MILLIS_PER_DAY;

/// Most fraction digits read after the seconds; more would be nanoseconds
/// beyond any clock and are truncated anyway.
const FRACTION_DIGITS_MAX: usize = 9;

/// Length in bytes of the longest prefix of `text` shaped like a datetime
/// literal (`YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH:MM]`), or `None` when
/// `text` does not start with a date. Only the shape is checked here; the
/// values are checked by [`parse_datetime_millis`].
pub(crate) fn datetime_literal_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let digits_at = |start: usize, count: usize| {
        bytes.len() >= start + count && bytes[start..start + count].iter().all(u8::is_ascii_digit)
    };
    if !digits_at(0, 4) {
        return None;
    }
    let separator = *bytes.get(4)?;
    if separator != b'-' && separator != b'/' {
        return None;
    }
    if !(digits_at(5, 2) && bytes.get(7) == Some(&separator) && digits_at(8, 2)) {
        return None;
    }
    let mut end = 10;
    let time_follows = matches!(bytes.get(end), Some(b'T' | b't' | b' '))
        && digits_at(end + 1, 2)
        && bytes.get(end + 3) == Some(&b':')
        && digits_at(end + 4, 2);
    if time_follows {
        end += 6;
        if bytes.get(end) == Some(&b':') && digits_at(end + 1, 2) {
            end += 3;
            if bytes.get(end) == Some(&b'.') && digits_at(end + 1, 1) {
                end += 1;
                while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
            }
        }
    }
    match bytes.get(end) {
        Some(b'Z' | b'z') => end += 1,
        Some(b'+' | b'-')
            if digits_at(end + 1, 2)
                && bytes.get(end + 3) == Some(&b':')
                && digits_at(end + 4, 2) =>
        {
            end += 6;
        }
        _ => {}
    }
    Some(end)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`): (year, month 1-12, day 1-31).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `ms` (milliseconds since the epoch, UTC) plus `months` calendar months, the day of the
/// month clamped to the target month's length (Jan 31 + 1 month = Feb 28/29), as IoTDB
/// adds natural months. `None` on overflow.
pub fn add_months_millis(ms: i64, months: i64) -> Option<i64> {
    let days = ms.div_euclid(MILLIS_PER_DAY);
    let time_of_day = ms.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let month_index = year
        .checked_mul(12)?
        .checked_add(month - 1)?
        .checked_add(months)?;
    let (year, month) = (month_index.div_euclid(12), month_index.rem_euclid(12) + 1);
    let day = day.min(days_in_month(year, month));
    days_from_civil(year, month, day)
        .checked_mul(MILLIS_PER_DAY)?
        .checked_add(time_of_day)
}

/// A calendar-month count such as `1mo` or `12mo` (`GROUP BY` windows in natural months);
/// `None` when `text` is not one.
pub fn parse_months(text: &str) -> Option<Result<u32, String>> {
    let digits = text
        .strip_suffix("mo")
        .or_else(|| text.strip_suffix("MO"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<u32>() {
        Ok(0) => Err("a duration must be positive".to_string()),
        Ok(months) if months <= 12_000 => Ok(months),
        _ => Err(format!("'{text}' is too many months")),
    })
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads `count` ASCII digits at `start` as a number.
fn number_at(bytes: &[u8], start: usize, count: usize) -> Result<i64, String> {
    let digits = bytes
        .get(start..start + count)
        .ok_or_else(|| "datetime literal is truncated".to_string())?;
    digits.iter().try_fold(0_i64, |value, digit| {
        if digit.is_ascii_digit() {
            Ok(value * 10 + i64::from(digit - b'0'))
        } else {
            Err("datetime literal has a non-digit where a digit belongs".to_string())
        }
    })
}

/// Converts a datetime literal (whole of `text`, shaped as
/// [`datetime_literal_len`] accepts) to milliseconds since the epoch.
/// Without an offset the datetime is UTC.
pub fn parse_datetime_millis(text: &str) -> Result<i64, String> {
    if datetime_literal_len(text) != Some(text.len()) {
        return Err(format!("'{text}' is not a datetime literal"));
    }
    let bytes = text.as_bytes();
    let year = number_at(bytes, 0, 4)?;
    let month = number_at(bytes, 5, 2)?;
    let day = number_at(bytes, 8, 2)?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range in '{text}'"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!("day {day} out of range in '{text}'"));
    }
    let mut position = 10;
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    if matches!(bytes.get(position), Some(b'T' | b't' | b' ')) {
        hour = number_at(bytes, position + 1, 2)?;
        minute = number_at(bytes, position + 4, 2)?;
        position += 6;
        if bytes.get(position) == Some(&b':') {
            second = number_at(bytes, position + 1, 2)?;
            position += 3;
            if bytes.get(position) == Some(&b'.') {
                position += 1;
                let fraction_start = position;
                while bytes.get(position).is_some_and(u8::is_ascii_digit) {
                    position += 1;
                }
                let fraction_len = position - fraction_start;
                if fraction_len > FRACTION_DIGITS_MAX {
                    return Err(format!(
                        "more than {FRACTION_DIGITS_MAX} fraction digits in '{text}'"
                    ));
                }
                // Scale the first three digits to milliseconds ("5" is 500 ms).
                let kept = fraction_len.min(3);
                millis = number_at(bytes, fraction_start, kept)? * 10_i64.pow(3 - kept as u32);
            }
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("time of day out of range in '{text}'"));
    }
    let offset_millis = match bytes.get(position) {
        Some(sign @ (b'+' | b'-')) => {
            let offset_hours = number_at(bytes, position + 1, 2)?;
            let offset_minutes = number_at(bytes, position + 4, 2)?;
            if offset_hours > 18 || offset_minutes > 59 {
                return Err(format!("zone offset out of range in '{text}'"));
            }
            let magnitude = offset_hours * MILLIS_PER_HOUR + offset_minutes * MILLIS_PER_MINUTE;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => 0,
    };
    // Four-digit years keep every term far inside i64, so plain arithmetic
    // cannot overflow here.
    let local_millis = days_from_civil(year, month, day) * MILLIS_PER_DAY
        + hour * MILLIS_PER_HOUR
        + minute * MILLIS_PER_MINUTE
        + second * MILLIS_PER_SECOND
        + millis;
    Ok(local_millis - offset_millis)
}

/// Converts a duration literal such as `1h30m` or `500ms` to milliseconds.
pub fn parse_duration_millis(text: &str) -> Result<i64, String> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut position = 0;
    let mut total: i64 = 0;
    while position < bytes.len() {
        let digits_start = position;
        while bytes.get(position).is_some_and(u8::is_ascii_digit) {
            position += 1;
        }
        if position == digits_start {
            return Err(format!("duration '{text}' needs a number before each unit"));
        }
        let amount: i64 = text[digits_start..position]
            .parse()
            .map_err(|_| format!("duration '{text}' is too large"))?;
        let unit_start = position;
        while bytes.get(position).is_some_and(u8::is_ascii_alphabetic) {
            position += 1;
        }
        let unit = text[unit_start..position].to_ascii_lowercase();
        let unit_millis = match unit.as_str() {
            "ms" => 1,
            "s" => MILLIS_PER_SECOND,
            "m" => MILLIS_PER_MINUTE,
            "h" => MILLIS_PER_HOUR,
            "d" => MILLIS_PER_DAY,
            "w" => MILLIS_PER_WEEK,
            "" => return Err(format!("duration '{text}' needs a unit after each number")),
            "mo" | "y" | "us" | "ns" => {
                return Err(format!(
                    "duration unit '{unit}' is not supported (timestamps are milliseconds)"
                ));
            }
            _ => return Err(format!("unknown duration unit '{unit}' in '{text}'")),
        };
        total = amount
            .checked_mul(unit_millis)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("duration '{text}' is too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn datetime_without_offset_is_utc() {
        assert_eq!(
            parse_datetime_millis("2023-11-14T22:13:20"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(parse_datetime_millis("1970-01-01"), Ok(0));
        assert_eq!(parse_datetime_millis("1970/01/01 00:00:01"), Ok(1000));
    }

    #[test]
    fn datetime_fraction_and_offsets() {
        assert_eq!(
            parse_datetime_millis("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(parse_datetime_millis("1970-01-01T00:00:00.5"), Ok(500));
        assert_eq!(parse_datetime_millis("1970-01-01T00:00:00.123456"), Ok(123));
        assert_eq!(
            parse_datetime_millis("1970-01-01T08:00:00+08:00"),
            Ok(0),
            "08:00 at +08:00 is midnight UTC"
        );
        assert_eq!(parse_datetime_millis("1969-12-31T19:00-05:00"), Ok(0));
    }

    #[test]
    fn datetime_values_are_range_checked() {
        assert!(parse_datetime_millis("2023-13-01").is_err());
        assert!(parse_datetime_millis("2023-02-29").is_err());
        assert!(parse_datetime_millis("2024-02-29").is_ok());
        assert!(parse_datetime_millis("2023-01-01T24:00:00").is_err());
        assert!(parse_datetime_millis("2023-01-01T00:00:00+19:00").is_err());
        assert!(parse_datetime_millis("2023-01-01junk").is_err());
    }

    #[test]
    fn datetime_shape_scanning() {
        assert_eq!(datetime_literal_len("2023-11-14T22:13:20 AND"), Some(19));
        assert_eq!(datetime_literal_len("2023-11-14 AND"), Some(10));
        assert_eq!(datetime_literal_len("2023-11-14 22:13 x"), Some(16));
        assert_eq!(
            datetime_literal_len("2023-11-14T22:13:20.5+08:00)"),
            Some(27)
        );
        assert_eq!(datetime_literal_len("2023-11-14T2"), Some(10));
        assert_eq!(datetime_literal_len("2023-1-14"), None);
        assert_eq!(datetime_literal_len("12345"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_millis("1ms"), Ok(1));
        assert_eq!(parse_duration_millis("1s"), Ok(1_000));
        assert_eq!(parse_duration_millis("1m"), Ok(60_000));
        assert_eq!(parse_duration_millis("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_millis("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_millis("1w"), Ok(604_800_000));
        assert_eq!(parse_duration_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_millis("1H30M"), Ok(5_400_000));
        assert!(parse_duration_millis("1mo").is_err());
        assert!(parse_duration_millis("1x").is_err());
        assert!(parse_duration_millis("h").is_err());
        assert!(parse_duration_millis("15").is_err());
        assert!(parse_duration_millis("99999999999999999999w").is_err());
        assert!(parse_duration_millis("9999999999999999w").is_err());
    }

    proptest! {
        #[test]
        fn civil_dates_round_trip(days in -719_162_i64..2_932_896) {
            let (year, month, day) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(year, month, day), days);
            let text = format!("{year:04}-{month:02}-{day:02}");
            prop_assert_eq!(parse_datetime_millis(&text), Ok(days * MILLIS_PER_DAY));
        }

        #[test]
        fn duration_parsing_never_panics(text in "[0-9a-zA-Z]{0,12}") {
            let _ = parse_duration_millis(&text);
        }

        #[test]
        fn datetime_parsing_never_panics(text in "[0-9T:+/. Zz-]{0,30}") {
            let _ = parse_datetime_millis(&text);
            let _ = datetime_literal_len(&text);
        }
    }
}

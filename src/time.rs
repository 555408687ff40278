//! Calendar arithmetic for the one place the pipeline meets a date string: the RFC 3339
//! `created` field of thin (`v2.core.event`) events. Written out here so the wasm bundle
//! does not carry a date library for a single conversion.

/// Parses an RFC 3339 timestamp such as `2026-11-30T12:34:56.789Z` or
/// `2026-11-30T14:34:56+02:00` into whole unix seconds, dropping any fraction.
///
/// Returns `None` for anything that is not a well-formed RFC 3339 date-time.
pub fn parse_rfc3339_seconds(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return None;
    }
    let year = digits(bytes, 0, 4)?;
    let month = digits(bytes, 5, 2)?;
    let day = digits(bytes, 8, 2)?;
    let hour = digits(bytes, 11, 2)?;
    let minute = digits(bytes, 14, 2)?;
    let second = digits(bytes, 17, 2)?;
    let separators_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is allowed for a leap second; it folds into the next minute like everywhere else.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }

    // An optional fraction, then the zone: `Z` or `+hh:mm` / `-hh:mm`.
    let mut rest = &bytes[19..];
    if rest.first() == Some(&b'.') {
        let fraction_len = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if fraction_len == 0 {
            return None;
        }
        rest = &rest[1 + fraction_len..];
    }
    let offset_seconds = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(rest, 1, 2)?;
            let minutes = digits(rest, 4, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                magnitude
            } else {
                -magnitude
            }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds)
}

/// Parses an HTTP date in its preferred form (IMF-fixdate, RFC 9110), such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`, the form a `Retry-After` header may take, into unix
/// seconds. The two obsolete forms are not accepted.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let bytes = text.trim().as_bytes();
    // "Sun, 06 Nov 1994 08:49:37 GMT" is always 29 bytes.
    if bytes.len() != 29 || &bytes[3..5] != b", " || &bytes[25..] != b" GMT" {
        return None;
    }
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == &bytes[8..11])? as i64 + 1;
    let day = digits(bytes, 5, 2)?;
    let year = digits(bytes, 12, 4)?;
    let hour = digits(bytes, 17, 2)?;
    let minute = digits(bytes, 20, 2)?;
    let second = digits(bytes, 23, 2)?;
    let separators_ok = bytes[7] == b' '
        && bytes[11] == b' '
        && bytes[16] == b' '
        && bytes[19] == b':'
        && bytes[22] == b':';
    if !separators_ok || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(bytes: &[u8], start: usize, len: usize) -> Option<i64> {
    let slice = bytes.get(start..start + len)?;
    slice.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
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

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Formats unix seconds as RFC 3339 in UTC with milliseconds, the form Stripe uses for
/// thin events: `2026-11-30T12:34:56.000Z`.
pub fn format_rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let second_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_seconds as parse;
    use super::{parse_http_date, parse_rfc3339_seconds};

    #[test]
    fn known_instants() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-03-01T00:00:00Z", 951_868_800),
            ("2024-02-29T23:59:59Z", 1_709_251_199),
            ("2026-11-30T12:34:56.789Z", 1_796_042_096),
            ("2026-11-30T14:34:56+02:00", 1_796_042_096),
            ("2026-11-30T07:04:56.5-05:30", 1_796_042_096),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for seconds in [0, 951_868_800, 1_709_251_199, 1_796_042_096, 4_102_444_800] {
            let text = super::format_rfc3339(seconds);
            assert_eq!(parse(&text), Some(seconds), "{text}");
        }
        assert_eq!(
            super::format_rfc3339(1_796_042_096),
            "2026-11-30T12:34:56.000Z"
        );
    }

    #[test]
    fn malformed_text_is_rejected() {
        let cases = [
            "",
            "2026-11-30",
            "2026-11-30T12:34:56",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T12:34:56.Z",
            "2026-11-30T12:34:56+0200",
            "2026-11-30T12:34:56Zjunk",
            "２０２６-11-30T12:34:56Z",
            "+026-11-30T12:34:56Z",
        ];
        for text in cases {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Fri, 04 Dec 2026 18:00:00 GMT"),
            parse_rfc3339_seconds("2026-12-04T18:00:00Z")
        );
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}

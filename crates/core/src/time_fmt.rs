//! Dates on the wire are exactly `YYYY-MM-DDTHH:MM:SS.sssZ` (what JavaScript's `toISOString()`
//! prints); the SDK's validator rejects anything else. Stored timestamps are Unix milliseconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Formats Unix milliseconds as `2024-05-01T10:00:00.000Z`.
pub fn format_ms(ms: i64) -> String {
    format_datetime(from_ms(ms))
}

pub fn format_datetime(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).expect("a UTC datetime always formats")
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Parses an RFC 3339 date (the API accepts any valid RFC 3339, it emits only the strict form).
pub fn parse_ms(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(to_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_three_fraction_digits_and_z() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_714_557_600_123), "2024-05-01T10:00:00.123Z");
        assert_eq!(format_ms(1_714_557_600_000), "2024-05-01T10:00:00.000Z");
    }

    #[test]
    fn parses_rfc3339_with_offsets() {
        assert_eq!(
            parse_ms("2024-05-01T12:00:00.123+02:00"),
            Some(1_714_557_600_123)
        );
        assert_eq!(parse_ms("yesterday"), None);
    }
}

//! Timestamps as the APIs show them.

/// Milliseconds since the epoch as RFC 3339 in UTC with milliseconds,
/// `2026-11-29T14:10:18.123Z`: the one format every response uses.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_961_418_123), "2026-11-29T14:10:18.123Z");
        assert_eq!(
            rfc3339(i64::MAX),
            "1970-01-01T00:00:00.000Z",
            "out of range is the epoch"
        );
    }
}

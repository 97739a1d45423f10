//! Parsers for argument values: durations (`7d`), sizes (`256MiB`), times.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// `500ms`, `30s`, `15m`, `12h`, `7d`, `2w`, or plain seconds. A value too large for a
/// [`Duration`] is an error (it would wrap around in a release build).
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 15m, 12h, 7d"))?;
    let seconds = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h, d or w)"
            ));
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long a duration (at most {} s)", u64::MAX))
}

/// A count of 1 or more (a worker's slots: 0 would run nothing).
pub fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be 1 or more".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `256MiB`, `1GB`, `64k`, or plain bytes.
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 256MiB or 1GB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    Ok((n * factor) as u64)
}

/// RFC 3339 (`2026-11-23T10:00:00Z`), `2026-11-23 10:00:00` (UTC) or a date (midnight UTC).
pub fn time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!(
        "{text:?} is not a time: use 2026-11-23T10:00:00Z, \"2026-11-23 10:00:00\" or 2026-11-23"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_times_parse() {
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("50ms"), Ok(Duration::from_millis(50)));
        assert!(duration("7y").unwrap_err().contains("unit"));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert_eq!(size("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(size("1.5k"), Ok(1536));
        assert!(size("lots").is_err());
        assert_eq!(
            time("2026-11-23").unwrap().to_rfc3339(),
            "2026-11-23T00:00:00+00:00"
        );
        assert!(time("yesterday").is_err());
    }

    /// Regression: `n * seconds` wrapped around in release builds (and panicked in debug
    /// ones), so a huge `--retention` became a short one.
    #[test]
    fn a_duration_too_large_is_an_error_not_a_wrapped_value() {
        let weeks = u64::MAX / (7 * 86_400) + 1;
        let err = duration(&format!("{weeks}w")).unwrap_err();
        assert!(err.contains("too long"), "{err}");
        assert!(duration("18446744073709551615d").is_err());
        assert_eq!(
            duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            duration(&format!("{}w", weeks - 1)),
            Ok(Duration::from_secs((weeks - 1) * 7 * 86_400))
        );
        assert!(
            duration("18446744073709551616").is_err(),
            "past u64 is refused too"
        );
    }

    /// Regression: `worker --concurrency 0` printed "0 slots" and ran one.
    #[test]
    fn a_count_of_zero_is_refused() {
        assert_eq!(positive("0"), Err("must be 1 or more".to_string()));
        assert_eq!(positive("4"), Ok(4));
        assert!(positive("-1").is_err());
    }
}

//! Placeholders in a schedule's job template, rendered for one slot.
//!
//! A placeholder is `{NAME}`, `{NAME-N}` / `{NAME+N}` (N days before / after the slot) or
//! `{NAME:FORMAT}` with a chrono strftime format, e.g. `{date-1:%Y/%m/%d}`. Dates are the
//! slot's local date in the schedule's time zone. `{{` and `}}` are literal braces.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Days, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};

/// The placeholders a template may use, with what they render to.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("date", "the slot's local date, 2026-11-23"),
    ("yyyy", "its year, 2026"),
    ("mm", "its month, 11"),
    ("dd", "its day, 23"),
    ("hh", "its hour, 02"),
    (
        "scheduled_at",
        "the slot's time with the zone's offset, 2026-11-23T02:00:00+01:00",
    ),
    ("schedule", "the schedule's name"),
];

/// The default format of each time placeholder.
fn default_format(name: &str) -> Option<&'static str> {
    Some(match name {
        "date" => "%Y-%m-%d",
        "yyyy" => "%Y",
        "mm" => "%m",
        "dd" => "%d",
        "hh" => "%H",
        "scheduled_at" => "%Y-%m-%dT%H:%M:%S%:z",
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Time { offset_days: i64, format: String },
    ScheduleName,
}

fn known() -> String {
    PLACEHOLDERS
        .iter()
        .map(|(n, _)| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse(template: &str) -> Result<Vec<Piece>> {
    let bad = |reason: String| Error::invalid(format!("template argument {template:?}"), reason);
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '}' => return Err(bad("a lone '}' (write '}}' for a literal brace)".into())),
            '{' => {
                let rest = &template[at + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(bad(
                        "an unclosed '{' (write '{{' for a literal brace)".into()
                    ));
                };
                let inner = &rest[..end];
                for _ in 0..inner.chars().count() + 1 {
                    chars.next();
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(placeholder(inner).map_err(bad)?);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn placeholder(inner: &str) -> std::result::Result<Piece, String> {
    let (head, format) = match inner.split_once(':') {
        Some((head, format)) => (head, Some(format)),
        None => (inner, None),
    };
    let name_end = head
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(head.len());
    let (name, offset) = head.split_at(name_end);
    let unknown = || {
        format!(
            "unknown placeholder {{{inner}}}; known: {} (with -N/+N days or :FORMAT, \
             e.g. {{date-1}}, {{date:%Y/%m/%d}}; '{{{{' for a literal brace)",
            known()
        )
    };
    if name == "schedule" {
        return if offset.is_empty() && format.is_none() {
            Ok(Piece::ScheduleName)
        } else {
            Err(format!(
                "{{schedule}} takes no offset or format: {{{inner}}}"
            ))
        };
    }
    let Some(default) = default_format(name) else {
        return Err(unknown());
    };
    let offset_days = match offset {
        "" => 0,
        o if o.starts_with(['-', '+'])
            && o.len() > 1
            && o[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            let n: i64 = o[1..]
                .parse()
                .map_err(|_| format!("day offset {o} is too large"))?;
            if n > 36_600 {
                return Err(format!("day offset {o} is too large"));
            }
            if o.starts_with('-') { -n } else { n }
        }
        _ => return Err(unknown()),
    };
    let format = format.unwrap_or(default).to_owned();
    if format.is_empty() || StrftimeItems::new(&format).any(|i| matches!(i, Item::Error)) {
        return Err(format!("invalid date format {format:?} in {{{inner}}}"));
    }
    Ok(Piece::Time {
        offset_days,
        format,
    })
}

/// Checks every placeholder in `template`; the error names the first unknown or malformed one.
pub fn check_template(template: &str) -> Result<()> {
    parse(template).map(drop)
}

/// Renders `template` for the slot `slot` (shown in `timezone`) of the schedule `name`.
pub fn render_template(
    template: &str,
    slot: DateTime<Utc>,
    timezone: Tz,
    name: &str,
) -> Result<String> {
    let local = slot.with_timezone(&timezone);
    let mut out = String::with_capacity(template.len());
    for piece in parse(template)? {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::ScheduleName => out.push_str(name),
            Piece::Time {
                offset_days,
                format,
            } => {
                let shifted = shift_days(local, offset_days).ok_or_else(|| {
                    Error::invalid(
                        format!("template argument {template:?}"),
                        format!("{offset_days} days from {local} is out of range"),
                    )
                })?;
                out.push_str(&shifted.format(&format).to_string());
            }
        }
    }
    Ok(out)
}

/// The same local time `days` days later (earlier when negative). Computed on the local
/// calendar, so that a day offset never moves the hour; a time that falls in a
/// daylight-saving overlap takes its first occurrence, one in a gap the hour after.
fn shift_days(local: DateTime<Tz>, days: i64) -> Option<DateTime<Tz>> {
    let n = Days::new(days.unsigned_abs());
    let naive = local.naive_local();
    let naive = if days < 0 {
        naive.checked_sub_days(n)?
    } else {
        naive.checked_add_days(n)?
    };
    let tz = local.timezone();
    tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + chrono::TimeDelta::hours(1)))
            .earliest()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slot() -> DateTime<Utc> {
        // 2026-03-01 02:00 in Berlin (UTC+1).
        DateTime::parse_from_rfc3339("2026-03-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn render(t: &str) -> String {
        render_template(t, slot(), chrono_tz::Europe::Berlin, "nightly").unwrap()
    }

    #[test]
    fn renders_dates_in_the_schedule_zone() {
        assert_eq!(
            render("s3://landing/events/{date}/*.csv"),
            "s3://landing/events/2026-03-01/*.csv"
        );
        assert_eq!(render("{date-1}"), "2026-02-28");
        assert_eq!(render("{date+1}"), "2026-03-02");
        assert_eq!(render("{yyyy}/{mm}/{dd}/{hh}"), "2026/03/01/02");
        assert_eq!(render("{date-1:%Y/%m/%d}"), "2026/02/28");
        assert_eq!(render("{scheduled_at}"), "2026-03-01T02:00:00+01:00");
        assert_eq!(render("{schedule}-{{literal}}"), "nightly-{literal}");
        assert_eq!(render("no placeholders"), "no placeholders");
        // 126 days back is 2025-10-26 02:00, which Berlin's clocks pass twice.
        assert_eq!(render("{date-126} {hh}"), "2025-10-26 02");
        // 28 days on is 2026-03-29, when 02:00 does not exist in Berlin: the hour after.
        assert_eq!(render("{date+28:%Y-%m-%d %H}"), "2026-03-29 03");
    }

    #[test]
    fn unknown_and_malformed_placeholders_are_named() {
        for (template, expect) in [
            ("landing/{day}/x.csv", "unknown placeholder {day}"),
            ("landing/{date-x}/x.csv", "unknown placeholder {date-x}"),
            ("landing/{date", "unclosed '{'"),
            ("landing/date}", "lone '}'"),
            ("{schedule-1}", "takes no offset"),
            ("{date:%Q}", "invalid date format"),
            ("{a,b}", "unknown placeholder {a,b}"),
        ] {
            let e = check_template(template).unwrap_err().to_string();
            assert!(e.contains(expect), "{template}: {e}");
            assert!(e.contains(template), "{template}: {e}");
        }
    }

    proptest! {
        /// Text without braces renders to itself; escaped braces render to single ones.
        #[test]
        fn text_without_placeholders_is_kept(text in "[^{}]{0,40}") {
            prop_assert_eq!(render(&text), text.clone());
            let escaped = format!("{{{{{text}}}}}");
            prop_assert_eq!(render(&escaped), format!("{{{text}}}"));
        }

        /// {date-N} is N days before {date}, whatever N.
        #[test]
        fn day_offsets_move_the_date(n in 0u64..2000) {
            let rendered = render(&format!("{{date-{n}}}"));
            let date = chrono::NaiveDate::parse_from_str(&rendered, "%Y-%m-%d").unwrap();
            let expected = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() - Days::new(n);
            prop_assert_eq!(date, expected);
        }
    }
}

//! When a schedule fires: a cron expression read in an IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::error::{Error, Result};

/// A cron expression (five fields, or six with seconds first; `@daily` and friends) and
/// the time zone its fields are read in. Slots are the instants it matches; a slot at
/// 02:00 Europe/Berlin is 01:00 UTC in winter and 00:00 UTC in summer. Daylight-saving
/// gaps and overlaps follow croner: a fixed time inside a gap fires right after it, an
/// overlapped time fires once.
#[derive(Debug, Clone)]
pub struct Cadence {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

impl Cadence {
    /// Parses `expression` and `timezone` (an IANA name such as `Europe/Berlin`, or `UTC`).
    pub fn new(expression: &str, timezone: &str) -> Result<Self> {
        let cron = Cron::from_str(expression.trim()).map_err(|e| {
            Error::invalid(
                format!("cron expression {expression:?}"),
                format!(
                    "{e} (expected five fields: minute hour day-of-month month day-of-week, \
                     e.g. \"0 2 * * *\" for 02:00 every day)"
                ),
            )
        })?;
        let timezone = Tz::from_str(timezone.trim()).map_err(|_| {
            Error::invalid(
                format!("time zone {timezone:?}"),
                "no such IANA time zone (examples: UTC, Europe/Berlin, America/New_York)",
            )
        })?;
        Ok(Self {
            expression: expression.trim().to_owned(),
            cron,
            timezone,
        })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name.
    pub fn timezone(&self) -> &'static str {
        self.timezone.name()
    }

    /// The time zone.
    pub fn zone(&self) -> Tz {
        self.timezone
    }

    /// `t` in the schedule's time zone.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.timezone)
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&self.local(t), false)
            .ok()
            .map(|s| s.with_timezone(&Utc))
    }

    /// The latest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&self.local(t), true)
            .ok()
            .map(|s| s.with_timezone(&Utc))
    }

    /// Slots in `(after, upto]`, oldest first, at most `limit`.
    pub fn slots_between(
        &self,
        after: DateTime<Utc>,
        upto: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut slots = Vec::new();
        let mut t = after;
        while slots.len() < limit {
            match self.next_after(t) {
                Some(next) if next <= upto => {
                    slots.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        slots
    }

    /// Whether `t` is a slot.
    pub fn is_slot(&self, t: DateTime<Utc>) -> bool {
        self.cron.is_time_matching(&self.local(t)).unwrap_or(false)
            && t.timestamp_subsec_nanos() == 0
    }

    /// The slots on a local calendar day.
    pub fn slots_on(&self, day: NaiveDate) -> Vec<DateTime<Utc>> {
        let start = day.and_hms_opt(0, 0, 0).map(|t| {
            self.timezone
                .from_local_datetime(&t)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        });
        let end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| {
                self.timezone
                    .from_local_datetime(&t)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            });
        match (start.flatten(), end.flatten()) {
            (Some(start), Some(end)) => {
                let before = start - chrono::TimeDelta::seconds(1);
                self.slots_between(before, end - chrono::TimeDelta::seconds(1), 24 * 60 * 60)
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn nightly_slots_follow_the_time_zone() {
        let berlin = Cadence::new("0 2 * * *", "Europe/Berlin").unwrap();
        // Winter: UTC+1.
        assert_eq!(
            berlin.next_after(utc("2026-01-10T00:00:00Z")),
            Some(utc("2026-01-10T01:00:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            berlin.next_after(utc("2026-07-10T00:30:00Z")),
            Some(utc("2026-07-11T00:00:00Z"))
        );
        let slots =
            berlin.slots_between(utc("2026-01-01T00:00:00Z"), utc("2026-01-04T01:00:00Z"), 10);
        assert_eq!(
            slots,
            vec![
                utc("2026-01-01T01:00:00Z"),
                utc("2026-01-02T01:00:00Z"),
                utc("2026-01-03T01:00:00Z"),
                utc("2026-01-04T01:00:00Z"),
            ]
        );
        assert_eq!(slots.len(), 4);
        assert!(berlin.is_slot(utc("2026-01-02T01:00:00Z")));
        assert!(!berlin.is_slot(utc("2026-01-02T02:00:00Z")));
        assert_eq!(
            berlin.latest_at_or_before(utc("2026-01-02T01:00:00Z")),
            Some(utc("2026-01-02T01:00:00Z"))
        );
        assert_eq!(
            berlin.slots_on(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
            vec![utc("2026-01-02T01:00:00Z")]
        );
    }

    #[test]
    fn limit_caps_a_long_backlog() {
        let every_minute = Cadence::new("* * * * *", "UTC").unwrap();
        let slots = every_minute.slots_between(
            utc("2026-01-01T00:00:00Z"),
            utc("2026-02-01T00:00:00Z"),
            100,
        );
        assert_eq!(slots.len(), 100);
        assert_eq!(slots[99], utc("2026-01-01T01:40:00Z"));
    }

    #[test]
    fn bad_expressions_and_zones_name_what_is_wrong() {
        let e = Cadence::new("0 2 * *", "UTC").unwrap_err().to_string();
        assert!(e.contains("cron expression \"0 2 * *\""), "{e}");
        let e = Cadence::new("61 2 * * *", "UTC").unwrap_err().to_string();
        assert!(e.contains("61 2 * * *"), "{e}");
        let e = Cadence::new("0 2 * * *", "Europe/Berln")
            .unwrap_err()
            .to_string();
        assert!(e.contains("time zone \"Europe/Berln\""), "{e}");
    }
}

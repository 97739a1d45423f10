//! Injected time: leases, backoff and pruning read the clock through [`Clock`] so tests can
//! move time instead of sleeping.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A clock that reads the time (RFC 3339) from a file each time it is asked, so that a
/// test can move the time of several processes at once (`TERRACE_CLOCK_FILE` in the CLI).
/// Write the file atomically (write elsewhere, then rename); if it cannot be read or
/// parsed, the last time read is kept, and the system time before any was read.
#[derive(Debug)]
pub struct FileClock {
    path: std::path::PathBuf,
    last: Mutex<Option<DateTime<Utc>>>,
}

impl FileClock {
    /// A clock reading `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: Mutex::new(None),
        }
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        let read = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
            .map(|t| t.with_timezone(&Utc));
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if read.is_some() {
            *last = read;
        }
        last.unwrap_or_else(Utc::now)
    }
}

//! Schedules: a cron [`Cadence`] in a time zone, a job template with placeholders, and
//! the [`Scheduler`] that workers run to fire each (schedule, slot) exactly once.
//!
//! Exactly once comes from the database, not from any one scheduler: firing a slot
//! inserts its `schedule_runs` row under a unique key on (schedule, slot) in the same
//! transaction as the job, so however many schedulers race for a slot, one job exists
//! and the rest change nothing. A scheduler that dies before that transaction leaves the
//! slot unfired, and the next tick of any scheduler fires it. The fired job is an
//! ordinary job whose origin names the schedule and slot; an ingest also carries the
//! idempotency key `schedule:<name>:<slot>` into its commit (the CLI appends a key the
//! template gives), so a manual re-run of a slot (`schedule run --at`) that was already
//! ingested commits nothing, as long as the version that committed it has not been
//! removed by gc.

mod cadence;
mod scheduler;
mod template;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub use cadence::Cadence;
pub use scheduler::{SchedulePlanner, Scheduler, SchedulerConfig, TickReport};
pub use template::{PLACEHOLDERS, check_template, render_template};

use crate::error::{Error, Result};
use crate::model::{JobId, JobState, Origin};

/// What a scheduler does with slots that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Fire none of them; only slots seen on time (within the grace period) fire.
    None,
    /// Fire the latest one.
    #[default]
    Last,
    /// Fire every one, oldest first.
    All,
}

impl CatchUp {
    /// `none`, `last` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Last => "last",
            CatchUp::All => "all",
        }
    }
}

impl FromStr for CatchUp {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(CatchUp::None),
            "last" => Ok(CatchUp::Last),
            "all" => Ok(CatchUp::All),
            other => Err(Error::Corrupt {
                what: format!("unknown catch-up policy {other:?}"),
            }),
        }
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The job a schedule submits: the arguments of a terrace command (e.g. `ingest
/// 'landing/{date}/*.csv' --into lake/events`), with placeholders, and the directory
/// relative paths in them are resolved against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplate {
    /// The command's arguments, placeholders unrendered.
    pub args: Vec<String>,
    /// Where `schedule add` ran; relative paths are relative to it.
    pub working_dir: Option<String>,
}

impl JobTemplate {
    /// Checks every placeholder of every argument.
    pub fn check(&self) -> Result<()> {
        self.args.iter().try_for_each(|a| check_template(a))
    }

    /// The arguments rendered for `slot` of the schedule `name` with `cadence`.
    pub fn render(
        &self,
        cadence: &Cadence,
        name: &str,
        slot: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.args
            .iter()
            .map(|a| render_template(a, slot, cadence.zone(), name))
            .collect()
    }
}

/// A schedule to add.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Unique name.
    pub name: String,
    /// When it fires.
    pub cadence: Cadence,
    /// What it submits.
    pub template: JobTemplate,
    /// What happens to slots missed while no scheduler ran.
    pub catch_up: CatchUp,
}

impl NewSchedule {
    /// Checks the name and the template's placeholders.
    pub fn new(
        name: &str,
        cadence: Cadence,
        template: JobTemplate,
        catch_up: CatchUp,
    ) -> Result<Self> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::invalid(
                format!("schedule name {name:?}"),
                "use letters, digits, '-', '_' and '.'",
            ));
        }
        if template.args.is_empty() {
            return Err(Error::invalid("the job template", "it is empty"));
        }
        template.check()?;
        Ok(Self {
            name: name.to_owned(),
            cadence,
            template,
            catch_up,
        })
    }
}

/// A stored schedule.
#[derive(Debug, Clone)]
pub struct ScheduleRecord {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// When it fires.
    pub cadence: Cadence,
    /// What it submits.
    pub template: JobTemplate,
    /// What happens to missed slots.
    pub catch_up: CatchUp,
    /// Paused schedules fire nothing; slots passed while paused are skipped on resume.
    pub paused: bool,
    /// The latest slot dealt with (fired or skipped).
    pub cursor: Option<DateTime<Utc>>,
    /// When it was added; its first slot is after this.
    pub created_at: DateTime<Utc>,
}

impl ScheduleRecord {
    /// The template's arguments rendered for `slot`.
    pub fn render(&self, slot: DateTime<Utc>) -> Result<Vec<String>> {
        self.template.render(&self.cadence, &self.name, slot)
    }

    /// The origin recorded on the jobs it fires: `<name>@<slot in RFC 3339, UTC>`.
    pub fn origin(&self, slot: DateTime<Utc>) -> Origin {
        Origin::Schedule(format!("{}@{}", self.name, slot_text(slot)))
    }

    /// The idempotency key its ingests commit with: re-running a slot is a no-op.
    pub fn idempotency_key(&self, slot: DateTime<Utc>) -> String {
        format!("schedule:{}:{}", self.name, slot_text(slot))
    }

    /// The next slot after `now` (or after the cursor, if that is later).
    pub fn next_slot(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = self.cursor.map_or(now, |c| c.max(now));
        self.cadence.next_after(from)
    }
}

/// A slot as text: RFC 3339 in UTC, to the second.
pub fn slot_text(slot: DateTime<Utc>) -> String {
    slot.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One fired slot (or manual run) of a schedule, with its job's state.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRun {
    /// The slot.
    pub slot: DateTime<Utc>,
    /// Started by `schedule run --at` rather than by a scheduler.
    pub manual: bool,
    /// When it was fired.
    pub fired_at: DateTime<Utc>,
    /// The job, unless planning failed or the job was pruned.
    pub job_id: Option<JobId>,
    /// The job's state.
    pub state: Option<JobState>,
    /// Rows the job wrote.
    pub rows: Option<i64>,
    /// Why planning failed, or why the job failed.
    pub error: Option<String>,
}

/// What firing a slot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// The job was submitted.
    Submitted(JobId),
    /// The template could not be planned for this slot; the run records why.
    NotPlanned(String),
    /// Another scheduler fired this slot first; nothing changed.
    AlreadyFired,
}

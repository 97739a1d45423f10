//! The records the queue stores and hands out.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// A job's id (the `jobs.id` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

/// A task's id (the `tasks.id` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),* }

        impl $name {
            /// The name stored in the table.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$v),)*
                    other => Err(Error::Corrupt {
                        what: format!("unknown {} {other:?}", stringify!($name)),
                    }),
                }
            }
        }
    };
}

string_enum! {
    /// Where a job is in its life.
    JobState {
        /// Submitted, no task has started.
        Queued => "queued",
        /// At least one task was claimed.
        Running => "running",
        /// The final stage completed; `result` holds the outcome.
        Succeeded => "succeeded",
        /// A task died; `error` holds its error.
        Failed => "failed",
        /// Cancelled by a user.
        Cancelled => "cancelled",
    }
}

impl JobState {
    /// Whether the job will not change any more (unless retried).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

string_enum! {
    /// Where a task is in its life.
    TaskState {
        /// Waits for the previous stage to complete.
        Blocked => "blocked",
        /// May be claimed once `run_after` has passed.
        Ready => "ready",
        /// Claimed by `lease_owner` until `lease_expires_at`.
        Running => "running",
        /// Completed; `result` holds the completing attempt's result.
        Done => "done",
        /// Failed for good (non-retryable error or out of attempts).
        Dead => "dead",
        /// Its job was cancelled or failed.
        Cancelled => "cancelled",
    }
}

/// Who submitted a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A user through the CLI; the detail is free text (e.g. the user name).
    Cli(Option<String>),
    /// A schedule; the detail names it.
    Schedule(String),
}

impl Origin {
    /// `cli` or `schedule`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Cli(_) => "cli",
            Origin::Schedule(_) => "schedule",
        }
    }

    /// The user or schedule it came from, when recorded.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Origin::Cli(d) => d.as_deref(),
            Origin::Schedule(d) => Some(d),
        }
    }

    pub(crate) fn from_columns(kind: &str, detail: Option<String>) -> Result<Self> {
        match kind {
            "cli" => Ok(Origin::Cli(detail)),
            "schedule" => Ok(Origin::Schedule(detail.unwrap_or_default())),
            other => Err(Error::Corrupt {
                what: format!("unknown job origin {other:?}"),
            }),
        }
    }
}

/// A task to enqueue, at submit time or from a completing task (dynamic fan-out).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// Stages run in increasing order; all tasks of a stage complete before the next
    /// stage's tasks become ready.
    pub stage: i32,
    /// What the handler needs to do the work.
    pub payload: Value,
    /// Attempts before the task is dead; `None` takes the queue's default.
    pub max_attempts: Option<i32>,
}

impl NewTask {
    /// A task of `stage` with `payload` and the default number of attempts.
    pub fn new(stage: i32, payload: Value) -> Self {
        Self {
            stage,
            payload,
            max_attempts: None,
        }
    }

    /// Sets the number of attempts.
    pub fn with_max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }
}

/// A job to submit: [`crate::Queue::submit`] stores it with all its tasks in one
/// transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What kind of job (`ingest`, `query`, `compact`, …); copied into every task.
    pub kind: String,
    /// The job's parameters.
    pub spec: Value,
    /// Who submitted it.
    pub origin: Origin,
    /// Its tasks; at least one.
    pub tasks: Vec<NewTask>,
}

impl NewJob {
    /// A job of `kind` with `spec`, from the CLI, with no tasks yet.
    pub fn new(kind: impl Into<String>, spec: Value) -> Self {
        Self {
            kind: kind.into(),
            spec,
            origin: Origin::Cli(None),
            tasks: Vec::new(),
        }
    }

    /// Sets who submitted the job.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Adds a task.
    pub fn with_task(mut self, task: NewTask) -> Self {
        self.tasks.push(task);
        self
    }

    /// Adds tasks.
    pub fn with_tasks(mut self, tasks: impl IntoIterator<Item = NewTask>) -> Self {
        self.tasks.extend(tasks);
        self
    }
}

/// A job as stored, with its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its parameters.
    pub spec: Value,
    /// Its state.
    pub state: JobState,
    /// The lowest stage not yet completed (or the last one, once finished).
    pub current_stage: i32,
    /// Tasks in all stages, including those added by fan-out.
    pub tasks_total: i64,
    /// Tasks completed.
    pub tasks_done: i64,
    /// Tasks dead.
    pub tasks_failed: i64,
    /// Rows reported by completed tasks.
    pub rows: i64,
    /// Bytes reported by completed tasks.
    pub bytes: i64,
    /// The outcome, once succeeded: the result of the final stage's task when that stage
    /// has exactly one task (the usual "commit" task), otherwise `null`.
    pub result: Option<Value>,
    /// The error of the task that made the job fail.
    pub error: Option<String>,
    /// Who submitted it.
    pub origin: Origin,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When its first task was claimed.
    pub started_at: Option<DateTime<Utc>>,
    /// When it succeeded, failed or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether a task of the job has begun to commit ([`crate::Queue::begin_commit`]):
    /// from then on a cancel no longer stops the job, the commit's outcome decides it.
    pub commit_started: bool,
    /// When a cancel arrived after the commit had begun (and so was not applied).
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

/// What [`crate::Queue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job is cancelled: its pending tasks will not run, and a running task that
    /// has not begun to commit will commit nothing.
    Cancelled,
    /// The job's commit had already begun, so the job was not cancelled: the commit
    /// finishes (or fails) and that decides the job. The request is recorded.
    Committing,
}

impl JobRecord {
    /// The spec decoded into `T`; the error names the job.
    pub fn spec_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.spec.clone()).map_err(|source| Error::MalformedSpec {
            id: self.id,
            source,
        })
    }
}

/// A task as stored (for inspection; workers get [`ClaimedTask`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// Its stage.
    pub stage: i32,
    /// Its state.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Not claimable before this.
    pub run_after: DateTime<Utc>,
    /// The worker holding it, while running.
    pub lease_owner: Option<String>,
    /// When that lease runs out unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The completing attempt's result.
    pub result: Option<Value>,
    /// The last attempt's error.
    pub error: Option<String>,
}

/// A task claimed by a worker: it holds a lease on it until completion, failure or expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// Its id.
    pub id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// Its job's kind.
    pub kind: String,
    /// Its stage.
    pub stage: i32,
    /// This attempt's number, from 1; completion is accepted only for this attempt.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The lease holder (the worker id); completion is accepted only from it.
    pub lease_owner: String,
    /// The payload's JSON text as stored; see [`ClaimedTask::payload`].
    pub payload_json: String,
    /// When the task became ready (submitted, or unblocked by the previous stage).
    pub ready_at: DateTime<Utc>,
    /// When this attempt was claimed.
    pub claimed_at: DateTime<Utc>,
}

impl ClaimedTask {
    /// The payload as JSON; the error names the task and job.
    pub fn payload(&self) -> Result<Value> {
        self.payload_as()
    }

    /// The payload decoded into `T`; the error names the task and job.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.payload_json).map_err(|source| Error::MalformedPayload {
            id: self.id,
            job_id: self.job_id,
            source,
        })
    }
}

/// What a handler reports for a task that succeeded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// Kept in the task row (only for the completing attempt); the next stage reads it
    /// with [`crate::Queue::stage_results`].
    pub result: Value,
    /// Rows this task wrote or read, added to the job's progress.
    pub rows: i64,
    /// Bytes this task wrote or read, added to the job's progress.
    pub bytes: i64,
    /// Tasks to add to later stages of the same job, atomically with this completion.
    pub new_tasks: Vec<NewTask>,
}

impl TaskOutput {
    /// An output carrying `result`.
    pub fn new(result: Value) -> Self {
        Self {
            result,
            ..Self::default()
        }
    }

    /// Sets the progress figures.
    pub fn with_progress(mut self, rows: i64, bytes: i64) -> Self {
        self.rows = rows;
        self.bytes = bytes;
        self
    }

    /// Adds a task to a later stage (dynamic fan-out).
    pub fn with_new_task(mut self, task: NewTask) -> Self {
        self.new_tasks.push(task);
        self
    }
}

/// The identity of one attempt: what completion and failure are guarded by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The task.
    pub task_id: TaskId,
    /// Its job (locked first, so that every transaction takes locks in the same order).
    pub job_id: JobId,
    /// The attempt number.
    pub attempt: i32,
    /// The lease holder.
    pub lease_owner: String,
}

impl From<&ClaimedTask> for Attempt {
    fn from(t: &ClaimedTask) -> Self {
        Attempt {
            task_id: t.id,
            job_id: t.job_id,
            attempt: t.attempt,
            lease_owner: t.lease_owner.clone(),
        }
    }
}

/// One completion in a batch passed to [`crate::Queue::complete`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Which attempt completes.
    pub attempt: Attempt,
    /// What it produced.
    pub output: TaskOutput,
}

/// The outcome of one completion or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Recorded.
    Accepted,
    /// Refused: the attempt no longer holds the task (its lease expired and the task was
    /// claimed again, or the job was cancelled or failed). Its result was discarded.
    Stale,
}

/// What happened to a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Will run again after the given time.
    RetryAt(DateTime<Utc>),
    /// Dead; its job failed.
    Dead,
    /// Refused, as [`Ack::Stale`].
    Stale,
}

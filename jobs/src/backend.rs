//! The storage contract the queue runs on, and what every backend must guarantee.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::model::{
    Ack, Attempt, CancelOutcome, ClaimedTask, Completion, FailOutcome, JobId, JobRecord, JobState,
    NewJob, TaskId, TaskRecord,
};
use crate::schedule::{FireOutcome, NewSchedule, ScheduleRecord, ScheduleRun};

/// A queue store. [`crate::Queue`] wraps one and adds the clock, backoff and defaults;
/// [`crate::SqliteBackend`] and [`crate::PostgresBackend`] implement it, and one shared
/// test suite pins their behaviour.
///
/// Every time argument comes from the caller's [`crate::Clock`]; a backend never reads
/// the database's clock, so leases, backoff and pruning follow the injected time.
///
/// Guarantees every implementation gives:
/// - **Atomic submit**: a job and all its tasks become visible together or not at all.
///   The lowest stage's tasks are `ready`, later stages `blocked`.
/// - **Exclusive claim**: a task in `ready` state whose `run_after` has passed is handed
///   to at most one claimer per attempt; claiming bumps `attempts` and sets the lease.
/// - **Guarded completion**: completing or failing an attempt succeeds only while the
///   task is `running` with the same attempt number and lease owner; otherwise the call
///   reports [`Ack::Stale`] and changes nothing, so only the completing attempt's result
///   is kept.
/// - **Fan-in exactly once**: the completion that makes a stage's done count reach its
///   total unblocks the next non-empty stage (or finishes the job) in the same
///   transaction, decided by one guarded update of the job's stage counter; no other
///   completion can also decide it.
/// - **Dynamic fan-out**: tasks added by a completion (to later stages only) are stored in
///   the completion's transaction, before the fan-in decision.
/// - **Lease expiry**: [`Backend::reap_expired`] makes tasks whose lease ran out
///   claimable again; a stale holder's later completion is refused.
/// - **A started commit decides**: once [`Backend::begin_commit`] granted a task the
///   commit, [`Backend::cancel`] leaves the job alone (reporting
///   [`CancelOutcome::Committing`]); once a cancel went through, `begin_commit` refuses.
/// - **A slot fires once**: [`Backend::fire_slot`] with `manual` false stores the run and
///   its job in one transaction, under a unique key on (schedule, slot); a second call
///   for the slot, from any process, returns [`FireOutcome::AlreadyFired`] and stores
///   nothing.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `"sqlite"` or `"postgres"`.
    fn name(&self) -> &'static str;

    /// Stores the job and its tasks; `max_attempts` fills tasks that set none.
    fn submit<'a>(
        &'a self,
        job: &'a NewJob,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<JobId>>;

    /// Claims up to `limit` ready tasks for `owner`, leased until `lease_until`.
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<ClaimedTask>>>;

    /// Completes a batch of attempts in one transaction; one [`Ack`] per completion.
    fn complete<'a>(
        &'a self,
        batch: &'a [Completion],
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Ack>>>;

    /// Records a failed attempt: ready again at `retry_at` if given and attempts remain,
    /// otherwise dead, failing its job with `error`.
    fn fail<'a>(
        &'a self,
        attempt: &'a Attempt,
        error: &'a str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<FailOutcome>>;

    /// Gives claimed attempts back without counting them (used at shutdown for tasks
    /// that never started).
    fn release<'a>(&'a self, attempts: &'a [Attempt]) -> BoxFuture<'a, Result<u64>>;

    /// Extends every lease `owner` holds to `lease_until` and records its heartbeat.
    fn heartbeat<'a>(
        &'a self,
        owner: &'a str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<u64>>;

    /// Makes tasks whose lease expired before `now` ready again; returns those reaped and
    /// the attempts that were the task's last (the caller fails them).
    fn reap_expired(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<(u64, Vec<LostLast>)>>;

    /// Cancels a job that is not finished, and its unfinished tasks, unless a task of it
    /// has begun to commit ([`Backend::begin_commit`]): then the job is left to that
    /// commit, the request is recorded, and the answer is [`CancelOutcome::Committing`].
    fn cancel(&self, job: JobId, now: DateTime<Utc>) -> BoxFuture<'_, Result<CancelOutcome>>;

    /// Marks `attempt`'s task as the job's commit, the point after which a cancel no
    /// longer stops the job. `false` (and nothing changed) when the job is finished or
    /// cancelled, or the attempt no longer holds its task: the task must then make no
    /// visible change. Atomic with respect to [`Backend::cancel`]: exactly one of the two
    /// decides.
    fn begin_commit<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Result<bool>>;

    /// Makes a failed job's dead (and cancelled) tasks of its current stage ready again
    /// with fresh attempts; returns how many.
    fn retry(&self, job: JobId, now: DateTime<Utc>) -> BoxFuture<'_, Result<u64>>;

    /// One job.
    fn job(&self, job: JobId) -> BoxFuture<'_, Result<JobRecord>>;

    /// Jobs, newest first, at most `limit`, only those in `state` when given.
    fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<JobRecord>>>;

    /// A job's tasks, by id.
    fn tasks(&self, job: JobId) -> BoxFuture<'_, Result<Vec<TaskRecord>>>;

    /// The results of a stage's completed tasks, by task id.
    fn stage_results(&self, job: JobId, stage: i32) -> BoxFuture<'_, Result<Vec<(TaskId, Value)>>>;

    /// Deletes jobs (and their tasks) finished before `before`, and workers silent since
    /// then; returns the number of jobs deleted.
    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<u64>>;

    /// Records a worker.
    fn register_worker<'a>(
        &'a self,
        id: &'a str,
        host: &'a str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes a worker's row.
    fn deregister_worker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Starts forwarding "work available" wake-ups to `notify`, if the backend has push
    /// notification (Postgres LISTEN/NOTIFY); `None` means poll.
    fn spawn_listener(&self, notify: Arc<Notify>) -> Option<JoinHandle<()>>;

    /// Closes the connection pool.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Stores a schedule and returns its id; [`crate::Error::ScheduleExists`] if the
    /// name is taken.
    fn add_schedule<'a>(
        &'a self,
        schedule: &'a NewSchedule,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<i64>>;

    /// Schedules by name, or the one named `name`.
    fn schedules<'a>(&'a self, name: Option<&'a str>)
    -> BoxFuture<'a, Result<Vec<ScheduleRecord>>>;

    /// Pauses or resumes a schedule; resuming moves its cursor to `now` so that slots
    /// passed while paused are skipped. `false` if no schedule has the name.
    fn set_schedule_paused<'a>(
        &'a self,
        name: &'a str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Removes a schedule and its runs (not their jobs); `false` if none has the name.
    fn remove_schedule<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Whether a scheduler has fired `slot` of the schedule.
    fn slot_fired(&self, schedule: i64, slot: DateTime<Utc>) -> BoxFuture<'_, Result<bool>>;

    /// Records a run of `slot` and submits its job (or records why there is none) in one
    /// transaction. Unless `manual`, at most once per (schedule, slot).
    fn fire_slot<'a>(
        &'a self,
        schedule: i64,
        slot: DateTime<Utc>,
        manual: bool,
        job: std::result::Result<&'a NewJob, &'a str>,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<FireOutcome>>;

    /// Moves the schedule's cursor forward to `cursor` (never back).
    fn advance_schedule(&self, schedule: i64, cursor: DateTime<Utc>) -> BoxFuture<'_, Result<()>>;

    /// The schedule's runs, latest slot first, at most `limit`.
    fn schedule_runs(&self, schedule: i64, limit: i64) -> BoxFuture<'_, Result<Vec<ScheduleRun>>>;
}

/// Builds a schedule record from stored columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn schedule_record(
    id: i64,
    name: String,
    cron: &str,
    timezone: &str,
    template: &str,
    catch_up: &str,
    paused: bool,
    cursor: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
) -> Result<ScheduleRecord> {
    let corrupt = |what: String| crate::Error::Corrupt {
        what: format!("schedule {name:?}: {what}"),
    };
    Ok(ScheduleRecord {
        id,
        cadence: crate::schedule::Cadence::new(cron, timezone)
            .map_err(|e| corrupt(e.to_string()))?,
        template: serde_json::from_str(template).map_err(|e| corrupt(format!("template: {e}")))?,
        catch_up: catch_up.parse()?,
        paused,
        cursor,
        created_at,
        name,
    })
}

/// Maps a unique violation on the schedule name to [`crate::Error::ScheduleExists`].
pub(crate) fn schedule_insert_error(name: &str) -> impl FnOnce(sqlx::Error) -> crate::Error + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => crate::Error::ScheduleExists {
            name: name.to_owned(),
        },
        _ => crate::Error::Database {
            context: format!("adding schedule {name:?}"),
            source: e,
        },
    }
}

/// Groups accepted completions by job and by (job, stage), sorted by id so that every
/// transaction locks rows in the same order.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// job -> (tasks done, rows, bytes, tasks added)
    pub jobs: std::collections::BTreeMap<JobId, (i64, i64, i64, i64)>,
    /// (job, stage) -> tasks done
    pub stages: std::collections::BTreeMap<(JobId, i32), i64>,
    /// (job, stage) -> tasks added
    pub added: std::collections::BTreeMap<(JobId, i32), i64>,
}

impl Tally {
    pub fn done(&mut self, job: JobId, stage: i32, rows: i64, bytes: i64) {
        let j = self.jobs.entry(job).or_default();
        j.0 += 1;
        j.1 += rows;
        j.2 += bytes;
        *self.stages.entry((job, stage)).or_default() += 1;
    }

    pub fn add(&mut self, job: JobId, stage: i32, n: i64) {
        self.jobs.entry(job).or_default().3 += n;
        *self.added.entry((job, stage)).or_default() += n;
    }
}

/// Checks tasks a completion adds: they must go to a later stage than the completing one.
pub(crate) fn check_fan_out(c: &Completion, stage: i32) -> Result<()> {
    for t in &c.output.new_tasks {
        if t.stage <= stage {
            return Err(crate::Error::InvalidJob {
                reason: format!(
                    "task {} of job {} (stage {stage}) adds a task to stage {}; \
                     added tasks must go to a later stage",
                    c.attempt.task_id, c.attempt.job_id, t.stage
                ),
            });
        }
    }
    Ok(())
}

/// Checks a job before submit: kind set, at least one task, sane attempts.
pub(crate) fn check_new_job(job: &NewJob) -> Result<i32> {
    if job.kind.trim().is_empty() {
        return Err(crate::Error::InvalidJob {
            reason: "the job kind is empty".into(),
        });
    }
    if let Some(t) = job
        .tasks
        .iter()
        .find(|t| t.max_attempts.is_some_and(|m| m < 1))
    {
        return Err(crate::Error::InvalidJob {
            reason: format!("a task of stage {} has max_attempts < 1", t.stage),
        });
    }
    job.tasks
        .iter()
        .map(|t| t.stage)
        .min()
        .ok_or_else(|| crate::Error::InvalidJob {
            reason: format!("job of kind {:?} has no tasks", job.kind),
        })
}

/// The job error recorded when a task dies.
/// An expired lease on a task's last attempt: the attempt, and how many of the task's
/// earlier attempts lost their worker too.
#[derive(Debug, Clone)]
pub struct LostLast {
    /// The last attempt, whose lease expired.
    pub attempt: Attempt,
    /// Earlier attempts of the task that lost their worker.
    pub lost_before: i32,
}

/// The error of a task that lost its worker on its last attempt, `lost` times in all.
pub(crate) fn lost_error(attempt: &Attempt, lost: i32) -> String {
    let count = match lost {
        1 => "once".to_string(),
        n => format!("{n} times"),
    };
    let on = if lost >= attempt.attempt {
        "on every attempt".to_string()
    } else {
        format!("on {lost} of its {} attempts", attempt.attempt)
    };
    format!(
        "its worker was lost {count}, {on} (the lease of worker {} expired on the last): a \
         task that crashes, kills or freezes its worker is not tried again",
        attempt.lease_owner
    )
}

pub(crate) fn job_error(task: TaskId, stage: i32, attempt: i32, error: &str) -> String {
    format!("task {task} (stage {stage}, attempt {attempt}) failed: {error}")
}

/// Rows a scheduled job ingested: its result's `rows` once it has one (a commit that was
/// a no-op reports 0), else the rows its tasks wrote so far.
pub(crate) fn committed_rows(progress: Option<i64>, result: Option<String>) -> Option<i64> {
    result
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
        .and_then(|r| r.get("rows").and_then(serde_json::Value::as_i64))
        .or(progress)
}

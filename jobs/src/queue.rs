//! [`Queue`]: the handle every part of terrace uses to submit, inspect and run jobs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde_json::Value;

use crate::backend::{Backend, lost_error};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::model::{
    Ack, Attempt, CancelOutcome, ClaimedTask, Completion, FailOutcome, JobId, JobRecord, JobState,
    NewJob, TaskId, TaskRecord,
};
use crate::postgres::PostgresBackend;
use crate::schedule::{FireOutcome, NewSchedule, ScheduleRecord, ScheduleRun};
use crate::sqlite::SqliteBackend;

/// Attempts a task gets when neither it nor [`QueueOptions::max_attempts`] says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// How a [`Queue`] connects and behaves.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Connection attempts before [`Queue::connect`] gives up.
    pub connect_attempts: u32,
    /// Wait after the first failed attempt; doubles each time.
    pub connect_backoff: Duration,
    /// Pool size (SQLite serialises writers anyway, so a few connections suffice).
    pub max_connections: u32,
    /// Attempts for tasks that set none.
    pub max_attempts: i32,
    /// Retry delay after a task's first failed attempt; doubles per attempt, with jitter.
    pub retry_base: Duration,
    /// Upper bound on the retry delay.
    pub retry_max: Duration,
    /// The time source for leases, backoff and pruning.
    pub clock: Arc<dyn Clock>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            connect_attempts: 5,
            connect_backoff: Duration::from_millis(200),
            max_connections: 8,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            clock: Arc::new(SystemClock),
        }
    }
}

impl QueueOptions {
    /// Sets the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how often and how patiently to try connecting.
    pub fn with_connect_retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.connect_attempts = attempts;
        self.connect_backoff = backoff;
        self
    }

    /// Sets the default attempts per task.
    pub fn with_max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the retry backoff.
    pub fn with_retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base = base;
        self.retry_max = max;
        self
    }

    /// Sets the pool size.
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }
}

/// A durable job queue on SQLite or PostgreSQL. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct Queue {
    backend: Arc<dyn Backend>,
    options: Arc<QueueOptions>,
    url: Arc<str>,
}

/// How a queue URL is shown in errors and logs: a SQLite queue as its file's path, any
/// other URL with its password removed.
pub(crate) fn shown(url: &str) -> String {
    match url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Some(rest) => {
            let path = rest.split_once('?').map_or(rest, |(path, _)| path);
            if path.is_empty() {
                url.to_owned()
            } else {
                path.to_owned()
            }
        }
        None => redact(url),
    }
}

/// Removes the password from a URL for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

enum Kind {
    Sqlite,
    Postgres,
}

fn kind_of(url: &str) -> Result<Kind> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Kind::Postgres)
    } else if url.starts_with("sqlite:") || (!url.contains("://") && !url.is_empty()) {
        Ok(Kind::Sqlite)
    } else {
        Err(Error::UnsupportedUrl { url: redact(url) })
    }
}

impl Queue {
    /// Connects to `url` with default options; see [`Queue::connect_with`].
    pub async fn connect(url: &str) -> Result<Queue> {
        Self::connect_with(url, QueueOptions::default()).await
    }

    /// Connects to `url` — `postgres://…`, `sqlite://path?mode=rwc` or a plain file path
    /// (created if missing) — and applies the migrations. A failure that may pass (the
    /// server refusing connections while it starts, a locked file) is tried
    /// `connect_attempts` times with doubling waits; one that will not (no such
    /// database, a wrong password, a SQLite file that cannot be opened, a full disk) fails
    /// at once. The error names the URL (a SQLite queue by its file).
    pub async fn connect_with(url: &str, options: QueueOptions) -> Result<Queue> {
        let kind = kind_of(url)?;
        let shown = shown(url);
        let mut wait = options.connect_backoff;
        let attempts = options.connect_attempts.max(1);
        let mut attempt = 0;
        let backend = loop {
            attempt += 1;
            match open(&kind, url, options.max_connections).await {
                Ok(b) => break b,
                Err(OpenError::Migrate(source)) => {
                    return Err(Error::Migrate { url: shown, source });
                }
                Err(OpenError::Connect(source))
                    if attempt >= attempts || !crate::error::sqlx_retryable(&source) =>
                {
                    return Err(Error::Connect {
                        url: shown,
                        attempts: attempt,
                        source,
                    });
                }
                Err(OpenError::Connect(e)) => {
                    tracing::warn!(url = %shown, attempt, error = %e, "job queue unreachable; retrying");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
            }
        };
        Ok(Queue {
            backend,
            options: Arc::new(options),
            url: shown.into(),
        })
    }

    /// The URL this queue was opened with (password removed).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The underlying store.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The queue's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.options.clock.now()
    }

    /// The options in force.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Stores a job and all its tasks in one transaction; the lowest stage's tasks are
    /// ready at once.
    pub async fn submit(&self, job: NewJob) -> Result<JobId> {
        let now = self.now();
        self.backend
            .submit(&job, self.options.max_attempts, now)
            .await
    }

    /// Stores a schedule; its first slot is the first after now.
    pub async fn add_schedule(&self, schedule: &NewSchedule) -> Result<ScheduleRecord> {
        let id = self.backend.add_schedule(schedule, self.now()).await?;
        self.backend
            .schedules(Some(&schedule.name))
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Error::ScheduleNotFound {
                name: schedule.name.clone(),
            })
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        self.backend.schedules(None).await
    }

    /// The schedule named `name`.
    pub async fn schedule(&self, name: &str) -> Result<ScheduleRecord> {
        self.backend
            .schedules(Some(name))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::ScheduleNotFound {
                name: name.to_owned(),
            })
    }

    /// Pauses (`true`) or resumes a schedule. Slots that pass while it is paused are
    /// skipped, whatever its catch-up policy.
    pub async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<()> {
        if self
            .backend
            .set_schedule_paused(name, paused, self.now())
            .await?
        {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound {
                name: name.to_owned(),
            })
        }
    }

    /// Removes a schedule and its run history; the jobs it fired stay.
    pub async fn remove_schedule(&self, name: &str) -> Result<()> {
        if self.backend.remove_schedule(name).await? {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound {
                name: name.to_owned(),
            })
        }
    }

    /// The runs of a schedule, latest slot first.
    pub async fn schedule_runs(
        &self,
        schedule: &ScheduleRecord,
        limit: i64,
    ) -> Result<Vec<ScheduleRun>> {
        self.backend.schedule_runs(schedule.id, limit).await
    }

    /// Whether a scheduler has fired `slot` of schedule `schedule` (its id).
    pub async fn slot_fired(&self, schedule: i64, slot: DateTime<Utc>) -> Result<bool> {
        self.backend.slot_fired(schedule, slot).await
    }

    /// Records a run of `slot` with its job (or the reason there is none). Unless
    /// `manual`, once per slot: a slot fired before gives [`FireOutcome::AlreadyFired`].
    pub async fn fire_slot(
        &self,
        schedule: i64,
        slot: DateTime<Utc>,
        manual: bool,
        job: std::result::Result<NewJob, String>,
    ) -> Result<FireOutcome> {
        let job = job.as_ref().map_err(String::as_str);
        self.backend
            .fire_slot(
                schedule,
                slot,
                manual,
                job,
                self.options.max_attempts,
                self.now(),
            )
            .await
    }

    /// Records that slots up to `cursor` have been dealt with.
    pub async fn advance_schedule(&self, schedule: i64, cursor: DateTime<Utc>) -> Result<()> {
        self.backend.advance_schedule(schedule, cursor).await
    }

    /// Claims up to `limit` ready tasks for worker `owner`, each leased for `lease`.
    pub async fn claim(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedTask>> {
        let now = self.now();
        self.backend
            .claim(owner, limit, now, now + delta(lease))
            .await
    }

    /// Completes a batch of attempts in one transaction. An attempt that no longer holds
    /// its task gets [`Ack::Stale`] and its result is discarded.
    pub async fn complete(&self, batch: &[Completion]) -> Result<Vec<Ack>> {
        let now = self.now();
        if batch
            .iter()
            .any(|c| c.output.new_tasks.iter().any(|t| t.max_attempts.is_none()))
        {
            let filled: Vec<Completion> = batch
                .iter()
                .cloned()
                .map(|mut c| {
                    for t in &mut c.output.new_tasks {
                        t.max_attempts.get_or_insert(self.options.max_attempts);
                    }
                    c
                })
                .collect();
            return self.backend.complete(&filled, now).await;
        }
        self.backend.complete(batch, now).await
    }

    /// Records a failed attempt. A retryable error schedules the task again after an
    /// exponential backoff with jitter (while attempts remain); otherwise the task is dead
    /// and its job failed, keeping `error`.
    pub async fn fail(
        &self,
        attempt: &Attempt,
        error: &str,
        retryable: bool,
    ) -> Result<FailOutcome> {
        let now = self.now();
        let retry_at = retryable.then(|| now + delta(self.backoff(attempt.attempt)));
        self.backend.fail(attempt, error, retry_at, now).await
    }

    /// The wait before retrying after failed attempt number `attempt` (from 1): the
    /// base doubled per attempt, capped, then scaled by a random factor in [0.5, 1] so
    /// that tasks failing together do not retry together.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let full = self
            .options
            .retry_base
            .saturating_mul(1u32 << exp)
            .min(self.options.retry_max);
        full.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Gives claimed attempts back without counting them.
    pub async fn release(&self, attempts: &[Attempt]) -> Result<u64> {
        if attempts.is_empty() {
            return Ok(0);
        }
        self.backend.release(attempts).await
    }

    /// Extends every lease `owner` holds by `lease` from now and records its heartbeat.
    pub async fn heartbeat(&self, owner: &str, lease: Duration) -> Result<u64> {
        let now = self.now();
        self.backend.heartbeat(owner, now, now + delta(lease)).await
    }

    /// Makes tasks whose lease expired claimable again; tasks whose expired attempt was
    /// their last are failed (dead, job failed). Returns how many tasks were reaped.
    pub async fn reap_expired(&self) -> Result<u64> {
        let now = self.now();
        let (n, last) = self.backend.reap_expired(now).await?;
        for lost in &last {
            let msg = lost_error(&lost.attempt, lost.lost_before + 1);
            self.backend.fail(&lost.attempt, &msg, None, now).await?;
        }
        Ok(n + last.len() as u64)
    }

    /// Cancels a job that has not finished; its running tasks' completions are refused.
    /// A job whose commit has begun ([`Queue::begin_commit`]) is not cancelled: its
    /// commit decides, and the answer is [`CancelOutcome::Committing`].
    pub async fn cancel(&self, job: JobId) -> Result<CancelOutcome> {
        self.backend.cancel(job, self.now()).await
    }

    /// Called by a task just before it makes its job's result visible (a dataset
    /// commit): `true` means go on, and from now on this task's outcome decides the job
    /// (a cancel is recorded but not applied); `false` means the job was cancelled (or
    /// the attempt lost its task) and the task must change nothing.
    pub async fn begin_commit(&self, attempt: &Attempt) -> Result<bool> {
        self.backend.begin_commit(attempt).await
    }

    /// Re-queues a failed job's dead tasks (with fresh attempts); returns how many.
    pub async fn retry(&self, job: JobId) -> Result<u64> {
        self.backend.retry(job, self.now()).await
    }

    /// One job with its progress.
    pub async fn job(&self, job: JobId) -> Result<JobRecord> {
        self.backend.job(job).await
    }

    /// Jobs, newest first, at most `limit`, only those in `state` when given.
    pub async fn list_jobs(&self, state: Option<JobState>, limit: i64) -> Result<Vec<JobRecord>> {
        self.backend.list_jobs(state, limit).await
    }

    /// A job's tasks.
    pub async fn tasks(&self, job: JobId) -> Result<Vec<TaskRecord>> {
        self.backend.tasks(job).await
    }

    /// The results of a stage's completed tasks (what a fan-in task reads).
    pub async fn stage_results(&self, job: JobId, stage: i32) -> Result<Vec<(TaskId, Value)>> {
        self.backend.stage_results(job, stage).await
    }

    /// Deletes jobs finished more than `retention` ago, with their tasks, and workers
    /// silent that long; returns the number of jobs deleted.
    pub async fn prune(&self, retention: Duration) -> Result<u64> {
        self.backend.prune(self.now() - delta(retention)).await
    }

    /// Closes the pool; other clones stop working too.
    pub async fn close(&self) {
        self.backend.close().await
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

enum OpenError {
    Connect(sqlx::Error),
    Migrate(sqlx::migrate::MigrateError),
}

async fn open(kind: &Kind, url: &str, max_connections: u32) -> Result<Arc<dyn Backend>, OpenError> {
    match kind {
        Kind::Sqlite => {
            // SQLite has one writer; more connections only add lock waits.
            let b = SqliteBackend::open(url, max_connections.min(4))
                .await
                .map_err(OpenError::Connect)?;
            b.migrate().await.map_err(OpenError::Migrate)?;
            Ok(Arc::new(b))
        }
        Kind::Postgres => {
            let b = PostgresBackend::open(url, max_connections)
                .await
                .map_err(OpenError::Connect)?;
            b.migrate().await.map_err(OpenError::Migrate)?;
            Ok(Arc::new(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_queues_are_shown_by_their_file() {
        assert_eq!(shown("sqlite:///tmp/t/q.db?mode=rwc"), "/tmp/t/q.db");
        assert_eq!(shown("sqlite://rel/q.db"), "rel/q.db");
        assert_eq!(shown("sqlite:q.db?mode=rw"), "q.db");
        assert_eq!(shown("/tmp/q.db"), "/tmp/q.db");
        assert_eq!(
            shown("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }

    #[test]
    fn redact_hides_password_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("/tmp/q.db"), "/tmp/q.db");
    }

    #[test]
    fn urls_pick_backends() {
        assert!(matches!(kind_of("postgresql://h/db"), Ok(Kind::Postgres)));
        assert!(matches!(
            kind_of("sqlite://x.db?mode=rwc"),
            Ok(Kind::Sqlite)
        ));
        assert!(matches!(kind_of("jobs.db"), Ok(Kind::Sqlite)));
        assert!(matches!(
            kind_of("mysql://h/db"),
            Err(Error::UnsupportedUrl { .. })
        ));
    }
}

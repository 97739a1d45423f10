//! The SQLite backend: one database file in WAL mode, writers serialised by SQLite itself.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::backend::{
    Backend, LostLast, Tally, check_fan_out, check_new_job, committed_rows, job_error,
    schedule_insert_error, schedule_record,
};
use crate::error::{Error, Result};
use crate::model::{
    Ack, Attempt, CancelOutcome, ClaimedTask, Completion, FailOutcome, JobId, JobRecord, JobState,
    NewJob, Origin, TaskId, TaskRecord, TaskState,
};
use crate::schedule::{FireOutcome, NewSchedule, ScheduleRecord, ScheduleRun};

mod q {
    macro_rules! sql {
        ($($name:ident = $file:literal;)*) => {
            $(pub const $name: &str = include_str!(concat!("../queries/sqlite/", $file));)*
        };
    }
    sql! {
        INSERT_JOB = "insert_job.sql";
        ADD_STAGE_TOTAL = "add_stage_total.sql";
        INSERT_TASKS = "insert_tasks.sql";
        CLAIM = "claim.sql";
        START_JOB = "start_job.sql";
        COMPLETE_TASK = "complete_task.sql";
        ADD_JOB_PROGRESS = "add_job_progress.sql";
        ADD_STAGE_DONE = "add_stage_done.sql";
        NEXT_STAGE = "next_stage.sql";
        ADVANCE_JOB = "advance_job.sql";
        UNBLOCK_STAGE = "unblock_stage.sql";
        SINGLE_RESULT = "single_result.sql";
        FINISH_JOB = "finish_job.sql";
        FAIL_TASK = "fail_task.sql";
        FAIL_JOB = "fail_job.sql";
        CANCEL_JOB_TASKS = "cancel_job_tasks.sql";
        CANCEL_READY_TASKS = "cancel_ready_tasks.sql";
        JOB_STATE = "job_state.sql";
        CANCEL_JOB = "cancel_job.sql";
        COMMIT_TASK = "commit_task.sql";
        REQUEST_CANCEL = "request_cancel.sql";
        BEGIN_COMMIT = "begin_commit.sql";
        RETRY_TASKS = "retry_tasks.sql";
        RETRY_JOB = "retry_job.sql";
        RELEASE = "release.sql";
        RENEW_LEASES = "renew_leases.sql";
        WORKER_HEARTBEAT = "worker_heartbeat.sql";
        REAP = "reap.sql";
        EXPIRED_LAST = "expired_last.sql";
        GET_JOB = "get_job.sql";
        LIST_JOBS = "list_jobs.sql";
        GET_TASKS = "get_tasks.sql";
        STAGE_RESULTS = "stage_results.sql";
        PRUNE_TASKS = "prune_tasks.sql";
        PRUNE_JOBS = "prune_jobs.sql";
        PRUNE_WORKERS = "prune_workers.sql";
        REGISTER_WORKER = "register_worker.sql";
        DEREGISTER_WORKER = "deregister_worker.sql";
        INSERT_SCHEDULE = "insert_schedule.sql";
        LIST_SCHEDULES = "list_schedules.sql";
        SET_SCHEDULE_PAUSED = "set_schedule_paused.sql";
        DELETE_SCHEDULE = "delete_schedule.sql";
        SLOT_FIRED = "slot_fired.sql";
        INSERT_SCHEDULE_RUN = "insert_schedule_run.sql";
        SET_RUN_JOB = "set_run_job.sql";
        ADVANCE_SCHEDULE = "advance_schedule.sql";
        LIST_SCHEDULE_RUNS = "list_schedule_runs.sql";
    }
}

/// Times are stored as integer milliseconds since the epoch (see the migration).
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| Error::Corrupt {
        what: format!("timestamp {v} out of range"),
    })
}

fn opt_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_ms).transpose()
}

/// Tasks per INSERT when storing a job's tasks; keeps each statement's JSON bounded.
const INSERT_CHUNK: usize = 10_000;

fn json_text(v: &Value) -> String {
    // Serialising a `Value` cannot fail (its map keys are strings).
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn parse_json(text: Option<String>, what: impl FnOnce() -> String) -> Result<Option<Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| Error::Corrupt {
            what: format!("{}: {e}", what()),
        })
    })
    .transpose()
}

fn claimed_from_row(
    row: &SqliteRow,
    owner: &str,
    now: DateTime<Utc>,
) -> std::result::Result<ClaimedTask, sqlx::Error> {
    Ok(ClaimedTask {
        id: TaskId(row.try_get(0)?),
        job_id: JobId(row.try_get(1)?),
        kind: row.try_get(2)?,
        stage: row.try_get(3)?,
        attempt: row.try_get(4)?,
        max_attempts: row.try_get(5)?,
        lease_owner: owner.to_owned(),
        payload_json: row.try_get(6)?,
        ready_at: DateTime::from_timestamp_millis(row.try_get(7)?).unwrap_or(now),
        claimed_at: now,
    })
}

/// The SQLite queue store.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    /// Opens (creating if missing) the database at `url` (`sqlite://path?mode=rwc`, or a
    /// plain file path) and applies the migrations.
    ///
    /// Every pooled connection gets WAL, `synchronous=NORMAL` (durable across process
    /// crashes; an OS crash may lose the last commits but never corrupts) and a busy
    /// timeout, through the connect options rather than a one-off PRAGMA.
    pub async fn open(url: &str, max_connections: u32) -> std::result::Result<Self, sqlx::Error> {
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new()
                .filename(url)
                .create_if_missing(true)
        };
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            // As the PostgreSQL pool: a slow acquire (a lock held for long) is reported
            // by the callers, once.
            .acquire_slow_threshold(Duration::from_secs(3600))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub(crate) async fn migrate(&self) -> std::result::Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("../migrations/sqlite").run(&self.pool).await
    }

    /// The connection pool (for inspection in tests and tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Takes the write lock at BEGIN: a deferred transaction that reads first and writes
    /// later fails with SQLITE_BUSY instead of waiting when another writer got in between.
    async fn write_tx(&self, context: &str) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::db(context))
    }

    async fn job_state(
        tx: &mut Transaction<'static, Sqlite>,
        job: JobId,
    ) -> Result<(JobState, i32)> {
        let row = sqlx::query(q::JOB_STATE)
            .bind(job.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db(format!("reading job {job}")))?
            .ok_or(Error::JobNotFound { id: job })?;
        let state: String = row
            .try_get(0)
            .map_err(Error::db(format!("reading job {job}")))?;
        let stage: i32 = row
            .try_get(1)
            .map_err(Error::db(format!("reading job {job}")))?;
        Ok((JobState::from_str(&state)?, stage))
    }

    /// Moves `job` past completed stage `stage`: unblocks the next non-empty stage or
    /// finishes the job. Runs inside the completing transaction.
    async fn advance(
        tx: &mut Transaction<'static, Sqlite>,
        job: JobId,
        stage: i32,
        total: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ctx = || format!("advancing job {job} past stage {stage}");
        let next: Option<i32> = sqlx::query_scalar(q::NEXT_STAGE)
            .bind(job.0)
            .bind(stage)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db(ctx()))?;
        match next {
            Some(next) => {
                let moved = sqlx::query(q::ADVANCE_JOB)
                    .bind(job.0)
                    .bind(stage)
                    .bind(next)
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::db(ctx()))?;
                if moved.rows_affected() == 1 {
                    sqlx::query(q::UNBLOCK_STAGE)
                        .bind(job.0)
                        .bind(next)
                        .bind(ms(now))
                        .execute(&mut **tx)
                        .await
                        .map_err(Error::db(ctx()))?;
                }
            }
            None => {
                let result: Option<String> = if total == 1 {
                    sqlx::query_scalar(q::SINGLE_RESULT)
                        .bind(job.0)
                        .bind(stage)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(Error::db(ctx()))?
                        .flatten()
                } else {
                    None
                };
                sqlx::query(q::FINISH_JOB)
                    .bind(job.0)
                    .bind(stage)
                    .bind(result.unwrap_or_else(|| "null".to_owned()))
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::db(ctx()))?;
            }
        }
        Ok(())
    }

    async fn insert_tasks(
        tx: &mut Transaction<'static, Sqlite>,
        job: JobId,
        kind: &str,
        tasks: &[crate::NewTask],
        ready_stage: Option<i32>,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ctx = || format!("storing the tasks of job {job}");
        let mut totals = std::collections::BTreeMap::<i32, i64>::new();
        for chunk in tasks.chunks(INSERT_CHUNK) {
            let rows: Vec<Value> = chunk
                .iter()
                .map(|t| {
                    let state = if Some(t.stage) == ready_stage {
                        TaskState::Ready
                    } else {
                        TaskState::Blocked
                    };
                    *totals.entry(t.stage).or_default() += 1;
                    // The payload goes in as a JSON string, so the stored text is
                    // exactly `json_text`'s, as with one INSERT per task.
                    serde_json::json!([
                        t.stage,
                        json_text(&t.payload),
                        state.as_str(),
                        t.max_attempts.unwrap_or(max_attempts)
                    ])
                })
                .collect();
            sqlx::query(q::INSERT_TASKS)
                .bind(job.0)
                .bind(kind)
                .bind(ms(now))
                .bind(json_text(&Value::Array(rows)))
                .execute(&mut **tx)
                .await
                .map_err(Error::db(ctx()))?;
        }
        for (stage, n) in totals {
            sqlx::query(q::ADD_STAGE_TOTAL)
                .bind(job.0)
                .bind(stage)
                .bind(n)
                .execute(&mut **tx)
                .await
                .map_err(Error::db(ctx()))?;
        }
        Ok(())
    }

    /// Inserts a job and its tasks in `tx`.
    async fn insert_job(
        tx: &mut Transaction<'static, Sqlite>,
        job: &NewJob,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<JobId> {
        let first = check_new_job(job)?;
        let id: i64 = sqlx::query_scalar(q::INSERT_JOB)
            .bind(&job.kind)
            .bind(json_text(&job.spec))
            .bind(first)
            .bind(job.tasks.len() as i64)
            .bind(job.origin.kind())
            .bind(job.origin.detail())
            .bind(ms(now))
            .fetch_one(&mut **tx)
            .await
            .map_err(Error::db("submitting a job"))?;
        let id = JobId(id);
        Self::insert_tasks(
            tx,
            id,
            &job.kind,
            &job.tasks,
            Some(first),
            max_attempts,
            now,
        )
        .await?;
        Ok(id)
    }

    fn schedule_from_row(row: &SqliteRow) -> Result<ScheduleRecord> {
        let g = || Error::db("reading a schedule");
        let text = |c: &str| row.try_get::<String, _>(c).map_err(g());
        schedule_record(
            row.try_get("id").map_err(g())?,
            text("name")?,
            &text("cron")?,
            &text("timezone")?,
            &text("template")?,
            &text("catch_up")?,
            row.try_get::<i64, _>("paused").map_err(g())? != 0,
            opt_ms(row.try_get("cursor").map_err(g())?)?,
            from_ms(row.try_get("created_at").map_err(g())?)?,
        )
    }

    fn run_from_row(row: &SqliteRow) -> Result<ScheduleRun> {
        let g = || Error::db("reading a schedule run");
        let state: Option<String> = row.try_get("state").map_err(g())?;
        Ok(ScheduleRun {
            slot: from_ms(row.try_get("slot").map_err(g())?)?,
            manual: row.try_get::<i64, _>("manual").map_err(g())? != 0,
            fired_at: from_ms(row.try_get("fired_at").map_err(g())?)?,
            job_id: row
                .try_get::<Option<i64>, _>("job_id")
                .map_err(g())?
                .map(JobId),
            state: state.as_deref().map(JobState::from_str).transpose()?,
            rows: committed_rows(
                row.try_get("rows").map_err(g())?,
                row.try_get("result").map_err(g())?,
            ),
            error: row.try_get("error").map_err(g())?,
        })
    }

    fn job_from_row(row: &SqliteRow) -> Result<JobRecord> {
        let id = JobId(row.try_get("id").map_err(Error::db("reading a job"))?);
        let ctx = || format!("reading job {id}");
        let g = |e| Error::db(ctx())(e);
        let spec: String = row.try_get("spec").map_err(g)?;
        let spec =
            serde_json::from_str(&spec).map_err(|source| Error::MalformedSpec { id, source })?;
        let state: String = row.try_get("state").map_err(g)?;
        let origin: String = row.try_get("origin").map_err(g)?;
        Ok(JobRecord {
            id,
            kind: row.try_get("kind").map_err(g)?,
            spec,
            state: JobState::from_str(&state)?,
            current_stage: row.try_get("current_stage").map_err(g)?,
            tasks_total: row.try_get("tasks_total").map_err(g)?,
            tasks_done: row.try_get("tasks_done").map_err(g)?,
            tasks_failed: row.try_get("tasks_failed").map_err(g)?,
            rows: row.try_get("rows").map_err(g)?,
            bytes: row.try_get("bytes").map_err(g)?,
            result: parse_json(row.try_get("result").map_err(g)?, || {
                format!("result of job {id}")
            })?,
            error: row.try_get("error").map_err(g)?,
            origin: Origin::from_columns(&origin, row.try_get("origin_detail").map_err(g)?)?,
            created_at: from_ms(row.try_get("created_at").map_err(g)?)?,
            started_at: opt_ms(row.try_get("started_at").map_err(g)?)?,
            finished_at: opt_ms(row.try_get("finished_at").map_err(g)?)?,
            commit_started: row
                .try_get::<Option<i64>, _>("commit_task")
                .map_err(g)?
                .is_some(),
            cancel_requested_at: opt_ms(row.try_get("cancel_requested_at").map_err(g)?)?,
        })
    }

    fn task_from_row(row: &SqliteRow) -> Result<TaskRecord> {
        let id = TaskId(row.try_get("id").map_err(Error::db("reading a task"))?);
        let g = |e| Error::db(format!("reading task {id}"))(e);
        let state: String = row.try_get("state").map_err(g)?;
        Ok(TaskRecord {
            id,
            job_id: JobId(row.try_get("job_id").map_err(g)?),
            stage: row.try_get("stage").map_err(g)?,
            state: TaskState::from_str(&state)?,
            attempts: row.try_get("attempts").map_err(g)?,
            max_attempts: row.try_get("max_attempts").map_err(g)?,
            run_after: from_ms(row.try_get("run_after").map_err(g)?)?,
            lease_owner: row.try_get("lease_owner").map_err(g)?,
            lease_expires_at: opt_ms(row.try_get("lease_expires_at").map_err(g)?)?,
            result: parse_json(row.try_get("result").map_err(g)?, || {
                format!("result of task {id}")
            })?,
            error: row.try_get("error").map_err(g)?,
        })
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn submit<'a>(
        &'a self,
        job: &'a NewJob,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<JobId>> {
        Box::pin(async move {
            let mut tx = self.write_tx("submitting a job").await?;
            let id = Self::insert_job(&mut tx, job, max_attempts, now).await?;
            tx.commit()
                .await
                .map_err(Error::db(format!("committing job {id}")))?;
            Ok(id)
        })
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<ClaimedTask>>> {
        Box::pin(async move {
            let ctx = "claiming tasks";
            let mut tx = self.write_tx(ctx).await?;
            let rows = sqlx::query(q::CLAIM)
                .bind(owner)
                .bind(ms(lease_until))
                .bind(ms(now))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::db(ctx))?;
            let mut tasks = Vec::with_capacity(rows.len());
            let mut jobs = std::collections::BTreeSet::new();
            for row in rows {
                let t = claimed_from_row(&row, owner, now).map_err(Error::db(ctx))?;
                jobs.insert(t.job_id);
                tasks.push(t);
            }
            for job in jobs {
                sqlx::query(q::START_JOB)
                    .bind(job.0)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(format!("starting job {job}")))?;
            }
            tx.commit().await.map_err(Error::db(ctx))?;
            // RETURNING order is unspecified; hand tasks out oldest first.
            tasks.sort_by_key(|t| (t.ready_at, t.id));
            Ok(tasks)
        })
    }

    fn complete<'a>(
        &'a self,
        batch: &'a [Completion],
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Ack>>> {
        Box::pin(async move {
            let ctx = "completing tasks";
            let mut acks = Vec::with_capacity(batch.len());
            if batch.is_empty() {
                return Ok(acks);
            }
            let mut tx = self.write_tx(ctx).await?;
            let mut tally = Tally::default();
            for c in batch {
                let a = &c.attempt;
                let stage: Option<i32> = sqlx::query_scalar(q::COMPLETE_TASK)
                    .bind(a.task_id.0)
                    .bind(a.attempt)
                    .bind(&a.lease_owner)
                    .bind(json_text(&c.output.result))
                    .bind(ms(now))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Error::db(format!("completing task {}", a.task_id)))?;
                let Some(stage) = stage else {
                    acks.push(Ack::Stale);
                    continue;
                };
                check_fan_out(c, stage)?;
                acks.push(Ack::Accepted);
                tally.done(a.job_id, stage, c.output.rows, c.output.bytes);
                if !c.output.new_tasks.is_empty() {
                    let kind: String = sqlx::query_scalar("SELECT kind FROM jobs WHERE id = ?1")
                        .bind(a.job_id.0)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(Error::db(format!("reading job {}", a.job_id)))?;
                    Self::insert_tasks(
                        &mut tx,
                        a.job_id,
                        &kind,
                        &c.output.new_tasks,
                        None,
                        crate::queue::DEFAULT_MAX_ATTEMPTS,
                        now,
                    )
                    .await?;
                    for t in &c.output.new_tasks {
                        tally.add(a.job_id, t.stage, 1);
                    }
                }
            }
            for (job, (done, rows, bytes, added)) in &tally.jobs {
                sqlx::query(q::ADD_JOB_PROGRESS)
                    .bind(job.0)
                    .bind(done)
                    .bind(rows)
                    .bind(bytes)
                    .bind(added)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(format!("updating the progress of job {job}")))?;
            }
            for ((job, stage), n) in &tally.stages {
                let row = sqlx::query(q::ADD_STAGE_DONE)
                    .bind(job.0)
                    .bind(stage)
                    .bind(n)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(Error::db(format!("counting stage {stage} of job {job}")))?;
                let done: i64 = row.try_get(0).map_err(Error::db(ctx))?;
                let total: i64 = row.try_get(1).map_err(Error::db(ctx))?;
                // Exactly one completion moves `done` onto `total`.
                if done == total {
                    Self::advance(&mut tx, *job, *stage, total, now).await?;
                }
            }
            tx.commit().await.map_err(Error::db(ctx))?;
            Ok(acks)
        })
    }

    fn fail<'a>(
        &'a self,
        attempt: &'a Attempt,
        error: &'a str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<FailOutcome>> {
        Box::pin(async move {
            let ctx = format!("failing task {}", attempt.task_id);
            let mut tx = self.write_tx(&ctx).await?;
            let row = sqlx::query(q::FAIL_TASK)
                .bind(attempt.task_id.0)
                .bind(attempt.attempt)
                .bind(&attempt.lease_owner)
                .bind(error)
                .bind(retry_at.map(ms))
                .bind(ms(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            let Some(row) = row else {
                return Ok(FailOutcome::Stale);
            };
            let state: String = row.try_get(0).map_err(Error::db(&ctx))?;
            let stage: i32 = row.try_get(1).map_err(Error::db(&ctx))?;
            let run_after: i64 = row.try_get(2).map_err(Error::db(&ctx))?;
            let outcome = if state == "dead" {
                let msg = job_error(attempt.task_id, stage, attempt.attempt, error);
                sqlx::query(q::FAIL_JOB)
                    .bind(attempt.job_id.0)
                    .bind(msg)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(&ctx))?;
                sqlx::query(q::CANCEL_READY_TASKS)
                    .bind(attempt.job_id.0)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(&ctx))?;
                FailOutcome::Dead
            } else {
                FailOutcome::RetryAt(from_ms(run_after)?)
            };
            tx.commit().await.map_err(Error::db(&ctx))?;
            Ok(outcome)
        })
    }

    fn release<'a>(&'a self, attempts: &'a [Attempt]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut tx = self.write_tx("releasing tasks").await?;
            let mut n = 0;
            for a in attempts {
                n += sqlx::query(q::RELEASE)
                    .bind(a.task_id.0)
                    .bind(a.attempt)
                    .bind(&a.lease_owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(format!("releasing task {}", a.task_id)))?
                    .rows_affected();
            }
            tx.commit().await.map_err(Error::db("releasing tasks"))?;
            Ok(n)
        })
    }

    fn heartbeat<'a>(
        &'a self,
        owner: &'a str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let ctx = format!("renewing the leases of worker {owner}");
            let mut tx = self.write_tx(&ctx).await?;
            let n = sqlx::query(q::RENEW_LEASES)
                .bind(owner)
                .bind(ms(lease_until))
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?
                .rows_affected();
            sqlx::query(q::WORKER_HEARTBEAT)
                .bind(owner)
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            tx.commit().await.map_err(Error::db(&ctx))?;
            Ok(n)
        })
    }

    fn reap_expired(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<(u64, Vec<LostLast>)>> {
        Box::pin(async move {
            let ctx = "reaping expired leases";
            let n = sqlx::query(q::REAP)
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(Error::db(ctx))?
                .rows_affected();
            let rows = sqlx::query(q::EXPIRED_LAST)
                .bind(ms(now))
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db(ctx))?;
            let mut last = Vec::with_capacity(rows.len());
            for row in rows {
                let owner: Option<String> = row.try_get(3).map_err(Error::db(ctx))?;
                last.push(LostLast {
                    attempt: Attempt {
                        task_id: TaskId(row.try_get(0).map_err(Error::db(ctx))?),
                        job_id: JobId(row.try_get(1).map_err(Error::db(ctx))?),
                        attempt: row.try_get(2).map_err(Error::db(ctx))?,
                        lease_owner: owner.unwrap_or_default(),
                    },
                    lost_before: row.try_get(4).map_err(Error::db(ctx))?,
                });
            }
            Ok((n, last))
        })
    }

    fn cancel(&self, job: JobId, now: DateTime<Utc>) -> BoxFuture<'_, Result<CancelOutcome>> {
        Box::pin(async move {
            let ctx = format!("cancelling job {job}");
            let mut tx = self.write_tx(&ctx).await?;
            let (state, _) = Self::job_state(&mut tx, job).await?;
            if state.is_finished() {
                return Err(Error::InvalidState {
                    id: job,
                    state: state.to_string(),
                    operation: "cancel",
                });
            }
            let committing: Option<i64> = sqlx::query_scalar(q::COMMIT_TASK)
                .bind(job.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            if committing.is_some() {
                sqlx::query(q::REQUEST_CANCEL)
                    .bind(job.0)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(&ctx))?;
                tx.commit().await.map_err(Error::db(&ctx))?;
                return Ok(CancelOutcome::Committing);
            }
            sqlx::query(q::CANCEL_JOB)
                .bind(job.0)
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            sqlx::query(q::CANCEL_JOB_TASKS)
                .bind(job.0)
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            tx.commit().await.map_err(Error::db(&ctx))?;
            Ok(CancelOutcome::Cancelled)
        })
    }

    fn begin_commit<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let ctx = format!(
                "beginning the commit of job {} (task {})",
                attempt.job_id, attempt.task_id
            );
            let marked = sqlx::query(q::BEGIN_COMMIT)
                .bind(attempt.job_id.0)
                .bind(attempt.attempt)
                .bind(&attempt.lease_owner)
                .bind(attempt.task_id.0)
                .execute(&self.pool)
                .await
                .map_err(Error::db(ctx))?;
            Ok(marked.rows_affected() == 1)
        })
    }

    fn retry(&self, job: JobId, now: DateTime<Utc>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let ctx = format!("retrying job {job}");
            let mut tx = self.write_tx(&ctx).await?;
            let (state, stage) = Self::job_state(&mut tx, job).await?;
            if state != JobState::Failed {
                return Err(Error::InvalidState {
                    id: job,
                    state: state.to_string(),
                    operation: "retry",
                });
            }
            let n = sqlx::query(q::RETRY_TASKS)
                .bind(job.0)
                .bind(stage)
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?
                .rows_affected();
            sqlx::query(q::RETRY_JOB)
                .bind(job.0)
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            tx.commit().await.map_err(Error::db(&ctx))?;
            Ok(n)
        })
    }

    fn job(&self, job: JobId) -> BoxFuture<'_, Result<JobRecord>> {
        Box::pin(async move {
            let row = sqlx::query(q::GET_JOB)
                .bind(job.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::db(format!("reading job {job}")))?
                .ok_or(Error::JobNotFound { id: job })?;
            Self::job_from_row(&row)
        })
    }

    fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<JobRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(q::LIST_JOBS)
                .bind(state.map(JobState::as_str))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db("listing jobs"))?;
            rows.iter().map(Self::job_from_row).collect()
        })
    }

    fn tasks(&self, job: JobId) -> BoxFuture<'_, Result<Vec<TaskRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(q::GET_TASKS)
                .bind(job.0)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db(format!("reading the tasks of job {job}")))?;
            if rows.is_empty() {
                // Distinguish "no such job" from "no tasks".
                self.job(job).await?;
            }
            rows.iter().map(Self::task_from_row).collect()
        })
    }

    fn stage_results(&self, job: JobId, stage: i32) -> BoxFuture<'_, Result<Vec<(TaskId, Value)>>> {
        Box::pin(async move {
            let ctx = || format!("reading the results of stage {stage} of job {job}");
            let rows = sqlx::query(q::STAGE_RESULTS)
                .bind(job.0)
                .bind(stage)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db(ctx()))?;
            if rows.is_empty() {
                self.job(job).await?;
            }
            rows.iter()
                .map(|row| {
                    let id = TaskId(row.try_get(0).map_err(Error::db(ctx()))?);
                    let text: Option<String> = row.try_get(1).map_err(Error::db(ctx()))?;
                    let v = parse_json(text, || format!("result of task {id}"))?;
                    Ok((id, v.unwrap_or(Value::Null)))
                })
                .collect()
        })
    }

    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let ctx = "pruning finished jobs";
            let mut tx = self.write_tx(ctx).await?;
            for sql in [q::PRUNE_TASKS, q::PRUNE_WORKERS] {
                sqlx::query(sql)
                    .bind(ms(before))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(ctx))?;
            }
            let n = sqlx::query(q::PRUNE_JOBS)
                .bind(ms(before))
                .execute(&mut *tx)
                .await
                .map_err(Error::db(ctx))?
                .rows_affected();
            tx.commit().await.map_err(Error::db(ctx))?;
            Ok(n)
        })
    }

    fn register_worker<'a>(
        &'a self,
        id: &'a str,
        host: &'a str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            sqlx::query(q::REGISTER_WORKER)
                .bind(id)
                .bind(host)
                .bind(i64::from(pid))
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(Error::db(format!("registering worker {id}")))?;
            Ok(())
        })
    }

    fn deregister_worker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            sqlx::query(q::DEREGISTER_WORKER)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(Error::db(format!("deregistering worker {id}")))?;
            Ok(())
        })
    }

    fn spawn_listener(&self, _notify: Arc<Notify>) -> Option<JoinHandle<()>> {
        None
    }

    fn add_schedule<'a>(
        &'a self,
        schedule: &'a NewSchedule,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let template = serde_json::to_string(&schedule.template).map_err(|e| {
                Error::invalid("the job template", format!("cannot be stored: {e}"))
            })?;
            let id: i64 = sqlx::query_scalar(q::INSERT_SCHEDULE)
                .bind(&schedule.name)
                .bind(schedule.cadence.expression())
                .bind(schedule.cadence.timezone())
                .bind(template)
                .bind(schedule.catch_up.as_str())
                .bind(ms(now))
                .fetch_one(&self.pool)
                .await
                .map_err(schedule_insert_error(&schedule.name))?;
            Ok(id)
        })
    }

    fn schedules<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ScheduleRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(q::LIST_SCHEDULES)
                .bind(name)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db("listing schedules"))?;
            rows.iter().map(Self::schedule_from_row).collect()
        })
    }

    fn set_schedule_paused<'a>(
        &'a self,
        name: &'a str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done = sqlx::query(q::SET_SCHEDULE_PAUSED)
                .bind(name)
                .bind(i64::from(paused))
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(Error::db(format!("pausing or resuming schedule {name:?}")))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn remove_schedule<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done = sqlx::query(q::DELETE_SCHEDULE)
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(Error::db(format!("removing schedule {name:?}")))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn slot_fired(&self, schedule: i64, slot: DateTime<Utc>) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            sqlx::query_scalar(q::SLOT_FIRED)
                .bind(schedule)
                .bind(ms(slot))
                .fetch_one(&self.pool)
                .await
                .map_err(Error::db("looking up a schedule slot"))
        })
    }

    fn fire_slot<'a>(
        &'a self,
        schedule: i64,
        slot: DateTime<Utc>,
        manual: bool,
        job: std::result::Result<&'a NewJob, &'a str>,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<FireOutcome>> {
        Box::pin(async move {
            let ctx = "firing a schedule slot";
            let mut tx = self.write_tx(ctx).await?;
            let run: Option<i64> = sqlx::query_scalar(q::INSERT_SCHEDULE_RUN)
                .bind(schedule)
                .bind(ms(slot))
                .bind(i64::from(manual))
                .bind(job.err())
                .bind(ms(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::db(ctx))?;
            let Some(run) = run else {
                return Ok(FireOutcome::AlreadyFired);
            };
            let outcome = match job {
                Ok(job) => {
                    let id = Self::insert_job(&mut tx, job, max_attempts, now).await?;
                    sqlx::query(q::SET_RUN_JOB)
                        .bind(run)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::db(ctx))?;
                    FireOutcome::Submitted(id)
                }
                Err(error) => FireOutcome::NotPlanned(error.to_owned()),
            };
            tx.commit().await.map_err(Error::db(ctx))?;
            Ok(outcome)
        })
    }

    fn advance_schedule(&self, schedule: i64, cursor: DateTime<Utc>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            sqlx::query(q::ADVANCE_SCHEDULE)
                .bind(schedule)
                .bind(ms(cursor))
                .execute(&self.pool)
                .await
                .map_err(Error::db("advancing a schedule"))?;
            Ok(())
        })
    }

    fn schedule_runs(&self, schedule: i64, limit: i64) -> BoxFuture<'_, Result<Vec<ScheduleRun>>> {
        Box::pin(async move {
            let rows = sqlx::query(q::LIST_SCHEDULE_RUNS)
                .bind(schedule)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db("listing schedule runs"))?;
            rows.iter().map(Self::run_from_row).collect()
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}

//! The PostgreSQL backend: many workers on many machines, `FOR UPDATE SKIP LOCKED` claims,
//! job rows locked first in every writing transaction, LISTEN/NOTIFY wake-ups.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::backend::{
    Backend, LostLast, Tally, check_fan_out, check_new_job, committed_rows, job_error,
    schedule_insert_error, schedule_record,
};
use crate::error::{Error, Result};
use crate::model::{
    Ack, Attempt, CancelOutcome, ClaimedTask, Completion, FailOutcome, JobId, JobRecord, JobState,
    NewJob, NewTask, Origin, TaskId, TaskRecord, TaskState,
};
use crate::schedule::{FireOutcome, NewSchedule, ScheduleRecord, ScheduleRun};

mod q {
    macro_rules! sql {
        ($($name:ident = $file:literal;)*) => {
            $(pub const $name: &str = include_str!(concat!("../queries/postgres/", $file));)*
        };
    }
    sql! {
        INSERT_JOB = "insert_job.sql";
        ADD_STAGE_TOTALS = "add_stage_totals.sql";
        INSERT_TASKS = "insert_tasks.sql";
        NOTIFY = "notify.sql";
        CLAIM = "claim.sql";
        LOCK_JOBS = "lock_jobs.sql";
        COMPLETE_TASKS = "complete_tasks.sql";
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

/// The LISTEN/NOTIFY channel announcing newly ready tasks.
const CHANNEL: &str = "terrace_tasks";

/// Rows per INSERT when storing a job's tasks; keeps each statement's arrays bounded.
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

/// The PostgreSQL queue store.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    pool: PgPool,
}

impl PostgresBackend {
    /// Connects a pool of up to `max_connections` to `url`.
    pub async fn open(url: &str, max_connections: u32) -> std::result::Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // A slow acquire is a queue outage, which callers report once (a waiting
            // command's one warning line); sqlx's own warning would add a line per call.
            .acquire_slow_threshold(Duration::from_secs(3600))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub(crate) async fn migrate(&self) -> std::result::Result<(), sqlx::migrate::MigrateError> {
        // The migrator takes an advisory lock, so workers starting together are safe.
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await
    }

    /// The connection pool (for inspection in tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn tx(&self, context: &str) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(Error::db(context))
    }

    async fn notify(tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query(q::NOTIFY)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("announcing ready tasks"))?;
        Ok(())
    }

    /// Locks the job rows (in id order) and returns their kinds.
    async fn lock_jobs(
        tx: &mut Transaction<'static, Postgres>,
        jobs: &BTreeSet<JobId>,
    ) -> Result<HashMap<JobId, String>> {
        let ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
        let rows = sqlx::query(q::LOCK_JOBS)
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await
            .map_err(Error::db("locking jobs"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    JobId(r.try_get(0).map_err(Error::db("locking jobs"))?),
                    r.try_get(1).map_err(Error::db("locking jobs"))?,
                ))
            })
            .collect()
    }

    async fn job_state(
        tx: &mut Transaction<'static, Postgres>,
        job: JobId,
    ) -> Result<(JobState, i32)> {
        let ctx = || format!("reading job {job}");
        let row = sqlx::query(q::JOB_STATE)
            .bind(job.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db(ctx()))?
            .ok_or(Error::JobNotFound { id: job })?;
        let state: String = row.try_get(0).map_err(Error::db(ctx()))?;
        let stage: i32 = row.try_get(1).map_err(Error::db(ctx()))?;
        Ok((JobState::from_str(&state)?, stage))
    }

    async fn insert_tasks(
        tx: &mut Transaction<'static, Postgres>,
        job: JobId,
        kind: &str,
        tasks: &[NewTask],
        ready_stage: Option<i32>,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ctx = || format!("storing the tasks of job {job}");
        let mut totals = BTreeMap::<i32, i64>::new();
        for chunk in tasks.chunks(INSERT_CHUNK) {
            let mut stages = Vec::with_capacity(chunk.len());
            let mut payloads = Vec::with_capacity(chunk.len());
            let mut states = Vec::with_capacity(chunk.len());
            let mut attempts = Vec::with_capacity(chunk.len());
            for t in chunk {
                stages.push(t.stage);
                payloads.push(json_text(&t.payload));
                states.push(if Some(t.stage) == ready_stage {
                    TaskState::Ready.as_str()
                } else {
                    TaskState::Blocked.as_str()
                });
                attempts.push(t.max_attempts.unwrap_or(max_attempts));
                *totals.entry(t.stage).or_default() += 1;
            }
            sqlx::query(q::INSERT_TASKS)
                .bind(job.0)
                .bind(kind)
                .bind(now)
                .bind(&stages)
                .bind(&payloads)
                .bind(&states)
                .bind(&attempts)
                .execute(&mut **tx)
                .await
                .map_err(Error::db(ctx()))?;
        }
        let (stages, counts): (Vec<i32>, Vec<i64>) = totals.into_iter().unzip();
        sqlx::query(q::ADD_STAGE_TOTALS)
            .bind(job.0)
            .bind(&stages)
            .bind(&counts)
            .execute(&mut **tx)
            .await
            .map_err(Error::db(ctx()))?;
        Ok(())
    }

    /// See the SQLite backend's `advance`; same steps, plus a NOTIFY.
    async fn advance(
        tx: &mut Transaction<'static, Postgres>,
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
                        .bind(now)
                        .execute(&mut **tx)
                        .await
                        .map_err(Error::db(ctx()))?;
                    Self::notify(tx).await?;
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
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::db(ctx()))?;
            }
        }
        Ok(())
    }

    /// Inserts a job and its tasks in `tx`, and notifies listeners at commit.
    async fn insert_job(
        tx: &mut Transaction<'static, Postgres>,
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
            .bind(now)
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
        // NOTIFY is delivered at commit, so listeners never wake before the rows exist.
        Self::notify(tx).await?;
        Ok(id)
    }

    fn schedule_from_row(row: &PgRow) -> Result<ScheduleRecord> {
        let g = || Error::db("reading a schedule");
        let text = |c: &str| row.try_get::<String, _>(c).map_err(g());
        schedule_record(
            row.try_get("id").map_err(g())?,
            text("name")?,
            &text("cron")?,
            &text("timezone")?,
            &text("template")?,
            &text("catch_up")?,
            row.try_get("paused").map_err(g())?,
            row.try_get("cursor").map_err(g())?,
            row.try_get("created_at").map_err(g())?,
        )
    }

    fn run_from_row(row: &PgRow) -> Result<ScheduleRun> {
        let g = || Error::db("reading a schedule run");
        let state: Option<String> = row.try_get("state").map_err(g())?;
        Ok(ScheduleRun {
            slot: row.try_get("slot").map_err(g())?,
            manual: row.try_get("manual").map_err(g())?,
            fired_at: row.try_get("fired_at").map_err(g())?,
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

    fn job_from_row(row: &PgRow) -> Result<JobRecord> {
        let id = JobId(row.try_get("id").map_err(Error::db("reading a job"))?);
        let g = |e| Error::db(format!("reading job {id}"))(e);
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
            created_at: row.try_get("created_at").map_err(g)?,
            started_at: row.try_get("started_at").map_err(g)?,
            finished_at: row.try_get("finished_at").map_err(g)?,
            commit_started: row
                .try_get::<Option<i64>, _>("commit_task")
                .map_err(g)?
                .is_some(),
            cancel_requested_at: row.try_get("cancel_requested_at").map_err(g)?,
        })
    }

    fn task_from_row(row: &PgRow) -> Result<TaskRecord> {
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
            run_after: row.try_get("run_after").map_err(g)?,
            lease_owner: row.try_get("lease_owner").map_err(g)?,
            lease_expires_at: row.try_get("lease_expires_at").map_err(g)?,
            result: parse_json(row.try_get("result").map_err(g)?, || {
                format!("result of task {id}")
            })?,
            error: row.try_get("error").map_err(g)?,
        })
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn submit<'a>(
        &'a self,
        job: &'a NewJob,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<JobId>> {
        Box::pin(async move {
            let mut tx = self.tx("submitting a job").await?;
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
            let rows = sqlx::query(q::CLAIM)
                .bind(owner)
                .bind(lease_until)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db(ctx))?;
            rows.iter()
                .map(|row| {
                    Ok(ClaimedTask {
                        id: TaskId(row.try_get(0)?),
                        job_id: JobId(row.try_get(1)?),
                        kind: row.try_get(2)?,
                        stage: row.try_get(3)?,
                        attempt: row.try_get(4)?,
                        max_attempts: row.try_get(5)?,
                        lease_owner: owner.to_owned(),
                        payload_json: row.try_get(6)?,
                        ready_at: row.try_get(7)?,
                        claimed_at: now,
                    })
                })
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
                .map_err(Error::db(ctx))
        })
    }

    fn complete<'a>(
        &'a self,
        batch: &'a [Completion],
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Ack>>> {
        Box::pin(async move {
            let ctx = "completing tasks";
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            let mut tx = self.tx(ctx).await?;
            let jobs: BTreeSet<JobId> = batch.iter().map(|c| c.attempt.job_id).collect();
            let kinds = Self::lock_jobs(&mut tx, &jobs).await?;
            let ids: Vec<i64> = batch.iter().map(|c| c.attempt.task_id.0).collect();
            let attempts: Vec<i32> = batch.iter().map(|c| c.attempt.attempt).collect();
            let owners: Vec<&str> = batch
                .iter()
                .map(|c| c.attempt.lease_owner.as_str())
                .collect();
            let results: Vec<String> = batch.iter().map(|c| json_text(&c.output.result)).collect();
            let rows = sqlx::query(q::COMPLETE_TASKS)
                .bind(&ids)
                .bind(&attempts)
                .bind(&owners)
                .bind(&results)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::db(ctx))?;
            let mut accepted = HashMap::with_capacity(rows.len());
            for row in &rows {
                let id: i64 = row.try_get(0).map_err(Error::db(ctx))?;
                let stage: i32 = row.try_get(1).map_err(Error::db(ctx))?;
                accepted.insert(id, stage);
            }
            let mut tally = Tally::default();
            let mut acks = Vec::with_capacity(batch.len());
            for c in batch {
                let a = &c.attempt;
                let Some(&stage) = accepted.get(&a.task_id.0) else {
                    acks.push(Ack::Stale);
                    continue;
                };
                check_fan_out(c, stage)?;
                acks.push(Ack::Accepted);
                tally.done(a.job_id, stage, c.output.rows, c.output.bytes);
                if !c.output.new_tasks.is_empty() {
                    let kind = kinds
                        .get(&a.job_id)
                        .ok_or(Error::JobNotFound { id: a.job_id })?;
                    Self::insert_tasks(
                        &mut tx,
                        a.job_id,
                        kind,
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
                // The job row is locked, so this sees every earlier completion committed:
                // exactly one completion moves `done` onto `total`.
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
            let mut tx = self.tx(&ctx).await?;
            Self::lock_jobs(&mut tx, &BTreeSet::from([attempt.job_id])).await?;
            let row = sqlx::query(q::FAIL_TASK)
                .bind(attempt.task_id.0)
                .bind(attempt.attempt)
                .bind(&attempt.lease_owner)
                .bind(error)
                .bind(retry_at)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            let Some(row) = row else {
                return Ok(FailOutcome::Stale);
            };
            let state: String = row.try_get(0).map_err(Error::db(&ctx))?;
            let stage: i32 = row.try_get(1).map_err(Error::db(&ctx))?;
            let run_after: DateTime<Utc> = row.try_get(2).map_err(Error::db(&ctx))?;
            let outcome = if state == "dead" {
                let msg = job_error(attempt.task_id, stage, attempt.attempt, error);
                sqlx::query(q::FAIL_JOB)
                    .bind(attempt.job_id.0)
                    .bind(msg)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(&ctx))?;
                sqlx::query(q::CANCEL_READY_TASKS)
                    .bind(attempt.job_id.0)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(&ctx))?;
                FailOutcome::Dead
            } else {
                FailOutcome::RetryAt(run_after)
            };
            tx.commit().await.map_err(Error::db(&ctx))?;
            Ok(outcome)
        })
    }

    fn release<'a>(&'a self, attempts: &'a [Attempt]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let ids: Vec<i64> = attempts.iter().map(|a| a.task_id.0).collect();
            let nums: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
            let owners: Vec<&str> = attempts.iter().map(|a| a.lease_owner.as_str()).collect();
            let mut tx = self.tx("releasing tasks").await?;
            let n = sqlx::query(q::RELEASE)
                .bind(&ids)
                .bind(&nums)
                .bind(&owners)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("releasing tasks"))?
                .rows_affected();
            Self::notify(&mut tx).await?;
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
            let n = sqlx::query(q::RENEW_LEASES)
                .bind(owner)
                .bind(lease_until)
                .execute(&self.pool)
                .await
                .map_err(Error::db(&ctx))?
                .rows_affected();
            sqlx::query(q::WORKER_HEARTBEAT)
                .bind(owner)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(Error::db(&ctx))?;
            Ok(n)
        })
    }

    fn reap_expired(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<(u64, Vec<LostLast>)>> {
        Box::pin(async move {
            let ctx = "reaping expired leases";
            let mut tx = self.tx(ctx).await?;
            let n = sqlx::query(q::REAP)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(Error::db(ctx))?
                .rows_affected();
            if n > 0 {
                Self::notify(&mut tx).await?;
            }
            tx.commit().await.map_err(Error::db(ctx))?;
            let rows = sqlx::query(q::EXPIRED_LAST)
                .bind(now)
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
            let mut tx = self.tx(&ctx).await?;
            // Locks the job row: a begin_commit waits for this transaction.
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
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(&ctx))?;
                tx.commit().await.map_err(Error::db(&ctx))?;
                return Ok(CancelOutcome::Committing);
            }
            sqlx::query(q::CANCEL_JOB)
                .bind(job.0)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            sqlx::query(q::CANCEL_JOB_TASKS)
                .bind(job.0)
                .bind(now)
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
            let mut tx = self.tx(&ctx).await?;
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
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?
                .rows_affected();
            sqlx::query(q::RETRY_JOB)
                .bind(job.0)
                .execute(&mut *tx)
                .await
                .map_err(Error::db(&ctx))?;
            Self::notify(&mut tx).await?;
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
            let mut tx = self.tx(ctx).await?;
            for sql in [q::PRUNE_TASKS, q::PRUNE_WORKERS] {
                sqlx::query(sql)
                    .bind(before)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db(ctx))?;
            }
            let n = sqlx::query(q::PRUNE_JOBS)
                .bind(before)
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
                .bind(now)
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

    fn spawn_listener(&self, notify: Arc<Notify>) -> Option<JoinHandle<()>> {
        let pool = self.pool.clone();
        Some(tokio::spawn(async move {
            // Reconnects on failure; meanwhile the worker's polling fallback keeps it going.
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; polling meanwhile");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(_) => notify.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost");
                            // Notifications may have been missed: let the worker look.
                            notify.notify_one();
                            break;
                        }
                    }
                }
            }
        }))
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
                .bind(now)
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
                .bind(paused)
                .bind(now)
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
                .bind(slot)
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
            let mut tx = self.tx(ctx).await?;
            // Concurrent inserts of one slot: the loser waits for the winner's commit, then
            // ON CONFLICT DO NOTHING returns no row.
            let run: Option<i64> = sqlx::query_scalar(q::INSERT_SCHEDULE_RUN)
                .bind(schedule)
                .bind(slot)
                .bind(manual)
                .bind(job.err())
                .bind(now)
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
                .bind(cursor)
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

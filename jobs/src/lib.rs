//! terrace's durable job queue on SQLite (embedded default) or PostgreSQL, and the workers
//! that run it on many machines.
//!
//! A **job** (ingest, query, compact, …) is a row with its spec, state, progress counters
//! and result; its **tasks** are rows carrying the job id, a stage number and a JSON
//! payload. Stages run in order: when the last task of a stage completes, the next
//! stage's tasks become ready — decided exactly once, in the completing transaction.
//! Workers claim tasks in batches under per-task leases that their heartbeat renews; a
//! worker that dies loses its leases and its tasks run again elsewhere. Failed attempts
//! retry with exponential backoff and jitter up to a limit; then the task is dead and its
//! job failed with the error kept.
//!
//! The SQL is ours, per backend (`queries/sqlite`, `queries/postgres`, and the
//! migrations in `migrations/<backend>` applied on connect); both backends implement
//! [`Backend`], whose documentation lists the guarantees, and one shared test suite pins
//! them. The worker runtime is our own small tokio loop (see [`Worker`] for why, a
//! departure from DESIGN.md's use of apalis).
//!
//! ```no_run
//! use std::sync::Arc;
//! use terrace_jobs::{handler_fn, NewJob, NewTask, Queue, TaskOutput, Worker, WorkerConfig};
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), terrace_jobs::Error> {
//! let queue = Queue::connect("sqlite://jobs.db?mode=rwc").await?;
//! let job = NewJob::new("ingest", json!({"path": "s3://bucket/in/"}))
//!     .with_tasks((0..4).map(|i| NewTask::new(0, json!({"file": i}))))
//!     .with_task(NewTask::new(1, json!("commit")));
//! let id = queue.submit(job).await?;
//!
//! let handler = handler_fn(|task, ctx| async move {
//!     if task.stage == 1 {
//!         // The commit reads what stage 0 produced.
//!         let files = ctx.stage_results(task.job_id, 0).await?;
//!         return Ok(TaskOutput::new(json!({"committed": files.len()})));
//!     }
//!     Ok(TaskOutput::new(json!({"file": task.payload()?})).with_progress(100, 4096))
//! });
//! let worker = Worker::new(queue.clone(), WorkerConfig::default());
//! let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
//! worker.run(Arc::new(handler), shutdown).await?;
//! println!("{:?}", queue.job(id).await?.state);
//! # Ok(())
//! # }
//! ```

mod backend;
mod clock;
mod error;
pub mod kinds;
mod model;
mod postgres;
mod queue;
pub mod schedule;
mod sqlite;
mod worker;

pub use backend::Backend;
pub use clock::{Clock, FileClock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use model::{
    Ack, Attempt, CancelOutcome, ClaimedTask, Completion, FailOutcome, JobId, JobRecord, JobState,
    NewJob, NewTask, Origin, TaskId, TaskOutput, TaskRecord, TaskState,
};
pub use postgres::PostgresBackend;
pub use queue::{DEFAULT_MAX_ATTEMPTS, Queue, QueueOptions};
pub use schedule::{
    Cadence, CatchUp, FireOutcome, JobTemplate, NewSchedule, SchedulePlanner, ScheduleRecord,
    ScheduleRun, Scheduler, SchedulerConfig,
};
pub use sqlite::SqliteBackend;
pub use worker::{
    FnHandler, TaskContext, TaskError, TaskHandler, Worker, WorkerConfig, WorkerReport, handler_fn,
};

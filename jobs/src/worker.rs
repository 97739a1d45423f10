//! Workers: claim tasks in batches, run them on a handler with bounded concurrency,
//! complete them in batches, keep their leases alive, and drain on shutdown.
//!
//! This is a small tokio runtime of our own, a departure from DESIGN.md ("apalis provides
//! the worker runtime"): apalis 1.0's backend trait brings its own model of one lease per
//! worker and immediate retries, which is what our queue replaces (per-task leases,
//! backoff through `run_after`, guarded completion). What we needed from apalis —
//! concurrency, graceful shutdown — is the few hundred lines below.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::error::{Error, Result};
use crate::model::{Ack, Attempt, ClaimedTask, Completion, FailOutcome, JobId, TaskId, TaskOutput};
use crate::queue::Queue;

/// Why a task attempt failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// Kept in the task row and, if the task dies, in the job's error.
    pub message: String,
    /// Retry (after backoff, while attempts remain) or kill the task at once.
    pub retryable: bool,
}

impl TaskError {
    /// A failure worth retrying (timeouts, lost connections, throttling).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that will not go away (bad input): the task dies at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<Error> for TaskError {
    fn from(e: Error) -> Self {
        let retryable = e.is_retryable();
        Self {
            message: format!("{:#}", ErrorChain(&e)),
            retryable,
        }
    }
}

/// Formats an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// What a handler can reach besides its task.
#[derive(Debug, Clone)]
pub struct TaskContext {
    queue: Queue,
    worker_id: Arc<str>,
}

impl TaskContext {
    /// The queue (to read the job, for instance).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The id of the worker running the task.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The results of a stage of `job` (a fan-in task reads the previous stage's).
    pub async fn stage_results(&self, job: JobId, stage: i32) -> Result<Vec<(TaskId, Value)>> {
        self.queue.stage_results(job, stage).await
    }

    /// Marks `task` as its job's commit, just before it makes anything visible; see
    /// [`Queue::begin_commit`]. `false`: the job was cancelled first, change nothing.
    /// Retried a few times when the queue is briefly unreachable.
    pub async fn begin_commit(&self, task: &ClaimedTask) -> Result<bool> {
        let attempt = Attempt::from(task);
        with_retries("beginning a commit", || self.queue.begin_commit(&attempt)).await
    }
}

/// Runs tasks. Implement it with `Box::pin(async move { … })`, or wrap a closure with
/// [`handler_fn`].
///
/// The future runs on the tokio executor: CPU-heavy work (Parquet encoding, hashing)
/// belongs in `tokio::task::spawn_blocking` (or a rayon pool) so that the worker's
/// heartbeat, which keeps the task's lease alive, is not starved.
///
/// Tasks must be idempotent: an attempt may run after a previous one that lost its lease
/// (only the attempt that completes has its result kept).
pub trait TaskHandler: Send + Sync + 'static {
    /// Runs one attempt of `task`.
    fn run<'a>(
        &'a self,
        task: &'a ClaimedTask,
        ctx: &'a TaskContext,
    ) -> BoxFuture<'a, std::result::Result<TaskOutput, TaskError>>;
}

/// A [`TaskHandler`] made from a closure taking owned copies.
pub struct FnHandler<F>(F);

impl<F> std::fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnHandler")
    }
}

/// Wraps `f(task, ctx)` as a handler.
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(ClaimedTask, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<TaskOutput, TaskError>> + Send + 'static,
{
    FnHandler(f)
}

impl<F, Fut> TaskHandler for FnHandler<F>
where
    F: Fn(ClaimedTask, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<TaskOutput, TaskError>> + Send + 'static,
{
    fn run<'a>(
        &'a self,
        task: &'a ClaimedTask,
        ctx: &'a TaskContext,
    ) -> BoxFuture<'a, std::result::Result<TaskOutput, TaskError>> {
        Box::pin((self.0)(task.clone(), ctx.clone()))
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub concurrency: usize,
    /// Most tasks claimed, and completions written, per statement.
    pub batch_size: u32,
    /// How long a claimed task stays ours without a heartbeat.
    pub lease_duration: Duration,
    /// Heartbeat period (renews leases, reaps expired ones); a third of the lease when
    /// `None`.
    pub heartbeat_interval: Option<Duration>,
    /// Longest wait between claims when idle (SQLite backs off to it from a few ms;
    /// Postgres waits for a NOTIFY or this, whichever comes first).
    pub poll_interval: Duration,
    /// Finished jobs older than this are pruned (with their tasks) by the worker's
    /// housekeeping, about once an hour, so the tables do not grow without bound; `None`
    /// keeps everything.
    pub retention: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            batch_size: 100,
            lease_duration: Duration::from_secs(30),
            heartbeat_interval: None,
            poll_interval: Duration::from_millis(100),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl WorkerConfig {
    /// Sets the concurrency.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, n: u32) -> Self {
        self.batch_size = n;
        self
    }

    /// Sets how long finished jobs are kept (`None`: forever).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the lease duration.
    pub fn with_lease(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// Sets the idle poll interval.
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Attempts whose completion was recorded.
    pub completed: u64,
    /// Attempts recorded as failed (retried or dead).
    pub failed: u64,
    /// Attempts refused as stale (lease lost, job cancelled).
    pub stale: u64,
}

/// A worker process's unit of execution; ids are `{host}-{pid}-{n}`.
///
/// Our own small tokio runtime rather than apalis (a departure from DESIGN.md): apalis
/// 1.0's backend trait would impose its per-worker lease and immediate retries, where
/// this queue has per-task leases, backoff through `run_after` and guarded completion.
///
/// Loop: claim up to a batch when enough of the `concurrency` slots are free; run each
/// task in its own tokio task; send outcomes to a completion loop that writes them in
/// batches; a heartbeat renews this worker's leases (and reaps expired ones) every third
/// of the lease. On Postgres an idle worker sleeps until a NOTIFY or the poll interval;
/// on SQLite it polls, from 2 ms after work was found, doubling up to the poll interval.
/// Either way its own completions wake it at once, so the next stage of a job it just
/// finished a stage of starts without waiting for a poll.
#[derive(Debug)]
pub struct Worker {
    queue: Queue,
    config: WorkerConfig,
    id: Arc<str>,
    host: String,
}

static NEXT_WORKER: AtomicU64 = AtomicU64::new(0);

enum Outcome {
    Done(Completion),
    Failed(Attempt, TaskError),
}

impl Worker {
    /// A worker on `queue`; nothing runs until [`Worker::run`].
    pub fn new(queue: Queue, config: WorkerConfig) -> Self {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".to_owned());
        let n = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{host}-{}-{n}", std::process::id()).into();
        Self {
            queue,
            config,
            id,
            host,
        }
    }

    /// This worker's id (the lease owner of its tasks).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Registers, then claims and runs tasks until `shutdown` resolves; then stops
    /// claiming, lets in-flight tasks finish, writes their completions and deregisters.
    /// A queue that fails for good (a claim or a completion refused with an error that
    /// is not [`Error::is_retryable`]: a full disk, a read-only file) stops the worker at
    /// once, without waiting for its tasks in flight, returning that error.
    pub async fn run(
        self,
        handler: Arc<dyn TaskHandler>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport> {
        let Worker {
            queue,
            config,
            id,
            host,
        } = self;
        let concurrency = config.concurrency.max(1);
        let batch = config.batch_size.max(1);
        let lease = config.lease_duration;
        queue
            .backend()
            .register_worker(&id, &host, std::process::id(), queue.now())
            .await?;
        tracing::info!(worker = %id, backend = queue.backend_name(), "worker started");

        let heartbeat = tokio::spawn(heartbeat_loop(
            queue.clone(),
            id.clone(),
            lease,
            config.heartbeat_interval.unwrap_or(lease / 3),
            config.retention,
        ));
        let wake = Arc::new(Notify::new());
        let listener = queue.backend().spawn_listener(wake.clone());
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        // A queue the completion loop found it cannot write (a full disk): the claim loop
        // stops on it, as on a claim that fails for good.
        let unwritable = Arc::new(std::sync::Mutex::new(None));
        let completer = tokio::spawn(completion_loop(
            queue.clone(),
            done_rx,
            batch as usize,
            wake.clone(),
            unwritable.clone(),
        ));

        let ctx = TaskContext {
            queue: queue.clone(),
            worker_id: id.clone(),
        };
        let slots = Arc::new(Semaphore::new(concurrency));
        // Claim when at least this many slots are free, so that claims stay batched.
        let low_water = (batch as usize).min(concurrency).div_ceil(2).max(1);
        let min_idle = Duration::from_millis(2);
        let mut idle = min_idle;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut fatal = None;

        'claiming: loop {
            if let Some(e) = unwritable.lock().ok().and_then(|mut u| u.take()) {
                fatal = Some(e);
                break 'claiming;
            }
            let permits = tokio::select! {
                biased;
                () = &mut shutdown => break 'claiming,
                p = slots.clone().acquire_many_owned(low_water as u32) => p,
            };
            let Ok(mut permits) = permits else {
                break 'claiming;
            };
            // Take whatever else is free, up to a batch.
            let extra = (batch as usize).min(concurrency) - low_water;
            if extra > 0 {
                let free = slots.available_permits().min(extra);
                if free > 0
                    && let Ok(more) = slots.clone().try_acquire_many_owned(free as u32)
                {
                    permits.merge(more);
                }
            }
            let want = permits.num_permits() as u32;
            let tasks = match queue.claim(&id, want, lease).await {
                Ok(t) => t,
                // A queue that cannot be written (a full disk, a read-only or corrupt
                // file) will not heal by waiting: stop, with the cause, rather than
                // back off for ever.
                Err(e) if !e.is_retryable() => {
                    // Returned to the caller, who reports it.
                    tracing::debug!(worker = %id, error = %e, "claim failed; stopping");
                    fatal = Some(e);
                    break 'claiming;
                }
                Err(e) => {
                    tracing::warn!(worker = %id, error = %e, "claim failed; backing off");
                    drop(permits);
                    tokio::select! {
                        () = &mut shutdown => break 'claiming,
                        () = tokio::time::sleep(config.poll_interval.max(Duration::from_millis(500))) => {}
                    }
                    continue;
                }
            };
            if tasks.is_empty() {
                drop(permits);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'claiming,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(if listener.is_some() { config.poll_interval } else { idle }) => {}
                }
                idle = (idle * 2).min(config.poll_interval);
                continue;
            }
            idle = min_idle;
            for task in tasks {
                let Some(permit) = permits.split(1) else {
                    // Cannot happen: we claimed at most as many as we hold.
                    break;
                };
                let handler = handler.clone();
                let ctx = ctx.clone();
                let done_tx = done_tx.clone();
                tokio::spawn(async move {
                    let ran = std::panic::AssertUnwindSafe(handler.run(&task, &ctx))
                        .catch_unwind()
                        .await;
                    let attempt = Attempt::from(&task);
                    let outcome = match ran {
                        Ok(Ok(output)) => Outcome::Done(Completion { attempt, output }),
                        Ok(Err(e)) => Outcome::Failed(attempt, e),
                        Err(_) => Outcome::Failed(
                            attempt,
                            TaskError::retryable(format!("handler panicked on task {}", task.id)),
                        ),
                    };
                    // The completer outlives every task (it ends when all senders drop).
                    let _ = done_tx.send(outcome);
                    drop(permit);
                });
            }
        }

        if let Some(e) = fatal {
            // The queue cannot record what the tasks in flight would finish, so do not
            // wait for them (a big write task may run for minutes): stop now, as a crash
            // would; their leases expire and they run again once the queue is mended.
            heartbeat.abort();
            if let Some(l) = listener {
                l.abort();
            }
            // Best effort: the queue is likely not writable either.
            let _ = queue.backend().deregister_worker(&id).await;
            return Err(e);
        }

        // Drain: every slot back means every handler has finished and sent its outcome.
        tracing::info!(worker = %id, "draining");
        let _all = slots.acquire_many(concurrency as u32).await;
        drop(done_tx);
        let report = match completer.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(worker = %id, error = %e, "completion loop panicked");
                WorkerReport::default()
            }
        };
        heartbeat.abort();
        if let Some(l) = listener {
            l.abort();
        }
        queue.backend().deregister_worker(&id).await?;
        tracing::info!(worker = %id, ?report, "worker stopped");
        Ok(report)
    }
}

/// How often a worker prunes finished jobs past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

async fn heartbeat_loop(
    queue: Queue,
    id: Arc<str>,
    lease: Duration,
    every: Duration,
    retention: Option<Duration>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if let Some(retention) = retention
            && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY)
        {
            last_prune = Some(tokio::time::Instant::now());
            match queue.prune(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(worker = %id, n, "pruned finished jobs past the retention"),
                Err(e) => tracing::warn!(worker = %id, error = %e, "pruning finished jobs failed"),
            }
        }
        if let Err(e) = queue.heartbeat(&id, lease).await {
            tracing::warn!(worker = %id, error = %e, "heartbeat failed");
        }
        // Every worker reaps: dead workers cannot, and the UPDATE is idempotent.
        match queue.reap_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(worker = %id, n, "re-queued tasks with expired leases"),
            Err(e) => tracing::warn!(worker = %id, error = %e, "reaping expired leases failed"),
        }
    }
}

/// Writes outcomes in batches: whatever has arrived while the previous batch was being
/// written goes into the next one. After each batch of completions it wakes the claim loop:
/// a completion may have made the job's next stage ready, and this worker should not
/// sleep through it (on SQLite nothing else would tell it before its next poll).
async fn completion_loop(
    queue: Queue,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    batch: usize,
    wake: Arc<Notify>,
    unwritable: Arc<std::sync::Mutex<Option<Error>>>,
) -> WorkerReport {
    // A statement the database refuses for good (not a bad completion: a full disk, a
    // read-only file) stops the worker; other errors drop the outcomes (the leases expire
    // and the tasks run again elsewhere).
    let stop_on = |e: Error| -> Option<Error> {
        if matches!(e, Error::Database { .. }) && !e.is_retryable() {
            if let Ok(mut u) = unwritable.lock() {
                u.get_or_insert(e);
            }
            wake.notify_one();
            None
        } else {
            Some(e)
        }
    };
    let mut report = WorkerReport::default();
    let mut done = Vec::with_capacity(batch);
    let mut failed = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(o) = next {
            match o {
                Outcome::Done(c) => done.push(c),
                Outcome::Failed(a, e) => failed.push((a, e)),
            }
            next = if done.len() + failed.len() < batch {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !done.is_empty() {
            match with_retries("completing tasks", || queue.complete(&done)).await {
                Ok(acks) => {
                    for a in acks {
                        match a {
                            Ack::Accepted => report.completed += 1,
                            Ack::Stale => report.stale += 1,
                        }
                    }
                }
                // The leases will expire and the tasks run again elsewhere.
                Err(e) => {
                    if let Some(e) = stop_on(e) {
                        tracing::error!(error = %e, n = done.len(), "dropping completions");
                    }
                }
            }
            done.clear();
            wake.notify_one();
        }
        for (a, e) in failed.drain(..) {
            match with_retries("failing a task", || queue.fail(&a, &e.message, e.retryable)).await {
                Ok(FailOutcome::Stale) => report.stale += 1,
                Ok(outcome) => {
                    tracing::info!(task = %a.task_id, job = %a.job_id, error = %e, ?outcome, "task failed");
                    report.failed += 1;
                }
                Err(err) => {
                    if let Some(err) = stop_on(err) {
                        tracing::error!(task = %a.task_id, error = %err, "dropping a failure");
                    }
                }
            }
        }
    }
    report
}

/// Retries retryable database errors a few times (a restarting Postgres, a busy SQLite).
async fn with_retries<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut wait = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        tries += 1;
        match f().await {
            Err(e) if e.is_retryable() && tries < 8 => {
                tracing::warn!(error = %e, tries, "{what} failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

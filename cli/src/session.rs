//! The queue a command talks to, the workers it runs in-process, and waiting for a job
//! with a progress bar.
//!
//! The queue is `--db` (or `TERRACE_DB`), else the embedded SQLite file
//! `.terrace/queue.db` in the working directory. A SQLite queue lives on this machine, so
//! commands run workers in-process (one per core) by default; a PostgreSQL queue is
//! shared by `terrace worker` processes on many machines, so commands only submit and
//! wait unless `--workers N` asks for local workers too.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use terrace_jobs::kinds::Executor;
use terrace_jobs::{
    FileClock, JobId, JobRecord, JobState, NewJob, Queue, QueueOptions, Worker, WorkerConfig,
};
use terrace_planner::human_bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Options every command that runs jobs shares.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// Job queue: postgres://… or a SQLite file (default .terrace/queue.db).
    #[arg(long, env = "TERRACE_DB", global = true)]
    pub db: Option<String>,
    /// Workers to run in this process while a command waits for its job (default: one
    /// per core with SQLite, none with PostgreSQL, where `terrace worker` processes run
    /// the tasks). Not with --detach, which does not wait, nor on commands that run no
    /// job.
    #[arg(long, global = true)]
    pub workers: Option<usize>,
    /// Submit the job, print its id and return without waiting (commands that run a
    /// job: quickstart, ingest, query, delete, gc, schedule run).
    #[arg(long, global = true)]
    pub detach: bool,
}

impl QueueArgs {
    /// The queue URL and whether it is SQLite.
    pub fn url(&self) -> anyhow::Result<(String, bool)> {
        match &self.db {
            Some(db) if db.starts_with("postgres://") || db.starts_with("postgresql://") => {
                Ok((db.clone(), false))
            }
            Some(db) if db.starts_with("sqlite:") => Ok((db.clone(), true)),
            Some(db) if db.contains("://") => {
                bail!("unsupported --db {db:?}: expected postgres://… or a SQLite file path")
            }
            Some(path) => Ok((sqlite_url(std::path::Path::new(path))?, true)),
            None => {
                let dir = std::path::Path::new(".terrace");
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Ok((sqlite_url(&dir.join("queue.db"))?, true))
            }
        }
    }

    /// Connect to the queue (retrying a few times while the database starts).
    pub async fn connect(&self) -> anyhow::Result<(Queue, bool)> {
        let (url, sqlite) = self.url()?;
        let mut options =
            QueueOptions::default().with_connect_retries(3, Duration::from_millis(500));
        // For tests that move the time of several processes at once (schedules); the file
        // holds an RFC 3339 time. Not for production use.
        if let Some(path) = std::env::var_os("TERRACE_CLOCK_FILE") {
            options = options.with_clock(std::sync::Arc::new(FileClock::new(path)));
        }
        let queue = Queue::connect_with(&url, options).await?;
        Ok((queue, sqlite))
    }

    fn local_workers(&self, sqlite: bool) -> usize {
        self.workers.unwrap_or(if sqlite { cores() } else { 0 })
    }
}

fn sqlite_url(path: &std::path::Path) -> anyhow::Result<String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(format!("sqlite://{}?mode=rwc", path.display()))
}

/// Cores of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Workers running in this process until dropped or stopped.
pub struct LocalWorkers {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

impl LocalWorkers {
    /// Start one worker with `concurrency` slots on `queue` (nothing when 0).
    pub fn start(queue: &Queue, concurrency: usize, lease: Option<Duration>) -> LocalWorkers {
        let (stop, mut stopped) = watch::channel(false);
        if concurrency == 0 {
            return LocalWorkers { stop, handle: None };
        }
        let mut config = WorkerConfig::default().with_concurrency(concurrency);
        if let Some(lease) = lease {
            config = config.with_lease(lease);
        }
        let worker = Worker::new(queue.clone(), config);
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = worker.run(Arc::new(Executor::new()), shutdown).await {
                tracing::error!(error = %e, "in-process worker stopped");
            }
        });
        LocalWorkers {
            stop,
            handle: Some(handle),
        }
    }

    /// Ask the workers to drain and wait for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

/// What waiting for a job ended with.
pub enum Waited {
    /// The job finished (in any state).
    Finished(Box<JobRecord>),
    /// The job was submitted with `--detach`.
    Detached(JobId),
}

/// Submit `job`, run local workers as configured, and wait for it with a progress bar
/// (or plain log lines when stderr is not a terminal). Ctrl-C cancels the job.
pub async fn submit_and_wait(args: &QueueArgs, job: NewJob, what: &str) -> anyhow::Result<Waited> {
    let (queue, sqlite) = args.connect().await?;
    let id = queue.submit(job).await.context("cannot submit the job")?;
    let waited = wait_submitted(args, &queue, sqlite, id, what).await;
    queue.close().await;
    waited
}

/// Wait for the submitted job `id` as [`submit_and_wait`] does (unless `--detach`).
pub async fn wait_submitted(
    args: &QueueArgs,
    queue: &Queue,
    sqlite: bool,
    id: JobId,
    what: &str,
) -> anyhow::Result<Waited> {
    if args.detach {
        return Ok(Waited::Detached(id));
    }
    let workers = LocalWorkers::start(queue, args.local_workers(sqlite), None);
    let result = wait(queue, id, what).await;
    workers.stop().await;
    result.map(|job| Waited::Finished(Box::new(job)))
}

/// Wait for job `id` to finish, showing progress.
pub async fn wait(queue: &Queue, id: JobId, what: &str) -> anyhow::Result<JobRecord> {
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} tasks  {msg}  {elapsed} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{what} job {id}"));
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut last_log = Instant::now();
    let mut last_done = -1;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let job = queue.job(id).await?;
        let elapsed = started.elapsed().as_secs_f64().max(1e-3);
        let rate = job.rows as f64 / elapsed;
        let msg = format!(
            "{} rows  {}  {:.0} rows/s",
            job.rows,
            human_bytes(job.bytes.max(0) as u64),
            rate
        );
        if let Some(bar) = &bar {
            bar.set_length(job.tasks_total.max(0) as u64);
            bar.set_position(job.tasks_done.max(0) as u64);
            bar.set_message(msg.clone());
        } else if job.tasks_done != last_done && last_log.elapsed() >= Duration::from_secs(2)
            || job.state.is_finished()
        {
            eprintln!(
                "{what} job {id}: {:?}, {}/{} tasks, {msg}",
                job.state, job.tasks_done, job.tasks_total
            );
            last_done = job.tasks_done;
            last_log = Instant::now();
        }
        if job.state.is_finished() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(job);
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                queue.cancel(id).await.ok();
                bail!("interrupted: job {id} cancelled");
            }
            () = tokio::time::sleep(poll_interval(started.elapsed())) => {}
        }
    }
}

/// How long to sleep between looks at a job `elapsed` after waiting began: a twentieth
/// of the time so far, between 5 and 100 ms. A query that takes 0.2 s is then seen to
/// end within 10 ms rather than up to 100, while a long ingest is looked at ten times a
/// second as before.
fn poll_interval(elapsed: Duration) -> Duration {
    (elapsed / 20).clamp(Duration::from_millis(5), Duration::from_millis(100))
}

/// Fail with the job's error unless it succeeded.
pub fn ensure_succeeded(job: &JobRecord) -> anyhow::Result<()> {
    match job.state {
        JobState::Succeeded => Ok(()),
        JobState::Cancelled => bail!("job {} was cancelled", job.id),
        _ => bail!(
            "job {} {}: {}",
            job.id,
            job.state.as_str(),
            job.error.as_deref().unwrap_or("no error recorded")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_looks_often_at_short_jobs_and_ten_times_a_second_at_long_ones() {
        let ms = Duration::from_millis;
        assert_eq!(poll_interval(ms(0)), ms(5));
        assert_eq!(poll_interval(ms(400)), ms(20));
        assert_eq!(poll_interval(Duration::from_secs(3600)), ms(100));
    }
}

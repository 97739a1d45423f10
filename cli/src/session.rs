//! The queue a command talks to, the workers it runs in-process, and waiting for a job
//! with a progress bar.
//!
//! The queue is `--db` (or `TERRACE_DB`), else the embedded SQLite file
//! `.terrace/queue.db` in the working directory. A SQLite queue lives on this machine, so
//! commands run workers in-process (one per core) by default; a PostgreSQL queue is
//! shared by `terrace worker` processes on many machines, so commands only submit and
//! wait unless `--workers N` asks for local workers too.
//!
//! Waiting survives a queue that goes away for a while: connections refused or reset,
//! pool timeouts and a locked SQLite file are retried with backoff for up to
//! [`QUEUE_OUTAGE_LIMIT`] (5 minutes), with one warning line per outage; after that the
//! command exits 1 saying the job may still be running and how to follow it. A queue
//! error that waiting will not mend (a full disk, a read-only or corrupt SQLite file)
//! fails the command at once with its cause.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use terrace_jobs::kinds::Executor;
use terrace_jobs::{
    CancelOutcome, FileClock, JobId, JobRecord, JobState, NewJob, Queue, QueueOptions, Worker,
    WorkerConfig,
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

/// Whether a command may create the queue it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Commands that submit jobs (and `worker`) create a SQLite queue on first use.
    Create,
    /// Commands that only look at jobs (jobs, status, cancel, retry) need one that
    /// exists: a mistyped `--db` must not look like an empty queue.
    Existing,
}

impl QueueArgs {
    /// The queue URL and whether it is SQLite.
    ///
    /// An explicit SQLite path must be in a directory that exists (a typo in it is an
    /// error naming the directory, not a new queue somewhere); with [`Access::Existing`]
    /// the file must exist too. The default `.terrace/queue.db` is created on first use.
    pub fn url(&self, access: Access) -> anyhow::Result<(String, bool)> {
        match &self.db {
            Some(db) if db.starts_with("postgres://") || db.starts_with("postgresql://") => {
                Ok((db.clone(), false))
            }
            Some(db) if db.starts_with("sqlite:") => Ok((db.clone(), true)),
            Some(db) if db.contains("://") => {
                bail!("unsupported --db {db:?}: expected postgres://… or a SQLite file path")
            }
            Some(path) => Ok((sqlite_url(std::path::Path::new(path), access, true)?, true)),
            None => {
                let dir = std::path::Path::new(".terrace");
                if access == Access::Create {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                Ok((sqlite_url(&dir.join("queue.db"), access, false)?, true))
            }
        }
    }

    /// Connect to the queue, creating a SQLite one if needed (retrying a few times while
    /// the database starts).
    pub async fn connect(&self) -> anyhow::Result<(Queue, bool)> {
        self.connect_as(Access::Create).await
    }

    /// Connect to a queue that must exist already (see [`Access::Existing`]).
    pub async fn connect_existing(&self) -> anyhow::Result<(Queue, bool)> {
        self.connect_as(Access::Existing).await
    }

    async fn connect_as(&self, access: Access) -> anyhow::Result<(Queue, bool)> {
        let (url, sqlite) = self.url(access)?;
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

    /// The command that shows job `id` on `queue`: with `--db` unless the queue is the
    /// default or comes from `TERRACE_DB` (a password shown as `***`).
    pub fn status_command(&self, queue: &Queue, id: JobId) -> String {
        match &self.db {
            Some(db) if std::env::var("TERRACE_DB").ok().as_deref() != Some(db.as_str()) => {
                format!("terrace status {id} --db {}", queue.url())
            }
            _ => format!("terrace status {id}"),
        }
    }
}

fn sqlite_url(path: &std::path::Path, access: Access, explicit: bool) -> anyhow::Result<String> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let missing_dir = parent.filter(|p| !p.is_dir());
    if access == Access::Existing && !path.is_file() {
        if !explicit {
            let here =
                std::env::current_dir().map_or_else(|_| ".".into(), |d| d.display().to_string());
            bail!(
                "no job queue at {} in {here}: no job has been submitted from this directory \
                 (give --db to look at another queue)",
                path.display()
            );
        }
        match missing_dir {
            Some(dir) => bail!(
                "no job queue at {}: the directory {} does not exist (check --db)",
                path.display(),
                dir.display()
            ),
            None => bail!(
                "no job queue at {} (check --db; commands that submit a job create it)",
                path.display()
            ),
        }
    }
    if let Some(dir) = missing_dir {
        bail!(
            "the directory {} of the job queue {} does not exist (create it first, or check \
             --db)",
            dir.display(),
            path.display()
        );
    }
    let mode = match access {
        Access::Create => "rwc",
        Access::Existing => "rw",
    };
    Ok(format!("sqlite://{}?mode={mode}", path.display()))
}

/// Cores of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Workers running in this process until dropped or stopped.
pub struct LocalWorkers {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<terrace_jobs::Error>>>,
}

impl LocalWorkers {
    /// Start one worker with `concurrency` slots on `queue` (nothing when 0).
    pub fn start(queue: &Queue, concurrency: usize, lease: Option<Duration>) -> LocalWorkers {
        let (stop, mut stopped) = watch::channel(false);
        let failure = Arc::new(Mutex::new(None));
        if concurrency == 0 {
            return LocalWorkers {
                stop,
                handle: None,
                failure,
            };
        }
        let mut config = WorkerConfig::default().with_concurrency(concurrency);
        if let Some(lease) = lease {
            config = config.with_lease(lease);
        }
        let worker = Worker::new(queue.clone(), config);
        let failed = failure.clone();
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = worker.run(Arc::new(Executor::new()), shutdown).await {
                tracing::debug!(error = %e, "in-process worker stopped");
                if let Ok(mut f) = failed.lock() {
                    *f = Some(e);
                }
            }
        });
        LocalWorkers {
            stop,
            handle: Some(handle),
            failure,
        }
    }

    /// Why the workers stopped on their own (a queue they cannot write), once.
    fn take_failure(&self) -> Option<terrace_jobs::Error> {
        self.failure.lock().ok().and_then(|mut f| f.take())
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
/// (or plain log lines when stderr is not a terminal). Ctrl-C cancels the job (unless
/// its commit has begun: then the commit's outcome is waited for and reported).
pub async fn submit_and_wait(args: &QueueArgs, job: NewJob, what: &str) -> anyhow::Result<Waited> {
    let (queue, sqlite) = args.connect().await?;
    let id = queue
        .submit(job)
        .await
        .with_context(|| format!("cannot submit the job to the queue at {}", queue.url()))?;
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
    let result = wait(queue, args, id, what, &workers).await;
    workers.stop().await;
    result.map(|job| Waited::Finished(Box::new(job)))
}

/// How long a waiting command rides out a queue it cannot reach (connections refused or
/// reset, pool timeouts, a locked SQLite file) before it gives up, saying the job may
/// still be running and how to follow it. The job itself does not depend on the client:
/// workers that reach the queue go on running it.
pub const QUEUE_OUTAGE_LIMIT: Duration = Duration::from_secs(300);

/// Seconds that replace [`QUEUE_OUTAGE_LIMIT`], for tests of giving up.
const OUTAGE_LIMIT_VAR: &str = "TERRACE_TEST_QUEUE_OUTAGE_LIMIT";

fn outage_limit() -> Duration {
    std::env::var(OUTAGE_LIMIT_VAR)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(QUEUE_OUTAGE_LIMIT, Duration::from_secs)
}

/// Waits between looks at an unreachable queue: from this, doubling, up to
/// [`OUTAGE_BACKOFF_MAX`].
const OUTAGE_BACKOFF: Duration = Duration::from_millis(250);
const OUTAGE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// `5 min`, `90 s`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// The innermost cause of an error: what went wrong underneath the context.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Wait for job `id` to finish, showing progress.
///
/// A queue that cannot be reached for a while (see [`QUEUE_OUTAGE_LIMIT`]) is waited
/// out with backoff and one warning line; a queue error that will not pass, or local
/// workers that stopped on one, fail at once with the cause.
pub async fn wait(
    queue: &Queue,
    args: &QueueArgs,
    id: JobId,
    what: &str,
    workers: &LocalWorkers,
) -> anyhow::Result<JobRecord> {
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
    let say = |line: &str| match &bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    };
    let give_up = |message: String| {
        if let Some(bar) = &bar {
            bar.abandon();
        }
        anyhow::anyhow!(message)
    };
    let started = Instant::now();
    let mut last_log = Instant::now();
    let mut last_done = -1;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    // When the queue became unreachable, and the wait before the next look.
    let mut outage: Option<Instant> = None;
    let mut backoff = OUTAGE_BACKOFF;
    // Ctrl-C came while the job's commit ran: a second one stops waiting.
    let mut interrupted = false;
    let limit = outage_limit();
    loop {
        if let Some(e) = workers.take_failure() {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            return Err(anyhow::Error::new(e).context(format!(
                "{what} job {id} cannot run: this command's workers stopped on the queue at {}",
                queue.url()
            )));
        }
        let read = tokio::select! {
            read = queue.job(id) => Some(read),
            _ = &mut ctrl_c => None,
        };
        let Some(read) = read else {
            ctrl_c.set(tokio::signal::ctrl_c());
            interrupt(queue, args, id, what, &mut interrupted, &say, &give_up).await?;
            continue;
        };
        let job = match read {
            Ok(job) => {
                outage = None;
                backoff = OUTAGE_BACKOFF;
                job
            }
            Err(e) if e.is_retryable() => {
                let since = *outage.get_or_insert_with(|| {
                    say(&format!(
                        "terrace: cannot reach the job queue at {} ({}); retrying for up to {} \
                         (job {id} goes on meanwhile on workers that reach the queue)",
                        queue.url(),
                        root_cause(&e),
                        human_duration(limit)
                    ));
                    Instant::now()
                });
                if since.elapsed() >= limit {
                    return Err(give_up(format!(
                        "lost the job queue at {} for {} ({}): job {id} may still be running; \
                         follow it with `{}`",
                        queue.url(),
                        human_duration(limit),
                        root_cause(&e),
                        args.status_command(queue, id)
                    )));
                }
                tokio::select! {
                    _ = &mut ctrl_c => {
                        return Err(give_up(format!(
                            "interrupted while the job queue at {} was unreachable: job {id} \
                             was not cancelled and may still be running; follow it with `{}`",
                            queue.url(),
                            args.status_command(queue, id)
                        )));
                    }
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(OUTAGE_BACKOFF_MAX);
                continue;
            }
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot follow job {id} in the queue at {}",
                    queue.url()
                )));
            }
        };
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
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(job);
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                ctrl_c.set(tokio::signal::ctrl_c());
                interrupt(queue, args, id, what, &mut interrupted, &say, &give_up).await?;
            }
            () = tokio::time::sleep(poll_interval(started.elapsed())) => {}
        }
    }
}

/// Ctrl-C while waiting: cancel the job. `Ok` means wait on — its commit had begun, so
/// it was not cancelled and its outcome is what to report (or it finished meanwhile).
async fn interrupt(
    queue: &Queue,
    args: &QueueArgs,
    id: JobId,
    what: &str,
    interrupted: &mut bool,
    say: &impl Fn(&str),
    give_up: &impl Fn(String) -> anyhow::Error,
) -> anyhow::Result<()> {
    if *interrupted {
        return Err(give_up(format!(
            "stopped waiting: job {id} is committing, which a cancel does not stop; follow it \
             with `{}`",
            args.status_command(queue, id)
        )));
    }
    match queue.cancel(id).await {
        Ok(CancelOutcome::Cancelled) => Err(give_up(if matches!(what, "ingest" | "delete") {
            format!("interrupted: job {id} cancelled before its commit; nothing was committed")
        } else {
            format!("interrupted: job {id} cancelled")
        })),
        Ok(CancelOutcome::Committing) => {
            *interrupted = true;
            say(&format!(
                "terrace: job {id} is already committing, so it is not cancelled; waiting for \
                 its outcome (Ctrl-C again stops waiting)"
            ));
            Ok(())
        }
        // It finished meanwhile: the next look reports how.
        Err(terrace_jobs::Error::InvalidState { .. }) => Ok(()),
        Err(e) => Err(give_up(format!(
            "interrupted, but job {id} could not be cancelled ({}): it may still be running; \
             follow it with `{}`",
            root_cause(&e),
            args.status_command(queue, id)
        ))),
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

//! Job commands: status, jobs, cancel, retry, worker.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use terrace_jobs::kinds::{CommitLookup, Executor, KIND_DELETE, KIND_INGEST, find_job_commit};
use terrace_jobs::{CancelOutcome, JobId, JobRecord, JobState, Worker, WorkerConfig};

use terrace_planner::human_bytes;

use crate::session::{LocalWorkers, QueueArgs, cores, wait};

/// `terrace status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The job (default: every unfinished job).
    pub job: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// For a finished query, print its result rows.
    #[arg(long)]
    pub result: bool,
}

/// `terrace jobs`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A job id argument.
#[derive(Debug, clap::Args)]
pub struct JobArg {
    /// The job id.
    pub job: i64,
}

/// `terrace worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Tasks run at once, 1 or more (default: one per core).
    #[arg(long, value_parser = crate::parse::positive)]
    pub concurrency: Option<usize>,
    /// Lease of a claimed task; a worker that dies loses its tasks after this (30s, 1m).
    #[arg(long, value_parser = crate::parse::duration, default_value = "30s")]
    pub lease: Duration,
    /// Finished jobs older than this are removed from the queue (7d; 0 keeps them).
    #[arg(long, value_parser = crate::parse::duration, default_value = "7d")]
    pub retention: Duration,
    /// Do not fire schedules from this worker (by default every worker may; each slot
    /// fires once however many do).
    #[arg(long)]
    pub no_scheduler: bool,
    /// How often the scheduler looks for due slots.
    #[arg(long, value_parser = crate::parse::duration, default_value = "10s")]
    pub scheduler_interval: Duration,
}

fn job_json(job: &JobRecord) -> serde_json::Value {
    serde_json::json!({
        "commit_started": job.commit_started,
        "cancel_requested_at": job.cancel_requested_at.map(|t| t.to_rfc3339()),
        "id": job.id.0,
        "kind": job.kind,
        "state": job.state.as_str(),
        "stage": job.current_stage,
        "tasks_total": job.tasks_total,
        "tasks_done": job.tasks_done,
        "tasks_failed": job.tasks_failed,
        "rows": job.rows,
        "bytes": job.bytes,
        "result": job.result,
        "error": job.error,
        "origin": job.origin.kind(),
        "origin_detail": job.origin.detail(),
        "created_at": job.created_at.to_rfc3339(),
        "started_at": job.started_at.map(|t| t.to_rfc3339()),
        "finished_at": job.finished_at.map(|t| t.to_rfc3339()),
        "spec": job.spec,
    })
}

fn target(job: &JobRecord) -> String {
    job.spec["dataset"].as_str().unwrap_or("-").to_string()
}

fn print_table(jobs: &[JobRecord]) {
    println!(
        "{:>6}  {:<7}  {:<10}  {:>11}  {:>12}  {:>10}  {:<20}  dataset",
        "job", "kind", "state", "tasks", "rows", "bytes", "created"
    );
    for job in jobs {
        println!(
            "{:>6}  {:<7}  {:<10}  {:>11}  {:>12}  {:>10}  {:<20}  {}",
            job.id.0,
            job.kind,
            job.state.as_str(),
            format!("{}/{}", job.tasks_done, job.tasks_total),
            job.rows,
            human_bytes(job.bytes.max(0) as u64),
            job.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            target(job)
        );
    }
}

/// Show one job, or the unfinished ones. One job that commits (an ingest, a delete) is
/// checked against its dataset's history, the record of what it did: a job whose commit
/// is there committed, whatever the queue says.
pub async fn status(queue: &QueueArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect_existing().await?;
    let Some(id) = args.job else {
        let mut jobs = q.list_jobs(Some(JobState::Running), 1000).await?;
        jobs.extend(q.list_jobs(Some(JobState::Queued), 1000).await?);
        if args.json {
            let out: Vec<_> = jobs.iter().map(job_json).collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else if jobs.is_empty() {
            println!("no unfinished jobs");
        } else {
            print_table(&jobs);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let job = q.job(JobId(id)).await?;
    let lookup = find_job_commit(&job).await;
    if args.json {
        let mut out = job_json(&job);
        match &lookup {
            Ok(CommitLookup::Committed(c)) => {
                out["commit"] = serde_json::json!({
                    "dataset": c.dataset,
                    "version": c.version,
                    "timestamp": c.timestamp.to_rfc3339(),
                    "rows_added": c.rows_added,
                    "rows_removed": c.rows_removed,
                });
                out["committed"] = true.into();
            }
            Ok(CommitLookup::NotCommitted { .. }) => out["committed"] = false.into(),
            Ok(CommitLookup::NotApplicable) => {}
            Err(e) => out["commit_lookup_error"] = format!("{e:#}").into(),
        }
        if let Some(note) = reconcile_note(&job, &lookup) {
            out["note"] = note.into();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("job        {} ({})", job.id, job.kind);
        println!("state      {}", job.state.as_str());
        println!("dataset    {}", target(&job));
        println!(
            "tasks      {}/{} done, {} failed (stage {})",
            job.tasks_done, job.tasks_total, job.tasks_failed, job.current_stage
        );
        println!(
            "progress   {} rows, {}",
            job.rows,
            human_bytes(job.bytes.max(0) as u64)
        );
        println!("created    {}", job.created_at.to_rfc3339());
        if let Some(t) = job.finished_at {
            println!("finished   {}", t.to_rfc3339());
        }
        match &lookup {
            Ok(CommitLookup::Committed(c)) => println!(
                "commit     version {} of {} ({} rows added{})",
                c.version,
                c.dataset,
                c.rows_added,
                if c.rows_removed > 0 {
                    format!(", {} removed", c.rows_removed)
                } else {
                    String::new()
                }
            ),
            Ok(CommitLookup::NotCommitted { dataset }) => {
                println!("commit     none in the history of {dataset}");
            }
            Ok(CommitLookup::NotApplicable) => {}
            Err(e) => println!("commit     unknown: {}", one_line(e)),
        }
        if let Some(t) = job.cancel_requested_at {
            println!(
                "cancel     asked {} while the job was committing; not applied: the commit's \
                 outcome stands",
                t.to_rfc3339()
            );
        }
        if let Some(note) = reconcile_note(&job, &lookup) {
            println!("note       {note}");
        }
        if let Some(result) = &job.result {
            println!("result     {result}");
        }
        if let Some(error) = &job.error {
            println!("error      {error}");
        }
    }
    if args.result {
        if job.kind != terrace_jobs::kinds::KIND_QUERY || job.state != JobState::Succeeded {
            bail!("job {id} is not a finished query; it has no result rows");
        }
        crate::query::print_result(&job).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes on one line.
fn one_line(e: &terrace_jobs::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What to tell when the queue's state and the dataset's history disagree.
fn reconcile_note(job: &JobRecord, lookup: &terrace_jobs::Result<CommitLookup>) -> Option<String> {
    match (lookup.as_ref().ok()?, job.state) {
        (CommitLookup::Committed(c), JobState::Cancelled | JobState::Failed) => Some(format!(
            "the queue says {}, but version {} of {} is this job's commit: its rows are \
             committed",
            job.state.as_str(),
            c.version,
            c.dataset
        )),
        (CommitLookup::Committed(c), JobState::Queued | JobState::Running) => Some(format!(
            "committed version {} of {}; the queue has not recorded the job's end yet",
            c.version, c.dataset
        )),
        (CommitLookup::NotCommitted { dataset }, JobState::Succeeded)
            if job
                .result
                .as_ref()
                .is_some_and(|r| r["committed"].as_bool() == Some(true)) =>
        {
            Some(format!(
                "the version it committed is no longer in the history of {dataset} (gc \
                 removes versions past their retention)"
            ))
        }
        _ => None,
    }
}

/// What a job that commits did, from its dataset's history, for messages.
async fn commit_outcome(job: &JobRecord) -> String {
    match find_job_commit(job).await {
        Ok(CommitLookup::Committed(c)) => format!(
            "committed version {} of {} ({} rows added)",
            c.version, c.dataset, c.rows_added
        ),
        Ok(CommitLookup::NotCommitted { dataset }) => {
            format!("committed nothing to {dataset}")
        }
        Ok(CommitLookup::NotApplicable) => "committed nothing".into(),
        Err(e) => format!("(its dataset cannot be read: {})", one_line(&e)),
    }
}

/// List jobs.
pub async fn list(queue: &QueueArgs, args: JobsArgs) -> anyhow::Result<ExitCode> {
    let state = match args.state.as_deref() {
        None => None,
        Some(s) => Some(
            [
                JobState::Queued,
                JobState::Running,
                JobState::Succeeded,
                JobState::Failed,
                JobState::Cancelled,
            ]
            .into_iter()
            .find(|st| st.as_str() == s)
            .with_context(|| {
                format!(
                    "unknown --state {s:?}: use queued, running, succeeded, failed or cancelled"
                )
            })?,
        ),
    };
    let (q, _) = queue.connect_existing().await?;
    let jobs = q.list_jobs(state, args.limit).await?;
    if args.json {
        let out: Vec<_> = jobs.iter().map(job_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&jobs);
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancel a job. A job whose commit has begun is not cancelled (the commit decides):
/// the command waits for the commit and says what it did, exiting 1 since the job was
/// not cancelled.
pub async fn cancel(queue: &QueueArgs, args: JobArg) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect_existing().await?;
    let id = JobId(args.job);
    match q.cancel(id).await {
        Ok(CancelOutcome::Cancelled) => {
            let commits = q
                .job(id)
                .await
                .is_ok_and(|j| j.kind == KIND_INGEST || j.kind == KIND_DELETE);
            if commits {
                println!("job {id} cancelled before its commit; nothing was committed");
            } else {
                println!("job {id} cancelled");
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(CancelOutcome::Committing) => {
            eprintln!(
                "job {id} is committing, which a cancel does not stop; waiting for its outcome"
            );
            let workers = LocalWorkers::start(&q, 0, None);
            let job = wait(&q, queue, id, "committing", &workers).await?;
            let outcome = commit_outcome(&job).await;
            match job.state {
                JobState::Succeeded => bail!(
                    "job {id} was not cancelled: its commit had begun; it {outcome}, and the \
                     job succeeded"
                ),
                state => bail!(
                    "job {id} was not cancelled: its commit had begun; the job {}{}: it {outcome}",
                    state.as_str(),
                    job.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            }
        }
        Err(terrace_jobs::Error::InvalidState { state, .. }) => {
            let job = q.job(id).await?;
            let outcome = if job.kind == KIND_INGEST || job.kind == KIND_DELETE {
                format!(": it {}", commit_outcome(&job).await)
            } else {
                String::new()
            };
            bail!("job {id} has already finished ({state}){outcome}; there is nothing to cancel")
        }
        Err(e) => Err(e.into()),
    }
}

/// Retry a failed job's dead tasks.
pub async fn retry(queue: &QueueArgs, args: JobArg) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect_existing().await?;
    let n = q.retry(JobId(args.job)).await?;
    println!("job {}: {n} task(s) queued again", args.job);
    Ok(ExitCode::SUCCESS)
}

/// Run a worker until SIGTERM or Ctrl-C.
pub async fn worker(queue: &QueueArgs, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect().await?;
    let concurrency = args.concurrency.unwrap_or_else(cores);
    let config = WorkerConfig::default()
        .with_concurrency(concurrency)
        .with_lease(args.lease)
        .with_retention((!args.retention.is_zero()).then_some(args.retention));
    let worker = Worker::new(q.clone(), config);
    eprintln!(
        "terrace worker {} on {} ({} slots{}); SIGTERM or Ctrl-C drains and stops",
        worker.id(),
        q.backend_name(),
        concurrency,
        if args.no_scheduler {
            ""
        } else {
            ", scheduler on"
        }
    );
    let (stop_scheduler, mut scheduler_stopped) = tokio::sync::watch::channel(false);
    let scheduler = (!args.no_scheduler).then(|| {
        let scheduler = crate::schedule::scheduler(&q, args.scheduler_interval);
        tokio::spawn(async move {
            scheduler
                .run(async move {
                    let _ = scheduler_stopped.wait_for(|stop| *stop).await;
                })
                .await;
        })
    });
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!("terrace worker: draining");
    };
    let report = worker.run(Arc::new(Executor::new()), shutdown).await?;
    let _ = stop_scheduler.send(true);
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    eprintln!(
        "terrace worker stopped: {} completed, {} failed",
        report.completed, report.failed
    );
    q.close().await;
    Ok(ExitCode::SUCCESS)
}

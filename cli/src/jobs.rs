//! Job commands: status, jobs, cancel, retry, worker.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use terrace_jobs::kinds::Executor;
use terrace_jobs::{JobId, JobRecord, JobState, Worker, WorkerConfig};

use terrace_planner::human_bytes;

use crate::session::{QueueArgs, cores};

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

/// Show one job, or the unfinished ones.
pub async fn status(queue: &QueueArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect().await?;
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job_json(&job))?);
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
    let (q, _) = queue.connect().await?;
    let jobs = q.list_jobs(state, args.limit).await?;
    if args.json {
        let out: Vec<_> = jobs.iter().map(job_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&jobs);
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancel a job.
pub async fn cancel(queue: &QueueArgs, args: JobArg) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect().await?;
    q.cancel(JobId(args.job)).await?;
    println!("job {} cancelled", args.job);
    Ok(ExitCode::SUCCESS)
}

/// Retry a failed job's dead tasks.
pub async fn retry(queue: &QueueArgs, args: JobArg) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect().await?;
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

//! Queue throughput and latency: no-op tasks, drained by 1 in-process worker or by worker
//! processes, on SQLite and PostgreSQL, in the same run.
//!
//! ```text
//! cargo bench -p terrace-jobs --bench queue
//! TERRACE_BENCH_TASKS=20000,200000 TERRACE_BENCH_PROCS=4 TERRACE_BENCH_BACKENDS=sqlite,postgres \
//!     cargo bench -p terrace-jobs --bench queue
//! ```
//! Reports drained tasks/s, enqueue time, and enqueue-to-start latency p50/p99 measured
//! twice: with the whole backlog enqueued at once (latency ≈ queueing time), and with
//! single-task jobs trickled into an idle worker (the wake-up latency: LISTEN/NOTIFY on
//! Postgres, short polling on SQLite).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use sqlx::AssertSqlSafe;
use terrace_jobs::{
    JobId, JobState, NewJob, NewTask, Queue, QueueOptions, TaskOutput, Worker, WorkerConfig,
    handler_fn,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CHILD: &str = "TERRACE_BENCH_CHILD_URL";
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn config() -> WorkerConfig {
    WorkerConfig::default()
        .with_concurrency(200)
        .with_batch_size(100)
        .with_poll_interval(Duration::from_millis(50))
}

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Runtime::new()?;
    if let Ok(url) = std::env::var(CHILD) {
        return rt.block_on(child(url));
    }
    rt.block_on(run())
}

async fn child(url: String) -> Result<(), BoxError> {
    let q = Queue::connect(&url).await?;
    let handler = Arc::new(handler_fn(|_t, _c| async { Ok(TaskOutput::default()) }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Worker::new(q, config())
        .run(handler, async move {
            term.recv().await;
        })
        .await?;
    Ok(())
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

struct Db {
    url: String,
    pg: Option<String>,
    _dir: tempfile::TempDir,
}

impl Db {
    async fn new(backend: &str) -> Result<Db, BoxError> {
        let dir = tempfile::tempdir()?;
        if backend == "sqlite" {
            return Ok(Db {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                ),
                pg: None,
                _dir: dir,
            });
        }
        let name = format!("terrace_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(PG_ADMIN).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        Ok(Db {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            pg: Some(name),
            _dir: dir,
        })
    }

    async fn drop_db(self) -> Result<(), BoxError> {
        if let Some(name) = &self.pg {
            let admin = sqlx::PgPool::connect(PG_ADMIN).await?;
            sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
                .execute(&admin)
                .await?;
            admin.close().await;
        }
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn wait_done(q: &Queue, id: JobId) -> Result<(), BoxError> {
    loop {
        let job = q.job(id).await?;
        match job.state {
            JobState::Succeeded => return Ok(()),
            JobState::Failed | JobState::Cancelled => {
                return Err(format!("job {id} {:?}: {:?}", job.state, job.error).into());
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn job(n: usize) -> NewJob {
    NewJob::new("bench", json!({})).with_tasks((0..n).map(|i| NewTask::new(0, json!(i))))
}

/// Backlog drained by one in-process worker; returns (enqueue s, drain s, latencies ms).
async fn one_worker(q: &Queue, n: usize) -> Result<(f64, f64, Vec<f64>), BoxError> {
    let t0 = Instant::now();
    let id = q.submit(job(n)).await?;
    let enqueue = t0.elapsed().as_secs_f64();
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let handler = {
        let lat = lat.clone();
        Arc::new(handler_fn(move |t, _c| {
            let lat = lat.clone();
            async move {
                let ms = (Utc::now() - t.ready_at).num_microseconds().unwrap_or(0) as f64 / 1e3;
                lat.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                Ok(TaskOutput::default())
            }
        }))
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let t1 = Instant::now();
    let worker = tokio::spawn(Worker::new(q.clone(), config()).run(handler, async {
        let _ = rx.await;
    }));
    wait_done(q, id).await?;
    let drain = t1.elapsed().as_secs_f64();
    let _ = tx.send(());
    worker.await??;
    let lat = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((enqueue, drain, lat))
}

/// Single-task jobs trickled into an idle worker: the wake-up latency.
async fn trickle(q: &Queue, jobs: usize) -> Result<Vec<f64>, BoxError> {
    let lat = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
    let handler = {
        let lat = lat.clone();
        Arc::new(handler_fn(move |t, _c| {
            let lat = lat.clone();
            async move {
                let ms = (Utc::now() - t.ready_at).num_microseconds().unwrap_or(0) as f64 / 1e3;
                lat.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                Ok(TaskOutput::default())
            }
        }))
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(Worker::new(q.clone(), config()).run(handler, async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..jobs {
        let id = q.submit(job(1)).await?;
        wait_done(q, id).await?;
        // Let the worker go idle again (its poll backs off) before the next job.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let _ = tx.send(());
    worker.await??;
    let lat = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(lat)
}

/// Backlog drained by `procs` worker processes; returns (enqueue s, drain s).
async fn processes(q: &Queue, url: &str, n: usize, procs: usize) -> Result<(f64, f64), BoxError> {
    let t0 = Instant::now();
    let id = q.submit(job(n)).await?;
    let enqueue = t0.elapsed().as_secs_f64();
    let exe = std::env::current_exe()?;
    let t1 = Instant::now();
    let mut children: Vec<Child> = (0..procs)
        .map(|_| {
            Command::new(&exe)
                .env(CHILD, url)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let done = wait_done(q, id).await;
    let drain = t1.elapsed().as_secs_f64();
    for c in &mut children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    done?;
    Ok((enqueue, drain))
}

async fn run() -> Result<(), BoxError> {
    let sizes: Vec<usize> = env_list("TERRACE_BENCH_TASKS", "20000")
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let backends = env_list("TERRACE_BENCH_BACKENDS", "sqlite,postgres");
    let procs: usize = std::env::var("TERRACE_BENCH_PROCS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    println!(
        "{:<9} {:>8} {:>9} {:>10} {:>11} {:>10} {:>10}",
        "backend", "tasks", "workers", "enqueue/s", "drained/s", "p50 ms", "p99 ms"
    );
    for backend in &backends {
        for &n in &sizes {
            let db = Db::new(backend).await?;
            let q = Queue::connect_with(&db.url, QueueOptions::default()).await?;
            let (enq, drain, mut lat) = one_worker(&q, n).await?;
            lat.sort_by(f64::total_cmp);
            println!(
                "{:<9} {:>8} {:>9} {:>10.0} {:>11.0} {:>10.1} {:>10.1}   (backlog latency)",
                backend,
                n,
                "1",
                n as f64 / enq,
                n as f64 / drain,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
            if procs > 0 {
                let (enq, drain) = processes(&q, &db.url, n, procs).await?;
                println!(
                    "{:<9} {:>8} {:>9} {:>10.0} {:>11.0} {:>10} {:>10}",
                    backend,
                    n,
                    format!("{procs} procs"),
                    n as f64 / enq,
                    n as f64 / drain,
                    "-",
                    "-"
                );
            }
            q.close().await;
            db.drop_db().await?;
        }
        let db = Db::new(backend).await?;
        let q = Queue::connect(&db.url).await?;
        let mut lat = trickle(&q, 100).await?;
        lat.sort_by(f64::total_cmp);
        println!(
            "{:<9} {:>8} {:>9} {:>10} {:>11} {:>10.2} {:>10.2}   (idle wake-up latency)",
            backend,
            100,
            "1",
            "-",
            "-",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        q.close().await;
        db.drop_db().await?;
    }
    Ok(())
}

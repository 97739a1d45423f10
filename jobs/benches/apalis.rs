//! The peer of `benches/queue.rs`: apalis 1.0's own SQLite and PostgreSQL backends with
//! their defaults, draining the same no-op tasks, so the two can be compared in one run.
//!
//! ```text
//! cargo bench -p terrace-jobs --bench apalis
//! TERRACE_BENCH_TASKS=2000 TERRACE_BENCH_BACKENDS=sqlite,postgres cargo bench -p terrace-jobs --bench apalis
//! ```
//! Reports enqueue/s and drained tasks/s for one worker built with `WorkerBuilder` and
//! nothing else configured (what a user gets from the README examples).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use apalis::prelude::*;
use futures::stream::{self, StreamExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static DONE: AtomicUsize = AtomicUsize::new(0);
static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);

async fn no_op(_item: usize, worker: WorkerContext) -> Result<(), BoxDynError> {
    if DONE.fetch_add(1, Ordering::SeqCst) + 1 >= TARGET.load(Ordering::SeqCst) {
        worker.stop()?;
    }
    Ok(())
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn tasks(n: usize) -> impl futures::Stream<Item = Task<usize>> + Unpin {
    stream::iter(0..n).map(|i| TaskBuilder::new(i).build())
}

fn report(backend: &str, n: usize, enqueue: f64, drain: f64) {
    println!(
        "{backend:<16} {n:>8} {:>10.0} {:>11.0}",
        n as f64 / enqueue,
        n as f64 / drain
    );
}

async fn sqlite(n: usize) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("apalis.db").display()
    );
    let pool = apalis_sqlite::SqlitePool::connect(&url).await?;
    apalis_sqlite::SqliteStorage::setup(&pool).await?;
    let mut backend = apalis_sqlite::SqliteStorage::new(&pool);
    let started = Instant::now();
    backend.push_all(&mut tasks(n)).await?;
    let enqueue = started.elapsed().as_secs_f64();
    DONE.store(0, Ordering::SeqCst);
    TARGET.store(n, Ordering::SeqCst);
    let started = Instant::now();
    WorkerBuilder::new("apalis-sqlite-bench")
        .backend(backend)
        .build(no_op)
        .run()
        .await?;
    report("apalis-sqlite", n, enqueue, started.elapsed().as_secs_f64());
    Ok(())
}

async fn postgres(n: usize) -> Result<(), BoxError> {
    let name = format!("apalis_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(PG_ADMIN).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let result = async {
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let pool = apalis_postgres::PgPool::connect(&url).await?;
        apalis_postgres::PostgresStorage::setup(&pool).await?;
        let mut backend = apalis_postgres::PostgresStorage::new(&pool);
        let started = Instant::now();
        backend.push_all(&mut tasks(n)).await?;
        let enqueue = started.elapsed().as_secs_f64();
        DONE.store(0, Ordering::SeqCst);
        TARGET.store(n, Ordering::SeqCst);
        let started = Instant::now();
        WorkerBuilder::new("apalis-postgres-bench")
            .backend(backend)
            .build(no_op)
            .run()
            .await?;
        report(
            "apalis-postgres",
            n,
            enqueue,
            started.elapsed().as_secs_f64(),
        );
        pool.close().await;
        Ok::<(), BoxError>(())
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    result
}

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!("backend             tasks  enqueue/s   drained/s");
        for n in env_list("TERRACE_BENCH_TASKS", "2000") {
            let n: usize = n.parse()?;
            for backend in env_list("TERRACE_BENCH_BACKENDS", "sqlite,postgres") {
                match backend.as_str() {
                    "sqlite" => sqlite(n).await?,
                    "postgres" => postgres(n).await?,
                    other => return Err(format!("unknown backend {other:?}").into()),
                }
            }
        }
        Ok(())
    })
}

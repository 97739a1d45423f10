//! Set-up shared by the jobs tests: the test database every queue test runs on (a fresh
//! SQLite file or a fresh PostgreSQL database, dropped after the test), and [`Env`], a
//! SQLite queue in a temp directory whose in-process worker runs a job to its end.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use sqlx::AssertSqlSafe;
use std::sync::Arc;
use std::time::Duration;

use terrace_jobs::kinds::Executor;
use terrace_jobs::{JobRecord, NewJob, Queue, QueueOptions, Worker, WorkerConfig};

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    pub pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match kind {
            Kind::Sqlite => TestDb {
                url: format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display()),
                pg_name: None,
                _dir: dir,
            },
            Kind::Postgres => {
                let name = format!("terrace_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(PG_ADMIN)
                    .await
                    .expect("PostgreSQL must run at 127.0.0.1:5432 (see .ci/)");
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                TestDb {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    pg_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }

    pub async fn queue(&self, options: QueueOptions) -> Queue {
        Queue::connect_with(&self.url, options)
            .await
            .expect("connect")
    }

    /// Runs raw SQL against the database, behind the queue's back (to corrupt rows).
    pub async fn exec(&self, sql: String) {
        if self.pg_name.is_some() {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
            sqlx::query(AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("exec");
            pool.close().await;
        } else {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
            sqlx::query(AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("exec");
            pool.close().await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async; a helper thread with its own runtime does the I/O.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(PG_ADMIN).await {
                        let _ = sqlx::query(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&admin)
                        .await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A SQLite queue in a temp directory, and datasets beside it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub queue: Queue,
}

impl Env {
    pub async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
        let queue = Queue::connect(&url).await.unwrap();
        Env { dir, queue }
    }

    pub fn path(&self, p: &str) -> String {
        self.dir.path().join(p).display().to_string()
    }

    /// Submit `job` and run a worker until it is finished.
    pub async fn run(&self, job: NewJob) -> JobRecord {
        let id = self.queue.submit(job).await.unwrap();
        let worker = Worker::new(
            self.queue.clone(),
            WorkerConfig::default().with_concurrency(2),
        );
        let queue = self.queue.clone();
        let shutdown = async move {
            loop {
                if queue.job(id).await.unwrap().state.is_finished() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(
            Duration::from_secs(120),
            worker.run(Arc::new(Executor::new()), shutdown),
        )
        .await
        .expect("the job finishes")
        .unwrap();
        self.queue.job(id).await.unwrap()
    }
}

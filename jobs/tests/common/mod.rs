//! The test database every queue test runs on: a fresh SQLite file or a fresh PostgreSQL
//! database, dropped after the test.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use sqlx::AssertSqlSafe;
use terrace_jobs::{Queue, QueueOptions};

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

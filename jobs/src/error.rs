//! The crate's one error type.

use crate::model::{JobId, TaskId};

/// Everything that can go wrong in the queue or a worker.
///
/// Variants carry the context a user needs (the job or task id, the database URL). Ask
/// [`Error::is_retryable`] whether trying the same call again later may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database at `url` could not be reached (after the connect retries) or its
    /// migrations could not be applied.
    #[error("cannot open the job queue at {url} after {attempts} attempt(s)")]
    Connect {
        /// The URL as given, with any password removed.
        url: String,
        /// How many times connecting was tried.
        attempts: u32,
        /// The last failure.
        #[source]
        source: sqlx::Error,
    },
    /// The URL names no backend this crate knows.
    #[error("unsupported job queue URL {url:?}: expected postgres://…, sqlite://… or a file path")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// Applying the schema migrations failed.
    #[error("cannot apply the job queue migrations at {url}")]
    Migrate {
        /// The URL as given, with any password removed.
        url: String,
        /// What the migrator reported.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed; `context` says what was being done.
    #[error("job queue: {context}")]
    Database {
        /// What the queue was doing, e.g. "claiming tasks".
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// No job has this id (it never existed or was pruned).
    #[error("job {id} not found")]
    JobNotFound {
        /// The id asked for.
        id: JobId,
    },
    /// The job exists but is in a state that does not allow the operation.
    #[error("job {id} is {state}; cannot {operation}")]
    InvalidState {
        /// The job.
        id: JobId,
        /// Its current state.
        state: String,
        /// What was asked, e.g. "retry".
        operation: &'static str,
    },
    /// A job or task given to `submit`/`complete` is not acceptable.
    #[error("invalid job: {reason}")]
    InvalidJob {
        /// Why.
        reason: String,
    },
    /// A job's spec in the table is not valid JSON or not of the expected shape.
    #[error("malformed spec of job {id}")]
    MalformedSpec {
        /// The job.
        id: JobId,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A task's payload in the table is not valid JSON or not of the expected shape.
    #[error("malformed payload of task {id} (job {job_id})")]
    MalformedPayload {
        /// The task.
        id: TaskId,
        /// Its job.
        job_id: JobId,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Reading or writing a dataset, or reading an ingest's input files (their schema,
    /// their rows), failed; `context` says what was being done.
    #[error("{context}")]
    Format {
        /// What was being done, e.g. "opening the dataset s3://lake/events".
        context: String,
        /// The dataset layer's error (boxed: it is large, and rare on hot paths).
        #[source]
        source: Box<terrace_format::Error>,
    },
    /// Planning a job (listing and splitting inputs, predicate, pruning) failed.
    #[error("{context}")]
    Planner {
        /// What was being planned.
        context: String,
        /// The planner's error (boxed, as `Format`'s).
        #[source]
        source: Box<terrace_planner::Error>,
    },
    /// A job's request is not acceptable (checked before anything is queued).
    #[error("{what}: {reason}")]
    InvalidRequest {
        /// What was wrong, e.g. "--map".
        what: String,
        /// Why.
        reason: String,
    },
    /// Running a task's SQL or encoding its output failed.
    #[error("{context}: {reason}")]
    Execution {
        /// What was being done.
        context: String,
        /// The engine's message.
        reason: String,
        /// Whether the same task may succeed when tried again.
        retryable: bool,
    },
    /// The job was cancelled before its commit began (or this attempt lost its task to
    /// another); the task committed nothing.
    #[error(
        "job {id} was cancelled before its commit began (or this attempt lost its task); \
         nothing was committed"
    )]
    Cancelled {
        /// The job.
        id: JobId,
    },
    /// No schedule has this name.
    #[error("no schedule named {name:?} (terrace schedule list shows them)")]
    ScheduleNotFound {
        /// The name asked for.
        name: String,
    },
    /// A schedule with this name exists already.
    #[error("a schedule named {name:?} exists already (remove it first, or pick another name)")]
    ScheduleExists {
        /// The name.
        name: String,
    },
    /// A stored value (state name, result JSON, counter) is not what this version writes.
    #[error("corrupt job queue row: {what}")]
    Corrupt {
        /// Which row and column.
        what: String,
    },
}

impl Error {
    /// Whether the same call may succeed if tried again later: lost connections, pool
    /// timeouts and lock conflicts are; bad input and missing jobs are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { source, .. } => sqlx_retryable(source),
            Error::Database { source, .. } => sqlx_retryable(source),
            Error::Format { source, .. } => source.is_retryable(),
            Error::Planner { source, .. } => source.is_retryable(),
            Error::Execution { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// What to check, for a queue that cannot be opened or written, when the cause says
    /// more than its message (a full disk, a read-only file, a server not running).
    pub fn queue_hint(&self) -> Option<&'static str> {
        let source = match self {
            Error::Connect { source, .. } | Error::Database { source, .. } => source,
            _ => return None,
        };
        if let sqlx::Error::Database(db) = source {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            return match sqlite_primary_code(db.as_ref(), &code)? {
                SQLITE_FULL => Some("the disk holding the job queue is full"),
                SQLITE_READONLY | SQLITE_PERM => {
                    Some("the job queue's file or its directory cannot be written")
                }
                SQLITE_CANTOPEN => Some("check that the queue's directory exists and is writable"),
                SQLITE_IOERR => Some(
                    "SQLite could not read or write the queue's files: is their disk full or \
                     failing?",
                ),
                SQLITE_CORRUPT | SQLITE_NOTADB => {
                    Some("the file is damaged or not a terrace job queue")
                }
                _ => None,
            };
        }
        match self {
            Error::Connect { .. } if sqlx_retryable(source) => {
                Some("is the database running and --db (or TERRACE_DB) right?")
            }
            _ => None,
        }
    }

    pub(crate) fn format(
        context: impl Into<String>,
    ) -> impl FnOnce(terrace_format::Error) -> Error {
        let context = context.into();
        move |source| Error::Format {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn planner(
        context: impl Into<String>,
    ) -> impl FnOnce(terrace_planner::Error) -> Error {
        let context = context.into();
        move |source| Error::Planner {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidRequest {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
        let context = context.into();
        move |source| Error::Database { context, source }
    }
}

/// Whether a driver error may pass if the same call is made again later.
///
/// Transient: lost or refused connections, pool timeouts, SQLite's BUSY and LOCKED (the
/// file is locked by another process), PostgreSQL's serialization failures, deadlocks,
/// connection exceptions (class 08), shutdowns and start-ups (57P0x), too many
/// connections (53300) and a database closed to new connections (`ALLOW_CONNECTIONS
/// false`). Every other SQLite result is permanent — FULL, READONLY, IOERR, CANTOPEN,
/// CORRUPT, NOTADB, PERM… — so a queue that cannot be written fails at once with its
/// cause instead of being retried for minutes.
pub(crate) fn sqlx_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if let Some(primary) = sqlite_primary_code(db.as_ref(), &code) {
                return matches!(primary, SQLITE_BUSY | SQLITE_LOCKED);
            }
            matches!(code.as_str(), "40001" | "40P01" | "53300")
                || code.starts_with("08")
                || code.starts_with("57P0")
                || (code == "55000" && db.message().contains("not currently accepting connections"))
        }
        _ => false,
    }
}

const SQLITE_PERM: i64 = 3;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// The primary result code (the low byte of the extended code sqlx reports) of an error
/// from SQLite; `None` for other databases.
fn sqlite_primary_code(db: &dyn sqlx::error::DatabaseError, code: &str) -> Option<i64> {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    async fn failing(options: SqliteConnectOptions, sql: &'static str) -> sqlx::Error {
        let mut conn = options.connect().await.expect("connect");
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap_err()
    }

    /// Regression: a full disk under the SQLite queue was retried for 725 s. Only a
    /// lock held by another connection is worth waiting for.
    #[tokio::test]
    async fn only_busy_and_locked_sqlite_errors_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut holder = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .execute(&mut holder)
            .await
            .unwrap();

        let busy = failing(
            SqliteConnectOptions::from_str(&url)
                .unwrap()
                .busy_timeout(Duration::ZERO),
            "BEGIN IMMEDIATE",
        )
        .await;
        assert!(sqlx_retryable(&busy), "{busy}");

        let read_only = failing(
            SqliteConnectOptions::from_str(&url)
                .unwrap()
                .read_only(true),
            "INSERT INTO t VALUES (2)",
        )
        .await;
        assert!(!sqlx_retryable(&read_only), "{read_only}");

        std::fs::write(dir.path().join("not-a-db"), vec![7u8; 8192]).unwrap();
        let not_a_db = failing(
            SqliteConnectOptions::new().filename(dir.path().join("not-a-db")),
            "SELECT * FROM sqlite_master",
        )
        .await;
        assert!(!sqlx_retryable(&not_a_db), "{not_a_db}");

        let cannot_open = SqliteConnectOptions::new()
            .filename(dir.path().join("no/such/dir/q.db"))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap_err();
        assert!(!sqlx_retryable(&cannot_open), "{cannot_open}");

        let db = |e: sqlx::Error| Error::Database {
            context: "claiming tasks".into(),
            source: e,
        };
        assert!(db(busy).is_retryable());
        assert!(!db(read_only).is_retryable());
        assert!(db(sqlx::Error::PoolTimedOut).is_retryable());
    }
}

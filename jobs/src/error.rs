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
    /// Reading or writing a dataset failed; `context` says what was being done.
    #[error("{context}")]
    Format {
        /// What was being done, e.g. "opening the dataset s3://lake/events".
        context: String,
        /// The dataset layer's error (boxed: it is large, and rare on hot paths).
        #[source]
        source: Box<terrace_format::Error>,
    },
    /// Planning a job (inputs, predicate, pruning) failed.
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
            Error::Connect { .. } => true,
            Error::Database { source, .. } => sqlx_retryable(source),
            Error::Format { source, .. } => source.is_retryable(),
            Error::Planner { source, .. } => source.is_retryable(),
            Error::Execution { retryable, .. } => *retryable,
            _ => false,
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

fn sqlx_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // SQLite: BUSY (5) / LOCKED (6); Postgres: serialization failure, deadlock,
            // connection exceptions (class 08), admin shutdown / cannot connect now (57P0x).
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            matches!(code.as_str(), "5" | "6" | "517" | "261" | "40001" | "40P01")
                || code.starts_with("08")
                || code.starts_with("57P0")
        }
        _ => false,
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

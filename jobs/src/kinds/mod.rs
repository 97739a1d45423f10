//! The job kinds terrace runs — ingest, query, delete, gc — as plans submitted to the
//! queue and the [`Executor`] that runs their tasks on workers.
//!
//! Each kind has a `plan_*` function that runs where the user is (the CLI): it checks the
//! request against the dataset and the inputs, so bad input fails before anything is
//! queued, and returns a [`NewJob`](crate::NewJob) whose tasks carry everything a worker
//! on another machine needs (JSON payloads; the job spec holds what every task shares).
//! The [`Executor`] is the [`TaskHandler`] every worker runs.
//!
//! How a write stays exactly-once although tasks may run more than once:
//! - a write task writes new, uniquely named files and reports them in a *file report*
//!   (`_terrace/staging/<run>/reports/…`, see [`terrace_format::new_report_path`] and
//!   [`terrace_format::encode_file_report`]);
//!   the report's path is the task's result, so only the attempt whose completion the
//!   queue accepted is ever read;
//! - the single commit task reads the reports of the previous stage from the queue and
//!   commits with an idempotency key — by default for an append the digest of what the
//!   job is ([`ingest::inputs_key`]: dataset, mode, each input file's size and
//!   modification time), else the caller's key or `run:<run id>` — and records
//!   `<job id>:<run id>` (`kinds/commits.rs`), so a commit task that runs again after its worker
//!   died mid-acknowledgement finds its own commit and does nothing, and a re-run of the
//!   same ingest of unchanged inputs commits nothing;
//! - the commit task calls [`TaskContext::begin_commit`] before it makes anything
//!   visible: a cancel that came first wins (nothing is committed), one that comes later
//!   is answered with what the commit did, so the job's state matches the dataset.
//!
//! Files of failed attempts are never referenced and `terrace gc` removes them later.

mod commits;
mod common;
mod ingest;
mod maintenance;
mod query;
mod shuffle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{ClaimedTask, JobId, TaskOutput};
use crate::worker::{TaskContext, TaskError, TaskHandler};

pub use commits::{CommitLookup, JobCommit, committing_job, find_job_commit};
pub use common::delete_prefix;
pub use ingest::{IngestMode, IngestRequest, IngestSpec, inputs_key, plan_ingest};
pub use maintenance::{DeleteSpec, GcSpec, plan_delete, plan_gc};
pub use query::{
    PlannedRead, QueryRequest, QueryResult, QuerySpec, RegionQuery, plan_query, plan_query_read,
    read_query_result,
};
pub use terrace_planner::{PathPick, ShuffleMethod, WritePath};

/// Job kind of an ingest.
pub const KIND_INGEST: &str = "ingest";
/// Job kind of a query.
pub const KIND_QUERY: &str = "query";
/// Job kind of a partition delete.
pub const KIND_DELETE: &str = "delete";
/// Job kind of a garbage collection.
pub const KIND_GC: &str = "gc";

/// Runs the tasks of every job kind in this module; what `terrace worker` runs.
#[derive(Debug, Default)]
pub struct Executor {
    /// Job specs by job, so the tasks of one job read its spec once per worker.
    specs: Mutex<HashMap<JobId, Arc<Value>>>,
}

/// Specs cached at most; a worker that sees more jobs than this starts over.
const SPEC_CACHE: usize = 256;

impl Executor {
    /// An executor with an empty spec cache.
    pub fn new() -> Self {
        Self::default()
    }

    async fn spec(&self, job: JobId, ctx: &TaskContext) -> Result<Arc<Value>> {
        if let Some(spec) = self.specs.lock().ok().and_then(|m| m.get(&job).cloned()) {
            return Ok(spec);
        }
        let spec = Arc::new(ctx.queue().job(job).await?.spec);
        if let Ok(mut specs) = self.specs.lock() {
            if specs.len() >= SPEC_CACHE {
                specs.clear();
            }
            specs.insert(job, spec.clone());
        }
        Ok(spec)
    }

    async fn run_task(&self, task: &ClaimedTask, ctx: &TaskContext) -> Result<TaskOutput> {
        let spec = self.spec(task.job_id, ctx).await?;
        let malformed = |source| Error::MalformedSpec {
            id: task.job_id,
            source,
        };
        match task.kind.as_str() {
            KIND_INGEST => {
                let spec = IngestSpec::deserialize(spec.as_ref()).map_err(malformed)?;
                ingest::run(&spec, task, ctx).await
            }
            KIND_QUERY => {
                let spec = QuerySpec::deserialize(spec.as_ref()).map_err(malformed)?;
                query::run(&spec, task, ctx).await
            }
            KIND_DELETE => {
                let spec = DeleteSpec::deserialize(spec.as_ref()).map_err(malformed)?;
                maintenance::run_delete(&spec, task, ctx).await
            }
            KIND_GC => {
                let spec = GcSpec::deserialize(spec.as_ref()).map_err(malformed)?;
                maintenance::run_gc(&spec, ctx).await
            }
            other => Err(Error::InvalidJob {
                reason: format!(
                    "job {} has kind {other:?}, which this worker does not run",
                    task.job_id
                ),
            }),
        }
    }
}

impl TaskHandler for Executor {
    fn run<'a>(
        &'a self,
        task: &'a ClaimedTask,
        ctx: &'a TaskContext,
    ) -> BoxFuture<'a, std::result::Result<TaskOutput, TaskError>> {
        Box::pin(async move { self.run_task(task, ctx).await.map_err(TaskError::from) })
    }
}

//! Maintenance jobs of one task each: delete partitions, garbage collection.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::BooleanArray;
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use serde_json::json;
use terrace_format::{Dataset, GcOptions};
use terrace_planner::Predicate;

use super::commits::commit_job_id;
use super::common::{absolute, where_error};
use super::{KIND_DELETE, KIND_GC};
use crate::error::{Error, Result};
use crate::model::{ClaimedTask, JobState, NewJob, NewTask, TaskOutput};
use crate::queue::Queue;
use crate::worker::TaskContext;

/// What a delete job stores as its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSpec {
    /// The dataset.
    pub dataset: String,
    /// SQL over partition columns only: the partitions to remove.
    pub predicate: String,
    /// Unique id of the run (the commit's idempotency key).
    pub run_id: String,
}

/// What a gc job stores as its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcSpec {
    /// The dataset.
    pub dataset: String,
    /// Versions and unreferenced files younger than this are kept.
    pub retention_secs: u64,
    /// Report without removing.
    pub dry_run: bool,
    /// Accept a retention below [`terrace_format::GC_RETENTION_FLOOR`].
    #[serde(default)]
    pub force: bool,
}

/// Plan a partition-level delete: the predicate may name partition columns only (a
/// delete removes whole partitions, as plateau's `delete_partitions`; rewriting files
/// to drop single rows is not done).
pub async fn plan_delete(dataset: &str, predicate: &str) -> Result<NewJob> {
    let dataset = absolute(dataset)?;
    let opened = Dataset::open(&dataset)
        .await
        .map_err(Error::format(format!("opening {dataset}")))?;
    let schema = opened.schema();
    let parsed = Predicate::parse(predicate, &schema).map_err(where_error)?;
    let partition_on = &opened.current().layout().partition_on;
    for column in parsed.columns() {
        if !partition_on.contains(&column) {
            return Err(Error::invalid(
                "--where",
                format!(
                    "delete removes whole partitions, and {column:?} is not a partition column \
                     (partition columns: {partition_on:?})"
                ),
            ));
        }
    }
    let spec = DeleteSpec {
        dataset,
        predicate: predicate.to_string(),
        run_id: uuid::Uuid::now_v7().to_string(),
    };
    Ok(NewJob::new(
        KIND_DELETE,
        serde_json::to_value(&spec).map_err(|e| Error::invalid("delete spec", e.to_string()))?,
    )
    .with_task(NewTask::new(0, json!({"delete": true}))))
}

/// Plan a garbage collection. The retention must be whole seconds (see [`GcSpec`]) and
/// at least [`terrace_format::GC_RETENTION_FLOOR`] unless `force`; both are checked
/// before the dataset is opened or anything is queued.
pub async fn plan_gc(
    dataset: &str,
    retention: Duration,
    dry_run: bool,
    force: bool,
) -> Result<NewJob> {
    let retention_secs = whole_seconds(retention)?;
    GcOptions::default()
        .with_retention(retention)
        .with_force(force)
        .check()
        .map_err(|e| Error::invalid("--retention", e.to_string()))?;
    let dataset = absolute(dataset)?;
    Dataset::open(&dataset)
        .await
        .map_err(Error::format(format!("opening {dataset}")))?;
    let spec = GcSpec {
        dataset,
        retention_secs,
        dry_run,
        force,
    };
    Ok(NewJob::new(
        KIND_GC,
        serde_json::to_value(&spec).map_err(|e| Error::invalid("gc spec", e.to_string()))?,
    )
    .with_task(NewTask::new(0, json!({"gc": true}))))
}

/// The retention as the spec stores it. Cutting off a fraction would shorten the age
/// safeguard that keeps the files of commits in progress, and a retention under a second
/// would lose it entirely (`500ms` would become `0`), so both are refused; `0s` asked for
/// outright (remove every unreferenced file now) stays allowed.
fn whole_seconds(retention: Duration) -> Result<u64> {
    if retention.subsec_nanos() != 0 {
        return Err(Error::invalid(
            "--retention",
            format!(
                "{retention:?} is not a whole number of seconds; gc counts retention in \
                 seconds and would cut this down to {}s, removing files that jobs still \
                 running may need (give 1s or more, or 0s to keep nothing back)",
                retention.as_secs()
            ),
        ));
    }
    Ok(retention.as_secs())
}

pub(crate) async fn run_delete(
    spec: &DeleteSpec,
    task: &ClaimedTask,
    ctx: &TaskContext,
) -> Result<TaskOutput> {
    let dataset = Dataset::open(&spec.dataset)
        .await
        .map_err(Error::format(format!("opening {}", spec.dataset)))?;
    let schema = dataset.schema();
    let layout = dataset.current().layout().clone();
    let predicate = Predicate::parse(&spec.predicate, &schema)
        .map_err(Error::planner("the delete's predicate"))?;
    let files = dataset
        .files()
        .await
        .map_err(Error::format("listing the dataset's files"))?;
    let mut seen = HashSet::new();
    let partitions: Vec<Vec<ScalarValue>> = files
        .into_iter()
        .map(|f| f.partition_values)
        .filter(|p| seen.insert(p.clone()))
        .collect();
    let matching = if partitions.is_empty() {
        Vec::new()
    } else {
        matching_partitions(&schema, &layout.partition_on, &partitions, &predicate).await?
    };
    if matching.is_empty() {
        return Ok(TaskOutput::new(
            json!({"version": dataset.version(), "partitions": 0, "committed": false}),
        ));
    }
    // As an ingest's commit: past this point the delete, not a cancel, decides the job.
    if !ctx.begin_commit(task).await? {
        return Err(Error::Cancelled { id: task.job_id });
    }
    let count = matching.len();
    let committed = dataset
        .delete_partitions(matching)
        .with_job_id(commit_job_id(task.job_id, &spec.run_id))
        .with_idempotency_key(format!("run:{}", spec.run_id))
        .commit()
        .await
        .map_err(Error::format(format!(
            "committing the delete to {}",
            spec.dataset
        )))?;
    let info = committed.commit();
    Ok(TaskOutput::new(json!({
        "version": committed.version(),
        "partitions": count,
        "files_removed": info.files_removed,
        "rows_removed": info.rows_removed,
        "committed": committed.duplicate_of.is_none(),
    })))
}

/// The partitions (value tuples) for which `predicate` holds, evaluated by DataFusion
/// over a table of the distinct partition values.
async fn matching_partitions(
    schema: &Schema,
    partition_on: &[String],
    partitions: &[Vec<ScalarValue>],
    predicate: &Predicate,
) -> Result<Vec<Vec<ScalarValue>>> {
    let engine = |e: datafusion::error::DataFusionError| Error::Execution {
        context: "evaluating the delete's predicate".into(),
        reason: e.to_string(),
        retryable: false,
    };
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (i, name) in partition_on.iter().enumerate() {
        let field = schema
            .field_with_name(name)
            .map_err(|e| Error::invalid("partition column", e.to_string()))?;
        fields.push(Field::new(name, field.data_type().clone(), true));
        let values = partitions.iter().map(|p| p[i].clone());
        columns.push(ScalarValue::iter_to_array(values).map_err(engine)?);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
        Error::Execution {
            context: "evaluating the delete's predicate".into(),
            reason: e.to_string(),
            retryable: false,
        }
    })?;
    // The expression straight to a physical one, not through a DataFrame: the logical
    // optimizer would split the predicate's ANDs and fold them back into a chain one
    // level per term, which a long `--where` made deep enough to overflow the stack.
    let df_schema = DFSchema::try_from(batch.schema().as_ref().clone()).map_err(engine)?;
    let physical = SessionContext::new()
        .create_physical_expr(predicate.expr().clone(), &df_schema)
        .map_err(engine)?;
    let mask = physical
        .evaluate(&batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(engine)?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| Error::Execution {
            context: "evaluating the delete's predicate".into(),
            reason: format!("it is {}, not a boolean", mask.data_type()),
            retryable: false,
        })?;
    let kept = arrow::compute::filter_record_batch(&batch, mask).map_err(|e| Error::Execution {
        context: "evaluating the delete's predicate".into(),
        reason: e.to_string(),
        retryable: false,
    })?;
    let mut out = Vec::new();
    for row in 0..kept.num_rows() {
        out.push(
            kept.columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(engine)?,
        );
    }
    Ok(out)
}

pub(crate) async fn run_gc(spec: &GcSpec, ctx: &TaskContext) -> Result<TaskOutput> {
    let dataset = Dataset::open(&spec.dataset)
        .await
        .map_err(Error::format(format!("opening {}", spec.dataset)))?;
    let live_runs = live_runs(ctx.queue()).await?;
    let options = GcOptions::default()
        .with_retention(Duration::from_secs(spec.retention_secs))
        .with_dry_run(spec.dry_run)
        .with_force(spec.force)
        .with_live_runs(live_runs);
    let report = dataset.gc(options).await.map_err(Error::format(format!(
        "collecting garbage in {}",
        spec.dataset
    )))?;
    let result =
        serde_json::to_value(&report).map_err(|e| Error::invalid("gc report", e.to_string()))?;
    Ok(TaskOutput::new(result))
}

/// The run ids of every job in the queue that has not finished (queued or running), of
/// any kind and on any dataset: run ids are unique, so a run of another dataset protects
/// nothing here. Every job kind that stages files names its staging directory after its
/// `run_id` (ingest, query; delete has one and stages nothing). Jobs submitted to another
/// queue are not seen; the retention floor is what protects them.
async fn live_runs(queue: &Queue) -> Result<BTreeSet<String>> {
    let mut runs = BTreeSet::new();
    for state in [JobState::Queued, JobState::Running] {
        for job in queue.list_jobs(Some(state), i64::MAX).await? {
            if let Some(run) = job.spec.get("run_id").and_then(|r| r.as_str()) {
                runs.insert(run.to_string());
            }
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `gc --retention 500ms` became a 0 s retention through `as_secs`, which
    /// let gc remove the files of commits still in progress.
    #[tokio::test]
    async fn a_retention_that_is_not_whole_seconds_is_refused_before_anything_is_opened() {
        for retention in [Duration::from_millis(500), Duration::from_millis(1_500)] {
            // The dataset does not exist: the retention is refused first.
            let err = plan_gc("/nonexistent/terrace-gc", retention, true, false)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::InvalidRequest { what, .. } if what == "--retention"),
                "{err:?}"
            );
            assert!(err.to_string().contains("whole number of seconds"), "{err}");
        }
        assert_eq!(whole_seconds(Duration::ZERO).unwrap(), 0);
        assert_eq!(
            whole_seconds(Duration::from_secs(7 * 86_400)).unwrap(),
            604_800
        );
        assert_eq!(
            whole_seconds(Duration::MAX - Duration::from_nanos(999_999_999)).unwrap(),
            u64::MAX
        );
    }
}

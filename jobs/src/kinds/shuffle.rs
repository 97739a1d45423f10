//! An ingest's shuffle through sorted runs: the map and reduce tasks of a write whose
//! groups are many.
//!
//! A map task sorts its rows by (partition, bucket) group into a few Arrow IPC runs
//! ([`RunWriter`]), whatever the number of groups, and reports them. Every reduce task
//! reads all the maps' reports, cuts the groups into the same consecutive ranges
//! ([`split_group_ranges`]) and takes every `of`-th of them from `index` on; it reads its
//! groups from every run in group order ([`RunMerge`]) and writes each group's rows with
//! one file open at a time ([`ClusteredWriter`]). So a group's rows from every map end
//! in one file (or several, past the target size), and memory is bounded by the budgets
//! whatever the group count. Staged pieces per group (the other shuffle) cost a file per
//! map task per group instead.

use std::collections::HashSet;

use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use terrace_format::{
    ClusteredWriter, GroupRange, InputFile, InputSplit, Layout, Location, MergeOptions, RunFile,
    RunMerge, RunOptions, RunWriter, SplitPart, conform_batch, read_split, split_group_ranges,
};
use terrace_planner::GroupSample;

use super::common::{get, put};
use super::ingest::{Counted, IngestSpec, read_err, report, writer_options};
use crate::error::{Error, Result};
use crate::model::{ClaimedTask, TaskId, TaskOutput};
use crate::worker::TaskContext;

/// The (partition, bucket) groups among the rows of the first batch of the first input
/// read as `input_schema` into `layout` (`None` without inputs or rows), for the path
/// pick ([`pick_write_path`](terrace_planner::pick_write_path)).
pub(super) async fn sample_groups(
    files: &[InputFile],
    input_schema: &SchemaRef,
    layout: &Layout,
) -> Result<Option<GroupSample>> {
    let Some(first) = files.first() else {
        return Ok(None);
    };
    let split = InputSplit {
        parts: vec![SplitPart {
            file: first.clone(),
            row_groups: None,
        }],
    };
    // Dropping the stream stops the reader after its first batch.
    let batch = match read_split(split, input_schema.clone()).next().await {
        Some(batch) => batch.map_err(read_err)?,
        None => return Ok(None),
    };
    let columns: Vec<_> = layout
        .partition_on
        .iter()
        .filter_map(|c| batch.column_by_name(c).cloned())
        .collect();
    let partitions = if columns.is_empty() {
        1
    } else {
        let fields = columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)
            .map_err(|e| Error::invalid("the partition columns", e.to_string()))?;
        let rows = converter
            .convert_columns(&columns)
            .map_err(|e| Error::invalid("the partition columns", e.to_string()))?;
        rows.iter()
            .map(|r| r.as_ref().to_vec())
            .collect::<HashSet<_>>()
            .len()
    };
    let buckets = layout.num_buckets.unwrap_or(1).max(1) as usize;
    Ok(Some(GroupSample {
        rows: batch.num_rows(),
        groups: (partitions * buckets).min(batch.num_rows().max(1)),
    }))
}

/// What a map task reports: where its runs' descriptions are.
#[derive(Debug, Serialize, Deserialize)]
struct RunsReport {
    runs: Vec<RunFile>,
}

/// Read a split and write its rows as sorted runs below the run's staging directory.
pub(super) async fn map(
    spec: &IngestSpec,
    loc: &Location,
    index: usize,
    split: InputSplit,
) -> Result<TaskOutput> {
    // A directory per attempt: a zombie attempt's runs never mix with this one's.
    let dir = terrace_format::new_map_attempt_dir(&spec.staging, index);
    let schema = spec.schema()?;
    let options = RunOptions {
        compress: !loc.local,
        ..RunOptions::from(&writer_options(spec, loc, false))
    };
    let mut writer = RunWriter::new(
        loc.store.clone(),
        loc.root.clone(),
        dir,
        schema.clone(),
        spec.layout.clone(),
        options,
    )
    .map_err(Error::format("starting a run writer"))?;
    let mut read = read_split(split, spec.input_schema()?);
    let mut written = Ok(());
    while let Some(batch) = read.next().await {
        let step = match batch.map_err(read_err) {
            Ok(batch) => match conform_batch(&batch, &schema) {
                Ok(batch) => writer
                    .write(batch)
                    .await
                    .map_err(Error::format("writing sorted runs")),
                Err(e) => Err(Error::format("fitting input rows to the dataset schema")(e)),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = step {
            written = Err(e);
            break;
        }
    }
    if let Err(e) = written {
        // Best effort: what stays behind is in the staging directory, which gc removes.
        let _ = writer.abort().await;
        return Err(e);
    }
    let runs = writer
        .finish()
        .await
        .map_err(Error::format("finishing sorted runs"))?;
    let rows: u64 = runs.iter().map(|r| r.rows).sum();
    let bytes = serde_json::to_vec(&RunsReport { runs })
        .map_err(|e| Error::invalid("runs report", e.to_string()))?;
    let path = terrace_format::new_runs_report_path(&spec.staging, &format!("map-{index:05}"));
    put(loc, &path, bytes.into()).await?;
    Ok(TaskOutput::new(json!({"runs_report": path, "rows": rows})).with_progress(rows as i64, 0))
}

/// Write the groups of ranges `index`, `index + of`, … of all the maps' runs.
pub(super) async fn reduce(
    spec: &IngestSpec,
    loc: &Location,
    task: &ClaimedTask,
    ctx: &TaskContext,
    index: usize,
    of: usize,
) -> Result<TaskOutput> {
    let results = ctx.stage_results(task.job_id, task.stage - 1).await?;
    let runs = read_runs_reports(loc, &results).await?;
    let schema = spec.schema()?;
    let ranges = ranges_of(&runs, index, of);
    let mut writer = ClusteredWriter::new(
        loc.store.clone(),
        loc.root.clone(),
        schema.clone(),
        spec.layout.clone(),
        writer_options(spec, loc, false),
    )
    .map_err(Error::format("starting a writer"))?;
    let mut written = Ok(());
    for range in &ranges {
        let step = write_range(&mut writer, &schema, &spec.layout, loc, &runs, range).await;
        if let Err(e) = step {
            written = Err(Error::format("writing the groups of sorted runs")(e));
            break;
        }
    }
    let files = match written {
        Ok(()) => writer
            .finish()
            .await
            .map_err(Error::format("finishing data files"))?,
        Err(e) => {
            let _ = writer.abort().await;
            return Err(e);
        }
    };
    report(
        spec,
        loc,
        &format!("reduce-{index:05}"),
        &files,
        "",
        Counted::Bytes,
    )
    .await
}

/// Merge the groups of `range` from every run into `writer`.
async fn write_range(
    writer: &mut ClusteredWriter,
    schema: &SchemaRef,
    layout: &Layout,
    loc: &Location,
    runs: &[RunFile],
    range: &GroupRange,
) -> terrace_format::Result<()> {
    let mut merge = RunMerge::open(
        loc.store.clone(),
        &loc.root,
        schema,
        layout,
        runs,
        range,
        MergeOptions::default(),
    )
    .await?;
    writer.write_merged(&mut merge).await
}

/// The ranges reduce task `index` of `of` writes. Every reduce task cuts the same runs
/// the same way, so each group is in exactly one task's ranges.
fn ranges_of(runs: &[RunFile], index: usize, of: usize) -> Vec<GroupRange> {
    let of = of.max(1);
    let total: u64 = runs.iter().map(|r| r.size_bytes).sum();
    // A few ranges per task: the last groups of the order do not all land on one.
    let target = total.div_ceil(4 * of as u64).max(1);
    split_group_ranges(runs, target)
        .into_iter()
        .enumerate()
        .filter(|(j, _)| j % of == index % of)
        .map(|(_, range)| range)
        .collect()
}

/// The runs every map task of the stage reported.
async fn read_runs_reports(loc: &Location, results: &[(TaskId, Value)]) -> Result<Vec<RunFile>> {
    let paths: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| {
            r.get("runs_report")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    // Sequential: a report is small, and its JSON is parsed as it arrives.
    let mut runs = Vec::new();
    for path in paths {
        let bytes = get(loc, &path).await?;
        let report: RunsReport = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("the runs report {path}"), e.to_string()))?;
        runs.extend(report.runs);
    }
    Ok(runs)
}

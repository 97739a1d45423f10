//! Read plans: a query becomes a list of serde-serialisable tasks for the job queue.
//!
//! - By default one task per data file (as kartothek's `read_dataset_as_delayed`), except
//!   that consecutive small files share a task up to [`DEFAULT_BYTES_PER_TASK`] (as
//!   dask's `read_parquet` fuses small partitions): a bucketed dataset holds one small
//!   file per (partition, bucket), and a task per file spends more on opening the
//!   version, planning and writing its part than on reading. A file of that size or more
//!   is a task of its own. [`ReadOptions::target_bytes_per_task`] sets another size; 0
//!   gives one task per file. Manifest order keeps a partition's files together.
//! - [`ReadOptions::dispatch_by`] a partition column: one task per distinct value.
//! - [`ReadOptions::region_sample`]: TileDB-VCF's `read_dask(bed_file, region_partitions,
//!   sample_partitions)`. Regions are merged (no overlap) and split into R groups; the
//!   sample column's domain is split into S contiguous value ranges (bounds chosen from
//!   the partition values, or else the per-file min/max statistics, of the files left
//!   after pruning; nulls go to the first range). Every task's predicate is the query's
//!   predicate AND its region group AND its sample range: the groups are disjoint and
//!   cover every row the query returns, so the union of the tasks is exactly the query's
//!   result with no row twice. Each task lists only the files its own predicate cannot
//!   prune; a task with no file is left out.
//!
//! The predicate travels as SQL text; files travel as [`TaskFile`]s (partition values as
//! canonical text), which a worker turns back into [`DataFile`]s with
//! [`ReadTask::data_files`].
//!
//! NaN: a task file lists the float columns of its predicate that the manifest says hold
//! no NaN in it ([`TaskFile::nan_free`]); the reader prunes on Parquet's float bounds,
//! which leave NaN out, only for those.
//!
//! Row groups: a file the manifest has row-group statistics for carries a
//! [`RowGroupHint`] (chosen by pruning with the task's own predicate, so a region x
//! sample task names only the row groups of its share); [`ReadTask::scan_request`]
//! hands the hints to the reader, which then fetches only those row groups.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Operator, col, lit};
use serde::{Deserialize, Serialize};
use terrace_format::{
    ColumnStats, DataFile, Dataset, Layout, ScanRequest, partition_value_from_str,
    partition_value_to_string,
};

use crate::error::{Error, Result};
use crate::predicate::Predicate;
use crate::prune::{PruneStep, Pruner, prune};
use crate::regions::{Region, merge_regions, split_regions};
use crate::row_groups::{Container, ContainerStatistics, RowGroupHint, row_group_hints};
use crate::skeleton::{Limits, balanced};

/// A data file as a task carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    /// Path relative to the dataset root.
    pub path: String,
    /// Partition values in `partition_on` order, as canonical text (`None` = null).
    pub partition_values: Vec<Option<String>>,
    /// Bucket, when bucketed.
    pub bucket: Option<u32>,
    /// Rows in the file.
    pub num_rows: u64,
    /// Bytes of the file.
    pub size_bytes: u64,
    /// The row groups to read (`None`: the whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_groups: Option<RowGroupHint>,
    /// Float columns read by the task's predicate that the manifest says hold no NaN in
    /// this file. The reader prunes row groups and pages on Parquet's bounds of a float
    /// column only if it is listed here, since those bounds leave NaN out. Empty (also in
    /// tasks planned before the field existed): none is known to be NaN-free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nan_free: Vec<String>,
}

impl TaskFile {
    /// The serde form of a manifest entry.
    pub fn from_data_file(file: &DataFile) -> Result<TaskFile> {
        let partition_values = file
            .partition_values
            .iter()
            .map(partition_value_to_string)
            .collect::<terrace_format::Result<Vec<_>>>()
            .map_err(|e| Error::format(format!("encoding partition values of {}", file.path), e))?;
        Ok(TaskFile {
            path: file.path.clone(),
            partition_values,
            bucket: file.bucket,
            num_rows: file.num_rows,
            size_bytes: file.size_bytes,
            row_groups: None,
            nan_free: Vec::new(),
        })
    }

    /// The same file, reading only the row groups `hint` names.
    pub fn with_row_groups(mut self, hint: Option<RowGroupHint>) -> TaskFile {
        self.row_groups = hint;
        self
    }

    /// The same file, listing which of `columns` (those a predicate reads) `file`'s
    /// statistics say hold no NaN.
    pub fn with_nan_free(mut self, file: &DataFile, columns: &[String]) -> TaskFile {
        self.nan_free = columns
            .iter()
            .filter(|c| {
                file.column_stats
                    .get(*c)
                    .is_some_and(|s| s.nan_count == Some(0))
            })
            .cloned()
            .collect();
        self
    }

    /// Rows the task reads from the file before filtering (those of its row groups).
    pub fn rows_to_read(&self) -> u64 {
        self.row_groups.as_ref().map_or(self.num_rows, |h| h.rows)
    }

    /// Bytes the task reads from the file (less the row groups it skips).
    pub fn bytes_to_read(&self) -> u64 {
        self.row_groups
            .as_ref()
            .map_or(self.size_bytes, |h| h.bytes)
    }

    /// Back to a [`DataFile`] for a dataset with `schema` and `layout`, without
    /// statistics but for a NaN count of 0 (and unknown bounds) for the columns of
    /// [`nan_free`](Self::nan_free).
    pub fn to_data_file(&self, schema: &Schema, layout: &Layout) -> Result<DataFile> {
        if self.partition_values.len() != layout.partition_on.len() {
            return Err(Error::invalid(
                format!("task file {}", self.path),
                format!(
                    "{} partition values for {} partition columns",
                    self.partition_values.len(),
                    layout.partition_on.len()
                ),
            ));
        }
        let partition_values = layout
            .partition_on
            .iter()
            .zip(&self.partition_values)
            .map(|(column, text)| {
                let field = schema
                    .field_with_name(column)
                    .map_err(|e| Error::arrow(format!("finding partition column {column}"), e))?;
                partition_value_from_str(text.as_deref(), field.data_type())
                    .map_err(|e| Error::format(format!("decoding a value of {column}"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut column_stats = BTreeMap::new();
        for column in &self.nan_free {
            let Ok(field) = schema.field_with_name(column) else {
                continue;
            };
            let unknown = ScalarValue::try_from(field.data_type())
                .map_err(|e| Error::datafusion(format!("typing statistics of {column}"), e))?;
            column_stats.insert(
                column.clone(),
                ColumnStats {
                    min: unknown.clone(),
                    max: unknown,
                    null_count: None,
                    nan_count: Some(0),
                },
            );
        }
        Ok(DataFile {
            path: self.path.clone(),
            partition_values,
            bucket: self.bucket,
            num_rows: self.num_rows,
            size_bytes: self.size_bytes,
            column_stats,
            row_groups: Vec::new(),
            index_values: BTreeMap::new(),
        })
    }
}

/// One unit of work of a read: what a worker needs to read its share of a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadTask {
    /// Position of the task in its plan.
    pub index: usize,
    /// What this task covers (`"file"`, `"origin=JFK"`, `"region 1/4 x sample 0/2"`).
    pub label: String,
    /// The dataset's location (path or URL).
    pub dataset: String,
    /// The version read.
    pub version: u64,
    /// Columns to return (`None`: all).
    pub projection: Option<Vec<String>>,
    /// Rows to return, as SQL text (`None`: all).
    pub predicate: Option<String>,
    /// The files to read.
    pub files: Vec<TaskFile>,
}

impl ReadTask {
    /// Rows the task reads before filtering: its files' rows, or those of the row groups
    /// its hints name.
    pub fn num_rows(&self) -> u64 {
        self.files.iter().map(TaskFile::rows_to_read).sum()
    }

    /// Bytes the task reads: its files' bytes less the row groups its hints skip.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(TaskFile::bytes_to_read).sum()
    }

    /// Row groups the task reads (a file without a hint counts as one).
    pub fn num_row_groups(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.row_groups.as_ref().map_or(1, |h| h.read.len() as u64))
            .sum()
    }

    /// The task's predicate parsed and checked against `schema`.
    pub fn parse_predicate(&self, schema: &Schema) -> Result<Option<Predicate>> {
        self.predicate
            .as_deref()
            .map(|sql| Predicate::parse_within(sql, schema, Limits::TASK))
            .transpose()
    }

    /// The task's files as [`DataFile`]s, for `terrace_format::read_data_files`.
    pub fn data_files(&self, schema: &Schema, layout: &Layout) -> Result<Vec<DataFile>> {
        self.files
            .iter()
            .map(|f| f.to_data_file(schema, layout))
            .collect()
    }

    /// What a worker reads for this task: its files, its row-group hints, `projection`
    /// (the task's own when `None`) and its predicate, parsed against `schema`.
    pub fn scan_request(
        &self,
        schema: &Schema,
        layout: &Layout,
        projection: Option<Vec<String>>,
        batch_size: usize,
    ) -> Result<ScanRequest> {
        Ok(ScanRequest {
            files: self.data_files(schema, layout)?,
            projection: projection.or_else(|| self.projection.clone()),
            predicate: self.parse_predicate(schema)?.map(|p| p.expr().clone()),
            batch_size,
            row_groups: self
                .files
                .iter()
                .filter_map(|f| Some((f.path.clone(), f.row_groups.as_ref()?.selection())))
                .collect(),
            string_views: false,
        })
    }
}

/// Region x sample partitioning of a read (TileDB-VCF's `read_dask`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionSample {
    /// The contig column (string).
    pub contig_column: String,
    /// The position column (integer).
    pub position_column: String,
    /// Regions to read (merged before splitting; see [`crate::parse_bed`]).
    pub regions: Vec<Region>,
    /// Number of region groups, R.
    pub region_partitions: usize,
    /// The sample column.
    pub sample_column: String,
    /// Number of sample groups, S.
    pub sample_partitions: usize,
}

/// The default [`ReadOptions::target_bytes_per_task`]: 32 MiB to read per task.
///
/// A task per small file spends more on task overhead than on reading; grouping them up
/// to this size was fastest in the bench. Files the writer rolls at its 128 MiB target
/// stay one per task.
pub const DEFAULT_BYTES_PER_TASK: u64 = 32 * 1024 * 1024;

/// What to read and how to split it into tasks.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Columns to return (`None`: all).
    pub projection: Option<Vec<String>>,
    /// Rows to return (`None`: all).
    pub predicate: Option<Predicate>,
    /// Group consecutive files into tasks of at most this many bytes to read (a bigger
    /// file is a task of its own); `Some(0)`: one task per file; `None`:
    /// [`DEFAULT_BYTES_PER_TASK`].
    pub target_bytes_per_task: Option<u64>,
    /// One task per distinct value of this partition column.
    pub dispatch_by: Option<String>,
    /// Region x sample partitioning.
    pub region_sample: Option<RegionSample>,
}

/// A read as tasks, with the pruning counts that led to them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadPlan {
    /// The dataset's location.
    pub dataset: String,
    /// The version read.
    pub version: u64,
    /// The query's predicate (before any region / sample split).
    pub predicate: Option<String>,
    /// Pruning counts, step by step.
    pub steps: Vec<PruneStep>,
    /// The tasks; their results together are the query's result.
    pub tasks: Vec<ReadTask>,
}

/// Plan a read of the dataset's loaded version (`dataset.current()`).
pub async fn plan_read(dataset: &Dataset, options: &ReadOptions) -> Result<ReadPlan> {
    let snapshot = dataset.current();
    let schema = snapshot.schema();
    let layout = snapshot.layout().clone();
    if let Some(columns) = &options.projection {
        for c in columns {
            if schema.field_with_name(c).is_err() {
                return Err(Error::invalid(
                    "projection",
                    format!("unknown column {c:?}"),
                ));
            }
        }
    }
    if options.dispatch_by.is_some() && options.region_sample.is_some() {
        return Err(Error::invalid(
            "read options",
            "dispatch_by and region x sample partitioning cannot be combined",
        ));
    }
    let task = |label: String, predicate: Option<&Predicate>, files: Vec<TaskFile>| ReadTask {
        index: 0,
        label,
        dataset: dataset.location().to_string(),
        version: snapshot.version(),
        projection: options.projection.clone(),
        predicate: predicate.map(|p| p.sql().to_string()),
        files,
    };

    let mut tasks = Vec::new();
    let (steps, predicate_text) = if let Some(rs) = &options.region_sample {
        let groups = region_groups(rs, &schema)?;
        let all_regions = balanced(
            Operator::Or,
            groups.iter().map(|g| g.expr().clone()).collect(),
        )
        .ok_or_else(|| Error::invalid("regions", "no region to read"))?;
        let all_regions = Predicate::from_checked_expr(all_regions, &schema)?;
        let query = match &options.predicate {
            Some(p) => p.and(&all_regions),
            None => all_regions,
        };
        let pruned = prune(dataset, Some(&query)).await?;
        let samples = sample_groups(rs, &pruned.files, &schema, &layout)?;
        let (r_count, s_count) = (groups.len(), samples.len());
        for (r, region) in groups.iter().enumerate() {
            for (s, sample) in samples.iter().enumerate() {
                let mut p = match &options.predicate {
                    Some(q) => q.and(region),
                    None => region.clone(),
                };
                if let Some(sample) = sample {
                    p = p.and(sample);
                }
                let files = files_for(&p, &pruned.files, &schema, &layout)?;
                if files.is_empty() {
                    continue;
                }
                tasks.push(task(
                    format!("region {r}/{r_count} x sample {s}/{s_count}"),
                    Some(&p),
                    files,
                ));
            }
        }
        (pruned.steps, Some(query.sql().to_string()))
    } else {
        let predicate = options.predicate.as_ref();
        let pruned = prune(dataset, predicate).await?;
        let columns = predicate.map(Predicate::columns).unwrap_or_default();
        let files = pruned
            .files
            .iter()
            .zip(pruned.row_groups)
            .map(|(f, h)| {
                Ok(TaskFile::from_data_file(f)?
                    .with_row_groups(h)
                    .with_nan_free(f, &columns))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(column) = &options.dispatch_by {
            let position = layout
                .partition_on
                .iter()
                .position(|c| c == column)
                .ok_or_else(|| {
                    Error::invalid(
                        "dispatch_by",
                        format!(
                            "{column:?} is not a partition column (partition columns: {})",
                            layout.partition_on.join(", ")
                        ),
                    )
                })?;
            let mut by_value: BTreeMap<Option<String>, Vec<TaskFile>> = BTreeMap::new();
            for file in files {
                let value = file.partition_values.get(position).cloned().flatten();
                by_value.entry(value).or_default().push(file);
            }
            for (value, files) in by_value {
                let label = format!(
                    "{column}={}",
                    value
                        .as_deref()
                        .unwrap_or(terrace_format::NULL_PARTITION_MARKER)
                );
                tasks.push(task(label, predicate, files));
            }
        } else {
            let target = options
                .target_bytes_per_task
                .unwrap_or(DEFAULT_BYTES_PER_TASK);
            for group in group_files(files, target) {
                let label = match group.as_slice() {
                    [one] => one.path.clone(),
                    many => format!("{} files", many.len()),
                };
                tasks.push(task(label, predicate, group));
            }
        }
        (pruned.steps, predicate.map(|p| p.sql().to_string()))
    };
    for (i, t) in tasks.iter_mut().enumerate() {
        t.index = i;
    }
    Ok(ReadPlan {
        dataset: dataset.location().to_string(),
        version: snapshot.version(),
        predicate: predicate_text,
        steps,
        tasks,
    })
}

/// Consecutive files in groups of at most `target` bytes to read; a file of `target`
/// bytes or more is a group of its own, so with `target` 0 every file is.
fn group_files(files: Vec<TaskFile>, target: u64) -> Vec<Vec<TaskFile>> {
    let mut groups: Vec<Vec<TaskFile>> = Vec::new();
    let mut group: Vec<TaskFile> = Vec::new();
    let mut bytes = 0u64;
    for file in files {
        let size = file.bytes_to_read();
        if !group.is_empty() && (target == 0 || bytes.saturating_add(size) > target) {
            groups.push(std::mem::take(&mut group));
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        group.push(file);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// One predicate per region group.
fn region_groups(rs: &RegionSample, schema: &Schema) -> Result<Vec<Predicate>> {
    let contig_type = schema
        .field_with_name(&rs.contig_column)
        .map_err(|_| {
            Error::invalid(
                "contig column",
                format!("unknown column {:?}", rs.contig_column),
            )
        })?
        .data_type()
        .clone();
    let position_type = schema
        .field_with_name(&rs.position_column)
        .map_err(|_| {
            Error::invalid(
                "position column",
                format!("unknown column {:?}", rs.position_column),
            )
        })?
        .data_type()
        .clone();
    if !position_type.is_integer() {
        return Err(Error::invalid(
            "position column",
            format!("{} is {position_type}, not an integer", rs.position_column),
        ));
    }
    let merged = merge_regions(rs.regions.clone());
    if merged.is_empty() {
        return Err(Error::invalid("regions", "no non-empty region to read"));
    }
    let typed = |v: ScalarValue, t: &DataType, what: &str| {
        v.cast_to(t)
            .map_err(|e| Error::invalid("regions", format!("{what} does not fit {t}: {e}")))
    };
    let mut out = Vec::new();
    for group in split_regions(&merged, rs.region_partitions) {
        let mut terms = Vec::with_capacity(group.len());
        for region in group {
            let contig = typed(
                ScalarValue::Utf8(Some(region.contig.clone())),
                &contig_type,
                "a contig",
            )?;
            let start = typed(
                ScalarValue::Int64(Some(region.start)),
                &position_type,
                "a start",
            )?;
            let end = typed(
                ScalarValue::Int64(Some(region.end)),
                &position_type,
                "an end",
            )?;
            let one = col(rs.contig_column.as_str())
                .eq(lit(contig))
                .and(col(rs.position_column.as_str()).gt_eq(lit(start)))
                .and(col(rs.position_column.as_str()).lt(lit(end)));
            terms.push(one);
        }
        // Balanced: a regions file of thousands of regions would otherwise be a chain as
        // deep as it is long.
        if let Some(expr) = balanced(Operator::Or, terms) {
            out.push(Predicate::from_checked_expr(expr, schema)?);
        }
    }
    Ok(out)
}

/// S contiguous value ranges of the sample column (`None`: one group, no filter).
fn sample_groups(
    rs: &RegionSample,
    files: &[DataFile],
    schema: &Schema,
    layout: &Layout,
) -> Result<Vec<Option<Predicate>>> {
    let field = schema.field_with_name(&rs.sample_column).map_err(|_| {
        Error::invalid(
            "sample column",
            format!("unknown column {:?}", rs.sample_column),
        )
    })?;
    let mut known: Vec<ScalarValue> = Vec::new();
    if let Some(i) = layout
        .partition_on
        .iter()
        .position(|c| c == &rs.sample_column)
    {
        known.extend(
            files
                .iter()
                .filter_map(|f| f.partition_values.get(i).cloned()),
        );
    } else {
        for f in files {
            if let Some(stats) = f.column_stats.get(&rs.sample_column) {
                known.push(stats.min.clone());
                known.push(stats.max.clone());
            }
        }
    }
    known.retain(|v| !v.is_null() && v.data_type() == *field.data_type());
    // A bound becomes SQL text in the tasks' predicates, and an infinity (or NaN) has no
    // literal that parses back; the ranges cover every value whatever their bounds.
    known.retain(|v| match v {
        ScalarValue::Float32(Some(f)) => f.is_finite(),
        ScalarValue::Float64(Some(f)) => f.is_finite(),
        _ => true,
    });
    known.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    known.dedup();
    let wanted = rs.sample_partitions.max(1);
    if wanted == 1 || known.len() < 2 {
        return Ok(vec![None]);
    }
    // Bounds at the quantiles of the known values; the first range also takes nulls and
    // everything below, the last everything above, so the ranges cover every value.
    let mut bounds: Vec<ScalarValue> = (1..wanted)
        .map(|k| known[k * known.len() / wanted].clone())
        .collect();
    bounds.dedup();
    bounds.retain(|b| b != &known[0]);
    let column = || col(rs.sample_column.as_str());
    let mut groups = Vec::with_capacity(bounds.len() + 1);
    for k in 0..=bounds.len() {
        let expr = match (k.checked_sub(1).and_then(|i| bounds.get(i)), bounds.get(k)) {
            (None, Some(hi)) => column().lt(lit(hi.clone())).or(column().is_null()),
            (Some(lo), Some(hi)) => column()
                .gt_eq(lit(lo.clone()))
                .and(column().lt(lit(hi.clone()))),
            (Some(lo), None) => column().gt_eq(lit(lo.clone())),
            (None, None) => return Ok(vec![None]),
        };
        groups.push(Some(Predicate::from_checked_expr(expr, schema)?));
    }
    Ok(groups)
}

/// The files of `files` that `predicate` cannot rule out from their statistics, with
/// the row groups it cannot rule out.
fn files_for(
    predicate: &Predicate,
    files: &[DataFile],
    schema: &Arc<Schema>,
    layout: &Layout,
) -> Result<Vec<TaskFile>> {
    let pruner = Pruner::new(predicate, Arc::clone(schema), layout)?;
    let containers = files.iter().map(Container::file).collect();
    let keep = pruner.prune_stats(&ContainerStatistics::new(containers, schema, layout))?;
    let kept: Vec<DataFile> = files
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(f, _)| f.clone())
        .collect();
    let hints = row_group_hints(&pruner, &kept, schema, layout)?;
    let columns = predicate.columns();
    kept.iter()
        .zip(hints)
        .filter(|(_, h)| h.as_ref().is_none_or(|h| !h.read.is_empty()))
        .map(|(f, h)| {
            Ok(TaskFile::from_data_file(f)?
                .with_row_groups(h)
                .with_nan_free(f, &columns))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn file(i: usize, size_bytes: u64) -> TaskFile {
        TaskFile {
            path: format!("f{i}.parquet"),
            partition_values: vec![],
            bucket: None,
            num_rows: 1,
            size_bytes,
            row_groups: None,
            nan_free: Vec::new(),
        }
    }

    #[test]
    fn small_files_share_a_task_and_big_ones_stand_alone() {
        let sizes = [10, 10, 10, 100, 5, 30, 0, 1];
        let files: Vec<TaskFile> = sizes.iter().enumerate().map(|(i, &s)| file(i, s)).collect();
        let sizes_of = |target| {
            group_files(files.clone(), target)
                .iter()
                .map(|g| g.iter().map(|f| f.size_bytes).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sizes_of(30),
            vec![vec![10, 10, 10], vec![100], vec![5], vec![30, 0], vec![1]]
        );
        assert_eq!(sizes_of(0).len(), sizes.len());
        assert_eq!(sizes_of(u64::MAX).len(), 1);
    }

    proptest! {
        #[test]
        fn groups_keep_every_file_once_in_order_and_within_the_target(
            sizes in prop::collection::vec(0u64..1000, 0..40),
            target in 0u64..3000,
        ) {
            let files: Vec<TaskFile> =
                sizes.iter().enumerate().map(|(i, &s)| file(i, s)).collect();
            let groups = group_files(files.clone(), target);
            prop_assert!(groups.iter().all(|g| !g.is_empty()));
            let flat: Vec<TaskFile> = groups.iter().flatten().cloned().collect();
            prop_assert_eq!(flat, files);
            let bytes = |g: &[TaskFile]| g.iter().map(|f| f.size_bytes).sum::<u64>();
            // Within the target unless one file alone is over it (with 0, every file
            // alone) …
            for g in &groups {
                prop_assert!(g.len() == 1 || (target > 0 && bytes(g) <= target));
            }
            // … and closed only when the next file would not have fitted.
            for pair in groups.windows(2) {
                prop_assert!(target == 0 || bytes(&pair[0]) + pair[1][0].size_bytes > target);
            }
        }
    }
}

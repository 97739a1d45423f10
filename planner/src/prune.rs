//! Pruning: which data files of a version may hold rows matching a predicate.
//!
//! Five steps, in order; each only drops files that cannot match, and records files and
//! bytes before and after (for `explain`). No data file is opened, only the manifest:
//! 1. **segments**: each segment's summary (partition-value range and null count, bucket
//!    range) is pruned as one container, before the segment file is read;
//! 2. **partitions**: each file's partition values, seen as `min = max = value`, through
//!    DataFusion's [`PruningPredicate`];
//! 3. **buckets**: when the predicate fixes every bucket column to a finite set of values
//!    (`=`, `IN`, `IS NULL`, through `AND` / `OR`), the buckets those values hash to;
//! 4. **indices**: for `=` / `IN` on an indexed column, the files the index lists for the
//!    values. A file the index files do not mention at all is kept (it may predate the
//!    index), so the step is safe whatever the index covers;
//! 5. **statistics**: per-file min / max / null count of data columns (and partition
//!    values again) through [`PruningPredicate`]. A float column's bounds count only for
//!    files whose NaN count is known to be 0: Parquet's bounds leave NaN out, and NaN
//!    matches `x > 5` or `x <> 1` (terrace-format's `nan.rs`);
//! 6. **row groups**: per-row-group statistics of the files left, where the manifest has
//!    them, give each file a [`RowGroupHint`]; a file none of whose row groups can match
//!    is dropped (see [`crate::row_groups`]).
//!
//! The statistics come straight from the segment's typed arrays ([`FileList`]); a
//! [`DataFile`] is built only for the files that survive.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, UInt64Array, new_null_array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use terrace_format::{
    DataFile, Dataset, FileList, Layout, SegmentSummary, bucket_for_scalar, may_hold_nan,
};

use crate::error::{Error, Result};
use crate::predicate::Predicate;
use crate::row_groups::{RowGroupHint, row_group_hints};

/// The pruning steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneStepKind {
    /// Segment summaries (partition ranges, bucket ranges).
    Segments,
    /// Partition values per file.
    Partitions,
    /// Buckets the predicate's values hash to.
    Buckets,
    /// Secondary indices.
    Indices,
    /// Per-file min / max / null statistics.
    Statistics,
    /// Per-row-group statistics (row-group hints).
    RowGroups,
}

/// Files and bytes before and after one pruning step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneStep {
    /// Which step.
    pub step: PruneStepKind,
    /// Files before the step.
    pub files_before: u64,
    /// Bytes before the step.
    pub bytes_before: u64,
    /// Files after the step.
    pub files_after: u64,
    /// Bytes after the step.
    pub bytes_after: u64,
    /// Row groups before the step (the row-group step only; a file without row-group
    /// statistics counts as one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_groups_before: Option<u64>,
    /// Row groups after the step (the row-group step only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_groups_after: Option<u64>,
}

/// The files left after pruning, and what each step removed.
#[derive(Debug, Clone)]
pub struct Pruned {
    /// Files that may hold matching rows, in manifest order.
    pub files: Vec<DataFile>,
    /// One per file: the row groups to read (`None`: the whole file).
    pub row_groups: Vec<Option<RowGroupHint>>,
    /// One entry per step, in order.
    pub steps: Vec<PruneStep>,
}

#[derive(Default, Clone, Copy)]
struct Counter {
    files: u64,
    bytes: u64,
}

struct Steps([(Counter, Counter); 6]);

impl Steps {
    fn record(&mut self, step: usize, before: Counter, after: Counter) {
        let (b, a) = &mut self.0[step];
        b.files += before.files;
        b.bytes += before.bytes;
        a.files += after.files;
        a.bytes += after.bytes;
    }

    fn finish(self) -> Vec<PruneStep> {
        use PruneStepKind as K;
        [
            K::Segments,
            K::Partitions,
            K::Buckets,
            K::Indices,
            K::Statistics,
            K::RowGroups,
        ]
        .into_iter()
        .zip(self.0)
        .map(|(step, (before, after))| PruneStep {
            step,
            files_before: before.files,
            bytes_before: before.bytes,
            files_after: after.files,
            bytes_after: after.bytes,
            row_groups_before: None,
            row_groups_after: None,
        })
        .collect()
    }
}

/// Prune the files of the dataset's loaded version (`dataset.current()`) with
/// `predicate`; `None` keeps every file.
pub async fn prune(dataset: &Dataset, predicate: Option<&Predicate>) -> Result<Pruned> {
    let snapshot = dataset.current();
    let schema = snapshot.schema();
    let layout = snapshot.layout().clone();
    let pruner = match predicate {
        Some(p) => Some(Pruner::new(p, Arc::clone(&schema), &layout)?),
        None => None,
    };
    let mut steps = Steps([(Counter::default(), Counter::default()); 6]);

    // Step 1 needs only the version file.
    let segments = snapshot.segments();
    let keep_segment = match &pruner {
        Some(p) => p.segments(segments, &schema, &layout)?,
        None => vec![true; segments.len()],
    };
    let mut kept_segments = Vec::new();
    let (mut before, mut after) = (Counter::default(), Counter::default());
    for (segment, keep) in segments.iter().zip(keep_segment) {
        before.files += segment.num_files;
        before.bytes += segment.size_bytes;
        if keep {
            after.files += segment.num_files;
            after.bytes += segment.size_bytes;
            kept_segments.push(segment);
        }
    }
    steps.record(0, before, after);

    // Step 4 reads the index files once for all segments.
    let index_paths = match &pruner {
        Some(p) => p.index_paths(dataset).await?,
        None => None,
    };

    let lists: Vec<FileList> = futures::stream::iter(kept_segments)
        .map(|s| async move {
            dataset
                .read_segment(s)
                .await
                .map_err(|e| Error::format(format!("reading segment {}", s.path), e))
        })
        .buffered(8)
        .try_collect()
        .await?;

    let mut files = Vec::new();
    for list in &lists {
        let mut keep = vec![true; list.len()];
        if let Some(p) = &pruner {
            let sizes = list.size_bytes();
            let count = |keep: &[bool]| {
                keep.iter()
                    .enumerate()
                    .fold(Counter::default(), |mut c, (i, k)| {
                        if *k {
                            c.files += 1;
                            c.bytes += sizes.value(i);
                        }
                        c
                    })
            };
            let mut apply = |step: usize, mask: Vec<bool>, keep: &mut Vec<bool>| {
                let before = count(keep);
                for (k, m) in keep.iter_mut().zip(mask) {
                    *k &= m;
                }
                steps.record(step, before, count(keep));
            };
            let stats = FileListStatistics::new(list, &schema, &layout, false);
            apply(1, p.prune_stats(&stats)?, &mut keep);
            apply(2, p.buckets(list), &mut keep);
            apply(3, index_mask(list, index_paths.as_ref()), &mut keep);
            let stats = FileListStatistics::new(list, &schema, &layout, true);
            apply(4, p.prune_stats(&stats)?, &mut keep);
        } else {
            let all = Counter {
                files: list.len() as u64,
                bytes: list.size_bytes().values().iter().sum(),
            };
            for step in 1..5 {
                steps.record(step, all, all);
            }
        }
        for (i, k) in keep.iter().enumerate() {
            if *k {
                files.push(
                    list.data_file(i)
                        .map_err(|e| Error::format("reading a file entry", e))?,
                );
            }
        }
    }

    // Step 6 over the files left, all segments at once.
    let before = Counter {
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.size_bytes).sum(),
    };
    let groups_in = |f: &DataFile| f.row_groups.len().max(1) as u64;
    let groups_before: u64 = files.iter().map(groups_in).sum();
    let hints = match &pruner {
        Some(p) => row_group_hints(p, &files, &schema, &layout)?,
        None => vec![None; files.len()],
    };
    let mut row_groups = Vec::with_capacity(files.len());
    let mut kept = Vec::with_capacity(files.len());
    let (mut after, mut groups_after) = (Counter::default(), 0);
    for (file, hint) in files.into_iter().zip(hints) {
        match &hint {
            Some(h) if h.read.is_empty() => continue,
            Some(h) => {
                after.bytes += h.bytes;
                groups_after += h.read.len() as u64;
            }
            None => {
                after.bytes += file.size_bytes;
                groups_after += groups_in(&file);
            }
        }
        after.files += 1;
        kept.push(file);
        row_groups.push(hint);
    }
    steps.record(5, before, after);
    let mut steps = steps.finish();
    if let Some(step) = steps.last_mut() {
        step.row_groups_before = Some(groups_before);
        step.row_groups_after = Some(groups_after);
    }
    Ok(Pruned {
        files: kept,
        row_groups,
        steps,
    })
}

/// Which files an index lookup allows: `None` = no index applies.
struct IndexPaths {
    /// Files holding one of the wanted values.
    matching: HashSet<String>,
    /// Every file the index files mention; others are kept.
    covered: HashSet<String>,
}

fn index_mask(list: &FileList, index: Option<&IndexPaths>) -> Vec<bool> {
    let Some(index) = index else {
        return vec![true; list.len()];
    };
    list.paths()
        .iter()
        .map(|p| p.is_none_or(|p| index.matching.contains(p) || !index.covered.contains(p)))
        .collect()
}

/// A predicate prepared for pruning one version.
pub(crate) struct Pruner {
    expr: Expr,
    pruning: PruningPredicate,
    buckets: Option<BTreeSet<u32>>,
}

impl Pruner {
    pub(crate) fn new(predicate: &Predicate, schema: SchemaRef, layout: &Layout) -> Result<Self> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone())
            .map_err(|e| Error::datafusion("preparing the schema", e))?;
        let physical = SessionContext::new()
            .create_physical_expr(predicate.expr().clone(), &df_schema)
            .map_err(|e| Error::datafusion("planning the predicate for pruning", e))?;
        let pruning = PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&schema))
            .try_build(physical)
            .map_err(|e| Error::datafusion("building the pruning predicate", e))?;
        let buckets = match layout.num_buckets {
            Some(n) if !layout.bucket_by.is_empty() => {
                bucket_set(predicate.expr(), &layout.bucket_by, &schema, n)
            }
            _ => None,
        };
        Ok(Pruner {
            expr: predicate.expr().clone(),
            pruning,
            buckets,
        })
    }

    pub(crate) fn prune_stats(&self, stats: &dyn PruningStatistics) -> Result<Vec<bool>> {
        self.pruning
            .prune(stats)
            .map_err(|e| Error::datafusion("pruning with statistics", e))
    }

    fn segments(
        &self,
        segments: &[SegmentSummary],
        schema: &Schema,
        layout: &Layout,
    ) -> Result<Vec<bool>> {
        let stats = SegmentStatistics::new(segments, schema, layout)?;
        let mut keep = self.prune_stats(&stats)?;
        if let Some(buckets) = &self.buckets {
            for (k, s) in keep.iter_mut().zip(segments) {
                if let (Some(lo), Some(hi)) = (s.bucket_min, s.bucket_max) {
                    *k &= buckets.range(lo..=hi).next().is_some();
                }
            }
        }
        Ok(keep)
    }

    fn buckets(&self, list: &FileList) -> Vec<bool> {
        let Some(buckets) = &self.buckets else {
            return vec![true; list.len()];
        };
        list.buckets()
            .iter()
            .map(|b| b.is_none_or(|b| buckets.contains(&b)))
            .collect()
    }

    async fn index_paths(&self, dataset: &Dataset) -> Result<Option<IndexPaths>> {
        let snapshot = dataset.current();
        let schema = snapshot.schema();
        let mut result: Option<IndexPaths> = None;
        for column in snapshot.indexed_columns() {
            let Some(values) = column_values(&self.expr, column, &schema, false) else {
                continue;
            };
            let wanted: Vec<ScalarValue> = values.into_iter().filter(|v| !v.is_null()).collect();
            let mut paths = IndexPaths {
                matching: HashSet::new(),
                covered: HashSet::new(),
            };
            for index in snapshot.indices().iter().filter(|i| &i.column == column) {
                let batch = dataset
                    .read_index(index)
                    .await
                    .map_err(|e| Error::format(format!("reading index {}", index.path), e))?;
                let (Some(value), Some(path)) = (
                    batch.column_by_name("value"),
                    batch
                        .column_by_name("path")
                        .and_then(|p| p.as_any().downcast_ref::<StringArray>()),
                ) else {
                    continue;
                };
                for i in 0..batch.num_rows() {
                    if path.is_null(i) {
                        continue;
                    }
                    let p = path.value(i);
                    paths.covered.insert(p.to_string());
                    let v = ScalarValue::try_from_array(value, i)
                        .map_err(|e| Error::datafusion("reading an index value", e))?;
                    if wanted.contains(&v) {
                        paths.matching.insert(p.to_string());
                    }
                }
            }
            // Several indexed columns constrained: a file must match all of them, and a
            // file only one index covers is kept by that index alone.
            result = Some(match result {
                None => paths,
                Some(prev) => IndexPaths {
                    matching: intersect_index(&prev, &paths),
                    covered: prev.covered.union(&paths.covered).cloned().collect(),
                },
            });
        }
        Ok(result)
    }
}

fn intersect_index(a: &IndexPaths, b: &IndexPaths) -> HashSet<String> {
    // A file passes an index when it matches or is not covered by it.
    let passes = |x: &IndexPaths, p: &String| x.matching.contains(p) || !x.covered.contains(p);
    a.matching
        .iter()
        .chain(b.matching.iter())
        .filter(|p| passes(a, p) && passes(b, p))
        .cloned()
        .collect()
}

/// Literal values `column` must take for `expr` to be true (`None`: unconstrained).
/// With `nulls`, `column IS NULL` counts as the value null.
pub(crate) fn column_values(
    expr: &Expr,
    column: &str,
    schema: &Schema,
    nulls: bool,
) -> Option<Vec<ScalarValue>> {
    let data_type = schema.field_with_name(column).ok()?.data_type().clone();
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let typed = |v: &ScalarValue| -> Option<ScalarValue> {
        if v.data_type() == data_type {
            Some(v.clone())
        } else {
            v.cast_to(&data_type).ok()
        }
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                match (
                    column_values(left, column, schema, nulls),
                    column_values(right, column, schema, nulls),
                ) {
                    (Some(a), Some(b)) => {
                        let b: HashSet<&ScalarValue> = b.iter().collect();
                        Some(a.into_iter().filter(|v| b.contains(v)).collect())
                    }
                    (a, b) => a.or(b),
                }
            }
            // Sets, not `Vec::contains`: an OR of thousands of values would be quadratic.
            Operator::Or => {
                let mut a = column_values(left, column, schema, nulls)?;
                let mut seen: HashSet<ScalarValue> = a.iter().cloned().collect();
                for v in column_values(right, column, schema, nulls)? {
                    if seen.insert(v.clone()) {
                        a.push(v);
                    }
                }
                Some(a)
            }
            Operator::Eq => match (left.as_ref(), right.as_ref()) {
                (c, Expr::Literal(v, _)) | (Expr::Literal(v, _), c) if is_column(c) => {
                    // `= NULL` matches nothing.
                    Some(typed(v).filter(|v| !v.is_null()).into_iter().collect())
                }
                _ => None,
            },
            _ => None,
        },
        Expr::InList(list) if !list.negated && is_column(&list.expr) => list
            .list
            .iter()
            .map(|e| match e {
                Expr::Literal(v, _) => typed(v),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|vs| vs.into_iter().filter(|v| !v.is_null()).collect()),
        Expr::IsNull(inner) if nulls && is_column(inner) => {
            ScalarValue::try_from(&data_type).ok().map(|n| vec![n])
        }
        _ => None,
    }
}

/// Most bucket-value combinations tried before giving up on bucket pruning.
const MAX_BUCKET_COMBINATIONS: usize = 4096;

/// Buckets a row matching `expr` can hash to (`None`: any).
pub(crate) fn bucket_set(
    expr: &Expr,
    bucket_by: &[String],
    schema: &Schema,
    num_buckets: u32,
) -> Option<BTreeSet<u32>> {
    if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr {
        match op {
            Operator::Or => {
                let mut a = bucket_set(left, bucket_by, schema, num_buckets)?;
                a.extend(bucket_set(right, bucket_by, schema, num_buckets)?);
                return Some(a);
            }
            Operator::And => {
                let sets = [
                    bucket_set(left, bucket_by, schema, num_buckets),
                    bucket_set(right, bucket_by, schema, num_buckets),
                    tuple_buckets(expr, bucket_by, schema, num_buckets),
                ];
                return sets.into_iter().flatten().reduce(|a, b| &a & &b);
            }
            _ => {}
        }
    }
    tuple_buckets(expr, bucket_by, schema, num_buckets)
}

fn tuple_buckets(
    expr: &Expr,
    bucket_by: &[String],
    schema: &Schema,
    num_buckets: u32,
) -> Option<BTreeSet<u32>> {
    let per_column: Vec<Vec<ScalarValue>> = bucket_by
        .iter()
        .map(|c| column_values(expr, c, schema, true))
        .collect::<Option<_>>()?;
    let combinations = per_column
        .iter()
        .try_fold(1usize, |n, vs| n.checked_mul(vs.len()))?;
    if combinations > MAX_BUCKET_COMBINATIONS {
        return None;
    }
    let mut out = BTreeSet::new();
    let mut tuple: Vec<ScalarValue> = Vec::with_capacity(per_column.len());
    fn walk(
        per_column: &[Vec<ScalarValue>],
        tuple: &mut Vec<ScalarValue>,
        n: u32,
        out: &mut BTreeSet<u32>,
    ) -> Option<()> {
        let Some((first, rest)) = per_column.split_first() else {
            out.insert(bucket_for_scalar(tuple, n).ok()?);
            return Some(());
        };
        for v in first {
            tuple.push(v.clone());
            walk(rest, tuple, n, out)?;
            tuple.pop();
        }
        Some(())
    }
    walk(&per_column, &mut tuple, num_buckets, &mut out)?;
    Some(out)
}

fn cast_to(array: ArrayRef, data_type: &DataType) -> Option<ArrayRef> {
    if array.data_type() == data_type {
        Some(array)
    } else {
        arrow::compute::cast(&array, data_type).ok()
    }
}

/// Statistics of one segment's files for [`PruningPredicate`]: data columns from the
/// segment's min / max / null-count structs, partition columns as `min = max = value`.
pub(crate) struct FileListStatistics<'a> {
    list: &'a FileList,
    schema: &'a Schema,
    layout: &'a Layout,
    data_columns: bool,
}

impl<'a> FileListStatistics<'a> {
    /// Statistics over `list`; partition columns only unless `data_columns`.
    pub(crate) fn new(
        list: &'a FileList,
        schema: &'a Schema,
        layout: &'a Layout,
        data_columns: bool,
    ) -> Self {
        Self {
            list,
            schema,
            layout,
            data_columns,
        }
    }

    fn typed(&self, column: &str, array: Option<ArrayRef>) -> Option<ArrayRef> {
        let field = self.schema.field_with_name(column).ok()?;
        cast_to(array?, field.data_type())
    }

    fn partition(&self, column: &str) -> Option<ArrayRef> {
        if !self.layout.partition_on.iter().any(|c| c == column) {
            return None;
        }
        self.typed(column, self.list.partition_values(column))
    }

    /// Bounds of a data column, typed; for a float column, null (unknown) for files
    /// whose NaN count is not known to be 0, since Parquet's bounds leave NaN out.
    fn data_bound(&self, column: &str, bounds: Option<ArrayRef>) -> Option<ArrayRef> {
        if !self.data_columns {
            return None;
        }
        let bounds = self.typed(column, bounds)?;
        let field = self.schema.field_with_name(column).ok()?;
        if !may_hold_nan(field.data_type()) {
            return Some(bounds);
        }
        // Segments written before NaN counts existed have none: all unknown.
        let counts = self.list.nan_counts(column)?;
        let counts = counts.as_any().downcast_ref::<UInt64Array>()?;
        let untrusted: BooleanArray = counts.iter().map(|c| Some(c != Some(0))).collect();
        arrow::compute::nullif(&bounds, &untrusted).ok()
    }
}

impl PruningStatistics for FileListStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.partition(&column.name)
            .or_else(|| self.data_bound(&column.name, self.list.min_values(&column.name)))
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.partition(&column.name)
            .or_else(|| self.data_bound(&column.name, self.list.max_values(&column.name)))
    }

    fn num_containers(&self) -> usize {
        self.list.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        if let Some(values) = self.partition(&column.name) {
            // A partition value is the value of every row of the file.
            let rows = self.list.num_rows();
            let counts: UInt64Array = (0..values.len())
                .map(|i| Some(if values.is_null(i) { rows.value(i) } else { 0 }))
                .collect();
            return Some(Arc::new(counts));
        }
        if !self.data_columns {
            return None;
        }
        cast_to(self.list.null_counts(&column.name)?, &DataType::UInt64)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(self.list.num_rows().clone()))
    }

    fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// Segment summaries as containers: partition columns' ranges; data columns unknown.
struct SegmentStatistics {
    partition_on: Vec<String>,
    min: Vec<Option<ArrayRef>>,
    max: Vec<Option<ArrayRef>>,
    null_counts: Vec<ArrayRef>,
    rows: ArrayRef,
    len: usize,
}

impl SegmentStatistics {
    fn new(segments: &[SegmentSummary], schema: &Schema, layout: &Layout) -> Result<Self> {
        let mut min = Vec::new();
        let mut max = Vec::new();
        let mut null_counts = Vec::new();
        for (i, column) in layout.partition_on.iter().enumerate() {
            let Ok(field) = schema.field_with_name(column) else {
                min.push(None);
                max.push(None);
                null_counts.push(new_null_array(&DataType::UInt64, segments.len()));
                continue;
            };
            let array = |pick: &dyn Fn(&SegmentSummary) -> Option<&ScalarValue>| {
                let values: Vec<ScalarValue> = segments
                    .iter()
                    .map(|s| {
                        pick(s)
                            .and_then(|v| {
                                if v.data_type() == *field.data_type() {
                                    Some(v.clone())
                                } else {
                                    v.cast_to(field.data_type()).ok()
                                }
                            })
                            .or_else(|| ScalarValue::try_from(field.data_type()).ok())
                    })
                    .collect::<Option<_>>()?;
                if values.is_empty() {
                    return Some(new_null_array(field.data_type(), 0));
                }
                ScalarValue::iter_to_array(values).ok()
            };
            min.push(array(&|s| s.partition_min.get(i)));
            max.push(array(&|s| s.partition_max.get(i)));
            // Exact only at the extremes: no file or every file with a null value.
            let counts: UInt64Array = segments
                .iter()
                .map(|s| match s.partition_null_count.get(i) {
                    Some(0) => Some(0),
                    Some(n) if *n == s.num_files => Some(s.num_rows),
                    _ => None,
                })
                .collect();
            null_counts.push(Arc::new(counts));
        }
        let rows: UInt64Array = segments.iter().map(|s| Some(s.num_rows)).collect();
        Ok(SegmentStatistics {
            partition_on: layout.partition_on.clone(),
            min,
            max,
            null_counts,
            rows: Arc::new(rows),
            len: segments.len(),
        })
    }

    fn index(&self, column: &Column) -> Option<usize> {
        self.partition_on.iter().position(|c| c == &column.name)
    }
}

impl PruningStatistics for SegmentStatistics {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.min.get(self.index(column)?)?.clone()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.max.get(self.index(column)?)?.clone()
    }

    fn num_containers(&self) -> usize {
        self.len
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.null_counts.get(self.index(column)?).cloned()
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::clone(&self.rows))
    }

    fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

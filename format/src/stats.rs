//! Per-file and per-row-group column statistics, taken from the footer the Parquet
//! writer produced.
//!
//! The writer already computed min / max / null count per column chunk; reading them back
//! from the `ParquetMetaData` that `ArrowWriter` returns costs nothing and gives exactly
//! what readers of the file will see. Row-group values are reduced to one bound per file,
//! and kept as they are per row group when the file has more than one.
//! Bounds stay bounds: parquet-rs truncates long string minimums to a prefix and
//! increments truncated maximums, so both still enclose every value. The footer knows
//! nothing of NaN (its float bounds leave NaN out), so the caller passes the NaN counts
//! it took from the rows, and a float column holding NaN, or whose count is unknown, gets
//! unknown bounds (see `nan.rs`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;

use crate::datafile::{ColumnStats, RowGroupStats};
use crate::error::{Error, Result};
use crate::manifest::is_stats_type;
use crate::nan::RowGroupNans;

/// Statistics of one written file: per column, and per row group when it has several.
pub(crate) struct FileStats {
    /// Min / max / null count per column, reduced over all row groups.
    pub columns: BTreeMap<String, ColumnStats>,
    /// The same per row group; empty when the file has one row group.
    pub row_groups: Vec<RowGroupStats>,
}

/// Min / max / null count per column of `file_schema`, for the file and (when it has
/// more than one) for each row group, and the NaN count of float columns from `nans`
/// (one entry per row group of the file; any other length counts as unknown).
///
/// Only types the manifest keeps bounds for ([`is_stats_type`]) get bounds; other
/// columns get their null count with unknown bounds. Nested columns are skipped.
pub(crate) fn file_column_stats(
    metadata: &ParquetMetaData,
    file_schema: &Schema,
    path: &str,
    nans: &[RowGroupNans],
) -> Result<FileStats> {
    let parquet_schema = metadata.file_metadata().schema_descr();
    let row_groups = metadata.row_groups();
    let rows_per_group: Vec<u64> = row_groups
        .iter()
        .map(|rg| u64::try_from(rg.num_rows()).unwrap_or(0))
        .collect();
    let per_group = row_groups.len() > 1;
    let mut groups: Vec<RowGroupStats> = if per_group {
        row_groups
            .iter()
            .zip(&rows_per_group)
            .map(|(rg, rows)| RowGroupStats {
                num_rows: *rows,
                size_bytes: u64::try_from(rg.compressed_size()).unwrap_or(0),
                column_stats: BTreeMap::new(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let nans_known = nans.len() == row_groups.len();
    let mut out = BTreeMap::new();
    for field in file_schema.fields() {
        if field.data_type().is_nested() {
            continue;
        }
        let float = matches!(
            field.data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64
        );
        let group_nans: Vec<Option<u64>> = (0..row_groups.len())
            .map(|i| {
                let known = nans_known.then(|| nans[i].get(field.name()).copied());
                float.then_some(known.flatten()).flatten()
            })
            .collect();
        let nan_count = if float {
            group_nans.iter().copied().sum::<Option<u64>>()
        } else {
            None
        };
        let converter = StatisticsConverter::try_new(field.name(), file_schema, parquet_schema)
            .map_err(|e| Error::parquet(path, e))?
            // parquet-rs omits a zero null count only in some writers; a missing one must
            // read as unknown, not as "no nulls", or pruning on IS NULL would be wrong.
            .with_missing_null_counts_as_zero(false);
        let null_counts = converter
            .row_group_null_counts(row_groups.iter())
            .map_err(|e| Error::parquet(path, e))?;
        let null_count = sum_known(&null_counts);
        let unknown = ScalarValue::try_from(field.data_type())
            .map_err(|e| Error::datafusion(format!("typing statistics of {path}"), e))?;
        let bounds = if is_stats_type(field.data_type()) {
            let mins = converter
                .row_group_mins(row_groups.iter())
                .map_err(|e| Error::parquet(path, e))?;
            let maxes = converter
                .row_group_maxes(row_groups.iter())
                .map_err(|e| Error::parquet(path, e))?;
            Some((mins, maxes))
        } else {
            None
        };
        for (i, group) in groups.iter_mut().enumerate() {
            // A null bound is an unknown one (or an all-null group, which pruning also
            // reads from the null count); a typed null says so.
            let bound = |array: Option<&ArrayRef>| match array {
                Some(a) => ScalarValue::try_from_array(a, i)
                    .map_err(|e| Error::datafusion(format!("reading statistics of {path}"), e)),
                None => Ok(unknown.clone()),
            };
            // Parquet's float bounds leave NaN out: only a NaN-free group keeps them.
            let trusted = !float || group_nans[i] == Some(0);
            let bounds = bounds.as_ref().filter(|_| trusted);
            group.column_stats.insert(
                field.name().clone(),
                ColumnStats {
                    min: bound(bounds.map(|b| &b.0))?,
                    max: bound(bounds.map(|b| &b.1))?,
                    null_count: null_counts.is_valid(i).then(|| null_counts.value(i)),
                    nan_count: group_nans[i],
                },
            );
        }
        let trusted = !float || nan_count == Some(0);
        let (min, max) = if let Some((mins, maxes)) = bounds.as_ref().filter(|_| trusted) {
            (
                reduce(mins, &null_counts, &rows_per_group, Ordering::Less, path)?
                    .unwrap_or_else(|| unknown.clone()),
                reduce(
                    maxes,
                    &null_counts,
                    &rows_per_group,
                    Ordering::Greater,
                    path,
                )?
                .unwrap_or_else(|| unknown.clone()),
            )
        } else {
            (unknown.clone(), unknown)
        };
        out.insert(
            field.name().clone(),
            ColumnStats {
                min,
                max,
                null_count,
                nan_count,
            },
        );
    }
    Ok(FileStats {
        columns: out,
        row_groups: groups,
    })
}

/// Sum of null counts, `None` if any row group's count is unknown.
fn sum_known(counts: &UInt64Array) -> Option<u64> {
    if counts.null_count() > 0 {
        return None;
    }
    Some(counts.values().iter().sum())
}

/// The most extreme (`keep` = Less for min, Greater for max) of the row-group bounds.
///
/// Returns `None` (unknown) when a row group that holds non-null values has no bound,
/// since any value in it could lie outside the others' range. Row groups that are all
/// null have no bound and need none.
fn reduce(
    bounds: &ArrayRef,
    null_counts: &UInt64Array,
    rows_per_group: &[u64],
    keep: Ordering,
    path: &str,
) -> Result<Option<ScalarValue>> {
    let mut best: Option<ScalarValue> = None;
    for (i, rows) in rows_per_group.iter().enumerate() {
        if bounds.is_null(i) {
            let all_null = null_counts.is_valid(i) && null_counts.value(i) == *rows;
            if all_null || *rows == 0 {
                continue;
            }
            return Ok(None);
        }
        let value = ScalarValue::try_from_array(bounds, i)
            .map_err(|e| Error::datafusion(format!("reading statistics of {path}"), e))?;
        best = match best {
            None => Some(value),
            Some(current) => match value.partial_cmp(&current) {
                Some(ord) if ord == keep => Some(value),
                Some(_) => Some(current),
                // Incomparable bounds (should not happen for one column): give up rather
                // than record a bound that might be wrong.
                None => return Ok(None),
            },
        };
    }
    Ok(best)
}

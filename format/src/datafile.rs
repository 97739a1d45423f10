//! What the manifest knows about one data file.

use std::collections::BTreeMap;

use arrow::array::ArrayRef;
use datafusion::common::ScalarValue;

/// One Parquet data file of a dataset, as the manifest records it.
///
/// Partition columns are not stored inside data files (the hive convention, so DuckDB,
/// pyarrow and Spark add them back from the path); their values live here, typed as the
/// dataset schema says.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path relative to the dataset root, e.g. `origin=JFK/part-00003-<uuid>.parquet`.
    pub path: String,
    /// One value per `partition_on` column, in order; `ScalarValue` nulls for null values.
    pub partition_values: Vec<ScalarValue>,
    /// The bucket every row of this file hashes to, when the dataset is bucketed.
    pub bucket: Option<u32>,
    /// Rows in the file.
    pub num_rows: u64,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// Statistics per data column (partition columns excluded), for columns whose type
    /// supports min/max. A column absent from the map has no statistics.
    pub column_stats: BTreeMap<String, ColumnStats>,
    /// Statistics per row group, in file order, when the file has more than one (with
    /// one, the file's statistics are the row group's). Empty also for files listed by
    /// segments written before row-group statistics were kept. The planner uses them to
    /// tell a read task which row groups to read.
    pub row_groups: Vec<RowGroupStats>,
    /// Distinct values of each indexed column in this file, as the writer saw them; a
    /// commit turns them into secondary-index entries. Empty for files read back from a
    /// segment (the index files hold them then).
    pub index_values: BTreeMap<String, ArrayRef>,
}

/// Min, max, null count and (for floating-point columns) NaN count of one column in one
/// data file.
///
/// `min` and `max` are bounds: every non-null value `v` of the column satisfies
/// `min <= v <= max` in Arrow's total order (they may be looser than the true extremes,
/// e.g. truncated strings). A null `ScalarValue` means the bound is unknown. Parquet's
/// bounds leave NaN out, so a float column's bounds hold only where `nan_count` is
/// `Some(0)`; files holding NaN record unknown bounds (see `nan.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnStats {
    /// Lower bound of the non-null values, typed as the column.
    pub min: ScalarValue,
    /// Upper bound of the non-null values, typed as the column.
    pub max: ScalarValue,
    /// Number of nulls, when known.
    pub null_count: Option<u64>,
    /// Number of NaN values of a floating-point column, when known: `None` for other
    /// types, and for files written before terrace counted them.
    pub nan_count: Option<u64>,
}

/// What the manifest knows about one row group of a data file.
#[derive(Debug, Clone, PartialEq)]
pub struct RowGroupStats {
    /// Rows in the row group.
    pub num_rows: u64,
    /// Compressed bytes of its column chunks (what reading all of it fetches).
    pub size_bytes: u64,
    /// Statistics per data column, as in [`DataFile::column_stats`].
    pub column_stats: BTreeMap<String, ColumnStats>,
}

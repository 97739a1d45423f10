//! Row-group hints: which row groups of each file a read task reads.
//!
//! The manifest keeps statistics per row group for every file with more than one
//! (terrace-format's segments, `row_groups` column). After the file-level steps, the
//! predicate is evaluated once over every row group of the files left, through the same
//! [`PruningPredicate`](datafusion::physical_optimizer::pruning::PruningPredicate) as the
//! files (a partition column's value is the file's). Each such file gets a
//! [`RowGroupHint`] naming the row groups that may hold matching rows, and a file whose
//! row groups are all ruled out is dropped. A worker turns the hint into the file's
//! Parquet access plan, so skipped row groups are never fetched, and still prunes the
//! others from the footer and page index before filtering rows exactly.
//!
//! A file with one row group, or listed by a segment written before row-group statistics
//! existed, has no hint and is read whole. As for files, a float column's bounds count
//! only for row groups whose NaN count is known to be 0.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::Schema;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use serde::{Deserialize, Serialize};
use terrace_format::{ColumnStats, DataFile, Layout, RowGroupSelection, nan_free};

use crate::error::Result;
use crate::prune::Pruner;

/// The row groups of one data file a task reads, chosen from the manifest's row-group
/// statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowGroupHint {
    /// Row groups in the file.
    pub of: usize,
    /// Row groups to read, ascending.
    pub read: Vec<usize>,
    /// Rows in those row groups.
    pub rows: u64,
    /// Bytes of the file less the row groups skipped.
    pub bytes: u64,
}

impl RowGroupHint {
    /// What the reader takes (`terrace_format::ScanRequest::row_groups`).
    pub fn selection(&self) -> RowGroupSelection {
        RowGroupSelection {
            of: self.of,
            read: self.read.clone(),
        }
    }
}

/// Hints for `files` under `pruner`, one per file: `None` for a file without row-group
/// statistics. A hint with no row group to read means the file cannot match.
pub(crate) fn row_group_hints(
    pruner: &Pruner,
    files: &[DataFile],
    schema: &Schema,
    layout: &Layout,
) -> Result<Vec<Option<RowGroupHint>>> {
    let containers: Vec<Container<'_>> = files
        .iter()
        .flat_map(|file| {
            file.row_groups.iter().map(|group| Container {
                partition_values: &file.partition_values,
                num_rows: group.num_rows,
                stats: &group.column_stats,
            })
        })
        .collect();
    let keep = if containers.is_empty() {
        Vec::new()
    } else {
        pruner.prune_stats(&ContainerStatistics::new(containers, schema, layout))?
    };
    // `keep` lists every file's row groups, file after file.
    let mut keep = keep.into_iter();
    let hints = files
        .iter()
        .map(|file| {
            if file.row_groups.is_empty() {
                return None;
            }
            let mut hint = RowGroupHint {
                of: file.row_groups.len(),
                read: Vec::new(),
                rows: 0,
                bytes: file.size_bytes,
            };
            for (g, group) in file.row_groups.iter().enumerate() {
                if keep.next().unwrap_or(true) {
                    hint.read.push(g);
                    hint.rows += group.num_rows;
                } else {
                    hint.bytes = hint.bytes.saturating_sub(group.size_bytes);
                }
            }
            Some(hint)
        })
        .collect();
    Ok(hints)
}

/// One container of [`ContainerStatistics`]: a data file or one row group of a file.
pub(crate) struct Container<'a> {
    /// The file's partition values, in `partition_on` order.
    pub(crate) partition_values: &'a [ScalarValue],
    /// Rows in the container.
    pub(crate) num_rows: u64,
    /// Statistics of data columns.
    pub(crate) stats: &'a BTreeMap<String, ColumnStats>,
}

impl<'a> Container<'a> {
    /// A whole file.
    pub(crate) fn file(file: &'a DataFile) -> Self {
        Container {
            partition_values: &file.partition_values,
            num_rows: file.num_rows,
            stats: &file.column_stats,
        }
    }
}

/// [`PruningStatistics`] over statistics already in memory: partition columns as
/// `min = max = value`, data columns from the containers' statistics (typed nulls where a
/// container has none).
pub(crate) struct ContainerStatistics<'a> {
    containers: Vec<Container<'a>>,
    schema: &'a Schema,
    layout: &'a Layout,
}

impl<'a> ContainerStatistics<'a> {
    pub(crate) fn new(
        containers: Vec<Container<'a>>,
        schema: &'a Schema,
        layout: &'a Layout,
    ) -> Self {
        Self {
            containers,
            schema,
            layout,
        }
    }

    fn partition_index(&self, column: &str) -> Option<usize> {
        self.layout.partition_on.iter().position(|c| c == column)
    }

    /// One value per container, typed as the column (`None` when that is impossible).
    fn values(
        &self,
        column: &str,
        pick: impl Fn(&Container<'_>) -> Option<ScalarValue>,
    ) -> Option<ArrayRef> {
        let data_type = self.schema.field_with_name(column).ok()?.data_type();
        let typed = |v: Option<ScalarValue>| match v {
            Some(v) if !v.is_null() && &v.data_type() != data_type => v.cast_to(data_type).ok(),
            Some(v) if !v.is_null() => Some(v),
            _ => ScalarValue::try_from(data_type).ok(),
        };
        let values: Vec<ScalarValue> = self
            .containers
            .iter()
            .map(|c| typed(pick(c)))
            .collect::<Option<_>>()?;
        if values.is_empty() {
            return None;
        }
        ScalarValue::iter_to_array(values).ok()
    }

    fn bound(&self, column: &Column, max: bool) -> Option<ArrayRef> {
        if let Some(i) = self.partition_index(&column.name) {
            return self.values(&column.name, |c| c.partition_values.get(i).cloned());
        }
        if !self
            .containers
            .iter()
            .any(|c| c.stats.contains_key(&column.name))
        {
            return None;
        }
        let data_type = self.schema.field_with_name(&column.name).ok()?.data_type();
        self.values(&column.name, |c| {
            c.stats
                .get(&column.name)
                // Parquet's float bounds leave NaN out: unknown unless NaN-free.
                .filter(|s| nan_free(data_type, Some(*s)))
                .map(|s| if max { s.max.clone() } else { s.min.clone() })
        })
    }
}

impl PruningStatistics for ContainerStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, false)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, true)
    }

    fn num_containers(&self) -> usize {
        self.containers.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let i = self.partition_index(&column.name);
        let counts: UInt64Array = self
            .containers
            .iter()
            .map(|c| match i {
                // A partition value is the value of every row of the file.
                Some(i) => c
                    .partition_values
                    .get(i)
                    .map(|v| if v.is_null() { c.num_rows } else { 0 }),
                None => c.stats.get(&column.name).and_then(|s| s.null_count),
            })
            .collect();
        Some(Arc::new(counts))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let rows: UInt64Array = self.containers.iter().map(|c| Some(c.num_rows)).collect();
        Some(Arc::new(rows))
    }

    fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Predicate;
    use arrow::datatypes::{DataType, Field};
    use terrace_format::RowGroupStats;

    fn stats(min: i64, max: i64, nulls: u64) -> BTreeMap<String, ColumnStats> {
        BTreeMap::from([(
            "k".to_string(),
            ColumnStats {
                min: ScalarValue::Int64(Some(min)),
                max: ScalarValue::Int64(Some(max)),
                null_count: Some(nulls),
                nan_count: None,
            },
        )])
    }

    fn file(path: &str, p: &str, groups: &[(i64, i64, u64)]) -> DataFile {
        DataFile {
            path: path.into(),
            partition_values: vec![ScalarValue::from(p)],
            bucket: None,
            num_rows: 30,
            size_bytes: 1000,
            column_stats: stats(
                groups.iter().map(|g| g.0).min().unwrap_or(0),
                groups.iter().map(|g| g.1).max().unwrap_or(0),
                groups.iter().map(|g| g.2).sum(),
            ),
            row_groups: groups
                .iter()
                .map(|&(min, max, nulls)| RowGroupStats {
                    num_rows: 10,
                    size_bytes: 300,
                    column_stats: stats(min, max, nulls),
                })
                .collect(),
            index_values: BTreeMap::new(),
        }
    }

    fn hints(sql: &str, files: &[DataFile]) -> Vec<Option<RowGroupHint>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("p", DataType::Utf8, true),
            Field::new("k", DataType::Int64, true),
        ]));
        let layout = Layout {
            partition_on: vec!["p".into()],
            ..Layout::default()
        };
        let predicate = Predicate::parse(sql, &schema).unwrap();
        let pruner = Pruner::new(&predicate, Arc::clone(&schema), &layout).unwrap();
        row_group_hints(&pruner, files, &schema, &layout).unwrap()
    }

    #[test]
    fn keeps_only_row_groups_whose_bounds_can_match() {
        let files = [
            file("p=a/0.parquet", "a", &[(0, 9, 0), (10, 19, 0), (20, 29, 2)]),
            file("p=b/0.parquet", "b", &[]),
            file("p=a/1.parquet", "a", &[(100, 200, 0), (300, 400, 0)]),
        ];
        let got = hints("k >= 12 AND k < 25", &files);
        assert_eq!(
            got[0],
            Some(RowGroupHint {
                of: 3,
                read: vec![1, 2],
                rows: 20,
                bytes: 700,
            })
        );
        assert_eq!(got[1], None, "no row-group statistics: read whole");
        assert_eq!(got[2].as_ref().unwrap().read, Vec::<usize>::new());
        // Partition values apply to every row group of their file.
        let got = hints("p = 'b' OR k = 350", &files);
        assert!(got[0].as_ref().unwrap().read.is_empty());
        assert_eq!(got[2].as_ref().unwrap().read, vec![1]);
        // Null counts: only the third group of the first file has nulls.
        let got = hints("k IS NULL", &files);
        assert_eq!(got[0].as_ref().unwrap().read, vec![2]);
        assert!(got[2].as_ref().unwrap().read.is_empty());
    }

    /// A float column's bounds count only for row groups known to hold no NaN: Parquet's
    /// bounds leave NaN out, and NaN is greater than 5 in Arrow's total order.
    #[test]
    fn float_bounds_count_only_without_nan() {
        let group = |nan_count: Option<u64>| RowGroupStats {
            num_rows: 10,
            size_bytes: 100,
            column_stats: BTreeMap::from([(
                "x".to_string(),
                ColumnStats {
                    min: ScalarValue::Float64(Some(0.0)),
                    max: ScalarValue::Float64(Some(1.0)),
                    null_count: Some(0),
                    nan_count,
                },
            )]),
        };
        let file = DataFile {
            path: "0.parquet".into(),
            partition_values: vec![],
            bucket: None,
            num_rows: 30,
            size_bytes: 300,
            column_stats: BTreeMap::new(),
            row_groups: vec![group(Some(0)), group(Some(3)), group(None)],
            index_values: BTreeMap::new(),
        };
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let layout = Layout::default();
        for sql in ["x > 5", "x < -1", "x = 'NaN'"] {
            let predicate = Predicate::parse(sql, &schema).unwrap();
            let pruner = Pruner::new(&predicate, Arc::clone(&schema), &layout).unwrap();
            let hints = row_group_hints(&pruner, std::slice::from_ref(&file), &schema, &layout);
            let read = hints.unwrap()[0].as_ref().unwrap().read.clone();
            assert_eq!(read, vec![1, 2], "{sql}");
        }
    }
}

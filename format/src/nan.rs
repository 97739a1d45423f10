//! NaN in floating-point columns, and what it does to statistics.
//!
//! Parquet writers (parquet-rs among them) leave NaN out when they record a column
//! chunk's or a page's min / max, so a chunk holding `[1.0, NaN]` says `min = max = 1.0`.
//! Rows, however, are compared in Arrow's total order, where NaN is greater than every
//! number (a NaN with the sign bit set, smaller than every number): `x > 5`, `x <> 1`
//! and `x = 'NaN'` all match that NaN row, and pruning on those bounds would drop it.
//!
//! So the writer counts the NaN of every floating-point column itself, per row group
//! ([`NanTracker`]), and the statistics keep a NaN count next to the null count
//! ([`ColumnStats::nan_count`]). Bounds of a float column are only used where its NaN
//! count is known to be 0:
//! - in the manifest, a file or row group holding NaN in a column gets unknown bounds
//!   for it (so even a reader that ignores the count cannot prune with them);
//! - the planner ignores a float column's bounds unless its NaN count is `Some(0)`;
//! - the reader does not hand DataFusion's Parquet pruning (row groups, pages) a
//!   predicate conjunct on a float column a file may hold NaN in, since the footer's
//!   bounds are NaN-free; rows are still filtered exactly with the whole predicate.
//!
//! Files written before NaN counts existed have none: their float bounds are ignored
//! (treated as possibly holding NaN), which is always right and costs float pruning on
//! those files until they are written again. Non-float columns hold no NaN, so their
//! statistics are used as before.

use std::collections::BTreeMap;
use std::io::Write;

use arrow::array::{Array, AsArray, PrimitiveArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float16Type, Float32Type, Float64Type, Schema,
};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::datafile::{ColumnStats, DataFile};

/// Whether values of `data_type` can be (or hold) a floating-point NaN.
pub fn may_hold_nan(data_type: &DataType) -> bool {
    use DataType::*;
    match data_type {
        Float16 | Float32 | Float64 => true,
        Dictionary(_, value) => may_hold_nan(value.as_ref()),
        List(f)
        | LargeList(f)
        | ListView(f)
        | LargeListView(f)
        | FixedSizeList(f, _)
        | Map(f, _) => may_hold_nan(f.data_type()),
        RunEndEncoded(_, f) => may_hold_nan(f.data_type()),
        Struct(fields) => fields.iter().any(|f| may_hold_nan(f.data_type())),
        Union(fields, _) => fields.iter().any(|(_, f)| may_hold_nan(f.data_type())),
        _ => false,
    }
}

/// Whether the statistics say a column of `data_type` holds no NaN: always for types
/// without NaN, else only with a NaN count of 0.
pub fn nan_free(data_type: &DataType, stats: Option<&ColumnStats>) -> bool {
    !may_hold_nan(data_type) || stats.is_some_and(|s| s.nan_count == Some(0))
}

/// Names of the columns of `schema` among `columns` that `file` may hold NaN in (see
/// [`nan_free`]); partition columns are exact values, never in question.
pub(crate) fn nan_columns<'a>(
    schema: &Schema,
    partition_on: &[String],
    file: &DataFile,
    columns: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut out: Vec<String> = columns
        .into_iter()
        .filter(|c| !partition_on.iter().any(|p| p.as_str() == *c))
        .filter(|c| {
            schema
                .field_with_name(c)
                .is_ok_and(|f| !nan_free(f.data_type(), file.column_stats.get(*c)))
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// NaN values (nulls aside) of a flat floating-point array; 0 for other types.
pub(crate) fn count_nans(array: &dyn Array) -> u64 {
    fn count<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, is_nan: fn(T::Native) -> bool) -> u64 {
        let n = if a.null_count() == 0 {
            a.values().iter().filter(|v| is_nan(**v)).count()
        } else {
            a.iter().flatten().filter(|v| is_nan(*v)).count()
        };
        n as u64
    }
    match array.data_type() {
        DataType::Float16 => count(array.as_primitive::<Float16Type>(), |v| v.is_nan()),
        DataType::Float32 => count(array.as_primitive::<Float32Type>(), f32::is_nan),
        DataType::Float64 => count(array.as_primitive::<Float64Type>(), f64::is_nan),
        _ => 0,
    }
}

/// NaN counts of one row group: flat float column name -> NaN; a float column missing
/// from the map has an unknown count.
pub(crate) type RowGroupNans = BTreeMap<String, u64>;

/// Counts the NaN of each flat floating-point column of the rows written through an
/// [`ArrowWriter`], per row group of the file.
///
/// The writer closes a row group when it reaches its row limit, in the middle of a
/// `write` if need be; [`NanTracker::write`] hands it batches cut at that limit, so every
/// batch lands in one row group and its counts go there. Should the writer still close a
/// row group somewhere the tracker cannot place (a byte limit, which terrace does not
/// set), the row groups concerned get unknown counts: never wrong, only less pruning.
pub(crate) struct NanTracker {
    /// File-schema index and name of each flat float column.
    columns: Vec<(usize, String)>,
    max_rows: Option<usize>,
    /// Counts of the row group being written, `None` once unknown.
    open: Option<Vec<u64>>,
    /// Counts of each row group closed so far.
    closed: Vec<Option<Vec<u64>>>,
}

impl NanTracker {
    /// A tracker for files of `file_schema` written with `props`.
    pub(crate) fn new(file_schema: &Schema, props: &WriterProperties) -> Self {
        let columns: Vec<(usize, String)> = file_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                matches!(
                    f.data_type(),
                    DataType::Float16 | DataType::Float32 | DataType::Float64
                )
            })
            .map(|(i, f)| (i, f.name().clone()))
            .collect();
        NanTracker {
            open: Some(vec![0; columns.len()]),
            columns,
            max_rows: props.max_row_group_row_count(),
            closed: Vec::new(),
        }
    }

    /// Write `batch` (of the file schema) through `writer`, counting its NaN.
    pub(crate) fn write<W: Write + Send>(
        &mut self,
        writer: &mut ArrowWriter<W>,
        batch: &RecordBatch,
    ) -> parquet::errors::Result<()> {
        if self.columns.is_empty() {
            return writer.write(batch);
        }
        let mut offset = 0;
        while offset < batch.num_rows() {
            let room = self
                .max_rows
                .map_or(usize::MAX, |m| m.saturating_sub(writer.in_progress_rows()))
                .max(1);
            let len = room.min(batch.num_rows() - offset);
            let slice = batch.slice(offset, len);
            let counts: Vec<u64> = self
                .columns
                .iter()
                .map(|(i, _)| count_nans(slice.column(*i).as_ref()))
                .collect();
            let before = writer.flushed_row_groups().len();
            writer.write(&slice)?;
            self.settle(writer, before, Some(counts), len);
            offset += len;
        }
        Ok(())
    }

    /// Close the row group being written (`ArrowWriter::flush`).
    pub(crate) fn flush<W: Write + Send>(
        &mut self,
        writer: &mut ArrowWriter<W>,
    ) -> parquet::errors::Result<()> {
        let before = writer.flushed_row_groups().len();
        writer.flush()?;
        let zeros = vec![0; self.columns.len()];
        self.settle(writer, before, Some(zeros), 0);
        Ok(())
    }

    /// Place the counts of `rows` rows just written, after `before` row groups had been
    /// closed.
    fn settle<W: Write + Send>(
        &mut self,
        writer: &ArrowWriter<W>,
        before: usize,
        counts: Option<Vec<u64>>,
        rows: usize,
    ) {
        let add = |a: Option<Vec<u64>>, b: Option<Vec<u64>>| {
            Some(a?.iter().zip(b?).map(|(x, y)| x + y).collect::<Vec<u64>>())
        };
        let zeros = Some(vec![0; self.columns.len()]);
        let closed_now = writer.flushed_row_groups().len().saturating_sub(before);
        let in_progress = writer.in_progress_rows();
        match closed_now {
            0 => self.open = add(self.open.take(), counts),
            // The rows completed the open row group.
            1 if in_progress == 0 => {
                let full = add(self.open.take(), counts);
                self.closed.push(full);
                self.open = zeros;
            }
            // The open row group was closed before the rows were written.
            1 if in_progress == rows => {
                let open = std::mem::replace(&mut self.open, counts);
                self.closed.push(open);
            }
            _ => {
                self.closed.extend((0..closed_now).map(|_| None));
                self.open = if in_progress == 0 { zeros } else { None };
            }
        }
    }

    /// NaN counts per row group of the finished file, which has `row_groups` row groups.
    pub(crate) fn finish(self, row_groups: usize) -> Vec<RowGroupNans> {
        if self.closed.len() != row_groups {
            // Lost track somewhere: every count unknown.
            return vec![RowGroupNans::new(); row_groups];
        }
        self.closed
            .into_iter()
            .map(|counts| match counts {
                Some(counts) => self
                    .columns
                    .iter()
                    .map(|(_, name)| name.clone())
                    .zip(counts)
                    .collect(),
                None => RowGroupNans::new(),
            })
            .collect()
    }
}

/// The NaN counts per row group of a file described by `file` (a piece being copied):
/// one entry per row group, from its row-group statistics, or from the file's when it
/// has a single row group.
pub(crate) fn row_group_nans(file: &DataFile, row_groups: usize) -> Vec<RowGroupNans> {
    let known = |stats: &BTreeMap<String, ColumnStats>| -> RowGroupNans {
        stats
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.nan_count?)))
            .collect()
    };
    if file.row_groups.len() == row_groups && row_groups > 1 {
        file.row_groups
            .iter()
            .map(|g| known(&g.column_stats))
            .collect()
    } else if row_groups == 1 {
        vec![known(&file.column_stats)]
    } else {
        vec![RowGroupNans::new(); row_groups]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::Field;
    use parquet::file::properties::WriterProperties;

    use super::*;

    fn batch(values: &[Option<f64>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..values.len() as i64)),
                Arc::new(Float64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn counts_nan_of_both_signs_and_not_nulls() {
        let b = batch(&[
            Some(f64::NAN),
            Some(-f64::NAN),
            None,
            Some(f64::INFINITY),
            Some(-0.0),
        ]);
        assert_eq!(count_nans(b.column(1).as_ref()), 2);
        assert_eq!(count_nans(b.column(0).as_ref()), 0);
    }

    #[test]
    fn counts_land_in_the_row_group_that_holds_the_rows() {
        let nan = Some(f64::NAN);
        let one = Some(1.0);
        let b = batch(&[one, nan, one, one, one, nan, nan, one, one, nan]);
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), b.schema(), Some(props.clone())).unwrap();
        let mut tracker = NanTracker::new(&b.schema(), &props);
        // Row groups: [1 NaN 1] [1 1 NaN] [NaN 1] | flush | [1 NaN]
        tracker.write(&mut writer, &b.slice(0, 8)).unwrap();
        tracker.flush(&mut writer).unwrap();
        tracker.write(&mut writer, &b.slice(8, 2)).unwrap();
        tracker.flush(&mut writer).unwrap();
        let metadata = writer.close().unwrap();
        let groups = metadata.row_groups().len();
        let counts: Vec<u64> = tracker.finish(groups).iter().map(|g| g["x"]).collect();
        assert_eq!(counts, vec![1, 1, 1, 1]);
    }

    #[test]
    fn nested_and_dictionary_types_may_hold_nan() {
        let f = Arc::new(Field::new("item", DataType::Float32, true));
        assert!(may_hold_nan(&DataType::List(f)));
        assert!(may_hold_nan(&DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(DataType::Float64)
        )));
        assert!(!may_hold_nan(&DataType::Utf8));
        assert!(!may_hold_nan(&DataType::Decimal128(10, 2)));
    }
}

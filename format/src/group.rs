//! Which (partition values, bucket) group each row of a batch belongs to.
//!
//! Both writers of data rows need it: [`DataFileWriter`](crate::DataFileWriter) keeps a
//! file per group, and the shuffle's [`RunWriter`](crate::RunWriter) sorts rows by group
//! into runs. They must agree exactly on what a group is, so the grouping lives here
//! once: the stored (non-partition) columns, the bucket of each row, and the canonical
//! bytes of its partition values, with rows put in group order by one counting sort.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{HashMap, ScalarValue};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::layout::{Layout, bucket_ids};
use crate::schema::column_list;

/// (canonical partition-value bytes, bucket): equal exactly when two rows share a group.
pub(crate) type GroupKey = (Box<[u8]>, Option<u32>);

/// How a dataset's rows are grouped, fixed for a writer's lifetime.
pub(crate) struct Grouping {
    pub(crate) num_buckets: Option<u32>,
    /// The columns stored in data files: the dataset schema without partition columns.
    pub(crate) file_schema: SchemaRef,
    /// Dataset-schema indices of the partition, bucket and stored (data) columns.
    pub(crate) partition_idx: Vec<usize>,
    pub(crate) bucket_idx: Vec<usize>,
    pub(crate) data_idx: Vec<usize>,
    /// Canonical bytes of partition values, so equal values group together.
    partition_rows: Option<RowConverter>,
}

/// One group's place among the rows of a batch put in group order ([`Grouping::sort`]).
pub(crate) struct GroupRows {
    pub(crate) key: GroupKey,
    pub(crate) partition_values: Vec<ScalarValue>,
    pub(crate) bucket: Option<u32>,
    /// The group's rows are `start..start + len` of the order.
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// A batch's stored columns with the order that puts its rows in groups.
pub(crate) struct Sorted {
    /// The stored columns, rows as they came.
    pub(crate) data: RecordBatch,
    /// Row indices of `data` in group order; `None` when the batch is one group.
    pub(crate) order: Option<UInt32Array>,
    /// The groups in order of first appearance in the batch.
    pub(crate) groups: Vec<GroupRows>,
}

/// The rows of one batch that belong to one (partition, bucket).
pub(crate) struct Group {
    pub(crate) key: GroupKey,
    pub(crate) partition_values: Vec<ScalarValue>,
    pub(crate) bucket: Option<u32>,
    /// The group's rows, in compact arrays of their own (or, when the whole batch is one
    /// group, the batch's).
    pub(crate) batch: RecordBatch,
}

impl Grouping {
    /// The grouping of a dataset with `schema` (partition columns included) and `layout`.
    ///
    /// Fails when the layout does not fit the schema.
    pub(crate) fn new(schema: &Schema, layout: &Layout) -> Result<Self> {
        layout.validate(schema)?;
        let index_of = |role: &'static str, name: &str| {
            schema.index_of(name).map_err(|_| Error::UnknownColumn {
                role,
                column: name.to_string(),
                available: column_list(schema),
            })
        };
        let partition_idx = layout
            .partition_on
            .iter()
            .map(|c| index_of("partition", c))
            .collect::<Result<Vec<_>>>()?;
        let bucket_idx = layout
            .bucket_by
            .iter()
            .map(|c| index_of("bucket", c))
            .collect::<Result<Vec<_>>>()?;
        let data_idx: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !partition_idx.contains(i))
            .collect();
        let file_schema = Arc::new(Schema::new_with_metadata(
            data_idx
                .iter()
                .map(|&i| schema.fields()[i].clone())
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ));
        let partition_rows = if partition_idx.is_empty() {
            None
        } else {
            let fields = partition_idx
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect();
            Some(
                RowConverter::new(fields)
                    .map_err(|e| Error::arrow("preparing partition grouping", e))?,
            )
        };
        Ok(Self {
            num_buckets: layout.num_buckets,
            file_schema,
            partition_idx,
            bucket_idx,
            data_idx,
            partition_rows,
        })
    }

    /// The stored columns of a batch of the dataset schema.
    pub(crate) fn data(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        RecordBatch::try_new(
            Arc::clone(&self.file_schema),
            self.data_idx
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect(),
        )
        .map_err(|e| Error::arrow("selecting stored columns", e))
    }

    /// Find each row's group and the order that puts the rows in groups (a counting sort:
    /// the rows of the g-th group to appear come g-th, in their batch order).
    pub(crate) fn sort(&self, batch: &RecordBatch) -> Result<Sorted> {
        let data = self.data(batch)?;
        let buckets = match self.num_buckets {
            Some(n) => {
                let columns: Vec<ArrayRef> = self
                    .bucket_idx
                    .iter()
                    .map(|&i| Arc::clone(batch.column(i)))
                    .collect();
                Some(bucket_ids(&columns, n)?)
            }
            None => None,
        };
        let partition_columns: Vec<ArrayRef> = self
            .partition_idx
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let rows = match &self.partition_rows {
            Some(converter) => Some(
                converter
                    .convert_columns(&partition_columns)
                    .map_err(|e| Error::arrow("encoding partition values", e))?,
            ),
            None => None,
        };

        // Group ids in order of first appearance, and each row's group.
        let num_rows = batch.num_rows();
        let mut first_row: Vec<usize> = Vec::new();
        let mut group_of: Vec<u32> = Vec::with_capacity(num_rows);
        {
            let mut ids: HashMap<(&[u8], Option<u32>), u32> = HashMap::default();
            for row in 0..num_rows {
                let bucket = buckets.as_ref().map(|b| b[row]);
                let bytes: &[u8] = rows.as_ref().map_or(&[], |r| r.row(row).data());
                // Group ids fit u32: there are at most as many groups as rows.
                let next = first_row.len() as u32;
                let id = *ids.entry((bytes, bucket)).or_insert(next);
                if id == next {
                    first_row.push(row);
                }
                group_of.push(id);
            }
        }
        let describe = |first: usize, start: usize, len: usize| -> Result<GroupRows> {
            let bucket = buckets.as_ref().map(|b| b[first]);
            let bytes: Box<[u8]> = rows
                .as_ref()
                .map_or_else(|| Box::from(&[][..]), |r| Box::from(r.row(first).data()));
            let partition_values = partition_columns
                .iter()
                .map(|c| {
                    ScalarValue::try_from_array(c, first)
                        .map_err(|e| Error::datafusion("reading partition values", e))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(GroupRows {
                key: (bytes, bucket),
                partition_values,
                bucket,
                start,
                len,
            })
        };
        if first_row.len() <= 1 {
            let groups = match first_row.first() {
                Some(&first) => vec![describe(first, 0, num_rows)?],
                None => Vec::new(),
            };
            return Ok(Sorted {
                data,
                order: None,
                groups,
            });
        }

        // Counting sort: the rows of group g end up at offsets[g]..offsets[g + 1].
        let mut offsets = vec![0u32; first_row.len() + 1];
        for &g in &group_of {
            offsets[g as usize + 1] += 1;
        }
        for g in 1..offsets.len() {
            offsets[g] += offsets[g - 1];
        }
        let mut cursor = offsets.clone();
        let mut order = vec![0u32; num_rows];
        for (row, &g) in group_of.iter().enumerate() {
            let at = &mut cursor[g as usize];
            // Row indices fit u32: Arrow batches are limited far below 4 billion rows.
            order[*at as usize] = row as u32;
            *at += 1;
        }
        let groups = first_row
            .iter()
            .enumerate()
            .map(|(g, &first)| {
                let start = offsets[g] as usize;
                describe(first, start, offsets[g + 1] as usize - start)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sorted {
            data,
            order: Some(UInt32Array::from(order)),
            groups,
        })
    }

    /// Split a batch into per-(partition, bucket) batches of the stored columns, each
    /// group's rows taken into compact arrays of their own (one `take` of its range of
    /// the [`sort`](Self::sort) order).
    pub(crate) fn split(&self, batch: &RecordBatch) -> Result<Vec<Group>> {
        let Sorted {
            data,
            order,
            groups,
        } = self.sort(batch)?;
        let Some(order) = order else {
            return Ok(groups
                .into_iter()
                .map(|g| Group {
                    key: g.key,
                    partition_values: g.partition_values,
                    bucket: g.bucket,
                    batch: data.clone(),
                })
                .collect());
        };
        groups
            .into_par_iter()
            .map(|g| {
                let batch = take_record_batch(&data, &order.slice(g.start, g.len))
                    .map_err(|e| Error::arrow("splitting rows by partition and bucket", e))?;
                Ok(Group {
                    key: g.key,
                    partition_values: g.partition_values,
                    bucket: g.bucket,
                    batch,
                })
            })
            .collect()
    }
}

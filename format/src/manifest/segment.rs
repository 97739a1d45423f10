//! Segments: Parquet files listing data files, one row per file.
//!
//! Columns: `path` (Utf8), `partition` (struct of the partition columns, typed as the
//! schema; absent when unpartitioned), `bucket` (UInt32, null when not bucketed),
//! `num_rows`, `size_bytes` (UInt64), and `min`, `max` (structs of the data columns whose
//! type has an order, typed as the schema) and `null_count` (struct of UInt64). Typed
//! struct columns let the planner hand min/max arrays straight to DataFusion's pruning
//! without opening a data file's footer. A segment written before a column was added
//! simply lacks that column's statistics, which readers treat as unknown.
//!
//! `nan_count` (struct of UInt64, one child per Float32 / Float64 column; present only
//! when some listed file has a known NaN count) counts NaN values, which Parquet's bounds
//! leave out: a float column's `min` / `max` hold only where its NaN count is 0 (see
//! `nan.rs`). Segments without it (written before NaN counts existed) read as "NaN
//! count unknown", and a reader that does not know the column ignores it; such a reader
//! still sees unknown bounds for a file holding NaN, since the writer records none. The
//! format version is unchanged, as for `row_groups` below.
//!
//! `row_groups` (present only when some listed file has more than one row group) is a
//! list per file of structs `{num_rows, size_bytes, min, max, null_count[, nan_count]}`, the same
//! statistics per row group, empty for a file with one row group. The planner turns them
//! into row-group hints for read tasks. The column is optional, so the format version is
//! unchanged: segments without it (all written before it existed) read as "no row-group
//! statistics", and a reader that does not know the column ignores it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ListArray, RecordBatch, StringArray, StructArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::SegmentSummary;
use crate::datafile::{ColumnStats, DataFile, RowGroupStats};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Whether per-file min/max statistics are kept for a column of this type.
pub fn is_stats_type(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Decimal128(_, _)
            | Decimal256(_, _)
            | Utf8
            | LargeUtf8
            | Utf8View
            | Binary
            | LargeBinary
            | BinaryView
            | FixedSizeBinary(_)
            | Date32
            | Date64
            | Timestamp(_, _)
            | Time32(_)
            | Time64(_)
    )
}

fn stats_fields(schema: &Schema, layout: &Layout) -> Vec<Arc<Field>> {
    schema
        .fields()
        .iter()
        .filter(|f| !layout.partition_on.contains(f.name()) && is_stats_type(f.data_type()))
        .map(|f| Arc::new(Field::new(f.name(), f.data_type().clone(), true)))
        .collect()
}

fn partition_fields(schema: &Schema, layout: &Layout) -> Result<Vec<Arc<Field>>> {
    layout
        .partition_on
        .iter()
        .map(|c| {
            let f = schema
                .field_with_name(c)
                .map_err(|_| Error::UnknownColumn {
                    role: "partition",
                    column: c.clone(),
                    available: crate::schema::column_list(schema),
                })?;
            Ok(Arc::new(Field::new(c, f.data_type().clone(), true)))
        })
        .collect()
}

/// A value typed as `data_type` (typed null for unknown/null bounds).
fn typed(value: &ScalarValue, data_type: &DataType) -> Result<ScalarValue> {
    if value.is_null() {
        return ScalarValue::try_from(data_type)
            .map_err(|e| Error::datafusion(format!("making a null of type {data_type}"), e));
    }
    if &value.data_type() == data_type {
        return Ok(value.clone());
    }
    value
        .cast_to(data_type)
        .map_err(|e| Error::datafusion(format!("casting statistic {value} to {data_type}"), e))
}

fn to_array(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(arrow::array::new_empty_array(data_type));
    }
    ScalarValue::iter_to_array(values)
        .map_err(|e| Error::datafusion("building a segment column", e))
}

/// Encode the file list of a segment as Parquet bytes.
pub(crate) fn encode_segment(
    files: &[DataFile],
    schema: &Schema,
    layout: &Layout,
) -> Result<Bytes> {
    write_parquet(segment_batch(files, schema, layout)?)
}

/// Prefix of the report columns holding each file's distinct values of an indexed column.
const REPORT_INDEX_PREFIX: &str = "index:";

/// Encode files that a task wrote but did not commit, for the task that will commit them
/// (possibly on another machine): the segment columns, plus one `index:<column>` list
/// column per indexed column holding each file's distinct values, which a segment does
/// not keep (the commit turns them into index files).
pub fn encode_file_report(files: &[DataFile], schema: &Schema, layout: &Layout) -> Result<Bytes> {
    let batch = segment_batch(files, schema, layout)?;
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    let indexed: std::collections::BTreeSet<&String> =
        files.iter().flat_map(|f| f.index_values.keys()).collect();
    for column in indexed {
        let value_type = schema
            .field_with_name(column)
            .map_err(|e| Error::arrow(format!("reporting index values of {column:?}"), e))?
            .data_type()
            .clone();
        let empty = arrow::array::new_empty_array(&value_type);
        let per_file: Vec<&dyn Array> = files
            .iter()
            .map(|f| {
                f.index_values
                    .get(column)
                    .map_or(empty.as_ref(), |a| a.as_ref())
            })
            .collect();
        let values = arrow::compute::concat(&per_file)
            .map_err(|e| Error::arrow(format!("reporting index values of {column:?}"), e))?;
        let item = Arc::new(Field::new("item", value_type, true));
        let list = arrow::array::ListArray::try_new(
            item.clone(),
            arrow::buffer::OffsetBuffer::from_lengths(per_file.iter().map(|a| a.len())),
            values,
            None,
        )
        .map_err(|e| Error::arrow(format!("reporting index values of {column:?}"), e))?;
        fields.push(Arc::new(Field::new(
            format!("{REPORT_INDEX_PREFIX}{column}"),
            DataType::List(item),
            false,
        )));
        columns.push(Arc::new(list));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow("building a file report", e))?;
    write_parquet(batch)
}

/// Decode what [`encode_file_report`] wrote; `path` is for messages.
pub fn decode_file_report(
    bytes: Bytes,
    schema: SchemaRef,
    layout: &Layout,
    path: &str,
) -> Result<Vec<DataFile>> {
    let list = decode_segment(bytes, schema, layout, path)?;
    let mut files = list.data_files()?;
    let batch = list.record_batch();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let Some(name) = field.name().strip_prefix(REPORT_INDEX_PREFIX) else {
            continue;
        };
        let lists = column
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .ok_or_else(|| Error::CorruptManifest {
                path: path.to_string(),
                reason: format!("column {} is not a list", field.name()),
            })?;
        for (i, file) in files.iter_mut().enumerate() {
            file.index_values.insert(name.to_string(), lists.value(i));
        }
    }
    Ok(files)
}

/// The segment columns of `files` as one batch.
fn segment_batch(files: &[DataFile], schema: &Schema, layout: &Layout) -> Result<RecordBatch> {
    let mut fields = vec![Field::new("path", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
        files.iter().map(|f| f.path.as_str()),
    ))];

    let pfields = partition_fields(schema, layout)?;
    if !pfields.is_empty() {
        let children = pfields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let values = files
                    .iter()
                    .map(|f| match f.partition_values.get(i) {
                        Some(v) => typed(v, field.data_type()),
                        None => Err(Error::InvalidPartitionPath {
                            path: f.path.clone(),
                            reason: format!("no value for partition column {:?}", field.name()),
                        }),
                    })
                    .collect::<Result<Vec<_>>>()?;
                to_array(values, field.data_type())
            })
            .collect::<Result<Vec<_>>>()?;
        let struct_fields = Fields::from(pfields);
        fields.push(Field::new(
            "partition",
            DataType::Struct(struct_fields.clone()),
            false,
        ));
        columns.push(Arc::new(StructArray::new(struct_fields, children, None)));
    }

    fields.push(Field::new("bucket", DataType::UInt32, true));
    columns.push(Arc::new(UInt32Array::from_iter(
        files.iter().map(|f| f.bucket),
    )));
    fields.push(Field::new("num_rows", DataType::UInt64, false));
    columns.push(Arc::new(UInt64Array::from_iter_values(
        files.iter().map(|f| f.num_rows),
    )));
    fields.push(Field::new("size_bytes", DataType::UInt64, false));
    columns.push(Arc::new(UInt64Array::from_iter_values(
        files.iter().map(|f| f.size_bytes),
    )));

    let sfields = stats_fields(schema, layout);
    let file_stats: Vec<&BTreeMap<String, ColumnStats>> =
        files.iter().map(|f| &f.column_stats).collect();
    for (field, column) in stats_columns(&file_stats, &sfields)? {
        fields.push(field);
        columns.push(column);
    }

    if files.iter().any(|f| !f.row_groups.is_empty()) {
        let groups: Vec<&RowGroupStats> = files.iter().flat_map(|f| &f.row_groups).collect();
        let mut group_fields = vec![
            Arc::new(Field::new("num_rows", DataType::UInt64, false)),
            Arc::new(Field::new("size_bytes", DataType::UInt64, false)),
        ];
        let mut group_columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                groups.iter().map(|g| g.num_rows),
            )),
            Arc::new(UInt64Array::from_iter_values(
                groups.iter().map(|g| g.size_bytes),
            )),
        ];
        let group_stats: Vec<&BTreeMap<String, ColumnStats>> =
            groups.iter().map(|g| &g.column_stats).collect();
        for (field, column) in stats_columns(&group_stats, &sfields)? {
            group_fields.push(Arc::new(field));
            group_columns.push(column);
        }
        let values = StructArray::try_new(Fields::from(group_fields), group_columns, None)
            .map_err(|e| Error::arrow("building row-group statistics", e))?;
        let item = Arc::new(Field::new("item", values.data_type().clone(), false));
        let list = ListArray::try_new(
            item,
            OffsetBuffer::from_lengths(files.iter().map(|f| f.row_groups.len())),
            Arc::new(values),
            None,
        )
        .map_err(|e| Error::arrow("building row-group statistics", e))?;
        fields.push(Field::new(ROW_GROUPS, list.data_type().clone(), false));
        columns.push(Arc::new(list));
    }

    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow("building a segment", e))
}

/// Name of the optional per-file list of row-group statistics.
const ROW_GROUPS: &str = "row_groups";

/// The `min`, `max` and `null_count` struct columns (fields and arrays) for one container
/// per entry of `stats`, over the data columns `sfields`; none when there are no such
/// columns.
fn stats_columns(
    stats: &[&BTreeMap<String, ColumnStats>],
    sfields: &[Arc<Field>],
) -> Result<Vec<(Field, ArrayRef)>> {
    if sfields.is_empty() {
        return Ok(Vec::new());
    }
    let bound = |pick: fn(&ColumnStats) -> &ScalarValue| -> Result<ArrayRef> {
        let children = sfields
            .iter()
            .map(|field| {
                let values = stats
                    .iter()
                    .map(|s| match s.get(field.name()) {
                        Some(s) => typed(pick(s), field.data_type()),
                        None => typed(&ScalarValue::Null, field.data_type()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                to_array(values, field.data_type())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(StructArray::new(
            Fields::from(sfields.to_vec()),
            children,
            None,
        )))
    };
    let struct_type = DataType::Struct(Fields::from(sfields.to_vec()));
    let count_fields: Vec<Arc<Field>> = sfields
        .iter()
        .map(|f| Arc::new(Field::new(f.name(), DataType::UInt64, true)))
        .collect();
    let counts = count_fields
        .iter()
        .map(|field| {
            Arc::new(UInt64Array::from_iter(
                stats
                    .iter()
                    .map(|s| s.get(field.name()).and_then(|s| s.null_count)),
            )) as ArrayRef
        })
        .collect();
    let mut columns = vec![
        (
            Field::new("min", struct_type.clone(), false),
            bound(|s| &s.min)?,
        ),
        (Field::new("max", struct_type, false), bound(|s| &s.max)?),
        (
            Field::new(
                "null_count",
                DataType::Struct(Fields::from(count_fields.clone())),
                false,
            ),
            Arc::new(StructArray::new(Fields::from(count_fields), counts, None)),
        ),
    ];
    // NaN counts of float columns, only when some container has one: lists of files
    // written before they existed stay as they were.
    let nan_fields: Vec<Arc<Field>> = sfields
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Float32 | DataType::Float64))
        .filter(|f| {
            stats
                .iter()
                .any(|s| s.get(f.name()).is_some_and(|s| s.nan_count.is_some()))
        })
        .map(|f| Arc::new(Field::new(f.name(), DataType::UInt64, true)))
        .collect();
    if !nan_fields.is_empty() {
        let nans = nan_fields
            .iter()
            .map(|field| {
                Arc::new(UInt64Array::from_iter(
                    stats
                        .iter()
                        .map(|s| s.get(field.name()).and_then(|s| s.nan_count)),
                )) as ArrayRef
            })
            .collect();
        columns.push((
            Field::new(
                NAN_COUNT,
                DataType::Struct(Fields::from(nan_fields.clone())),
                false,
            ),
            Arc::new(StructArray::new(Fields::from(nan_fields), nans, None)),
        ));
    }
    Ok(columns)
}

/// Name of the optional struct of NaN counts of float columns.
const NAN_COUNT: &str = "nan_count";

/// A batch as zstd Parquet bytes.
pub(super) fn write_parquet(batch: RecordBatch) -> Result<Bytes> {
    let segment_schema = batch.schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, segment_schema, Some(props))
        .map_err(|e| Error::parquet("segment", e))?;
    writer
        .write(&batch)
        .map_err(|e| Error::parquet("segment", e))?;
    writer.close().map_err(|e| Error::parquet("segment", e))?;
    Ok(Bytes::from(out))
}

/// Decode a segment; `path` is for messages.
pub(crate) fn decode_segment(
    bytes: Bytes,
    schema: SchemaRef,
    layout: &Layout,
    path: &str,
) -> Result<FileList> {
    let corrupt = |reason: String| Error::CorruptManifest {
        path: path.to_string(),
        reason,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| corrupt(format!("not a readable Parquet segment: {e}")))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| corrupt(format!("not a readable Parquet segment: {e}")))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(format!("cannot read rows: {e}")))?;
    let Some(first) = batches.first() else {
        return Err(corrupt("the segment has no rows".to_string()));
    };
    let batch = arrow::compute::concat_batches(&first.schema(), &batches)
        .map_err(|e| corrupt(format!("cannot read rows: {e}")))?;
    FileList::new(batch, schema, layout.clone(), path)
}

/// The files one segment lists, with typed columns for pruning.
#[derive(Debug, Clone)]
pub struct FileList {
    batch: RecordBatch,
    schema: SchemaRef,
    layout: Layout,
}

impl FileList {
    fn new(batch: RecordBatch, schema: SchemaRef, layout: Layout, path: &str) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptManifest {
            path: path.to_string(),
            reason,
        };
        let need = |name: &str, data_type: &DataType| match batch.column_by_name(name) {
            Some(c) if c.data_type() == data_type => Ok(()),
            Some(c) => Err(corrupt(format!(
                "column {name} has type {}, expected {data_type}",
                c.data_type()
            ))),
            None => Err(corrupt(format!("column {name} is missing"))),
        };
        need("path", &DataType::Utf8)?;
        need("bucket", &DataType::UInt32)?;
        need("num_rows", &DataType::UInt64)?;
        need("size_bytes", &DataType::UInt64)?;
        if !layout.partition_on.is_empty() {
            let pfields = Fields::from(partition_fields(&schema, &layout)?);
            need("partition", &DataType::Struct(pfields))?;
        }
        if batch
            .column_by_name("path")
            .is_some_and(|c| c.null_count() > 0)
        {
            return Err(corrupt("a file path is null".to_string()));
        }
        if let Some(column) = batch.column_by_name(ROW_GROUPS) {
            let groups = column
                .as_any()
                .downcast_ref::<ListArray>()
                .and_then(|l| l.values().as_any().downcast_ref::<StructArray>())
                .ok_or_else(|| {
                    corrupt(format!(
                        "column {ROW_GROUPS} has type {}, expected a list of structs",
                        column.data_type()
                    ))
                })?;
            for name in ["num_rows", "size_bytes"] {
                match groups.column_by_name(name) {
                    Some(c) if c.data_type() == &DataType::UInt64 && c.null_count() == 0 => {}
                    _ => {
                        return Err(corrupt(format!(
                            "{ROW_GROUPS} lacks a non-null UInt64 {name}"
                        )));
                    }
                }
            }
        }
        Ok(FileList {
            batch,
            schema,
            layout,
        })
    }

    /// Number of files listed.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether no file is listed.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// The segment as a record batch (columns as described in the module docs).
    pub fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    fn column<T: 'static>(&self, name: &str) -> &T {
        // FileList::new checked presence and type of these columns.
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .unwrap_or_else(|| unreachable!("column {name} checked in FileList::new"))
    }

    /// File paths relative to the dataset root.
    pub fn paths(&self) -> &StringArray {
        self.column("path")
    }

    /// Buckets (null when the dataset is not bucketed).
    pub fn buckets(&self) -> &UInt32Array {
        self.column("bucket")
    }

    /// Rows per file.
    pub fn num_rows(&self) -> &UInt64Array {
        self.column("num_rows")
    }

    /// Bytes per file.
    pub fn size_bytes(&self) -> &UInt64Array {
        self.column("size_bytes")
    }

    fn struct_child(&self, struct_name: &str, column: &str) -> Option<ArrayRef> {
        self.batch
            .column_by_name(struct_name)?
            .as_any()
            .downcast_ref::<StructArray>()?
            .column_by_name(column)
            .cloned()
    }

    /// Values of one partition column, typed as the schema.
    pub fn partition_values(&self, column: &str) -> Option<ArrayRef> {
        self.struct_child("partition", column)
    }

    /// Per-file lower bounds of a data column (nulls where unknown).
    pub fn min_values(&self, column: &str) -> Option<ArrayRef> {
        self.struct_child("min", column)
    }

    /// Per-file upper bounds of a data column (nulls where unknown).
    pub fn max_values(&self, column: &str) -> Option<ArrayRef> {
        self.struct_child("max", column)
    }

    /// Per-file null counts of a data column (UInt64; nulls where unknown).
    pub fn null_counts(&self, column: &str) -> Option<ArrayRef> {
        self.struct_child("null_count", column)
    }

    /// Per-file NaN counts of a float data column (UInt64; nulls where unknown, `None`
    /// when the segment has none for the column). A float column's bounds hold only
    /// where its NaN count is 0.
    pub fn nan_counts(&self, column: &str) -> Option<ArrayRef> {
        self.struct_child(NAN_COUNT, column)
    }

    /// The `i`-th file as a [`DataFile`].
    pub fn data_file(&self, i: usize) -> Result<DataFile> {
        let scalar = |array: &ArrayRef| {
            ScalarValue::try_from_array(array, i)
                .map_err(|e| Error::datafusion("reading a segment value", e))
        };
        let mut partition_values = Vec::with_capacity(self.layout.partition_on.len());
        for column in &self.layout.partition_on {
            let array = self
                .partition_values(column)
                .ok_or_else(|| Error::CorruptManifest {
                    path: self.paths().value(i).to_string(),
                    reason: format!("no value for partition column {column:?}"),
                })?;
            partition_values.push(scalar(&array)?);
        }
        let struct_column = |name: &str| {
            self.batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StructArray>())
        };
        let column_stats = stats_at(
            &self.schema,
            [
                struct_column("min"),
                struct_column("max"),
                struct_column("null_count"),
                struct_column(NAN_COUNT),
            ],
            i,
        )?;
        let mut row_groups = Vec::new();
        if let Some(list) = self
            .batch
            .column_by_name(ROW_GROUPS)
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        {
            // FileList::new checked the list's shape and its two count columns.
            let groups = list.values().as_any().downcast_ref::<StructArray>();
            let counts = |name: &str| {
                groups
                    .and_then(|g| g.column_by_name(name))
                    .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            };
            let (Some(num_rows), Some(size_bytes)) = (counts("num_rows"), counts("size_bytes"))
            else {
                unreachable!("{ROW_GROUPS} checked in FileList::new")
            };
            let child = |name: &str| {
                groups
                    .and_then(|g| g.column_by_name(name))
                    .and_then(|c| c.as_any().downcast_ref::<StructArray>())
            };
            let offsets = list.value_offsets();
            for j in offsets[i] as usize..offsets[i + 1] as usize {
                row_groups.push(RowGroupStats {
                    num_rows: num_rows.value(j),
                    size_bytes: size_bytes.value(j),
                    column_stats: stats_at(
                        &self.schema,
                        [
                            child("min"),
                            child("max"),
                            child("null_count"),
                            child(NAN_COUNT),
                        ],
                        j,
                    )?,
                });
            }
        }
        let buckets = self.buckets();
        Ok(DataFile {
            path: self.paths().value(i).to_string(),
            partition_values,
            bucket: buckets.is_valid(i).then(|| buckets.value(i)),
            num_rows: self.num_rows().value(i),
            size_bytes: self.size_bytes().value(i),
            column_stats,
            row_groups,
            index_values: BTreeMap::new(),
        })
    }

    /// Every listed file as a [`DataFile`].
    pub fn data_files(&self) -> Result<Vec<DataFile>> {
        (0..self.len()).map(|i| self.data_file(i)).collect()
    }
}

/// The statistics of container `i` from `[min, max, null_count, nan_count]` structs
/// (each absent when no column has statistics, `nan_count` also when no column has a
/// known NaN count), for every column of `schema` with bounds.
fn stats_at(
    schema: &Schema,
    [min, max, null_count, nan_count]: [Option<&StructArray>; 4],
    i: usize,
) -> Result<BTreeMap<String, ColumnStats>> {
    let scalar = |array: &ArrayRef| {
        ScalarValue::try_from_array(array, i)
            .map_err(|e| Error::datafusion("reading a segment value", e))
    };
    let mut column_stats = BTreeMap::new();
    for field in schema.fields() {
        let (Some(min), Some(max)) = (
            min.and_then(|s| s.column_by_name(field.name())),
            max.and_then(|s| s.column_by_name(field.name())),
        ) else {
            continue;
        };
        let count = |counts: Option<&StructArray>| {
            counts
                .and_then(|s| s.column_by_name(field.name()))
                .and_then(|a| {
                    let a = a.as_any().downcast_ref::<UInt64Array>()?;
                    a.is_valid(i).then(|| a.value(i))
                })
        };
        column_stats.insert(
            field.name().clone(),
            ColumnStats {
                min: scalar(min)?,
                max: scalar(max)?,
                null_count: count(null_count),
                nan_count: count(nan_count),
            },
        );
    }
    Ok(column_stats)
}

/// The version-file summary of a segment listing `files` (path left empty).
pub(crate) fn summarize(
    files: &[DataFile],
    schema: &Schema,
    layout: &Layout,
) -> Result<SegmentSummary> {
    let pfields = partition_fields(schema, layout)?;
    let mut partition_min = Vec::with_capacity(pfields.len());
    let mut partition_max = Vec::with_capacity(pfields.len());
    let mut partition_null_count = Vec::with_capacity(pfields.len());
    for (i, field) in pfields.iter().enumerate() {
        let mut min: Option<&ScalarValue> = None;
        let mut max: Option<&ScalarValue> = None;
        let mut nulls = 0;
        for file in files {
            match file.partition_values.get(i) {
                Some(v) if !v.is_null() => {
                    if min.is_none_or(|m| v.partial_cmp(m) == Some(std::cmp::Ordering::Less)) {
                        min = Some(v);
                    }
                    if max.is_none_or(|m| v.partial_cmp(m) == Some(std::cmp::Ordering::Greater)) {
                        max = Some(v);
                    }
                }
                _ => nulls += 1,
            }
        }
        partition_min.push(typed(min.unwrap_or(&ScalarValue::Null), field.data_type())?);
        partition_max.push(typed(max.unwrap_or(&ScalarValue::Null), field.data_type())?);
        partition_null_count.push(nulls);
    }
    Ok(SegmentSummary {
        path: String::new(),
        num_files: files.len() as u64,
        num_rows: files.iter().map(|f| f.num_rows).sum(),
        size_bytes: files.iter().map(|f| f.size_bytes).sum(),
        partition_min,
        partition_max,
        partition_null_count,
        bucket_min: files.iter().filter_map(|f| f.bucket).min(),
        bucket_max: files.iter().filter_map(|f| f.bucket).max(),
    })
}

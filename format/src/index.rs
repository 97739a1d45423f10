//! Secondary indices: for an indexed column, which data files hold which values.
//!
//! Each commit that adds files writes, per indexed column, one Parquet index file
//! `_terrace/indices/<column>/<uuid>.parquet` with columns `value` (typed as the column)
//! and `path` (the data file, relative to the root), one row per (distinct value, file),
//! sorted by value. Index files are immutable and shared between versions like segments;
//! entries naming files that a later commit removed are ignored by readers (the planner
//! intersects with the version's files), so removing files never rewrites an index.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::datafile::DataFile;
use crate::dataset::get_bytes;
use crate::error::{Error, Result};
use crate::layout::encode_path_segment;
use crate::location::Location;
use crate::manifest::{IndexFile, Snapshot};

/// Read an index file; checks its columns.
pub(crate) async fn read_index(
    location: &Location,
    snapshot: &Snapshot,
    index: &IndexFile,
) -> Result<RecordBatch> {
    let path = location.child(&index.path);
    let bytes = get_bytes(location, &path).await?;
    let corrupt = |reason: String| Error::CorruptManifest {
        path: path.to_string(),
        reason,
    };
    let expected = snapshot
        .schema()
        .field_with_name(&index.column)
        .map(|f| f.data_type().clone())
        .map_err(|_| {
            corrupt(format!(
                "indexes column {:?}, not in the schema",
                index.column
            ))
        })?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| corrupt(format!("not a readable index file: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(format!("cannot read rows: {e}")))?;
    let schema = index_schema(&expected);
    let batch = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| corrupt(format!("unexpected columns: {e}")))?;
    Ok(batch)
}

fn index_schema(value_type: &DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("value", value_type.clone(), true),
        Field::new("path", DataType::Utf8, false),
    ]))
}

/// Write one index file per indexed column for the added files.
pub(crate) async fn write_indices(
    location: &Location,
    files: &[DataFile],
    base: &Snapshot,
    schema: &SchemaRef,
) -> Result<Vec<IndexFile>> {
    let mut out = Vec::new();
    if files.is_empty() {
        return Ok(out);
    }
    for column in base.indexed_columns() {
        let value_type = schema
            .field_with_name(column)
            .map(|f| f.data_type().clone())
            .map_err(|e| Error::arrow(format!("indexing column {column:?}"), e))?;
        let mut values: Vec<ArrayRef> = Vec::new();
        let mut paths: Vec<&str> = Vec::new();
        for file in files {
            let Some(distinct) = file.index_values.get(column) else {
                return Err(Error::InvalidLayout {
                    reason: format!(
                        "file {} was written without values for the indexed column {column:?}",
                        file.path
                    ),
                });
            };
            paths.extend(std::iter::repeat_n(file.path.as_str(), distinct.len()));
            values.push(distinct.clone());
        }
        let schema = index_schema(&value_type);
        let value_refs: Vec<&dyn arrow::array::Array> = values.iter().map(|a| a.as_ref()).collect();
        let value = arrow::compute::concat(&value_refs)
            .map_err(|e| Error::arrow(format!("indexing column {column:?}"), e))?;
        let path_array: ArrayRef = Arc::new(StringArray::from(paths));
        let unsorted = RecordBatch::try_new(schema.clone(), vec![value, path_array])
            .map_err(|e| Error::arrow(format!("indexing column {column:?}"), e))?;
        let bytes = tokio::task::spawn_blocking(move || encode_sorted(unsorted))
            .await
            .map_err(|e| Error::Task {
                context: "encoding an index file".to_string(),
                reason: e.to_string(),
            })??;
        let entries = bytes.1;
        let relative = format!(
            "_terrace/indices/{}/{}.parquet",
            encode_path_segment(column),
            uuid::Uuid::new_v4()
        );
        let path = location.child(&relative);
        location
            .store
            .put(&path, PutPayload::from(bytes.0))
            .await
            .map_err(|e| Error::store(&path, e))?;
        out.push(IndexFile {
            column: column.clone(),
            path: relative,
            num_entries: entries,
        });
    }
    Ok(out)
}

fn encode_sorted(batch: RecordBatch) -> Result<(Bytes, u64)> {
    let indices = arrow::compute::sort_to_indices(batch.column(0), None, None)
        .map_err(|e| Error::arrow("sorting an index", e))?;
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("sorting an index", e))?;
    let sorted = RecordBatch::try_new(batch.schema(), columns)
        .map_err(|e| Error::arrow("sorting an index", e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, sorted.schema(), Some(props))
        .map_err(|e| Error::parquet("index", e))?;
    writer
        .write(&sorted)
        .map_err(|e| Error::parquet("index", e))?;
    writer.close().map_err(|e| Error::parquet("index", e))?;
    Ok((Bytes::from(out), sorted.num_rows() as u64))
}

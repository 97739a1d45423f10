//! Secondary indices: for an indexed column, which data files hold which values.
//!
//! Each commit that adds files writes, per indexed column, one Parquet index file
//! `_terrace/indices/<column>/<uuid>.parquet` with columns `value` (typed as the column)
//! and `path` (the data file, relative to the root), one row per (distinct value, file),
//! sorted by value. Index files are immutable and shared between versions like segments;
//! entries naming files that a later commit removed are ignored by readers (the planner
//! intersects with the version's files), so removing files never rewrites an index.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::location::Location;
use crate::manifest::{IndexFile, Snapshot};
use crate::names::new_index_path;
use crate::version_log::get_bytes;

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

/// Rows per batch handed to the Parquet writer when encoding an index file.
///
/// The `path` column is built batch by batch from the sorted entries' file numbers, so an
/// index of millions of entries never holds one path string per entry (materialising and
/// sorting them made a commit several times slower and hundreds of MiB bigger).
const INDEX_BATCH_ROWS: usize = 64 * 1024;

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
    let paths: Arc<Vec<String>> = Arc::new(files.iter().map(|f| f.path.clone()).collect());
    for column in base.indexed_columns() {
        let value_type = schema
            .field_with_name(column)
            .map(|f| f.data_type().clone())
            .map_err(|e| Error::arrow(format!("indexing column {column:?}"), e))?;
        let mut values: Vec<&dyn Array> = Vec::with_capacity(files.len());
        let mut file_numbers: Vec<u32> = Vec::new();
        for (number, file) in files.iter().enumerate() {
            let Some(distinct) = file.index_values.get(column) else {
                return Err(Error::InvalidLayout {
                    reason: format!(
                        "file {} was written without values for the indexed column {column:?}",
                        file.path
                    ),
                });
            };
            file_numbers.extend(std::iter::repeat_n(number as u32, distinct.len()));
            values.push(distinct.as_ref());
        }
        let value = arrow::compute::concat(&values)
            .map_err(|e| Error::arrow(format!("indexing column {column:?}"), e))?;
        let paths = paths.clone();
        let (bytes, entries) = tokio::task::spawn_blocking(move || {
            encode_sorted(&value_type, value, &file_numbers, &paths, INDEX_BATCH_ROWS)
        })
        .await
        .map_err(|e| Error::Task {
            context: "encoding an index file".to_string(),
            reason: e.to_string(),
        })??;
        let relative = new_index_path(column);
        let path = location.child(&relative);
        location
            .store
            .put(&path, PutPayload::from(bytes))
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

/// Encode the entries (`value[i]`, of type `value_type`, is in the file
/// `paths[file_numbers[i]]`) as an index file sorted by value, `batch_rows` rows per batch
/// given to the Parquet writer; returns the file and its number of entries.
fn encode_sorted(
    value_type: &DataType,
    value: ArrayRef,
    file_numbers: &[u32],
    paths: &[String],
    batch_rows: usize,
) -> Result<(Bytes, u64)> {
    let order = arrow::compute::sort_to_indices(&value, None, None)
        .map_err(|e| Error::arrow("sorting an index", e))?;
    let value = arrow::compute::take(&value, &order, None)
        .map_err(|e| Error::arrow("sorting an index", e))?;
    let schema = index_schema(value_type);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))
        .map_err(|e| Error::parquet("index", e))?;
    let batch_rows = batch_rows.max(1);
    for (n, chunk) in order.values().chunks(batch_rows).enumerate() {
        let start = n * batch_rows;
        let chunk_paths = chunk
            .iter()
            .map(|&i| paths[file_numbers[i as usize] as usize].as_str());
        let bytes = chunk_paths.clone().map(str::len).sum();
        let mut path = StringBuilder::with_capacity(chunk.len(), bytes);
        chunk_paths.for_each(|p| path.append_value(p));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![value.slice(start, chunk.len()), Arc::new(path.finish())],
        )
        .map_err(|e| Error::arrow("building an index batch", e))?;
        writer
            .write(&batch)
            .map_err(|e| Error::parquet("index", e))?;
    }
    writer.close().map_err(|e| Error::parquet("index", e))?;
    Ok((Bytes::from(out), value.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use proptest::prelude::*;

    /// The (value, path) rows of an index file, in file order.
    fn entries_of(bytes: Bytes) -> Vec<(Option<i64>, String)> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let mut entries = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let value = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let path = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            entries.extend((0..batch.num_rows()).map(|i| {
                (
                    value.is_valid(i).then(|| value.value(i)),
                    path.value(i).to_string(),
                )
            }));
        }
        entries
    }

    proptest! {
        /// Whatever the batch size, the file holds every entry once, sorted by value
        /// (nulls first), each with the path of the file it came from.
        #[test]
        fn index_files_hold_every_entry_sorted_by_value(
            files in prop::collection::vec(prop::collection::vec(prop::option::weighted(0.9, -50i64..50), 0..40), 1..6),
            batch_rows in 1usize..70,
        ) {
            let paths: Vec<String> = (0..files.len()).map(|n| format!("p=x/part-{n}.parquet")).collect();
            let value = Arc::new(Int64Array::from(files.concat())) as ArrayRef;
            let file_numbers: Vec<u32> = files
                .iter()
                .enumerate()
                .flat_map(|(n, values)| std::iter::repeat_n(n as u32, values.len()))
                .collect();
            let (bytes, count) =
                encode_sorted(&DataType::Int64, value, &file_numbers, &paths, batch_rows).unwrap();

            let written = entries_of(bytes);
            prop_assert_eq!(count as usize, written.len());
            prop_assert!(written.windows(2).all(|w| w[0].0 <= w[1].0), "not sorted: {:?}", written);
            let mut expected: Vec<(Option<i64>, String)> = files
                .iter()
                .zip(&paths)
                .flat_map(|(values, path)| values.iter().map(move |v| (*v, path.clone())))
                .collect();
            expected.sort();
            let mut got = written;
            got.sort();
            prop_assert_eq!(got, expected);
        }
    }
}

//! Combining data files of one (partition, bucket) into bigger ones without decoding
//! them: the reduce side of a shuffle.
//!
//! A shuffle's map tasks write each (partition, bucket) group's rows as data-file pieces
//! in the final encoding (zstd, dictionaries, page statistics). [`concat_data_files`]
//! then copies the pieces' row groups, column chunk by column chunk, into files at the
//! group's final path and writes a new footer (Parquet's `append_column`, as in
//! parquet-rs's `parquet-concat`). Nothing is decoded or encoded again, so the reduce
//! stage costs a copy of the compressed bytes instead of a second encode of every row
//! (bench/README.md, "Measurements behind the code's choices", has the figures).
//!
//! What it keeps and what it gives up:
//! - Page indexes and statistics are carried over per column chunk (the offsets are
//!   moved to the new file), so readers prune pages and row groups as before. NaN
//!   counts, which the footer does not hold, come from the pieces' statistics, row group
//!   by row group; a piece without them makes its row groups' counts unknown.
//! - A file has one row group per piece row group: as many as map tasks wrote into the
//!   group. Callers that would make row groups too small re-encode instead (the ingest
//!   does below [`MIN_CONCAT_ROWS_PER_ROW_GROUP`] rows per row group).
//! - Pieces must come from the same dataset schema (they do within one job); a piece of
//!   another Parquet schema is refused with [`Error::InvalidLayout`] naming it.
//! - A file's index values ([`DataFile::index_values`], for the columns of
//!   [`WriterOptions::index_columns`]) are read from the data: only the indexed column
//!   chunks of each piece are decoded, and their distinct values merged, so datasets with secondary indices are combined by copying too, and map
//!   tasks need not collect or report index values. Merging the values the pieces'
//!   reports carried instead would make every reduce task decode every map task's report
//!   (all the index values of the job).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arrow::array::{ArrayRef, new_empty_array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{Row, RowConverter, Rows, SortField};
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::SchemaDescriptor;

use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::layout::{Layout, partition_path};
use crate::nan::{RowGroupNans, row_group_nans};
use crate::schema::file_schema;
use crate::stats::file_column_stats;
use crate::upload::{PartSink, Upload};
use crate::writer::{WriterOptions, new_data_file_path, object_path};

/// Row groups smaller than this on average are better encoded again than copied: each
/// row group costs a footer entry, statistics in the manifest and a seek when read.
///
/// 8 Ki rows, one data page of the writer's: a map task per large input file makes
/// pieces somewhat above it, which are then copied rather than all encoded again.
pub const MIN_CONCAT_ROWS_PER_ROW_GROUP: u64 = 8 * 1024;

/// Whether [`concat_data_files`] would make row groups of at least
/// [`MIN_CONCAT_ROWS_PER_ROW_GROUP`] rows on average from `pieces`.
pub fn worth_concatenating(pieces: &[DataFile]) -> bool {
    let rows: u64 = pieces.iter().map(|p| p.num_rows).sum();
    let row_groups: u64 = pieces
        .iter()
        .map(|p| p.row_groups.len().max(1) as u64)
        .sum();
    rows >= MIN_CONCAT_ROWS_PER_ROW_GROUP * row_groups.max(1)
}

/// Copy the row groups of `pieces` into new data files at their final path below `root`
/// (`<partition path>/part-<bucket>-<uuid>.parquet`) and describe them.
///
/// The pieces are data files of one (partition, bucket) of a dataset with `schema` and
/// `layout`, written by [`DataFileWriter`](crate::DataFileWriter) (their paths relative
/// to `root`); they are read one at a time and left in place. A new file is started once
/// one reaches [`WriterOptions::target_file_size`]; parts of
/// [`WriterOptions::upload_part_size`] stream to the store as they fill. On failure,
/// files already complete are left unreferenced for `gc`.
pub async fn concat_data_files(
    store: Arc<dyn ObjectStore>,
    root: Path,
    schema: &Schema,
    layout: &Layout,
    options: &WriterOptions,
    pieces: Vec<DataFile>,
) -> Result<Vec<DataFile>> {
    let Some(first) = pieces.first() else {
        return Ok(Vec::new());
    };
    let group = (first.partition_values.clone(), first.bucket);
    if let Some(other) = pieces
        .iter()
        .find(|p| p.partition_values != group.0 || p.bucket != group.1)
    {
        return Err(Error::InvalidLayout {
            reason: format!(
                "pieces of different groups cannot be combined: {} and {}",
                first.path, other.path
            ),
        });
    }
    let dir = partition_path(&layout.partition_on, &group.0)?;
    let context = Arc::new(Context {
        store: Arc::clone(&store),
        root: root.clone(),
        dir,
        bucket: group.1,
        partition_values: group.0,
        file_schema: file_schema(schema, &layout.partition_on),
        options: options.clone(),
        handle: tokio::runtime::Handle::try_current().map_err(|e| Error::Task {
            context: "combining data files".to_string(),
            reason: format!("must be called inside a Tokio runtime: {e}"),
        })?,
        in_flight: Arc::new(AtomicUsize::new(0)),
    });

    let mut open: Option<OutFile> = None;
    let mut done = Vec::new();
    let mut uploads: Vec<Upload> = Vec::new();
    for piece in pieces {
        let location = object_path(&root, &piece.path)?;
        let bytes = store
            .get(&location)
            .await
            .map_err(|e| Error::store(&location, e))?
            .bytes()
            .await
            .map_err(|e| Error::store(&location, e))?;
        let current = open.take();
        let ctx = Arc::clone(&context);
        let step = tokio::task::spawn_blocking(move || ctx.append(current, piece, bytes))
            .await
            .map_err(|e| Error::Task {
                context: "combining data files".to_string(),
                reason: e.to_string(),
            })??;
        open = step.open;
        uploads.extend(step.upload);
        done.extend(step.closed);
    }
    if let Some(file) = open {
        let ctx = Arc::clone(&context);
        let closed = tokio::task::spawn_blocking(move || ctx.close(file))
            .await
            .map_err(|e| Error::Task {
                context: "combining data files".to_string(),
                reason: e.to_string(),
            })??;
        done.push(closed);
    }
    for (location, upload) in uploads {
        match upload.await {
            Ok(result) => result?,
            Err(e) => {
                return Err(Error::Task {
                    context: format!("uploading {location}"),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(done)
}

/// What every step of one [`concat_data_files`] call shares.
struct Context {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The group's partition directory (empty when unpartitioned).
    dir: String,
    bucket: Option<u32>,
    partition_values: Vec<datafusion::common::ScalarValue>,
    file_schema: SchemaRef,
    options: WriterOptions,
    handle: tokio::runtime::Handle,
    in_flight: Arc<AtomicUsize>,
}

/// A file being assembled.
struct OutFile {
    rel_path: String,
    schema: Arc<SchemaDescriptor>,
    writer: SerializedFileWriter<PartSink>,
    /// The index values of the pieces copied in so far, per indexed column.
    index_values: BTreeMap<String, Vec<ArrayRef>>,
    /// NaN counts of the row groups copied in so far, from the pieces' statistics.
    nans: Vec<RowGroupNans>,
}

/// The outcome of appending one piece.
struct Step {
    open: Option<OutFile>,
    upload: Option<Upload>,
    closed: Option<DataFile>,
}

impl Context {
    /// Append the row groups of `piece` (its bytes) to `current`, or to a new file; close
    /// the file when it reached the target size.
    fn append(&self, current: Option<OutFile>, piece: DataFile, bytes: Bytes) -> Result<Step> {
        let path = piece.path.as_str();
        let metadata = Arc::new(
            ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .parse_and_finish(&bytes)
                .map_err(|e| Error::parquet(path, e))?,
        );
        let (mut file, upload) = match current {
            Some(file) => (file, None),
            None => {
                let (file, upload) = self.open(&metadata)?;
                (file, Some(upload))
            }
        };
        let schema = metadata.file_metadata().schema_descr();
        if schema.root_schema() != file.schema.root_schema() {
            return Err(Error::InvalidLayout {
                reason: format!(
                    "the piece {path} has another Parquet schema than the file it would join \
                     ({})",
                    file.rel_path
                ),
            });
        }
        copy_row_groups(&mut file.writer, &metadata, &bytes)
            .map_err(|e| Error::parquet(&file.rel_path, e))?;
        file.nans
            .extend(row_group_nans(&piece, metadata.row_groups().len()));
        for (column, values) in self.index_values_of(&bytes, &metadata, path)? {
            file.index_values.entry(column).or_default().push(values);
        }
        // Parts fill as row groups are copied; send them now rather than at the end.
        file.writer
            .inner_mut()
            .send_full_parts()
            .map_err(|e| Error::parquet(&file.rel_path, e.into()))?;
        if file.writer.bytes_written() as u64 >= self.options.target_file_size {
            let closed = self.close(file)?;
            return Ok(Step {
                open: None,
                upload,
                closed: Some(closed),
            });
        }
        Ok(Step {
            open: Some(file),
            upload,
            closed: None,
        })
    }

    /// The distinct values, in order, of each indexed column of the piece `bytes`, whose
    /// footer `append` parsed already (`metadata`).
    fn index_values_of(
        &self,
        bytes: &Bytes,
        metadata: &Arc<ParquetMetaData>,
        path: &str,
    ) -> Result<Vec<(String, ArrayRef)>> {
        let columns = &self.options.index_columns;
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        let reader_metadata =
            ArrowReaderMetadata::try_new(Arc::clone(metadata), ArrowReaderOptions::default())
                .map_err(|e| Error::parquet(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), reader_metadata);
        let roots = columns
            .iter()
            .map(|c| {
                builder
                    .schema()
                    .index_of(c)
                    .map_err(|_| Error::InvalidLayout {
                        reason: format!("the piece {path} has no indexed column {c:?}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<_> = roots
            .iter()
            .map(|&i| builder.schema().field(i).data_type().clone())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| Error::parquet(path, e))?;
        // An empty array first, so that a piece without rows still has (no) values.
        let mut parts: Vec<Vec<ArrayRef>> =
            types.iter().map(|t| vec![new_empty_array(t)]).collect();
        for batch in reader {
            let batch = batch.map_err(|e| Error::arrow(format!("reading {path}"), e))?;
            for (part, column) in parts.iter_mut().zip(columns) {
                let values = batch
                    .column_by_name(column)
                    .ok_or_else(|| Error::InvalidLayout {
                        reason: format!("the piece {path} has no indexed column {column:?}"),
                    })?;
                part.push(Arc::clone(values));
            }
        }
        columns
            .iter()
            .zip(parts)
            .map(|(column, part)| {
                let distinct = distinct_sorted(&part).map_err(|e| {
                    Error::arrow(format!("collecting index values of {column:?}"), e)
                })?;
                Ok((column.clone(), distinct))
            })
            .collect()
    }

    /// Start a file with the Parquet schema and key-value metadata (the Arrow schema
    /// among them) of the piece described by `metadata`.
    fn open(&self, metadata: &ParquetMetaData) -> Result<(OutFile, Upload)> {
        let rel_path = new_data_file_path(&self.dir, self.bucket);
        let location = object_path(&self.root, &rel_path)?;
        let (sink, upload) = PartSink::start(
            &self.handle,
            Arc::clone(&self.store),
            location,
            self.options.upload_part_size,
            Arc::clone(&self.in_flight),
        );
        let schema = Arc::new(metadata.file_metadata().schema_descr().clone());
        let props = WriterProperties::builder()
            .set_key_value_metadata(metadata.file_metadata().key_value_metadata().cloned())
            .build();
        let writer = SerializedFileWriter::new(sink, schema.root_schema_ptr(), Arc::new(props))
            .map_err(|e| Error::parquet(&rel_path, e))?;
        Ok((
            OutFile {
                rel_path,
                schema,
                writer,
                index_values: BTreeMap::new(),
                nans: Vec::new(),
            },
            upload,
        ))
    }

    /// Write the footer, send the last bytes and describe the file.
    fn close(&self, mut file: OutFile) -> Result<DataFile> {
        let path = file.rel_path;
        let metadata = file.writer.finish().map_err(|e| Error::parquet(&path, e))?;
        let sink = file.writer.inner_mut();
        sink.finish().map_err(|e| Error::parquet(&path, e.into()))?;
        let stats = file_column_stats(&metadata, &self.file_schema, &path, &file.nans)?;
        let index_values = file
            .index_values
            .into_iter()
            .map(|(column, parts)| {
                let merged = distinct_sorted(&parts)
                    .map_err(|e| Error::arrow(format!("merging index values of {column:?}"), e))?;
                Ok((column, merged))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(DataFile {
            num_rows: metadata.file_metadata().num_rows().max(0) as u64,
            size_bytes: sink.written,
            path,
            partition_values: self.partition_values.clone(),
            bucket: self.bucket,
            column_stats: stats.columns,
            row_groups: stats.row_groups,
            index_values,
        })
    }
}

/// The distinct values of `parts` (arrays of one column), in order (nulls first), as the
/// writer reports a file's index values.
fn distinct_sorted(parts: &[ArrayRef]) -> std::result::Result<ArrayRef, ArrowError> {
    let Some(first) = parts.first() else {
        return Err(ArrowError::InvalidArgumentError(
            "no index values to merge".to_string(),
        ));
    };
    let converter = RowConverter::new(vec![SortField::new(first.data_type().clone())])?;
    let rows = parts
        .iter()
        .map(|part| converter.convert_columns(&[Arc::clone(part)]))
        .collect::<std::result::Result<Vec<Rows>, _>>()?;
    // Canonical row bytes sort like the values.
    let mut all: Vec<Row<'_>> = rows.iter().flat_map(|r| r.iter()).collect();
    all.sort_unstable();
    all.dedup();
    let mut merged = converter.convert_rows(all)?;
    Ok(merged.swap_remove(0))
}

/// Copy every row group of the file `bytes` (described by `metadata`) into `writer`,
/// with the column and offset indexes when the file has them.
fn copy_row_groups(
    writer: &mut SerializedFileWriter<PartSink>,
    metadata: &ParquetMetaData,
    bytes: &Bytes,
) -> parquet::errors::Result<()> {
    let column_indexes = metadata.column_index();
    let offset_indexes = metadata.offset_index();
    for (i, row_group) in metadata.row_groups().iter().enumerate() {
        let mut out = writer.next_row_group()?;
        for (c, column) in row_group.columns().iter().enumerate() {
            out.append_column(
                bytes,
                ColumnCloseResult {
                    bytes_written: column.compressed_size().max(0) as u64,
                    rows_written: row_group.num_rows().max(0) as u64,
                    metadata: column.clone(),
                    // The writer writes no bloom filters.
                    bloom_filter: None,
                    column_index: column_indexes
                        .and_then(|rg| rg.get(i))
                        .and_then(|cols| cols.get(c))
                        .cloned(),
                    offset_index: offset_indexes
                        .and_then(|rg| rg.get(i))
                        .and_then(|cols| cols.get(c))
                        .cloned(),
                },
            )?;
        }
        out.close()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use object_store::memory::InMemory;
    use parquet::arrow::ArrowWriter;

    use super::*;
    use crate::writer::tests::{batch, check_files, layout, rows, schema, write_rows};

    /// Pieces as three map tasks write them, below the staging directory, grouped by
    /// (partition path, bucket).
    async fn pieces(
        store: &Arc<dyn ObjectStore>,
        all: &[crate::writer::tests::Row],
    ) -> BTreeMap<(String, Option<u32>), Vec<DataFile>> {
        pieces_with(store, all, WriterOptions::default()).await
    }

    async fn pieces_with(
        store: &Arc<dyn ObjectStore>,
        all: &[crate::writer::tests::Row],
        options: WriterOptions,
    ) -> BTreeMap<(String, Option<u32>), Vec<DataFile>> {
        let mut groups: BTreeMap<(String, Option<u32>), Vec<DataFile>> = BTreeMap::new();
        for (task, chunk) in all.chunks(all.len().div_ceil(3)).enumerate() {
            let dir = format!("_terrace/staging/map-{task}");
            let (files, _) = write_rows(
                Arc::clone(store),
                &Path::from(format!("ds/{dir}")),
                chunk,
                700,
                options.clone(),
            )
            .await;
            for mut file in files {
                file.path = format!("{dir}/{}", file.path);
                let group = partition_path(&layout().partition_on, &file.partition_values).unwrap();
                groups.entry((group, file.bucket)).or_default().push(file);
            }
        }
        groups
    }

    /// Combine `group` below the test dataset's root `ds`.
    async fn combine(
        store: &Arc<dyn ObjectStore>,
        options: &WriterOptions,
        group: Vec<DataFile>,
    ) -> Result<Vec<DataFile>> {
        let (schema, layout) = (schema(), layout());
        concat_data_files(
            Arc::clone(store),
            Path::from("ds"),
            &schema,
            &layout,
            options,
            group,
        )
        .await
    }

    #[tokio::test]
    async fn combined_pieces_hold_their_rows_with_true_statistics_and_page_indexes() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("ds");
        let all = rows(0, 9_000);
        let mut combined = Vec::new();
        for ((dir, bucket), group) in pieces(&store, &all).await {
            let row_groups = group.len();
            assert!(row_groups > 1, "every group gets a piece from each task");
            let files = combine(&store, &WriterOptions::default(), group)
                .await
                .unwrap();
            assert_eq!(files.len(), 1);
            let file = &files[0];
            assert!(file.path.starts_with(&dir) && !file.path.contains("_terrace"));
            assert_eq!(file.bucket, bucket);
            assert_eq!(file.row_groups.len(), row_groups, "one row group per piece");

            // The page indexes moved with the column chunks.
            let location = object_path(&root, &file.path).unwrap();
            let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Required)
                .parse_and_finish(&bytes)
                .unwrap();
            let offsets = metadata.offset_index().expect("offset index");
            assert!(metadata.column_index().is_some(), "column index");
            for (rg, row_group) in metadata.row_groups().iter().enumerate() {
                for (c, column) in row_group.columns().iter().enumerate() {
                    let first_page = offsets[rg][c].page_locations()[0].offset;
                    assert_eq!(first_page, column.data_page_offset(), "{rg}/{c}");
                }
            }
            combined.extend(files);
        }
        check_files(store.as_ref(), &root, &combined, &all).await;
    }

    /// NaN counts, which the footer does not hold, come from the pieces, row group by row
    /// group: a float column's bounds stay only in the row groups without NaN.
    #[tokio::test]
    async fn combined_files_keep_the_nan_counts_of_their_row_groups() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut all = rows(0, 9_000);
        // NaN in the first map task's rows only (it writes ids below 3,000).
        for r in all.iter_mut().filter(|r| r.id < 3_000 && r.id % 50 == 3) {
            r.v = Some(f64::NAN);
        }
        let mut seen = (0, 0);
        for (_, group) in pieces(&store, &all).await {
            let mut files = combine(&store, &WriterOptions::default(), group)
                .await
                .unwrap();
            let file = files.remove(0);
            let location = object_path(&Path::from("ds"), &file.path).unwrap();
            let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
            let mut total = 0;
            for (i, stats) in file.row_groups.iter().enumerate() {
                let nans: u64 = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                    .unwrap()
                    .with_row_groups(vec![i])
                    .build()
                    .unwrap()
                    .map(|b| crate::nan::count_nans(b.unwrap().column_by_name("v").unwrap()))
                    .sum();
                let v = &stats.column_stats["v"];
                assert_eq!(v.nan_count, Some(nans), "{} row group {i}", file.path);
                assert_eq!(v.max.is_null(), nans > 0, "{} row group {i}", file.path);
                seen.0 += usize::from(nans > 0);
                seen.1 += usize::from(nans == 0);
                total += nans;
            }
            assert_eq!(file.column_stats["v"].nan_count, Some(total));
            // Other columns hold no NaN and keep their bounds.
            assert_eq!(file.column_stats["id"].nan_count, None);
            assert!(!file.column_stats["id"].max.is_null());
        }
        assert!(
            seen.0 > 0 && seen.1 > 0,
            "row groups with and without NaN: {seen:?}"
        );
    }

    /// A combined file's index values are the distinct values of its rows, in order: the
    /// union of its pieces' (which overlap for `s`), read from the data.
    #[tokio::test]
    async fn combined_files_carry_the_index_values_of_their_rows() {
        use arrow::array::{Int64Array, StringArray};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use std::collections::BTreeSet;

        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("ds");
        let all = rows(0, 9_000);
        let options = WriterOptions {
            index_columns: vec!["id".into(), "s".into()],
            ..WriterOptions::default()
        };
        // Pieces written without index values, as a shuffle's map tasks write them: the
        // values come from the data.
        for (_, group) in pieces_with(&store, &all, WriterOptions::default()).await {
            assert!(group.iter().all(|p| p.index_values.is_empty()));
            let files = combine(&store, &options, group).await.unwrap();
            assert_eq!(files.len(), 1);
            let file = &files[0];
            let location = object_path(&root, &file.path).unwrap();
            let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
            let (mut ids, mut strings) = (BTreeSet::<i64>::new(), BTreeSet::new());
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let id = batch.column_by_name("id").unwrap();
                ids.extend(id.as_any().downcast_ref::<Int64Array>().unwrap().values());
                let s = batch.column_by_name("s").unwrap();
                let s = s.as_any().downcast_ref::<StringArray>().unwrap();
                strings.extend(s.iter().map(|v| v.map(str::to_string)));
            }
            let indexed_ids = file.index_values["id"]
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            assert_eq!(
                indexed_ids.values().to_vec(),
                ids.into_iter().collect::<Vec<_>>(),
                "{}",
                file.path
            );
            let indexed_strings: Vec<Option<String>> = file.index_values["s"]
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect();
            // Nulls first, as the writer orders index values.
            assert_eq!(
                indexed_strings,
                strings.into_iter().collect::<Vec<_>>(),
                "{}",
                file.path
            );
        }
    }

    #[tokio::test]
    async fn a_new_file_starts_at_the_target_size() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("ds");
        let all = rows(0, 6_000);
        let options = WriterOptions {
            target_file_size: 1,
            ..WriterOptions::default()
        };
        let mut combined = Vec::new();
        for (_, group) in pieces(&store, &all).await {
            let count = group.len();
            let files = combine(&store, &options, group).await.unwrap();
            assert_eq!(files.len(), count);
            combined.extend(files);
        }
        check_files(store.as_ref(), &root, &combined, &all).await;
    }

    #[tokio::test]
    async fn pieces_of_other_groups_or_schemas_are_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("ds");
        let groups = pieces(&store, &rows(0, 3_000)).await;
        let mut groups = groups.into_values();
        let (a, b) = (groups.next().unwrap(), groups.next().unwrap());
        let mixed = vec![a[0].clone(), b[0].clone()];
        let err = combine(&store, &WriterOptions::default(), mixed)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidLayout { reason } if reason.contains(&b[0].path)),
            "{err}"
        );

        // A file of the same group with another schema (all columns, partitions too).
        let mut other = a[0].clone();
        other.path = "_terrace/staging/other.parquet".to_string();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema(), None).unwrap();
        writer.write(&batch(&rows(0, 10))).unwrap();
        writer.close().unwrap();
        store
            .put(&object_path(&root, &other.path).unwrap(), bytes.into())
            .await
            .unwrap();
        let err = combine(&store, &WriterOptions::default(), vec![a[0].clone(), other])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidLayout { reason } if reason.contains("other.parquet")),
            "{err}"
        );
    }

    #[test]
    fn small_row_groups_are_not_worth_copying() {
        let piece = |rows: u64| DataFile {
            path: String::new(),
            partition_values: Vec::new(),
            bucket: None,
            num_rows: rows,
            size_bytes: 0,
            column_stats: BTreeMap::new(),
            row_groups: Vec::new(),
            index_values: BTreeMap::new(),
        };
        let big = MIN_CONCAT_ROWS_PER_ROW_GROUP;
        assert!(worth_concatenating(&[piece(big), piece(big)]));
        assert!(worth_concatenating(&[piece(2 * big), piece(1)]));
        assert!(!worth_concatenating(&[piece(big), piece(big - 2)]));
        assert!(!worth_concatenating(&[]), "nothing to combine");
    }
}

//! Writing Arrow record batches into a dataset's Parquet data files.
//!
//! [`DataFileWriter`] splits every batch by (partition values, bucket), keeps one open
//! Parquet file per group and uploads each file straight to its final path
//! (`root/<partition path>/<data file name>`); files are invisible until a commit
//! references them, so no rename is needed. Partition columns are not stored in the
//! files (hive convention): their typed values go into [`DataFile::partition_values`].
//!
//! Design choices, and why:
//! - **Row groups encoded in one go.** A file's rows wait as compact Arrow batches until
//!   a row group is complete (or the budget or the end of the input asks for it); then
//!   its columns are encoded and the row group is closed at once. Parquet's column writers,
//!   each with a page buffer and a zstd compressor and decompressor, exist only during
//!   that: fed as the rows arrived, every open file kept one per column, and with many
//!   (partition, bucket) groups their zstd contexts were most of a task's heap, none of
//!   it in the accounted memory (bench/README.md, "Measurements behind the code's choices").
//! - **Memory budget.** What the writer holds is the sum over open files of rows waiting
//!   to be encoded, encoded bytes waiting to be uploaded ([`ArrowWriter::memory_size`]),
//!   and parts in flight. When that exceeds [`WriterOptions::memory_budget`] after a
//!   batch, the largest files' row groups are encoded first (their bytes then stream out
//!   in parts); if encoded bytes smaller than a part still exceed the budget, the largest
//!   files are closed early (the next rows of that group start a new file). So what the
//!   writer holds is bounded whatever the input size: the budget plus one batch.
//! - **Streaming uploads.** Encoded bytes leave in parts of
//!   [`WriterOptions::upload_part_size`] through a bounded channel to one async upload task
//!   per file; a file that ends before filling one part is sent with a single `put`. A
//!   dropped writer never completes an upload, so aborted files do not appear.
//! - **Dictionaries where values repeat.** Each column is dictionary-encoded or not
//!   as the first batch's distinct values say ([`choose_properties`]), instead of
//!   Parquet's default of interning every value of every column.
//! - **CPU off the executor.** Splitting, hashing and Parquet encoding run in
//!   `spawn_blocking`, with the open files encoded in parallel by rayon.
//! - **One copy per row.** A batch's rows are grouped by a counting sort and each group's
//!   rows are taken into compact arrays of their own, which wait for the row group (with
//!   [`WriterOptions::sort_by`], sorted when it is encoded). A slice of the batch would
//!   keep the whole batch alive for as long as any group waits.
//! - **Partition values checked first.** A value whose directory name would be longer
//!   than a file name may be ([`MAX_PARTITION_SEGMENT_BYTES`](crate::MAX_PARTITION_SEGMENT_BYTES))
//!   fails the batch holding it before any file of that batch is opened, with an error
//!   that is not retried; files of earlier batches are removed by
//!   [`abort`](DataFileWriter::abort).
//! - **Grouped input, one open file.** Rows that arrive group by group (a shuffle's
//!   reduce) go through a [`ClusteredWriter`] instead (`writer/clustered.rs`): the same
//!   files, with one open at a time.
//! - **Small files in Snappy.** A file's encoder is made when its first row group is
//!   encoded; a file that is one row group of fewer than
//!   [`WriterOptions::small_file_rows`] rows then gets Snappy instead of zstd, because
//!   Parquet makes a zstd compressor and decompressor for every column chunk, which for a
//!   file of a few hundred rows costs more than encoding it (bench/README.md,
//!   "Measurements behind the code's choices").
//! - **NaN counted from the rows.** Parquet's statistics leave NaN out of a float
//!   column's bounds, so the writer counts NaN per row group as it encodes (`nan.rs`);
//!   a file or row group holding NaN gets unknown bounds for that column.

use std::collections::BTreeMap;
use std::mem;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{HashSet, ScalarValue};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use std::collections::HashMap as StdHashMap;

use crate::blocking::step_blocking;
use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::group::{Group, GroupKey, Grouping};
use crate::layout::{Layout, check_partition_values, data_file_name, partition_path};
use crate::nan::NanTracker;
use crate::schema::column_list;
use crate::stats::file_column_stats;
use crate::upload::{PartSink, Upload, delete_uploaded, join_uploads, wait_for_parts};

mod clustered;

pub use clustered::ClusteredWriter;

/// Tuning of a [`DataFileWriter`].
#[derive(Debug, Clone, PartialEq)]
pub struct WriterOptions {
    /// A file is closed and a new one started once its encoded size reaches this
    /// (default 128 MiB). Files end slightly above it: the check runs after each chunk.
    pub target_file_size: u64,
    /// Rows per Parquet row group (default 1 000 000). Row groups are smaller when the
    /// memory budget forces an early flush.
    pub row_group_rows: usize,
    /// Bytes the writer may hold in buffers (default 256 MiB); exceeded by at most one
    /// input batch. Less saves little memory and makes the row groups of a shuffle's
    /// staged pieces too small to be combined by copying.
    pub memory_budget: usize,
    /// zstd compression level (default 1, as pyarrow's): higher levels cost much more
    /// time than they save space.
    pub zstd_level: i32,
    /// Columns whose distinct values per file are collected into
    /// [`DataFile::index_values`] (for secondary indices).
    pub index_columns: Vec<String>,
    /// Sort the rows of every row group by these columns (ascending, nulls first).
    /// Rows are then buffered up to a whole row group before encoding.
    pub sort_by: Vec<String>,
    /// Size of the parts uploaded to the store (default 8 MiB). Stores like S3 need at
    /// least 5 MiB; smaller parts suit only local and in-memory stores (tests).
    pub upload_part_size: usize,
    /// Files that the same job reads back once and deletes (a shuffle's staged pieces),
    /// written with [`scratch_properties`].
    pub scratch: bool,
    /// Whether scratch files are compressed (LZ4; default yes). Leave them uncompressed
    /// on a local store, where compressing costs CPU and saves only page cache.
    pub compress_scratch: bool,
    /// A file of fewer rows than this (default 16 Ki), all encoded when it is closed, is
    /// Snappy-compressed instead of zstd: Parquet makes a zstd compressor and
    /// decompressor per column chunk, which for a small file cost more than its encoding
    /// (a backfill of thousands of small groups). 0: zstd always.
    pub small_file_rows: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            target_file_size: 128 * 1024 * 1024,
            row_group_rows: 1_000_000,
            memory_budget: 256 * 1024 * 1024,
            zstd_level: 1,
            index_columns: Vec::new(),
            sort_by: Vec::new(),
            upload_part_size: 8 * 1024 * 1024,
            scratch: false,
            compress_scratch: true,
            small_file_rows: 16 * 1024,
        }
    }
}

/// Settings for Parquet files read back once by the job that wrote them and then deleted
/// (staged pieces, query parts and results): LZ4 (or, with `compress` false, nothing)
/// instead of zstd and no dictionary encoding, which cost CPU on both sides and buy
/// nothing for a file read once; statistics per column chunk only.
pub fn scratch_properties(
    builder: WriterPropertiesBuilder,
    compress: bool,
) -> WriterPropertiesBuilder {
    builder
        .set_compression(if compress {
            Compression::LZ4_RAW
        } else {
            Compression::UNCOMPRESSED
        })
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
}

/// Writes record batches of one dataset into partitioned, bucketed Parquet files.
///
/// Call [`write`](Self::write) for each batch, then [`finish`](Self::finish) to get the
/// files to commit, or [`abort`](Self::abort) to remove what was uploaded.
pub struct DataFileWriter {
    schema: SchemaRef,
    plan: Arc<Plan>,
    /// `None` only while a blocking step owns it (or after a step panicked).
    state: Option<Box<State>>,
    /// Upload tasks of every file opened so far, with the object they write.
    uploads: Vec<Upload>,
}

impl std::fmt::Debug for DataFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFileWriter")
            .field("root", &self.plan.root)
            .field("layout", &self.plan.layout)
            .field("open_files", &self.state.as_ref().map(|s| s.open.len()))
            .field("uploads", &self.uploads.len())
            .finish()
    }
}

/// Everything fixed for the writer's lifetime, shared with blocking steps.
struct Plan {
    store: Arc<dyn ObjectStore>,
    root: Path,
    layout: Layout,
    options: WriterOptions,
    file_schema: SchemaRef,
    props: WriterProperties,
    /// Which (partition, bucket) group each row belongs to.
    grouping: Grouping,
    /// File-schema indices of the sort columns.
    sort_idx: Vec<usize>,
    /// Indexed columns: name, file-schema index, and a converter to canonical bytes.
    index: Vec<(String, usize, RowConverter)>,
    chunk_rows: usize,
    handle: tokio::runtime::Handle,
    in_flight: Arc<AtomicUsize>,
}

/// Mutable state, moved into each blocking step and back.
#[derive(Default)]
struct State {
    /// The properties files are opened with, chosen from the first batch
    /// ([`choose_properties`]).
    props: Option<WriterProperties>,
    /// std's map, for rayon's parallel iteration over the open files.
    open: StdHashMap<GroupKey, OpenFile>,
    closed: Vec<DataFile>,
    new_uploads: Vec<Upload>,
    peak: usize,
    /// Bytes held by open files (without parts in flight) after the last step.
    open_bytes: usize,
}

struct OpenFile {
    partition_values: Vec<ScalarValue>,
    bucket: Option<u32>,
    rel_path: String,
    /// The Parquet encoder, made when the first row group is encoded (see
    /// [`OpenFile::encoder`]); until then `waiting` holds what it is made from.
    writer: Option<ArrowWriter<PartSink>>,
    waiting: Option<(PartSink, WriterProperties)>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    rows: u64,
    /// Canonical bytes of the distinct values of each indexed column.
    index: Vec<HashSet<Box<[u8]>>>,
    /// NaN per float column and row group, which Parquet's statistics leave out.
    nans: NanTracker,
}

impl DataFileWriter {
    /// A writer of files for a dataset with `schema` (partition columns included) and
    /// `layout`, below `root` in `store`.
    ///
    /// Fails when the layout does not fit the schema, an index or sort column is unknown,
    /// or it is called outside a Tokio runtime.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        schema: SchemaRef,
        layout: Layout,
        options: WriterOptions,
    ) -> Result<Self> {
        let grouping = Grouping::new(&schema, &layout)?;
        let file_schema = Arc::clone(&grouping.file_schema);
        let file_index_of = |role: &'static str, name: &str| {
            file_schema
                .index_of(name)
                .map_err(|_| Error::UnknownColumn {
                    role,
                    column: name.to_string(),
                    available: column_list(&file_schema),
                })
        };
        let sort_idx = options
            .sort_by
            .iter()
            .map(|c| file_index_of("sort", c))
            .collect::<Result<Vec<_>>>()?;
        let index = options
            .index_columns
            .iter()
            .map(|c| {
                let i = file_index_of("index", c)?;
                let converter = RowConverter::new(vec![SortField::new(
                    file_schema.field(i).data_type().clone(),
                )])
                .map_err(|e| Error::arrow(format!("indexing column {c:?}"), e))?;
                Ok((c.clone(), i, converter))
            })
            .collect::<Result<Vec<_>>>()?;
        let zstd = ZstdLevel::try_new(options.zstd_level)
            .map_err(|e| Error::parquet("(writer options)", e))?;
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
            .set_data_page_row_count_limit(DATA_PAGE_ROWS);
        let props = if options.scratch {
            scratch_properties(props, options.compress_scratch)
        } else {
            props
                .set_compression(Compression::ZSTD(zstd))
                .set_statistics_enabled(EnabledStatistics::Page)
        }
        .build();
        let chunk_rows = options.row_group_rows.max(1);
        let handle = tokio::runtime::Handle::try_current().map_err(|e| Error::Task {
            context: "creating a data file writer".to_string(),
            reason: format!("must be called inside a Tokio runtime: {e}"),
        })?;
        Ok(Self {
            schema,
            plan: Arc::new(Plan {
                store,
                root,
                layout,
                options,
                file_schema,
                props,
                grouping,
                sort_idx,
                index,
                chunk_rows,
                handle,
                in_flight: Arc::new(AtomicUsize::new(0)),
            }),
            state: Some(Box::default()),
            uploads: Vec::new(),
        })
    }

    /// Write one batch; its schema must be the dataset schema (same names and types in
    /// the same order). Rows are encoded in the background; errors of uploads surface
    /// here or in [`finish`](Self::finish).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        check_batch(&self.schema, &batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.step(move |plan, state| ingest(plan, state, &batch))
            .await?;
        self.wait_for_uploads().await;
        Ok(())
    }

    /// Parts already handed to uploads still occupy memory; wait for the store to take
    /// them rather than accept more rows while over budget.
    async fn wait_for_uploads(&mut self) {
        let held = self.state.as_ref().map_or(0, |s| s.open_bytes);
        let budget = self.plan.options.memory_budget;
        wait_for_parts(&self.plan.in_flight, held, budget).await;
    }

    /// Bytes the writer holds right now: encoder buffers, pending rows and unsent bytes
    /// (as of the end of the last call) plus upload parts in flight.
    pub fn buffered_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.open_bytes)
            + self.plan.in_flight.load(Ordering::Relaxed)
    }

    /// The most bytes the writer held at any point so far (measured after each batch is
    /// encoded, before the budget is enforced).
    pub fn peak_buffered_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.peak)
    }

    /// Close every open file, wait for all uploads and return the files written.
    ///
    /// On failure the uploaded files are left for `gc` (they are unreferenced); call
    /// [`abort`](Self::abort) instead of `finish` to remove them eagerly.
    pub async fn finish(mut self) -> Result<Vec<DataFile>> {
        tracing::debug!(
            root = %self.plan.root,
            files = self.uploads.len(),
            peak_buffered_bytes = self.peak_buffered_bytes(),
            "finishing data files"
        );
        let closed = self.step(close_all).await;
        join_uploads(mem::take(&mut self.uploads), closed).await?;
        let mut files = self.state.take().map(|s| s.closed).unwrap_or_default();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Stop writing and delete, best effort, every file uploaded so far. Unfinished
    /// uploads are aborted (multipart uploads are cancelled on the store).
    pub async fn abort(mut self) -> Result<()> {
        // Dropping the encoders drops the channels without the final marker, which makes
        // each upload task abandon its upload.
        self.state = None;
        delete_uploaded(self.plan.store.as_ref(), mem::take(&mut self.uploads)).await
    }

    /// Run `f` on the state off the async executor and put the state back.
    async fn step<F>(&mut self, f: F) -> Result<()>
    where
        F: FnOnce(&Plan, &mut State) -> Result<()> + Send + 'static,
    {
        let state = self.state.take().ok_or_else(|| Error::Task {
            context: "writing data files".to_string(),
            reason: "the writer failed earlier and can only be aborted".to_string(),
        })?;
        let measured = move |plan: &Plan, state: &mut State| {
            let result = f(plan, state);
            state.open_bytes = state.open.values().map(OpenFile::memory).sum::<usize>();
            result
        };
        let (mut state, result) =
            step_blocking(&self.plan, state, "encoding data files", measured).await?;
        self.uploads.append(&mut state.new_uploads);
        self.state = Some(state);
        result
    }
}

/// The batch must carry the dataset's columns, in order, with the dataset's types.
pub(crate) fn check_batch(schema: &Schema, batch: &RecordBatch) -> Result<()> {
    let found = batch.schema();
    for field in schema.fields() {
        let Some((i, got)) = found.column_with_name(field.name()) else {
            return Err(Error::ColumnMissing {
                column: field.name().clone(),
                expected: field.data_type().clone(),
            });
        };
        if got.data_type() != field.data_type() {
            return Err(Error::ColumnTypeMismatch {
                column: field.name().clone(),
                expected: field.data_type().clone(),
                found: got.data_type().clone(),
            });
        }
        if !field.is_nullable() && batch.column(i).null_count() > 0 {
            return Err(Error::ColumnNullabilityMismatch {
                column: field.name().clone(),
            });
        }
    }
    if let Some(extra) = found
        .fields()
        .iter()
        .find(|f| schema.column_with_name(f.name()).is_none())
    {
        return Err(Error::ColumnNotInDataset {
            column: extra.name().clone(),
            found: extra.data_type().clone(),
        });
    }
    // Same names and types but another order would silently swap columns in files.
    if found
        .fields()
        .iter()
        .zip(schema.fields())
        .any(|(a, b)| a.name() != b.name())
    {
        return Err(Error::InvalidLayout {
            reason: format!(
                "batch columns ({}) are not in the dataset's order ({})",
                column_list(&found),
                column_list(schema)
            ),
        });
    }
    Ok(())
}

/// Split `batch` by group, then [`add_groups`].
fn ingest(plan: &Plan, state: &mut State, batch: &RecordBatch) -> Result<()> {
    if state.props.is_none() {
        state.props = Some(choose_properties(plan, &plan.grouping.data(batch)?));
    }
    let groups = plan.grouping.split(batch)?;
    add_groups(plan, state, groups)
}

/// Buffer the rows of `groups` in their files (opened as needed) and encode, roll big
/// files, then enforce the budget.
fn add_groups(plan: &Plan, state: &mut State, groups: Vec<Group>) -> Result<()> {
    let props = match state.props.take() {
        Some(props) => props,
        None => match groups.first() {
            Some(group) => choose_properties(plan, &group.batch),
            None => return Ok(()),
        },
    };
    let props = &*state.props.insert(props);
    // A partition value too long for a directory name fails the batch before any of its
    // files is opened, as bad input (not retried): the store would refuse the path ("File
    // name too long") only once the file's bytes were uploaded.
    for group in &groups {
        if !state.open.contains_key(&group.key) {
            check_partition_values(&plan.layout.partition_on, &group.partition_values)?;
        }
    }
    for group in groups {
        if !state.open.contains_key(&group.key) {
            let (file, upload) = open_file(plan, props, group.partition_values, group.bucket)?;
            state.new_uploads.push(upload);
            state.open.insert(group.key.clone(), file);
        }
        let Some(file) = state.open.get_mut(&group.key) else {
            continue;
        };
        file.pending_rows += group.batch.num_rows();
        file.pending_bytes += group.batch.get_array_memory_size();
        file.pending.push(group.batch);
    }
    state
        .open
        .par_iter_mut()
        .filter(|(_, f)| f.pending_rows >= plan.chunk_rows)
        .try_for_each(|(_, f)| f.encode_pending(plan, false))?;
    let target = plan.options.target_file_size;
    let full: Vec<GroupKey> = state
        .open
        .iter()
        .filter(|(_, f)| f.encoded_estimate() >= target)
        .map(|(k, _)| k.clone())
        .collect();
    close_files(plan, state, &full)?;
    let total = state.open.values().map(OpenFile::memory).sum::<usize>()
        + plan.in_flight.load(Ordering::Relaxed);
    state.peak = state.peak.max(total);
    if total > plan.options.memory_budget {
        enforce_budget(plan, state)?;
    }
    Ok(())
}

/// Bring held memory under the budget: flush the largest files' row groups first, then,
/// if encoded bytes below one part still exceed it, close the largest files.
fn enforce_budget(plan: &Plan, state: &mut State) -> Result<()> {
    let budget = plan.options.memory_budget;
    let in_flight = plan.in_flight.load(Ordering::Relaxed);
    let mut sizes: Vec<(usize, GroupKey)> = state
        .open
        .iter()
        .map(|(k, f)| (f.memory(), k.clone()))
        .collect();
    sizes.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut total: usize = sizes.iter().map(|(m, _)| m).sum::<usize>() + in_flight;
    let mut victims = std::collections::HashSet::new();
    for (_, key) in &sizes {
        if total <= budget {
            break;
        }
        if let Some(f) = state.open.get(key) {
            // After a flush only the tail smaller than one part stays.
            total -= f.memory().saturating_sub(f.unsent_bytes());
            victims.insert(key.clone());
        }
    }
    state
        .open
        .par_iter_mut()
        .filter(|(k, _)| victims.contains(*k))
        .try_for_each(|(_, f)| f.flush_row_group(plan))?;

    let mut by_unsent: Vec<(usize, GroupKey)> = state
        .open
        .iter()
        .map(|(k, f)| (f.memory(), k.clone()))
        .collect();
    let mut total: usize =
        by_unsent.iter().map(|(m, _)| m).sum::<usize>() + plan.in_flight.load(Ordering::Relaxed);
    if total <= budget {
        return Ok(());
    }
    by_unsent.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut to_close = Vec::new();
    for (memory, key) in by_unsent {
        if total <= budget {
            break;
        }
        total -= memory;
        to_close.push(key);
    }
    close_files(plan, state, &to_close)
}

/// Close the files of `keys` (in parallel) and record them as finished.
fn close_files(plan: &Plan, state: &mut State, keys: &[GroupKey]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let files: Vec<OpenFile> = keys.iter().filter_map(|k| state.open.remove(k)).collect();
    let closed = files
        .into_par_iter()
        .map(|f| f.close(plan))
        .collect::<Result<Vec<_>>>()?;
    state.closed.extend(closed);
    Ok(())
}

fn close_all(plan: &Plan, state: &mut State) -> Result<()> {
    let keys: Vec<GroupKey> = state.open.keys().cloned().collect();
    close_files(plan, state, &keys)
}

/// Rows of the first batch whose distinct values decide each column's encoding.
const DICTIONARY_SAMPLE_ROWS: usize = 16 * 1024;

/// A column is written plain when more than one in this many sampled rows is a distinct
/// value. Keys and dates that are mostly distinct are then plain, which is faster to
/// write and smaller (zstd packs runs of nearby integers better than dictionary indices
/// with page-local bit widths); flags and quantities keep their dictionaries.
const PLAIN_ABOVE_DISTINCT_SHARE: usize = 8;

/// Rows per data page (Parquet's default is 20,000). A column chunk being written holds
/// its current page unencoded, so smaller pages hold less memory, as fast; the page
/// index is finer too.
const DATA_PAGE_ROWS: usize = 8 * 1024;

/// The writer's properties with dictionary encoding turned off for every column whose
/// values are not repeated enough in the first batch (more than one in
/// [`PLAIN_ABOVE_DISTINCT_SHARE`] of up to [`DICTIONARY_SAMPLE_ROWS`] rows distinct).
///
/// Parquet's encoder interns every value of a dictionary column until the dictionary
/// reaches its page limit (1 MiB), so a column of nearly unique values (prices, comments,
/// foreign keys) pays for hashing each value and is then written plain anyway, or not at
/// all: 128 Ki doubles fit the limit, so a file of fewer rows keeps a useless dictionary.
/// Columns with few distinct values (flags, dates, quantities) keep their dictionaries,
/// which make the files smaller and zstd's work lighter. This
/// is polars's rule too: it dictionary-encodes a column only when a sample says the
/// values repeat. `batch` holds the stored columns (the file schema).
fn choose_properties(plan: &Plan, batch: &RecordBatch) -> WriterProperties {
    if plan.options.scratch {
        return plan.props.clone();
    }
    let sample = batch.slice(0, batch.num_rows().min(DICTIONARY_SAMPLE_ROWS));
    let schema = batch.schema();
    let mut builder = plan.props.clone().into_builder();
    for (i, column) in sample.columns().iter().enumerate() {
        if !dictionary_candidate(column.data_type()) || column.is_empty() {
            continue;
        }
        let Ok(converter) = RowConverter::new(vec![SortField::new(column.data_type().clone())])
        else {
            continue;
        };
        let Ok(rows) = converter.convert_columns(&[Arc::clone(column)]) else {
            continue;
        };
        let mut distinct: HashSet<&[u8]> = HashSet::default();
        distinct.reserve(rows.num_rows());
        for row in rows.iter() {
            distinct.insert(row.data());
        }
        if distinct.len() * PLAIN_ABOVE_DISTINCT_SHARE > rows.num_rows() {
            builder = builder.set_column_dictionary_enabled(
                ColumnPath::new(vec![schema.field(i).name().clone()]),
                false,
            );
        }
    }
    builder.build()
}

/// Flat columns that Parquet may dictionary-encode (booleans and nested types are left
/// to the encoder's defaults).
fn dictionary_candidate(data_type: &DataType) -> bool {
    (data_type.is_primitive() && *data_type != DataType::Boolean)
        || matches!(
            data_type,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
        )
}

/// Start a new file for a group: its Parquet encoder and its upload task.
fn open_file(
    plan: &Plan,
    props: &WriterProperties,
    partition_values: Vec<ScalarValue>,
    bucket: Option<u32>,
) -> Result<(OpenFile, Upload)> {
    let dir = partition_path(&plan.layout.partition_on, &partition_values)?;
    let rel_path = new_data_file_path(&dir, bucket);
    let location = object_path(&plan.root, &rel_path)?;
    let (sink, upload) = PartSink::start(
        &plan.handle,
        Arc::clone(&plan.store),
        location.clone(),
        plan.options.upload_part_size,
        Arc::clone(&plan.in_flight),
    );
    let file = OpenFile {
        partition_values,
        bucket,
        rel_path,
        writer: None,
        waiting: Some((sink, props.clone())),
        pending: Vec::new(),
        pending_rows: 0,
        pending_bytes: 0,
        rows: 0,
        index: plan.index.iter().map(|_| HashSet::default()).collect(),
        nans: NanTracker::new(&plan.file_schema, props),
    };
    Ok((file, upload))
}

/// A new data file's path relative to the dataset root: below the partition directory
/// `dir` (empty when unpartitioned), named after its bucket.
pub(crate) fn new_data_file_path(dir: &str, bucket: Option<u32>) -> String {
    let name = data_file_name(bucket);
    if dir.is_empty() {
        name
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// `root/relative`, keeping the percent-encoding of `relative` as it is.
///
/// `Path::from` would encode the `%` of `a=x%2Fy` again (to `%252F`), so hive readers
/// would decode the wrong value; `Path::parse` takes the segments verbatim.
pub(crate) fn object_path(root: &Path, relative: &str) -> Result<Path> {
    let full = if root.as_ref().is_empty() {
        relative.to_string()
    } else {
        format!("{}/{relative}", root.as_ref())
    };
    Path::parse(&full).map_err(|e| Error::store(&full, e.into()))
}

impl OpenFile {
    /// Bytes this file holds: encoder buffers, pending rows and encoded bytes not sent.
    fn memory(&self) -> usize {
        self.writer.as_ref().map_or(0, ArrowWriter::memory_size)
            + self.pending_bytes
            + self.unsent_bytes()
    }

    fn unsent_bytes(&self) -> usize {
        self.writer.as_ref().map_or(0, |w| w.inner().buffer.len())
    }

    /// Encoded size so far, including the estimate of the row group in progress.
    fn encoded_estimate(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(0, |w| (w.bytes_written() + w.in_progress_size()) as u64)
    }

    /// The file's encoder, made now if this is its first row group. A file whose only
    /// row group this is (`last`) and which holds fewer than
    /// [`WriterOptions::small_file_rows`] rows gets Snappy instead of zstd.
    fn encoder(&mut self, plan: &Plan, last: bool) -> Result<&mut ArrowWriter<PartSink>> {
        if let Some((sink, props)) = self.waiting.take() {
            let small = last
                && (self.rows as usize + self.pending_rows) < plan.options.small_file_rows
                && matches!(
                    props.compression(&ColumnPath::new(Vec::new())),
                    Compression::ZSTD(_)
                );
            let props = if small {
                props
                    .into_builder()
                    .set_compression(Compression::SNAPPY)
                    .build()
            } else {
                props
            };
            let writer = ArrowWriter::try_new(sink, Arc::clone(&plan.file_schema), Some(props))
                .map_err(|e| Error::parquet(&self.rel_path, e))?;
            self.writer = Some(writer);
        }
        let path = &self.rel_path;
        self.writer.as_mut().ok_or_else(|| Error::Task {
            context: format!("writing {path}"),
            reason: "the file's encoder is gone".to_string(),
        })
    }

    /// Encode the pending rows (sorted when the writer sorts) as one row group; `last`
    /// when no row of the file comes after them.
    fn encode_pending(&mut self, plan: &Plan, last: bool) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.encoder(plan, last)?;
        let pending = mem::take(&mut self.pending);
        self.pending_rows = 0;
        self.pending_bytes = 0;
        // Sorting needs the row group's rows in one batch; otherwise the encoder takes
        // the pieces as they are, saving a copy.
        let chunks = if plan.sort_idx.is_empty() {
            pending
        } else {
            let chunk = concat_batches(&plan.file_schema, &pending)
                .map_err(|e| Error::arrow("concatenating buffered rows", e))?;
            vec![sort_batch(&chunk, &plan.sort_idx)?]
        };
        let path = &self.rel_path;
        for chunk in &chunks {
            for ((_, column, converter), distinct) in plan.index.iter().zip(self.index.iter_mut()) {
                let rows = converter
                    .convert_columns(&[Arc::clone(chunk.column(*column))])
                    .map_err(|e| Error::arrow("collecting index values", e))?;
                for row in rows.iter() {
                    if !distinct.contains(row.data()) {
                        distinct.insert(Box::from(row.data()));
                    }
                }
            }
            self.rows += chunk.num_rows() as u64;
            let writer = self.writer.as_mut().expect("made by encoder() above");
            self.nans
                .write(writer, chunk)
                .map_err(|e| Error::parquet(path, e))?;
        }
        // Closing the row group drops its column writers (and their zstd contexts).
        let writer = self.writer.as_mut().expect("made by encoder() above");
        self.nans.flush(writer).map_err(|e| Error::parquet(path, e))
    }

    /// Encode pending rows as a row group and send what is encoded.
    fn flush_row_group(&mut self, plan: &Plan) -> Result<()> {
        self.encode_pending(plan, false)?;
        let path = &self.rel_path;
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        // Parquet writes through a small buffer of its own; push it into the sink.
        writer
            .inner_mut()
            .send_full_parts()
            .map_err(|e| Error::parquet(path, e.into()))
    }

    /// Finish the Parquet file, send its last bytes and describe it.
    fn close(mut self, plan: &Plan) -> Result<DataFile> {
        self.encode_pending(plan, true)?;
        let path = self.rel_path.clone();
        // A file whose rows were all encoded earlier has its encoder; make one otherwise.
        self.encoder(plan, true)?;
        let writer = self.writer.as_mut().expect("made by encoder() above");
        self.nans
            .flush(writer)
            .map_err(|e| Error::parquet(&path, e))?;
        let metadata = writer.finish().map_err(|e| Error::parquet(&path, e))?;
        let sink = writer.inner_mut();
        sink.finish().map_err(|e| Error::parquet(&path, e.into()))?;
        let size_bytes = sink.written;
        let nans = self.nans.finish(metadata.row_groups().len());
        let stats = file_column_stats(&metadata, &plan.file_schema, &path, &nans)?;
        let mut index_values = BTreeMap::new();
        for ((name, _, converter), distinct) in plan.index.iter().zip(self.index) {
            let mut sorted: Vec<Box<[u8]>> = distinct.into_iter().collect();
            // Canonical row bytes sort like the values, so index values come out ordered.
            sorted.sort_unstable();
            let parser = converter.parser();
            let values = converter
                .convert_rows(sorted.iter().map(|b| parser.parse(b)))
                .map_err(|e| Error::arrow(format!("collecting index values of {name:?}"), e))?;
            if let Some(values) = values.into_iter().next() {
                index_values.insert(name.clone(), values);
            }
        }
        Ok(DataFile {
            path,
            partition_values: self.partition_values,
            bucket: self.bucket,
            num_rows: self.rows,
            size_bytes,
            column_stats: stats.columns,
            row_groups: stats.row_groups,
            index_values,
        })
    }
}

fn sort_batch(batch: &RecordBatch, columns: &[usize]) -> Result<RecordBatch> {
    let sort_columns: Vec<SortColumn> = columns
        .iter()
        .map(|&i| SortColumn {
            values: Arc::clone(batch.column(i)),
            options: None,
        })
        .collect();
    let indices =
        lexsort_to_indices(&sort_columns, None).map_err(|e| Error::arrow("sorting rows", e))?;
    take_record_batch(batch, &indices).map_err(|e| Error::arrow("sorting rows", e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use crate::layout::bucket_ids;
    use crate::reader::{ScanRequest, read_data_files};

    /// One row of the test dataset; `id` is unique.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Row {
        pub p1: Option<String>,
        pub p2: Option<i32>,
        pub id: i64,
        pub v: Option<f64>,
        pub s: Option<String>,
    }

    pub(crate) fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("p1", DataType::Utf8, true),
            Field::new("p2", DataType::Int32, true),
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]))
    }

    pub(crate) fn layout() -> Layout {
        Layout {
            partition_on: vec!["p1".into(), "p2".into()],
            bucket_by: vec!["id".into()],
            num_buckets: Some(4),
        }
    }

    /// Deterministic rows with nulls in both partition columns and partition values
    /// holding '/', spaces, '%' and '='.
    pub(crate) fn rows(start: i64, n: i64) -> Vec<Row> {
        const P1: [Option<&str>; 6] = [
            Some("a"),
            Some("x/y"),
            Some("with space"),
            None,
            Some("100%=sure"),
            Some(".hidden"),
        ];
        (start..start + n)
            .map(|id| {
                let h = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
                Row {
                    p1: P1[(h % 6) as usize].map(str::to_string),
                    p2: [Some(1), Some(-2), None][(h / 7 % 3) as usize],
                    id,
                    v: (!h.is_multiple_of(11)).then_some((h % 1000) as f64 / 10.0),
                    s: (!h.is_multiple_of(13)).then(|| format!("s{}", h % 97)),
                }
            })
            .collect()
    }

    pub(crate) fn batch(rows: &[Row]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.p1.clone()))),
                Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.p2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.v))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.s.clone()))),
            ],
        )
        .unwrap()
    }

    /// Rows of batches with the full dataset schema (any column order), sorted by id.
    pub(crate) fn to_rows(batches: &[RecordBatch]) -> Vec<Row> {
        let mut out = Vec::new();
        for b in batches {
            let get = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
            let (p1, p2, id, v, s) = (get("p1"), get("p2"), get("id"), get("v"), get("s"));
            let p1 = p1.as_any().downcast_ref::<StringArray>().unwrap();
            let p2 = p2.as_any().downcast_ref::<Int32Array>().unwrap();
            let id = id.as_any().downcast_ref::<Int64Array>().unwrap();
            let v = v.as_any().downcast_ref::<Float64Array>().unwrap();
            let s = s.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                out.push(Row {
                    p1: p1.is_valid(i).then(|| p1.value(i).to_string()),
                    p2: p2.is_valid(i).then(|| p2.value(i)),
                    id: id.value(i),
                    v: v.is_valid(i).then(|| v.value(i)),
                    s: s.is_valid(i).then(|| s.value(i).to_string()),
                });
            }
        }
        out.sort_by_key(|r| r.id);
        out
    }

    /// Write `rows` in batches of `batch_rows`, returning the files and the peak memory.
    pub(crate) async fn write_rows(
        store: Arc<dyn ObjectStore>,
        root: &Path,
        rows: &[Row],
        batch_rows: usize,
        options: WriterOptions,
    ) -> (Vec<DataFile>, usize) {
        let mut writer =
            DataFileWriter::new(store, root.clone(), schema(), layout(), options).unwrap();
        for chunk in rows.chunks(batch_rows) {
            writer.write(batch(chunk)).await.unwrap();
        }
        let peak = writer.peak_buffered_bytes();
        (writer.finish().await.unwrap(), peak)
    }

    async fn file_batches(
        store: &dyn ObjectStore,
        root: &Path,
        file: &DataFile,
    ) -> Vec<RecordBatch> {
        let location = object_path(root, &file.path).unwrap();
        let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, file.size_bytes, "size of {}", file.path);
        ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap()
    }

    /// Every file holds exactly its partition's and bucket's rows, under its partition
    /// path, without partition columns, with true statistics; together they hold `rows`.
    pub(crate) async fn check_files(
        store: &dyn ObjectStore,
        root: &Path,
        files: &[DataFile],
        rows: &[Row],
    ) {
        let mut seen = Vec::new();
        for file in files {
            let batches = file_batches(store, root, file).await;
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(n as u64, file.num_rows, "{}", file.path);
            let dir = partition_path(&layout().partition_on, &file.partition_values).unwrap();
            assert!(
                file.path.starts_with(&format!("{dir}/")),
                "{} not under {dir}",
                file.path
            );
            for b in &batches {
                assert_eq!(
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>(),
                    ["id", "v", "s"],
                    "partition columns must not be stored"
                );
                let buckets = bucket_ids(&[b.column(0).clone()], 4).unwrap();
                assert!(
                    buckets.iter().all(|x| Some(*x) == file.bucket),
                    "{}",
                    file.path
                );
                // Add the partition columns back from the file's values.
                let p1 = file.partition_values[0]
                    .to_array_of_size(b.num_rows())
                    .unwrap();
                let p2 = file.partition_values[1]
                    .to_array_of_size(b.num_rows())
                    .unwrap();
                let mut columns = vec![p1, p2];
                columns.extend(b.columns().iter().cloned());
                seen.extend(to_rows(&[RecordBatch::try_new(schema(), columns).unwrap()]));
            }
            check_stats(file, &batches);
        }
        seen.sort_by_key(|r| r.id);
        assert_eq!(seen, rows);
    }

    fn check_stats(file: &DataFile, batches: &[RecordBatch]) {
        let all = concat_batches(&batches[0].schema(), batches).unwrap();
        for (name, stats) in &file.column_stats {
            let column = all.column(all.schema().index_of(name).unwrap());
            assert_eq!(stats.null_count, Some(column.null_count() as u64), "{name}");
            let float = column.data_type().is_floating();
            let nans = crate::nan::count_nans(column.as_ref());
            assert_eq!(stats.nan_count, float.then_some(nans), "{name}");
            if nans > 0 {
                assert!(stats.min.is_null() && stats.max.is_null(), "{name}: NaN");
                continue;
            }
            for i in 0..column.len() {
                if column.is_null(i) {
                    continue;
                }
                let value = ScalarValue::try_from_array(column, i).unwrap();
                assert!(
                    !stats.min.is_null() && !stats.max.is_null(),
                    "{name}: unknown bounds"
                );
                assert!(
                    stats.min <= value && value <= stats.max,
                    "{name}: {value} outside"
                );
            }
        }
        assert_eq!(
            file.column_stats.keys().collect::<Vec<_>>(),
            ["id", "s", "v"],
            "stats for every stored column"
        );
    }

    async fn round_trip(store: Arc<dyn ObjectStore>, root: Path) {
        let rows = rows(0, 5_000);
        let (files, _) = write_rows(
            Arc::clone(&store),
            &root,
            &rows,
            1_000,
            WriterOptions::default(),
        )
        .await;
        // 6 x 3 partitions x 4 buckets, every combination present with 5000 rows.
        assert_eq!(files.len(), 72);
        check_files(store.as_ref(), &root, &files, &rows).await;

        let stream = read_data_files(store, root, schema(), &layout(), ScanRequest::new(files))
            .await
            .unwrap();
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        assert_eq!(batches[0].schema().fields().len(), 5);
        assert_eq!(batches[0].schema().field(0).name(), "p1");
        assert_eq!(to_rows(&batches), rows);
    }

    #[tokio::test]
    async fn round_trip_in_memory() {
        round_trip(Arc::new(InMemory::new()), Path::from("lake/t")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trip_local_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        round_trip(store, Path::from("lake")).await;
        // Percent-encoding is kept verbatim on disk, as hive readers expect.
        assert!(dir.path().join("lake/p1=x%2Fy").is_dir());
        assert!(dir.path().join("lake/p1=with%20space").is_dir());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_budget_is_kept_with_many_partitions() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let schema = Arc::new(Schema::new(vec![
            Field::new("part", DataType::Int32, false),
            Field::new("id", DataType::Int64, false),
            Field::new("payload", DataType::Utf8, false),
        ]));
        let layout = Layout {
            partition_on: vec!["part".into()],
            ..Layout::default()
        };
        let budget = 2 * 1024 * 1024;
        let options = WriterOptions {
            memory_budget: budget,
            upload_part_size: 32 * 1024,
            ..WriterOptions::default()
        };
        let mut writer = DataFileWriter::new(
            Arc::clone(&store),
            Path::from("t"),
            schema.clone(),
            layout,
            options,
        )
        .unwrap();
        let mut max_batch = 0;
        let n_batches = 60;
        let batch_rows = 4_000;
        for b in 0..n_batches {
            let ids = (b * batch_rows..(b + 1) * batch_rows).map(|i| i as i64);
            // Poorly compressible payloads so encoded bytes are substantial.
            let payload = ids.clone().map(|i| {
                format!(
                    "{:016x}{:016x}",
                    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    i
                )
            });
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int32Array::from_iter_values(
                        ids.clone().map(|i| (i % 40) as i32),
                    )),
                    Arc::new(Int64Array::from_iter_values(ids)),
                    Arc::new(StringArray::from_iter_values(payload)),
                ],
            )
            .unwrap();
            max_batch = max_batch.max(batch.get_array_memory_size());
            writer.write(batch).await.unwrap();
            assert!(
                writer.buffered_bytes() <= budget,
                "{} after enforcing",
                writer.buffered_bytes()
            );
        }
        let peak = writer.peak_buffered_bytes();
        let files = writer.finish().await.unwrap();
        assert!(
            peak > budget / 2,
            "the test should stress the budget (peak {peak})"
        );
        assert!(
            peak <= budget + max_batch,
            "peak {peak} > budget {budget} + batch {max_batch}"
        );
        assert_eq!(
            files.iter().map(|f| f.num_rows).sum::<u64>(),
            (n_batches * batch_rows) as u64
        );
        let mut row_groups = 0;
        for file in &files {
            let bytes = store
                .get(&object_path(&Path::from("t"), &file.path).unwrap())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            row_groups += reader.metadata().num_row_groups();
        }
        assert!(
            row_groups > files.len(),
            "{row_groups} row groups in {} files",
            files.len()
        );
    }

    /// Groups of thousands of rows per batch, taken out of the batch in one counting sort:
    /// every row lands once, in its bucket's file.
    #[tokio::test]
    async fn rows_of_big_groups_land_once_in_their_bucket_files() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("slices");
        let layout = Layout {
            partition_on: Vec::new(),
            bucket_by: vec!["id".into()],
            num_buckets: Some(3),
        };
        let rows = rows(0, 12_000);
        let mut writer = DataFileWriter::new(
            Arc::clone(&store),
            root.clone(),
            schema(),
            layout,
            WriterOptions::default(),
        )
        .unwrap();
        // Two batches: each bucket gets about 3,000 rows of each.
        for chunk in rows.chunks(6_000) {
            writer.write(batch(chunk)).await.unwrap();
        }
        let files = writer.finish().await.unwrap();
        assert_eq!(files.len(), 3);
        let mut seen = Vec::new();
        for file in &files {
            let batches = file_batches(store.as_ref(), &root, file).await;
            let read = to_rows(&batches);
            assert_eq!(read.len() as u64, file.num_rows);
            let ids: ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(
                read.iter().map(|r| r.id),
            ));
            let buckets = bucket_ids(&[ids], 3).unwrap();
            assert!(
                buckets.iter().all(|b| Some(*b) == file.bucket),
                "{}",
                file.path
            );
            seen.extend(read);
        }
        seen.sort_by_key(|r| r.id);
        assert_eq!(seen, rows);
    }

    /// Mostly distinct columns are written plain, repeating ones with a dictionary; the
    /// choice is made once from the first batch and holds for every file.
    #[tokio::test]
    async fn dictionaries_only_for_columns_whose_values_repeat() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("dictionaries");
        let rows = rows(0, 20_000);
        let (files, _) = write_rows(
            Arc::clone(&store),
            &root,
            &rows,
            5_000,
            WriterOptions::default(),
        )
        .await;
        check_files(store.as_ref(), &root, &files, &rows).await;
        for file in &files {
            let location = object_path(&root, &file.path).unwrap();
            let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            for column in reader.metadata().row_group(0).columns() {
                let name = column.column_path().string();
                let has_dictionary = column.dictionary_page_offset().is_some();
                // `id` is unique and `v` has about 1,000 values in the first batch's
                // 5,000 rows (more than one in 8 distinct); `s` (97 values) repeats.
                let expected = name == "s";
                assert_eq!(has_dictionary, expected, "{name} in {}", file.path);
            }
        }
    }

    #[tokio::test]
    async fn scratch_files_use_lz4_or_nothing_without_dictionaries_and_read_back_the_same() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = rows(0, 5_000);
        for (scratch, compress_scratch) in [(false, true), (true, true), (true, false)] {
            let root = Path::from(format!("scratch-{scratch}-{compress_scratch}"));
            let options = WriterOptions {
                scratch,
                compress_scratch,
                // Small dataset files are Snappy (the test below); these stay zstd.
                small_file_rows: 0,
                ..WriterOptions::default()
            };
            let (files, _) = write_rows(Arc::clone(&store), &root, &rows, 1_000, options).await;
            check_files(store.as_ref(), &root, &files, &rows).await;
            for file in &files {
                let location = object_path(&root, &file.path).unwrap();
                let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
                let columns = reader.metadata().row_group(0).columns();
                for column in columns {
                    let codec = column.compression();
                    if scratch && compress_scratch {
                        assert_eq!(codec, Compression::LZ4_RAW);
                    } else if scratch {
                        assert_eq!(codec, Compression::UNCOMPRESSED);
                    } else {
                        assert!(matches!(codec, Compression::ZSTD(_)), "{codec}");
                    }
                }
                let dictionaries = columns
                    .iter()
                    .filter(|c| c.dictionary_page_offset().is_some())
                    .count();
                assert_eq!(dictionaries == 0, scratch, "{dictionaries} dictionaries");
            }
        }
    }

    /// A file of fewer than `small_file_rows` rows, encoded at its close, is Snappy; one
    /// with more rows, or whose first row group was encoded before its close, is zstd.
    /// Either reads back the same rows.
    #[tokio::test]
    async fn small_files_are_snappy_and_the_others_zstd() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let unpartitioned = |root: &str, n: i64, options: WriterOptions| {
            let store = Arc::clone(&store);
            let root = Path::from(root);
            async move {
                let rows = rows(0, n);
                let mut writer = DataFileWriter::new(
                    Arc::clone(&store),
                    root.clone(),
                    schema(),
                    Layout::default(),
                    options,
                )
                .unwrap();
                for chunk in rows.chunks(700) {
                    writer.write(batch(chunk)).await.unwrap();
                }
                let files = writer.finish().await.unwrap();
                assert_eq!(files.len(), 1);
                let location = object_path(&root, &files[0].path).unwrap();
                let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
                let mut codecs: Vec<Compression> = reader
                    .metadata()
                    .row_groups()
                    .iter()
                    .flat_map(|g| g.columns().iter().map(|c| c.compression()))
                    .collect();
                codecs.dedup();
                let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
                assert_eq!(read.iter().map(|b| b.num_rows()).sum::<usize>(), n as usize);
                codecs
            }
        };
        let options = WriterOptions::default;
        let snappy = vec![Compression::SNAPPY];
        let zstd = |level| vec![Compression::ZSTD(level)];
        let level = ZstdLevel::try_new(1).unwrap();
        assert_eq!(unpartitioned("small", 5_000, options()).await, snappy);
        assert_eq!(unpartitioned("big", 20_000, options()).await, zstd(level));
        let early = WriterOptions {
            row_group_rows: 1_000,
            ..options()
        };
        assert_eq!(unpartitioned("early", 5_000, early).await, zstd(level));
        let never = WriterOptions {
            small_file_rows: 0,
            ..options()
        };
        assert_eq!(unpartitioned("never", 5_000, never).await, zstd(level));
    }

    #[tokio::test]
    async fn rolls_to_new_files_past_target_size() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = rows(0, 120_000);
        // Each of the 18 partitions gets about 6,700 rows: row groups of 1,000 rows and a
        // few of them per file.
        let target = 8 * 1024;
        let options = WriterOptions {
            target_file_size: target,
            row_group_rows: 1_000,
            ..WriterOptions::default()
        };
        let mut writer = DataFileWriter::new(
            Arc::clone(&store),
            Path::from("t"),
            schema(),
            Layout {
                partition_on: vec!["p1".into(), "p2".into()],
                ..Layout::default()
            },
            options,
        )
        .unwrap();
        for chunk in rows.chunks(10_000) {
            writer.write(batch(chunk)).await.unwrap();
        }
        let files = writer.finish().await.unwrap();
        let partitions: std::collections::HashSet<String> = files
            .iter()
            .map(|f| f.path.rsplit_once('/').unwrap().0.to_string())
            .collect();
        assert_eq!(partitions.len(), 18);
        assert!(
            files.len() > 2 * partitions.len(),
            "only {} files",
            files.len()
        );
        assert!(files.iter().all(|f| f.bucket.is_none()));
        assert_eq!(files.iter().map(|f| f.num_rows).sum::<u64>(), 120_000);
        for file in &files {
            assert!(
                file.size_bytes < 3 * target,
                "{} is {} bytes",
                file.path,
                file.size_bytes
            );
        }
    }

    #[tokio::test]
    async fn sorts_row_groups_and_collects_index_values() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = rows(0, 3_000);
        let options = WriterOptions {
            sort_by: vec!["s".into()],
            index_columns: vec!["s".into()],
            row_group_rows: 500,
            ..WriterOptions::default()
        };
        let (files, _) =
            write_rows(Arc::clone(&store), &Path::from("t"), &rows, 700, options).await;
        for file in &files {
            let batches = file_batches(store.as_ref(), &Path::from("t"), file).await;
            let all = concat_batches(&batches[0].schema(), &batches).unwrap();
            let s = all
                .column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let mut distinct: Vec<Option<&str>> = s.iter().collect();
            distinct.sort();
            distinct.dedup();
            let index = file.index_values["s"]
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            assert_eq!(index.iter().collect::<Vec<_>>(), distinct, "{}", file.path);
            // Each row group (500 rows at most) is sorted.
            let mut start = 0;
            while start < s.len() {
                let end = (start + 500).min(s.len());
                let group: Vec<Option<&str>> = (start..end)
                    .map(|i| s.is_valid(i).then(|| s.value(i)))
                    .collect();
                let mut sorted = group.clone();
                sorted.sort();
                if group != sorted {
                    // Row groups may be shorter than 500 rows; check real boundaries.
                    let reader = ParquetRecordBatchReaderBuilder::try_new(
                        store
                            .get(&object_path(&Path::from("t"), &file.path).unwrap())
                            .await
                            .unwrap()
                            .bytes()
                            .await
                            .unwrap(),
                    )
                    .unwrap();
                    let sizes: Vec<i64> = reader
                        .metadata()
                        .row_groups()
                        .iter()
                        .map(|g| g.num_rows())
                        .collect();
                    let mut at = 0usize;
                    for n in sizes {
                        let n = n as usize;
                        let g: Vec<Option<&str>> = (at..at + n)
                            .map(|i| s.is_valid(i).then(|| s.value(i)))
                            .collect();
                        let mut sorted = g.clone();
                        sorted.sort();
                        assert_eq!(g, sorted, "row group at {at} of {}", file.path);
                        at += n;
                    }
                    break;
                }
                start = end;
            }
        }
    }

    /// A partition value whose directory name would pass 255 bytes is refused before any
    /// file of its batch is opened, as an error that is not retried, naming the column.
    #[tokio::test]
    async fn refuses_partition_values_too_long_for_a_directory_name() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let mut writer = DataFileWriter::new(
            Arc::clone(&store),
            Path::from("t"),
            schema(),
            layout(),
            WriterOptions::default(),
        )
        .unwrap();
        // "p1=" and 252 plain bytes make 255: the longest allowed.
        let mut fine = rows(0, 2);
        fine[0].p1 = Some("x".repeat(252));
        fine[1].p1 = Some("é".repeat(42)); // 84 bytes, 252 once encoded
        writer.write(batch(&fine)).await.unwrap();
        let mut long = rows(10, 3);
        long[2].p1 = Some(format!("{}{}", "y".repeat(250), "/zz"));
        let err = writer.write(batch(&long)).await.unwrap_err();
        assert!(
            matches!(&err, Error::PartitionValueTooLong { column, value_start, segment_bytes: 258, .. }
                if column == "p1" && value_start == &"y".repeat(40)),
            "{err}"
        );
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("\"p1\""), "{err}");
        writer.abort().await.unwrap();
        let left: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        assert!(
            check_partition_values(&["p1".into()], &[ScalarValue::Utf8(None)]).is_ok(),
            "a null is written as the short marker"
        );
    }

    #[tokio::test]
    async fn refuses_a_batch_of_another_schema_and_abort_removes_files() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut writer = DataFileWriter::new(
            Arc::clone(&store),
            Path::from("t"),
            schema(),
            layout(),
            WriterOptions {
                upload_part_size: 1024,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["1"]))],
        )
        .unwrap();
        assert!(matches!(
            writer.write(wrong).await,
            Err(Error::ColumnMissing { column, .. }) if column == "p1"
        ));
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[3] = Field::new("v", DataType::Int64, true);
        let typed = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                batch(&rows(0, 1)).column(0).clone(),
                batch(&rows(0, 1)).column(1).clone(),
                batch(&rows(0, 1)).column(2).clone(),
                Arc::new(Int64Array::from(vec![1])),
                batch(&rows(0, 1)).column(4).clone(),
            ],
        )
        .unwrap();
        assert!(matches!(
            writer.write(typed).await,
            Err(Error::ColumnTypeMismatch { column, .. }) if column == "v"
        ));

        for chunk in rows(0, 4_000).chunks(1_000) {
            writer.write(batch(chunk)).await.unwrap();
        }
        // Force some files to finish uploading before the abort.
        writer
            .step(|plan, state| {
                let keys: Vec<GroupKey> = state.open.keys().take(5).cloned().collect();
                close_files(plan, state, &keys)
            })
            .await
            .unwrap();
        assert!(!writer.uploads.is_empty());
        writer.abort().await.unwrap();
        let left: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}

//! terrace-format: the on-store format of a terrace dataset.
//!
//! A dataset is a directory of plain Parquet files under hive-style partition paths plus a
//! `_terrace/` directory holding its manifest: one immutable JSON version file per commit
//! and Parquet *segments* listing the data files with typed per-file statistics. A write
//! becomes visible all at once when its version file is created with a put-if-absent, so
//! readers see one version or the next, never a mix.
//!
//! This crate owns the dataset location and object store, the manifest and its
//! (de)serialisation, the data-file layout (partition paths, bucket hash, file names),
//! schema rules, per-file statistics, secondary indices, the commit protocol, reading
//! and writing data files, and the sort-based shuffle that writes one file per group
//! ([`RunWriter`], [`RunMerge`], [`ClusteredWriter`]). It also reads the input files of an
//! ingest, next to the writer their rows go to: one input's schema ([`input_file_schema`];
//! [`file_schema`] is a data file's stored one), a schema inferred from several
//! ([`infer_schema`]), checks of what the decoders would take silently
//! ([`check_partition_sample`], [`check_schema_names`]), and the rows of a split decoded
//! from CSV, JSON lines, Parquet or Arrow ([`read_split`]); terrace-planner lists the
//! [`InputFile`]s and cuts the [`InputSplit`]s. It never prints or exits: every failure is
//! an [`Error`].
//!
//! Inside, opening a dataset ([`Dataset`]), the commit protocol ([`CommitBuilder`]), gc and
//! the secondary indices each read and write version files through one version log (the
//! listing, the latest version, the put-if-absent of a version, the `_latest` hint), and
//! every name below a dataset root is built and recognised by one module: the `_terrace/`
//! files, and the staging files of jobs, whose paths the planner and the job system build
//! with [`staging_dir`], [`new_map_attempt_dir`], [`new_report_path`], [`new_runs_report_path`],
//! [`new_query_part_path`] and [`query_result_path`]. gc removes only names that module
//! recognises.
//!
//! ```no_run
//! # async fn demo(batches: Vec<arrow::record_batch::RecordBatch>) -> terrace_format::Result<()> {
//! use terrace_format::{Dataset, Layout, WriterOptions};
//! let schema = batches[0].schema();
//! let layout = Layout {
//!     partition_on: vec!["origin".into()],
//!     bucket_by: vec!["tailnum".into()],
//!     num_buckets: Some(8),
//! };
//! let dataset = Dataset::create("./lake/flights", schema, layout).await?;
//! let mut writer = dataset.writer(WriterOptions::default())?;
//! for batch in batches {
//!     writer.write(batch).await?;
//! }
//! let files = writer.finish().await?;
//! let version = dataset.append(files).commit().await?;
//! println!("committed version {}", version.version());
//! # Ok(()) }
//! ```

mod blocking;
mod commit;
mod concat;
mod datafile;
mod dataset;
mod error;
mod gc;
mod group;
mod index;
mod input;
mod layout;
mod location;
mod manifest;
mod names;
mod nan;
mod pause;
mod reader;
mod schema;
mod shuffle;
mod stats;
mod upload;
mod version_log;
mod writer;

pub use commit::{CommitBuilder, Committed};
pub use concat::{MIN_CONCAT_ROWS_PER_ROW_GROUP, concat_data_files, worth_concatenating};
pub use datafile::{ColumnStats, DataFile, RowGroupStats};
pub use dataset::{CreateOptions, Dataset};
pub use error::{
    Error, Result, has_permanent_io_cause, is_permanent_io_error, is_retryable_store_error,
};
pub use gc::{GC_RETENTION_FLOOR, GcOptions, GcReport};
pub use input::{
    InputFile, InputFormat, InputSplit, SplitPart, check_not_empty, check_partition_sample,
    check_schema_names, infer_schema, infer_schema_and_unseen, input_file_schema, input_location,
    merge_schemas, parquet_row_group_bytes, read_split, with_types_of,
};
pub use layout::{
    Layout, MAX_PARTITION_SEGMENT_BYTES, NULL_PARTITION_MARKER, bucket_for_scalar, bucket_ids,
    check_partition_value, check_partition_values, data_file_name, decode_path_segment,
    encode_path_segment, encoded_segment_len, iceberg_hash_scalar, murmur3_x86_32,
    parse_partition_path, partition_path, partition_value_from_str, partition_value_to_string,
};
pub use location::Location;
pub use manifest::{
    CommitInfo, FORMAT_VERSION, FileList, IndexFile, Operation, SegmentSummary, Snapshot,
    decode_file_report, encode_file_report, is_stats_type,
};
pub use names::{
    new_map_attempt_dir, new_query_part_path, new_report_path, new_runs_report_path,
    query_result_path, staging_dir,
};
pub use nan::{may_hold_nan, nan_free};
pub use pause::PAUSE_BEFORE_PUT_VAR;
pub use reader::{RowGroupSelection, ScanRequest, read_data_files};
pub use schema::{SchemaEvolution, conform_batch, file_schema, reconcile};
pub use shuffle::{
    GroupRange, MergeOptions, MergedGroup, RunFile, RunGroup, RunMerge, RunOptions, RunWriter,
    ShuffleKey, split_group_ranges,
};
pub use writer::{ClusteredWriter, DataFileWriter, WriterOptions, scratch_properties};

//! The manifest: immutable version files and the Parquet segments they reference.
//!
//! `version.rs` holds the serde structs of the JSON version file exactly as stored
//! (format version [`FORMAT_VERSION`]); `segment.rs` encodes and decodes segments. Both
//! convert to and from the domain types here ([`Snapshot`], [`SegmentSummary`],
//! [`CommitInfo`]), so a new format version adds a new serde struct and a conversion,
//! never a change to the domain types' callers.

mod segment;
mod version;

pub use segment::{FileList, decode_file_report, encode_file_report, is_stats_type};
pub(crate) use segment::{decode_segment, encode_segment, summarize};
pub(crate) use version::{decode_version_file, encode_version_file};

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

/// The newest version-file format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// The empty first version.
    Create,
    /// Added files; never conflicts with another commit.
    Append,
    /// Replaced every file of the partitions the new files belong to (all files when the
    /// dataset is not partitioned).
    OverwritePartitions,
    /// Removed every file of some partitions.
    DeletePartitions,
    /// Replaced files by equivalent ones (same rows), e.g. compaction.
    Rewrite,
}

impl Operation {
    /// Whether this operation removes files, and so conflicts with any concurrent commit
    /// touching the same partitions.
    pub fn removes_files(self) -> bool {
        matches!(
            self,
            Operation::OverwritePartitions | Operation::DeletePartitions | Operation::Rewrite
        )
    }
}

/// The commit that produced a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// What it did.
    pub operation: Operation,
    /// The job that committed it, if any.
    pub job_id: Option<String>,
    /// A caller-chosen key; a second commit with the same key is a no-op.
    pub idempotency_key: Option<String>,
    /// Rows in added files.
    pub rows_added: u64,
    /// Files added.
    pub files_added: u64,
    /// Rows in removed files.
    pub rows_removed: u64,
    /// Files removed.
    pub files_removed: u64,
    /// Partition paths (`a=1/b=x`, `""` when unpartitioned) with added or removed files,
    /// sorted; what conflict checks compare.
    pub partitions: Vec<String>,
}

/// Summary of one segment, kept in the version file so whole segments can be pruned
/// without being read.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSummary {
    /// Path relative to the dataset root (`_terrace/segments/<uuid>.parquet`).
    pub path: String,
    /// Data files listed.
    pub num_files: u64,
    /// Rows in those files.
    pub num_rows: u64,
    /// Bytes of those files.
    pub size_bytes: u64,
    /// Per partition column, the smallest non-null value (typed null if all are null).
    pub partition_min: Vec<ScalarValue>,
    /// Per partition column, the largest non-null value (typed null if all are null).
    pub partition_max: Vec<ScalarValue>,
    /// Per partition column, how many files have a null value.
    pub partition_null_count: Vec<u64>,
    /// Smallest bucket listed, when bucketed.
    pub bucket_min: Option<u32>,
    /// Largest bucket listed, when bucketed.
    pub bucket_max: Option<u32>,
}

/// A secondary index file: for one column, which data files hold which values.
///
/// The file is Parquet with columns `value` (typed as the column) and `path` (Utf8, the
/// data file relative to the dataset root), one row per (distinct value, file), sorted by
/// value. Entries naming files no longer in the version are ignored by readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// The indexed column.
    pub column: String,
    /// Path relative to the dataset root (`_terrace/indices/<column>/<uuid>.parquet`).
    pub path: String,
    /// Rows in the index file.
    pub num_entries: u64,
}

/// Everything a version file says.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub dataset_id: String,
    pub version: u64,
    pub parent: Option<u64>,
    pub timestamp: DateTime<Utc>,
    pub commit: CommitInfo,
    pub schema: SchemaRef,
    pub layout: Layout,
    pub indexed_columns: Vec<String>,
    pub indices: Vec<IndexFile>,
    pub segments: Vec<SegmentSummary>,
}

/// One committed version of a dataset: what a reader sees, all at once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) manifest: Arc<Manifest>,
}

impl Snapshot {
    /// The version number (0 is the empty version written by create).
    pub fn version(&self) -> u64 {
        self.manifest.version
    }
    /// The version this one was built on.
    pub fn parent(&self) -> Option<u64> {
        self.manifest.parent
    }
    /// When it was committed.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.manifest.timestamp
    }
    /// The dataset's id, the same for all its versions.
    pub fn dataset_id(&self) -> &str {
        &self.manifest.dataset_id
    }
    /// The commit that produced it.
    pub fn commit(&self) -> &CommitInfo {
        &self.manifest.commit
    }
    /// The dataset schema, partition columns included.
    pub fn schema(&self) -> SchemaRef {
        self.manifest.schema.clone()
    }
    /// Partition and bucket layout.
    pub fn layout(&self) -> &Layout {
        &self.manifest.layout
    }
    /// Columns with a secondary index.
    pub fn indexed_columns(&self) -> &[String] {
        &self.manifest.indexed_columns
    }
    /// The index files.
    pub fn indices(&self) -> &[IndexFile] {
        &self.manifest.indices
    }
    /// The segments listing the data files.
    pub fn segments(&self) -> &[SegmentSummary] {
        &self.manifest.segments
    }
    /// Data files in this version.
    pub fn num_files(&self) -> u64 {
        self.manifest.segments.iter().map(|s| s.num_files).sum()
    }
    /// Rows in this version.
    pub fn num_rows(&self) -> u64 {
        self.manifest.segments.iter().map(|s| s.num_rows).sum()
    }
    /// Bytes of data files in this version.
    pub fn size_bytes(&self) -> u64 {
        self.manifest.segments.iter().map(|s| s.size_bytes).sum()
    }
}

#[cfg(test)]
mod golden_tests;

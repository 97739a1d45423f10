//! The one error type of `terrace-format`.
//!
//! Variants carry the context a user needs to act (the dataset URL, the object path, the
//! column and both types). [`Error::is_retryable`] tells a worker whether running the same
//! task again may succeed (a network hiccup) or cannot (a schema mismatch).

use arrow::datatypes::DataType;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, writing or committing a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dataset location is not a path or URL terrace understands.
    #[error("invalid dataset location {location:?}: {reason}")]
    InvalidLocation {
        /// What the user gave.
        location: String,
        /// Why it was refused.
        reason: String,
    },

    /// The store cannot create an object only if it is absent, so commits could silently race.
    #[error(
        "the object store at {location} does not support conditional create (put-if-absent); \
         terrace refuses it because concurrent commits could overwrite each other"
    )]
    ConditionalPutUnsupported {
        /// The dataset location.
        location: String,
    },

    /// An object-store call failed.
    #[error("object store error at {path}: {source}")]
    ObjectStore {
        /// The object path involved.
        path: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },

    /// No committed version exists at this location.
    #[error("no terrace dataset at {location} (no committed version under _terrace/versions/)")]
    DatasetNotFound {
        /// The dataset location.
        location: String,
    },

    /// `create` found a dataset already there.
    #[error("a terrace dataset already exists at {location}")]
    DatasetExists {
        /// The dataset location.
        location: String,
    },

    /// The requested version does not exist (never committed, or removed by gc).
    #[error("version {version} of {location} does not exist (never committed or removed by gc)")]
    VersionNotFound {
        /// The dataset location.
        location: String,
        /// The version asked for.
        version: u64,
    },

    /// No version was committed at or before the requested time.
    #[error("{location} has no version committed at or before {timestamp}")]
    NoVersionAtTime {
        /// The dataset location.
        location: String,
        /// The time asked for (RFC 3339).
        timestamp: String,
    },

    /// A manifest file (version file, segment, index) could not be decoded.
    #[error("corrupt manifest file {path}: {reason}")]
    CorruptManifest {
        /// The object path of the file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A version file was written by a newer terrace.
    #[error(
        "{path} has format version {found}, this terrace reads up to {supported}; upgrade terrace"
    )]
    UnsupportedFormatVersion {
        /// The object path of the version file.
        path: String,
        /// The format version in the file.
        found: u32,
        /// The newest format version this build reads.
        supported: u32,
    },

    /// A column of the write has a different type than the dataset's column.
    #[error("column {column:?} has type {found} in the write but {expected} in the dataset")]
    ColumnTypeMismatch {
        /// The column.
        column: String,
        /// The dataset's type.
        expected: DataType,
        /// The write's type.
        found: DataType,
    },

    /// A column of the dataset is missing from the write.
    #[error("column {column:?} ({expected}) of the dataset is missing from the write")]
    ColumnMissing {
        /// The column.
        column: String,
        /// The dataset's type.
        expected: DataType,
    },

    /// The write has a column the dataset does not have.
    #[error(
        "column {column:?} ({found}) is not in the dataset; add it explicitly (add-columns) \
         if it should be"
    )]
    ColumnNotInDataset {
        /// The column.
        column: String,
        /// The write's type.
        found: DataType,
    },

    /// A column added by schema evolution must be nullable (old files have no values for it).
    #[error("new column {column:?} ({found}) must be nullable to be added to an existing dataset")]
    NewColumnNotNullable {
        /// The column.
        column: String,
        /// Its type.
        found: DataType,
    },

    /// The nullability of a column differs.
    #[error("column {column:?} is nullable in the write but not in the dataset")]
    ColumnNullabilityMismatch {
        /// The column.
        column: String,
    },

    /// A partition or bucket column is not in the schema.
    #[error("{role} column {column:?} is not in the schema (columns: {available})")]
    UnknownColumn {
        /// "partition" or "bucket".
        role: &'static str,
        /// The column asked for.
        column: String,
        /// The schema's columns, comma separated.
        available: String,
    },

    /// The partitioning / bucketing spec is invalid.
    #[error("invalid layout: {reason}")]
    InvalidLayout {
        /// What is wrong (e.g. "num_buckets must be at least 1, got 0").
        reason: String,
    },

    /// A column type cannot be used to partition or bucket.
    #[error("column {column:?} of type {data_type} cannot be used as a {role} column")]
    UnsupportedColumnType {
        /// "partition" or "bucket".
        role: &'static str,
        /// The column.
        column: String,
        /// Its type.
        data_type: DataType,
    },

    /// A partition value whose directory name (`column=value`, percent-encoded) would be
    /// longer than [`MAX_PARTITION_SEGMENT_BYTES`](crate::MAX_PARTITION_SEGMENT_BYTES).
    /// Bad input, not a store failure: writing it again fails the same way.
    #[error(
        "partition column {column:?} has a value too long for a directory name: \
         {value_start:?}{} ({value_bytes} bytes) makes a directory name of {segment_bytes} \
         bytes once encoded, over the {limit} a file or directory name may have; partition \
         on a shorter column (or on a prefix or hash of this one)",
        if .value_start.len() < *.value_bytes { "…" } else { "" }
    )]
    PartitionValueTooLong {
        /// The partition column.
        column: String,
        /// The value's first characters (about 40).
        value_start: String,
        /// The value's length in bytes.
        value_bytes: usize,
        /// The length of `column=value` once encoded.
        segment_bytes: usize,
        /// The limit.
        limit: usize,
    },

    /// A data-file path does not follow the dataset's partition layout.
    #[error("invalid partition path {path:?}: {reason}")]
    InvalidPartitionPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// Another commit changed what this commit depends on.
    #[error("commit conflict on {location}: {reason}")]
    Conflict {
        /// The dataset location.
        location: String,
        /// Which version won and what it touched.
        reason: String,
    },

    /// Too many concurrent commits won in a row; trying again later may succeed.
    #[error("commit to {location} gave up after {attempts} attempts lost to concurrent commits")]
    CommitRetriesExhausted {
        /// The dataset location.
        location: String,
        /// How many times it tried.
        attempts: u32,
    },

    /// A read named row groups its file does not have.
    #[error("invalid row-group selection for {path}: {reason}")]
    InvalidRowGroupSelection {
        /// The data file.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// Reading or writing Parquet failed.
    #[error("parquet error in {path}: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// The parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// An Arrow compute or conversion failed.
    #[error("arrow error while {context}: {source}")]
    Arrow {
        /// What was being done.
        context: String,
        /// The arrow error.
        #[source]
        source: arrow::error::ArrowError,
    },

    /// DataFusion failed while reading data files.
    #[error("query engine error while {context}: {source}")]
    DataFusion {
        /// What was being done.
        context: String,
        /// The DataFusion error.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },

    /// A background task panicked or was cancelled.
    #[error("background task failed while {context}: {reason}")]
    Task {
        /// What was being done.
        context: String,
        /// The panic or cancellation message.
        reason: String,
    },
}

impl Error {
    /// Whether running the same operation again may succeed.
    ///
    /// Transient store failures and lost commit races are retryable; bad input, corrupt
    /// files and conflicts with another writer's overwrite are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ObjectStore { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            Error::CommitRetriesExhausted { .. } | Error::Task { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn store(path: impl ToString, source: object_store::Error) -> Self {
        Error::ObjectStore {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn parquet(path: impl ToString, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn arrow(context: impl ToString, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn datafusion(
        context: impl ToString,
        source: datafusion::error::DataFusionError,
    ) -> Self {
        Error::DataFusion {
            context: context.to_string(),
            source: Box::new(source),
        }
    }
}

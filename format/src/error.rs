//! The one error type of `terrace-format`.
//!
//! Variants carry the context a user needs to act (the dataset URL, the object path, the
//! column and both types). [`Error::is_retryable`] tells a worker whether running the same
//! task again may succeed (a network hiccup) or cannot (a schema mismatch).

use arrow::datatypes::DataType;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, writing or committing a dataset, and reading
/// the input files of an ingest.
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

    /// `create` found objects terrace did not write at the location.
    #[error(
        "refusing to create a dataset at {location}: it already holds {example}, which terrace \
         did not write (a dataset needs an empty directory or prefix of its own)"
    )]
    LocationNotEmpty {
        /// The dataset location.
        location: String,
        /// One of the objects found there, relative to the location.
        example: String,
    },

    /// gc was asked for a retention below the floor that protects jobs still writing.
    #[error(
        "a gc retention of {retention} is below the {floor} floor that keeps the files of \
         jobs still running; give --retention {floor} or more, or --force to go below it"
    )]
    RetentionBelowFloor {
        /// The retention asked for.
        retention: String,
        /// [`crate::GC_RETENTION_FLOOR`].
        floor: String,
    },

    /// Files a commit was about to reference were gone right before its version put (gc
    /// with a short forced retention removed them while the job ran). Nothing was
    /// committed; running the same commit again cannot succeed, the job must write again.
    #[error(
        "commit to {location} refused: {missing} file(s) it would reference no longer \
         exist, e.g. {example} (removed while the job ran, by gc with a short --retention \
         and --force?); nothing was committed, run the job again"
    )]
    CommitFilesMissing {
        /// The dataset location.
        location: String,
        /// How many files are missing.
        missing: usize,
        /// One of them, relative to the dataset root.
        example: String,
    },

    /// A version is missing below newer ones: a version put there would never be seen.
    #[error(
        "version {missing} of {location} is missing but version {newer} exists (a version \
         file was removed by hand?); refusing to commit into the gap, where no reader would \
         see the commit"
    )]
    VersionGap {
        /// The dataset location.
        location: String,
        /// The missing version (the one this commit would have created).
        missing: u64,
        /// The oldest version above it.
        newer: u64,
    },

    /// An invalid argument of a call: a schema given with two columns of one name, no
    /// input file to infer a schema from.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was invalid (e.g. `"schema"`).
        what: String,
        /// Why.
        reason: String,
    },

    /// An input file of an ingest cannot be read (its location, format, content or
    /// column names).
    #[error("cannot read input {path:?}: {reason}")]
    Input {
        /// The input.
        path: String,
        /// Why.
        reason: String,
    },

    /// An object-store call reading an input file failed (the input's path as given, where
    /// [`Error::ObjectStore`] names an object of a dataset).
    #[error("object store error on {path:?}: {source}")]
    InputStore {
        /// The input.
        path: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },

    /// A row of an input file is malformed.
    #[error("bad row in {path:?} at line {line}: {reason}")]
    BadRow {
        /// The input file.
        path: String,
        /// 1-based line number of the row (CSV, JSON lines).
        line: u64,
        /// Why.
        reason: String,
    },

    /// A CSV header cannot name the columns: a name is empty or used twice.
    #[error("bad header in {path:?} at line {line}, column {column}: {reason}")]
    BadHeader {
        /// The input file.
        path: String,
        /// 1-based line of the header (1).
        line: u64,
        /// 1-based position of the column in the header.
        column: usize,
        /// Why.
        reason: String,
    },

    /// Two inputs disagree on a column, or an input and the schema it is read with.
    #[error(
        "inputs have different schemas: column {column:?} is {first_type} in {first:?} but {second_type} in {second:?}"
    )]
    SchemaMismatch {
        /// The column.
        column: String,
        /// File that defined the schema (or `the dataset schema`).
        first: String,
        /// Type there (or `missing`).
        first_type: String,
        /// File that disagrees.
        second: String,
        /// Type there (or `missing`).
        second_type: String,
    },

    /// A shuffle run file does not match the report describing it or the dataset's
    /// stored columns (truncated, replaced, of another schema, or corrupt). Reading it
    /// again fails the same way; the map task that wrote it must run again.
    #[error("invalid shuffle run file {path}: {reason}")]
    InvalidRunFile {
        /// The run's path relative to its root.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A clustered writer was given a group after a later one in the shuffle's order
    /// (which would need a second file for it): a bug in the caller, not retried.
    #[error(
        "group {next} arrived after group {previous}; a clustered writer takes each group \
         once, in the shuffle's group order"
    )]
    GroupOutOfOrder {
        /// The group written before.
        previous: String,
        /// The group that came after it.
        next: String,
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
    /// files, permanent store failures (see [`is_retryable_store_error`]) and conflicts
    /// with another writer's overwrite are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ObjectStore { source, .. } | Error::InputStore { source, .. } => {
                is_retryable_store_error(source)
            }
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

/// Whether an object-store call that failed with `error` may succeed when tried again.
///
/// Not retryable: what the store answers the same way every time (not found, invalid
/// path, unsupported, denied, unauthenticated, a bad configuration key), and failures
/// whose cause is an I/O error that waiting does not fix ([`is_permanent_io_error`]).
/// object_store's local filesystem reports most I/O failures as `Generic` with the
/// `std::io::Error` in the source chain, so the chain is searched. Everything else
/// (timeouts, connection resets, throttling, HTTP 5xx) is retryable.
pub fn is_retryable_store_error(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    match error {
        E::NotFound { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => false,
        other => !has_permanent_io_cause(other),
    }
}

/// Whether `error` or one of its sources is an I/O error that trying again will not fix
/// ([`is_permanent_io_error`]): for errors of other layers that wrap store failures
/// (a Parquet writer on an object store, say), which are otherwise retried.
pub fn has_permanent_io_cause(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && is_permanent_io_error(io)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether an I/O error is one that trying again will not fix: permission denied,
/// read-only filesystem, no space or quota left, a file name too long or invalid, a
/// path component that is a file, a file too large.
///
/// A full disk may be freed, but not in the seconds a task's retries wait; failing at
/// once with the cause lets the user act instead of watching backoff warnings.
pub fn is_permanent_io_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        error.kind(),
        K::PermissionDenied
            | K::ReadOnlyFilesystem
            | K::StorageFull
            | K::QuotaExceeded
            | K::InvalidFilename
            | K::NotADirectory
            | K::IsADirectory
            | K::FileTooLarge
            | K::Unsupported
    )
}

#[cfg(test)]
mod tests {
    use std::io::{self, ErrorKind};
    use std::sync::Arc;

    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::*;

    fn generic(source: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        }
    }

    /// An error that wraps another, as object_store's local errors wrap `io::Error`.
    #[derive(Debug, thiserror::Error)]
    #[error("unable to open file: {source}")]
    struct Wrapped {
        #[source]
        source: io::Error,
    }

    #[test]
    fn permanent_io_failures_are_not_retried_wherever_they_sit_in_the_chain() {
        let permanent = [
            ErrorKind::PermissionDenied,
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::StorageFull,
            ErrorKind::QuotaExceeded,
            ErrorKind::InvalidFilename,
            ErrorKind::NotADirectory,
            ErrorKind::IsADirectory,
            ErrorKind::FileTooLarge,
        ];
        for kind in permanent {
            let direct = generic(io::Error::from(kind));
            let wrapped = generic(Wrapped {
                source: io::Error::from(kind),
            });
            for source in [direct, wrapped] {
                let e = Error::store("x", source);
                assert!(!e.is_retryable(), "{kind:?}: {e}");
            }
        }
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::TimedOut,
            ErrorKind::Interrupted,
            ErrorKind::NotFound,
        ] {
            let e = Error::store("x", generic(io::Error::from(kind)));
            assert!(e.is_retryable(), "{kind:?}: {e}");
        }
        let plain = generic(io::Error::other(
            "connection closed before message completed",
        ));
        assert!(is_retryable_store_error(&plain));
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "403".into(),
        };
        assert!(!is_retryable_store_error(&denied));
    }

    /// Reading an input follows the same rule as the dataset's objects.
    #[test]
    fn input_store_errors_follow_the_store_rule() {
        let input = |source| Error::InputStore {
            path: "in/x.csv".into(),
            source,
        };
        assert!(!input(generic(io::Error::from(ErrorKind::PermissionDenied))).is_retryable());
        assert!(input(generic(io::Error::from(ErrorKind::ConnectionReset))).is_retryable());
    }

    /// The errno values behind the cases map to the kinds above.
    #[cfg(target_os = "linux")]
    #[test]
    fn errno_values_of_the_permanent_cases_are_permanent() {
        // EACCES, EPERM, ENOSPC, EROFS, ENAMETOOLONG, ENOTDIR, EDQUOT, EFBIG.
        for errno in [13, 1, 28, 30, 36, 20, 122, 27] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(
                is_permanent_io_error(&e),
                "errno {errno}: {e} ({:?})",
                e.kind()
            );
        }
        // EAGAIN, ECONNRESET, ETIMEDOUT, EIO (a flaky disk or NFS may recover).
        for errno in [11, 104, 110, 5] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(!is_permanent_io_error(&e), "errno {errno}: {e}");
        }
    }

    /// Real failures of object_store's local store, which root cannot bypass: a path
    /// component that is a file, and a name over 255 bytes.
    #[tokio::test]
    async fn local_store_failures_that_root_hits_too_are_permanent() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(dir.path().join("a-file"), b"x").unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let root = Path::from_absolute_path(dir.path()).unwrap();
        let long = "n".repeat(300);
        for relative in [
            "a-file/below.parquet".to_string(),
            format!("{long}/x.parquet"),
        ] {
            let path = crate::location::join(&root, &relative);
            let source = store
                .put(&path, PutPayload::from_static(b"data"))
                .await
                .unwrap_err();
            let e = Error::store(&path, source);
            assert!(!e.is_retryable(), "{relative}: {e:?}");
        }
    }
}

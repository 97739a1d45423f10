//! The [`Dataset`] handle: a dataset's location and the version it was loaded at.
//!
//! Creating, opening (also at an earlier version or instant), reading the loaded
//! version's files and indices, and starting commits ([`CommitBuilder`]) and gc. The
//! version files themselves are listed, read and put by the version log
//! (`version_log.rs`), which the commit protocol and gc use as well.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::commit::{Action, CommitBuilder};
use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::location::Location;
use crate::manifest::{
    CommitInfo, FileList, IndexFile, Manifest, Operation, SegmentSummary, Snapshot,
};
use crate::names::{classify, is_own};
use crate::schema::schema_to_v1;
use crate::version_log::{
    latest_version, list_versions, load_snapshot, probe_conditional_put, put_version, read_segment,
    write_latest_hint,
};

/// What to create a dataset with.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Partitioning and bucketing.
    pub layout: Layout,
    /// Columns that get a secondary index (value -> files) on every commit.
    pub indexed_columns: Vec<String>,
}

/// A dataset at a location, with the version it was opened at.
///
/// Cheap to clone. The loaded [`Snapshot`] does not change by itself: reads see that
/// version until [`Dataset::refresh`] (or a commit) returns a newer one.
#[derive(Debug, Clone)]
pub struct Dataset {
    location: Arc<Location>,
    snapshot: Snapshot,
}

impl Dataset {
    /// Create an empty dataset (version 0) at `location`.
    ///
    /// Refuses a location that already holds a dataset, a location that holds objects
    /// terrace did not write (a dataset is never created around a user's files, which gc
    /// would then have to tell apart; see [`Dataset::check_create`]), an invalid layout,
    /// and a store that cannot create objects only if absent.
    pub async fn create(location: &str, schema: SchemaRef, layout: Layout) -> Result<Dataset> {
        Self::create_with(
            location,
            schema,
            CreateOptions {
                layout,
                ..Default::default()
            },
        )
        .await
    }

    /// [`Dataset::create`] with secondary indices.
    pub async fn create_with(
        location: &str,
        schema: SchemaRef,
        options: CreateOptions,
    ) -> Result<Dataset> {
        Self::create_at(Location::parse(location)?, schema, options).await
    }

    /// [`Dataset::create_with`] at an already resolved [`Location`].
    pub async fn create_at(
        location: Location,
        schema: SchemaRef,
        options: CreateOptions,
    ) -> Result<Dataset> {
        let location = Arc::new(location);
        options.layout.validate(&schema)?;
        schema_to_v1(&schema)?;
        for column in &options.indexed_columns {
            let field = schema
                .field_with_name(column)
                .map_err(|_| Error::UnknownColumn {
                    role: "index",
                    column: column.clone(),
                    available: crate::schema::column_list(&schema),
                })?;
            if options.layout.partition_on.contains(column)
                || !crate::manifest::is_stats_type(field.data_type())
            {
                return Err(Error::UnsupportedColumnType {
                    role: "index",
                    column: column.clone(),
                    data_type: field.data_type().clone(),
                });
            }
        }
        check_create(&location, &options.layout).await?;
        probe_conditional_put(&location).await?;
        let manifest = Manifest {
            dataset_id: uuid::Uuid::new_v4().to_string(),
            version: 0,
            parent: None,
            timestamp: Utc::now(),
            commit: CommitInfo {
                operation: Operation::Create,
                job_id: None,
                idempotency_key: None,
                rows_added: 0,
                files_added: 0,
                rows_removed: 0,
                files_removed: 0,
                partitions: vec![],
            },
            schema,
            layout: options.layout,
            indexed_columns: options.indexed_columns,
            indices: vec![],
            segments: vec![],
        };
        match put_version(&location, &manifest).await {
            Ok(()) => {}
            Err(Error::ObjectStore {
                source: object_store::Error::AlreadyExists { .. },
                ..
            }) => {
                return Err(Error::DatasetExists {
                    location: location.display.clone(),
                });
            }
            Err(e) => return Err(e),
        }
        write_latest_hint(&location, 0).await;
        Ok(Dataset {
            location,
            snapshot: Snapshot {
                manifest: Arc::new(manifest),
            },
        })
    }

    /// What [`Dataset::create`] would refuse about `location`, checked without writing:
    /// a dataset already there ([`Error::DatasetExists`]), or an object that is not a name
    /// terrace writes with `layout` ([`Error::LocationNotEmpty`]). Data files of `layout`
    /// and anything under `_terrace/` are allowed: the first ingest writes its data files
    /// before its commit creates the dataset.
    pub async fn check_create(location: &str, layout: &Layout) -> Result<()> {
        check_create(&Location::parse(location)?, layout).await
    }

    /// Open the latest version of the dataset at `location`.
    pub async fn open(location: &str) -> Result<Dataset> {
        Self::open_at(Location::parse(location)?).await
    }

    /// [`Dataset::open`] at an already resolved [`Location`].
    pub async fn open_at(location: Location) -> Result<Dataset> {
        let location = Arc::new(location);
        let version = latest_version(&location).await?;
        let snapshot = load_snapshot(&location, version).await?;
        Ok(Dataset { location, snapshot })
    }

    /// Open a given version (time travel).
    pub async fn open_version(location: &str, version: u64) -> Result<Dataset> {
        // Loads only the version asked for: a damaged newer version must not hide it.
        let location = Arc::new(Location::parse(location)?);
        list_versions(&location).await?;
        let snapshot = load_snapshot(&location, version).await?;
        Ok(Dataset { location, snapshot })
    }

    /// Open the version that was current at `timestamp` (time travel).
    pub async fn open_as_of(location: &str, timestamp: DateTime<Utc>) -> Result<Dataset> {
        let dataset = Self::open(location).await?;
        let snapshot = dataset.snapshot_at(timestamp).await?;
        Ok(dataset.with_snapshot(snapshot))
    }

    /// The same dataset with another loaded snapshot.
    pub fn with_snapshot(&self, snapshot: Snapshot) -> Dataset {
        Dataset {
            location: self.location.clone(),
            snapshot,
        }
    }

    /// The loaded version.
    pub fn current(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The loaded version's number.
    pub fn version(&self) -> u64 {
        self.snapshot.version()
    }

    /// The loaded version's schema.
    pub fn schema(&self) -> SchemaRef {
        self.snapshot.schema()
    }

    /// The location as given.
    pub fn location(&self) -> &str {
        &self.location.display
    }

    /// The object store holding the dataset.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.location.store.clone()
    }

    /// The dataset root in the store.
    pub fn root(&self) -> &Path {
        &self.location.root
    }

    /// Re-read the latest version.
    pub async fn refresh(&self) -> Result<Dataset> {
        Ok(self.with_snapshot(self.latest().await?))
    }

    /// The latest committed version, read from the store now.
    pub async fn latest(&self) -> Result<Snapshot> {
        let version = latest_version(&self.location).await?;
        if version == self.snapshot.version() {
            return Ok(self.snapshot.clone());
        }
        load_snapshot(&self.location, version).await
    }

    /// A given version.
    pub async fn snapshot(&self, version: u64) -> Result<Snapshot> {
        if version == self.snapshot.version() {
            return Ok(self.snapshot.clone());
        }
        load_snapshot(&self.location, version).await
    }

    /// The newest version committed at or before `timestamp`.
    pub async fn snapshot_at(&self, timestamp: DateTime<Utc>) -> Result<Snapshot> {
        let versions = list_versions(&self.location).await?;
        // Timestamps grow with version numbers (each commit is made after reading its
        // parent), so walk down from the newest.
        for version in versions.into_iter().rev() {
            let snapshot = load_snapshot(&self.location, version).await?;
            if snapshot.timestamp() <= timestamp {
                return Ok(snapshot);
            }
        }
        Err(Error::NoVersionAtTime {
            location: self.location.display.clone(),
            timestamp: timestamp.to_rfc3339(),
        })
    }

    /// The numbers of the retained versions, oldest first (a listing; no version file is
    /// read).
    pub async fn versions(&self) -> Result<Vec<u64>> {
        list_versions(&self.location).await
    }

    /// Every retained version, oldest first.
    pub async fn history(&self) -> Result<Vec<Snapshot>> {
        let versions = list_versions(&self.location).await?;
        let location = self.location.clone();
        futures::stream::iter(versions)
            .map(move |v| {
                let location = location.clone();
                async move { load_snapshot(&location, v).await }
            })
            .buffered(16)
            .try_collect()
            .await
    }

    /// Read the files listed by one segment.
    pub async fn read_segment(&self, segment: &SegmentSummary) -> Result<FileList> {
        read_segment(&self.location, &self.snapshot, segment).await
    }

    /// Every data file of the loaded version.
    pub async fn files(&self) -> Result<Vec<DataFile>> {
        let (location, snapshot) = (self.location.clone(), self.snapshot.clone());
        let lists: Vec<FileList> = futures::stream::iter(self.snapshot.segments().to_vec())
            .map(move |segment| {
                let (location, snapshot) = (location.clone(), snapshot.clone());
                async move { read_segment(&location, &snapshot, &segment).await }
            })
            .buffered(8)
            .try_collect()
            .await?;
        let mut files = Vec::with_capacity(self.snapshot.num_files() as usize);
        for list in lists {
            files.extend(list.data_files()?);
        }
        Ok(files)
    }

    /// Read an index file: columns `value` and `path`, sorted by value.
    pub async fn read_index(&self, index: &IndexFile) -> Result<RecordBatch> {
        crate::index::read_index(&self.location, &self.snapshot, index).await
    }

    /// A writer for new data files in the loaded version's schema and layout; with
    /// [`crate::WriterOptions::index_columns`] left empty it records the dataset's
    /// indexed columns.
    pub fn writer(&self, mut options: crate::WriterOptions) -> Result<crate::DataFileWriter> {
        self.writer_with_schema(self.schema(), {
            if options.index_columns.is_empty() {
                options.index_columns = self.snapshot.indexed_columns().to_vec();
            }
            options
        })
    }

    /// A writer for a schema evolved from the dataset's (see [`crate::reconcile`]); commit
    /// its files with [`CommitBuilder::with_schema`].
    pub fn writer_with_schema(
        &self,
        schema: SchemaRef,
        options: crate::WriterOptions,
    ) -> Result<crate::DataFileWriter> {
        crate::DataFileWriter::new(
            self.store(),
            self.root().clone(),
            schema,
            self.snapshot.layout().clone(),
            options,
        )
    }

    /// Start a commit that adds `files` (written by a [`crate::DataFileWriter`]).
    pub fn append(&self, files: Vec<DataFile>) -> CommitBuilder {
        self.start_commit(Action::Append(files))
    }

    /// Start a commit that replaces the partitions `files` belong to with `files` (the
    /// whole dataset when it is not partitioned).
    pub fn overwrite_partitions(&self, files: Vec<DataFile>) -> CommitBuilder {
        self.start_commit(Action::OverwritePartitions(files))
    }

    /// Start a commit that removes every file of the given partitions (one value per
    /// `partition_on` column each, typed as the schema; nulls for null partitions).
    pub fn delete_partitions(
        &self,
        partitions: Vec<Vec<datafusion::common::ScalarValue>>,
    ) -> CommitBuilder {
        self.start_commit(Action::DeletePartitions(partitions))
    }

    /// Start a commit that removes the files at `remove` (paths relative to the root)
    /// and adds `add` holding the same rows (compaction).
    pub fn rewrite(&self, remove: Vec<String>, add: Vec<DataFile>) -> CommitBuilder {
        self.start_commit(Action::Rewrite { remove, add })
    }

    /// A commit of `action` built on the loaded version.
    fn start_commit(&self, action: Action) -> CommitBuilder {
        CommitBuilder::new(self.location.clone(), self.snapshot.clone(), action)
    }

    /// Remove versions older than the retention period and the files no retained version
    /// references (see [`crate::GcOptions`] for the rule). Works on the store's latest
    /// state, whatever version this handle has loaded.
    pub async fn gc(&self, options: crate::GcOptions) -> Result<crate::GcReport> {
        crate::gc::collect(&self.location, options).await
    }
}

/// See [`Dataset::check_create`].
async fn check_create(location: &Location, layout: &Layout) -> Result<()> {
    match latest_version(location).await {
        Ok(_) => {
            return Err(Error::DatasetExists {
                location: location.display.clone(),
            });
        }
        Err(Error::DatasetNotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut listing = location.store.list(Some(&location.root));
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| Error::store(&location.root, e))?
    {
        let Some(relative) = location.relative(&meta.location) else {
            continue;
        };
        if is_own(&relative) || classify(&relative, layout).is_some() {
            continue;
        }
        return Err(Error::LocationNotEmpty {
            location: location.display.clone(),
            example: if relative.is_empty() {
                "a file of that name".to_string()
            } else {
                relative
            },
        });
    }
    Ok(())
}

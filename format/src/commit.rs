//! The commit protocol: optimistic concurrency with one conditional put per attempt.
//!
//! 1. The commit is built on the version the [`Dataset`](crate::Dataset) was loaded at
//!    (its base).
//! 2. Data files are already written under unique names; the commit first writes the
//!    segments listing them (and index files), also under unique names. Nothing is
//!    visible yet.
//! 3. Right before its first put it checks that every file it is about to reference
//!    still exists (below).
//! 4. It creates version `N + 1` with `PutMode::Create`. Success is the commit. If the
//!    version exists, another writer won: the commit reads every version it has not seen,
//!    checks each for a conflict, and if none conflicts rebuilds on top of the newest and
//!    tries again after a jittered, growing pause. Before each put, one listing from `N`
//!    checks that `N` still exists (gc removes old versions) and that no version above
//!    `N + 1` exists while `N + 1` does not: a version put into such a gap (a version file
//!    removed by hand) would be acknowledged and never seen, so the commit is refused.
//!
//! The check of step 3 catches gc running with a short forced retention
//! ([`crate::GcOptions::force`]) while the job was between writing its files and its
//! put: the files are gone, a version listing them would fail every read, so the commit
//! fails with [`Error::CommitFilesMissing`] and puts nothing. It covers the new segments
//! and index files and also every new data file, one HEAD each, 64 at a time: on a local
//! filesystem that is a `stat` per file; on S3 a HEAD costs a tenth of the PUT that wrote
//! the file and the few seconds of a 10,000-file commit are small next to writing them.
//! Checking only the segments would miss the common case: a gc that listed the data
//! files before the commit task had written its segments. The check narrows the window
//! to the moments between it and the put; the retention floor is what keeps a job's
//! files out of gc's reach at all.
//!
//! Conflicts (see [`Operation::removes_files`]): appends never conflict. An overwrite or
//! partition delete conflicts with any commit that touched one of its partitions since its
//! base, since it would otherwise silently drop rows that commit added. A rewrite
//! (compaction) conflicts with a commit that removed files in its partitions. Two commits
//! that both change the schema conflict.
//!
//! A commit with an idempotency key that an earlier version already carries is a no-op
//! and says so ([`Committed::duplicate_of`]): a re-run of a nightly slot cannot append
//! its rows twice. Finding an earlier key reads every retained version file, which is one
//! small GET per version. A version file that cannot be decoded is skipped with a
//! warning rather than failing every append to the dataset: the trade-off is that a
//! re-run whose earlier commit is exactly that damaged version commits its rows again.
//! Store errors reading a version still fail the commit (they may be transient, and
//! skipping them could let any re-run through).

use std::collections::{BTreeSet, HashSet};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use chrono::Utc;
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use rand::Rng;

use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::layout::partition_path;
use crate::location::Location;
use crate::manifest::{
    CommitInfo, Manifest, Operation, SegmentSummary, Snapshot, encode_segment, summarize,
};
use crate::names::{is_own, new_segment_path};
use crate::schema::{SchemaEvolution, reconcile};
use crate::version_log::{
    latest_version, list_versions, load_snapshot, put_version, read_segment, versions_from,
    write_latest_hint,
};

/// Files per segment: small enough that a point lookup reads little, large enough that
/// a version file stays short.
const SEGMENT_MAX_FILES: usize = 4096;

/// What a commit does to the file set.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Append(Vec<DataFile>),
    OverwritePartitions(Vec<DataFile>),
    DeletePartitions(Vec<Vec<ScalarValue>>),
    Rewrite {
        remove: Vec<String>,
        add: Vec<DataFile>,
    },
}

impl Action {
    fn operation(&self) -> Operation {
        match self {
            Action::Append(_) => Operation::Append,
            Action::OverwritePartitions(_) => Operation::OverwritePartitions,
            Action::DeletePartitions(_) => Operation::DeletePartitions,
            Action::Rewrite { .. } => Operation::Rewrite,
        }
    }

    fn added(&self) -> &[DataFile] {
        match self {
            Action::Append(files) | Action::OverwritePartitions(files) => files,
            Action::Rewrite { add, .. } => add,
            Action::DeletePartitions(_) => &[],
        }
    }
}

/// The result of a commit.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The version now current: the new one, or for a duplicate the latest one.
    pub snapshot: Snapshot,
    /// When the idempotency key was already committed: the version that carries it.
    /// Nothing was written then.
    pub duplicate_of: Option<u64>,
}

impl Deref for Committed {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// A commit being prepared; [`CommitBuilder::commit`] runs the protocol.
#[derive(Debug)]
#[must_use = "a commit does nothing until .commit().await"]
pub struct CommitBuilder {
    location: Arc<Location>,
    /// The version the commit is built on.
    base: Snapshot,
    action: Action,
    job_id: Option<String>,
    idempotency_key: Option<String>,
    schema: Option<SchemaRef>,
    max_attempts: u32,
}

impl CommitBuilder {
    pub(crate) fn new(location: Arc<Location>, base: Snapshot, action: Action) -> Self {
        CommitBuilder {
            location,
            base,
            action,
            job_id: None,
            idempotency_key: None,
            schema: None,
            max_attempts: 100,
        }
    }

    /// Record the job that makes this commit.
    pub fn with_job_id(mut self, job_id: impl Into<String>) -> Self {
        self.job_id = Some(job_id.into());
        self
    }

    /// Make the commit a no-op if a retained version already carries `key`.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Commit a schema with added nullable columns (the files were written with it).
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// How many times to lose the race before giving up (default 100).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Run the commit protocol.
    pub async fn commit(self) -> Result<Committed> {
        let location = self.location.clone();
        let base = self.base.clone();
        let schema = match &self.schema {
            Some(schema) => {
                let evolved = reconcile(&base.schema(), schema, SchemaEvolution::AddColumns)?;
                if evolved.fields() != schema.fields() {
                    return Err(Error::InvalidLayout {
                        reason: "a new schema may only append nullable columns to the dataset's"
                            .to_string(),
                    });
                }
                schema.clone()
            }
            None => base.schema(),
        };
        let added = self.action.added();
        validate_files(added, &base, &location)?;
        let our_partitions = self.touched_partitions(&base)?;

        if let Some(key) = &self.idempotency_key
            && let Some(found) = find_idempotency_key(&location, key).await?
        {
            return Ok(Committed {
                snapshot: load_snapshot(&location, latest_version(&location).await?).await?,
                duplicate_of: Some(found),
            });
        }

        let added_segments = write_segments(&location, added, &schema, &base).await?;
        let added_indices = crate::index::write_indices(&location, added, &base, &schema).await?;

        crate::pause::before_version_put().await;
        ensure_files_exist(&location, &added_segments, &added_indices, added).await?;
        let mut current = base.clone();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            check_base(&location, current.version()).await?;
            let manifest = self
                .build(
                    &location,
                    &current,
                    &schema,
                    &added_segments,
                    &added_indices,
                    &our_partitions,
                )
                .await?;
            match put_version(&location, &manifest).await {
                Ok(()) => {
                    write_latest_hint(&location, manifest.version).await;
                    return Ok(Committed {
                        snapshot: Snapshot {
                            manifest: Arc::new(manifest),
                        },
                        duplicate_of: None,
                    });
                }
                Err(Error::ObjectStore {
                    source: object_store::Error::AlreadyExists { .. },
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
            if attempt >= self.max_attempts {
                return Err(Error::CommitRetriesExhausted {
                    location: location.display.clone(),
                    attempts: attempt,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
            // Catch up with every version committed since `current`, checking each.
            let mut next = current.version() + 1;
            loop {
                let winner = match load_snapshot(&location, next).await {
                    Ok(s) => s,
                    Err(Error::VersionNotFound { .. }) => break,
                    Err(e) => return Err(e),
                };
                if let Some(duplicate) =
                    self.check_conflict(&location, &base, &winner, &our_partitions)?
                {
                    return Ok(Committed {
                        snapshot: winner,
                        duplicate_of: Some(duplicate),
                    });
                }
                current = winner;
                next += 1;
            }
        }
    }

    /// Partition paths this commit adds to or removes from.
    fn touched_partitions(&self, base: &Snapshot) -> Result<BTreeSet<String>> {
        let layout = base.layout();
        let mut out = BTreeSet::new();
        for file in self.action.added() {
            out.insert(partition_path(
                &layout.partition_on,
                &file.partition_values,
            )?);
        }
        match &self.action {
            Action::DeletePartitions(values) => {
                for v in values {
                    if v.len() != layout.partition_on.len() {
                        return Err(Error::InvalidLayout {
                            reason: format!(
                                "a partition to delete has {} values, the dataset has {} partition columns",
                                v.len(),
                                layout.partition_on.len()
                            ),
                        });
                    }
                    let typed = v
                        .iter()
                        .zip(&layout.partition_on)
                        .map(|(value, column)| {
                            let data_type = base
                                .schema()
                                .field_with_name(column)
                                .map(|f| f.data_type().clone())
                                .map_err(|e| Error::arrow("typing a partition value", e))?;
                            if value.is_null() {
                                return ScalarValue::try_from(&data_type)
                                    .map_err(|e| Error::datafusion("typing a partition value", e));
                            }
                            value
                                .cast_to(&data_type)
                                .map_err(|e| Error::datafusion("typing a partition value", e))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    out.insert(partition_path(&layout.partition_on, &typed)?);
                }
            }
            Action::Rewrite { remove, .. } => {
                for path in remove {
                    out.insert(partition_dir(path).to_string());
                }
            }
            Action::OverwritePartitions(files)
                if files.is_empty() && layout.partition_on.is_empty() =>
            {
                out.insert(String::new());
            }
            _ => {}
        }
        Ok(out)
    }

    /// `Some(version)` when `winner` carries our idempotency key; an error on conflict.
    fn check_conflict(
        &self,
        location: &Location,
        base: &Snapshot,
        winner: &Snapshot,
        ours: &BTreeSet<String>,
    ) -> Result<Option<u64>> {
        let commit = winner.commit();
        if self.idempotency_key.is_some() && commit.idempotency_key == self.idempotency_key {
            return Ok(Some(winner.version()));
        }
        let conflict = |reason: String| Error::Conflict {
            location: location.display.clone(),
            reason,
        };
        if self.schema.is_some() && winner.schema().fields() != base.schema().fields() {
            return Err(conflict(format!(
                "version {} changed the schema concurrently; retry on the new schema",
                winner.version()
            )));
        }
        let ours_op = self.action.operation();
        let relevant = match ours_op {
            Operation::OverwritePartitions | Operation::DeletePartitions => true,
            Operation::Rewrite => commit.operation.removes_files(),
            Operation::Append | Operation::Create => false,
        };
        if relevant {
            let theirs: HashSet<&str> = commit.partitions.iter().map(String::as_str).collect();
            let overlap: Vec<&str> = ours
                .iter()
                .map(String::as_str)
                .filter(|p| theirs.contains(p))
                .collect();
            if !overlap.is_empty() {
                let shown: Vec<String> = overlap
                    .iter()
                    .take(5)
                    .map(|p| {
                        if p.is_empty() {
                            "(whole dataset)".to_string()
                        } else {
                            p.to_string()
                        }
                    })
                    .collect();
                return Err(conflict(format!(
                    "version {} ({:?}) changed partition(s) {} that this {:?} also changes",
                    winner.version(),
                    commit.operation,
                    shown.join(", "),
                    ours_op
                )));
            }
        }
        Ok(None)
    }

    /// The manifest of the next version on top of `current`.
    async fn build(
        &self,
        location: &Arc<Location>,
        current: &Snapshot,
        schema: &SchemaRef,
        added_segments: &[SegmentSummary],
        added_indices: &[crate::manifest::IndexFile],
        partitions: &BTreeSet<String>,
    ) -> Result<Manifest> {
        let (kept, files_removed, rows_removed) = match &self.action {
            Action::Append(_) => (current.segments().to_vec(), 0, 0),
            Action::OverwritePartitions(_) | Action::DeletePartitions(_) => {
                let layout = current.layout().clone();
                remove_files(location, current, schema, |file| {
                    let path = partition_path(&layout.partition_on, &file.partition_values)?;
                    Ok(partitions.contains(&path))
                })
                .await?
            }
            Action::Rewrite { remove, .. } => {
                let remove: HashSet<&str> = remove.iter().map(String::as_str).collect();
                let (kept, files, rows) = remove_files(location, current, schema, |file| {
                    Ok(remove.contains(file.path.as_str()))
                })
                .await?;
                if files as usize != remove.len() {
                    return Err(Error::Conflict {
                        location: location.display.clone(),
                        reason: format!(
                            "{} of the {} files to rewrite are no longer in version {}",
                            remove.len() - files as usize,
                            remove.len(),
                            current.version()
                        ),
                    });
                }
                (kept, files, rows)
            }
        };
        let added = self.action.added();
        let mut segments = kept;
        segments.extend_from_slice(added_segments);
        let mut indices = current.indices().to_vec();
        indices.extend_from_slice(added_indices);
        let final_schema = if self.schema.is_some() {
            schema.clone()
        } else {
            current.schema()
        };
        Ok(Manifest {
            dataset_id: current.dataset_id().to_string(),
            version: current.version() + 1,
            parent: Some(current.version()),
            timestamp: Utc::now().max(current.timestamp()),
            commit: CommitInfo {
                operation: self.action.operation(),
                job_id: self.job_id.clone(),
                idempotency_key: self.idempotency_key.clone(),
                rows_added: added.iter().map(|f| f.num_rows).sum(),
                files_added: added.len() as u64,
                rows_removed,
                files_removed,
                partitions: partitions.iter().cloned().collect(),
            },
            schema: final_schema,
            layout: current.layout().clone(),
            indexed_columns: current.indexed_columns().to_vec(),
            indices,
            segments,
        })
    }
}

/// The directory part of a data-file path (`a=1/b=2` of `a=1/b=2/part-….parquet`).
fn partition_dir(path: &str) -> &str {
    path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

fn backoff(attempt: u32) -> Duration {
    let base_ms = 5u64 << attempt.min(7); // 10 ms .. 640 ms
    let jitter = rand::rng().random_range(0.5..1.5);
    Duration::from_micros((base_ms as f64 * 1000.0 * jitter) as u64)
}

/// The newest retained version carrying `key`. Version files that cannot be decoded are
/// skipped with a warning (see the module docs), and so are versions gc removed since the
/// listing.
async fn find_idempotency_key(location: &Arc<Location>, key: &str) -> Result<Option<u64>> {
    let versions = list_versions(location).await?;
    let location = location.clone();
    let mut snapshots = futures::stream::iter(versions.into_iter().rev())
        .map(move |v| {
            let location = location.clone();
            async move { (v, load_snapshot(&location, v).await) }
        })
        .buffered(16);
    while let Some((version, loaded)) = snapshots.next().await {
        let snapshot = match loaded {
            Ok(snapshot) => snapshot,
            Err(Error::VersionNotFound { .. }) => continue,
            Err(e @ (Error::CorruptManifest { .. } | Error::UnsupportedFormatVersion { .. })) => {
                tracing::warn!(
                    version,
                    error = %e,
                    "skipping an unreadable version file while looking for the idempotency key"
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        if snapshot.commit().idempotency_key.as_deref() == Some(key) {
            return Ok(Some(snapshot.version()));
        }
    }
    Ok(None)
}

fn validate_files(files: &[DataFile], base: &Snapshot, location: &Location) -> Result<()> {
    let layout = base.layout();
    for file in files {
        let bad = |reason: String| Error::InvalidPartitionPath {
            path: file.path.clone(),
            reason,
        };
        if file.path.is_empty()
            || file.path.starts_with('/')
            || is_own(&file.path)
            || file
                .path
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad(format!(
                "not a data-file path relative to the root of {}",
                location.display
            )));
        }
        if file.partition_values.len() != layout.partition_on.len() {
            return Err(bad(format!(
                "{} partition values for {} partition columns",
                file.partition_values.len(),
                layout.partition_on.len()
            )));
        }
        let expected_dir = partition_path(&layout.partition_on, &file.partition_values)?;
        if partition_dir(&file.path) != expected_dir {
            return Err(bad(format!("expected it under {expected_dir:?}")));
        }
        match (layout.num_buckets, file.bucket) {
            (Some(n), Some(b)) if b < n => {}
            (None, None) => {}
            (n, b) => {
                return Err(bad(format!("bucket {b:?} does not fit num_buckets {n:?}")));
            }
        }
    }
    Ok(())
}

/// Write the segments listing `files`, sorted by partition and bucket so segment
/// summaries stay tight and whole segments prune.
async fn write_segments(
    location: &Arc<Location>,
    files: &[DataFile],
    schema: &SchemaRef,
    base: &Snapshot,
) -> Result<Vec<SegmentSummary>> {
    if files.is_empty() {
        return Ok(vec![]);
    }
    let mut sorted: Vec<&DataFile> = files.iter().collect();
    sorted.sort_by(|a, b| {
        compare_partitions(&a.partition_values, &b.partition_values)
            .then(a.bucket.cmp(&b.bucket))
            .then(a.path.cmp(&b.path))
    });
    let chunks: Vec<Vec<DataFile>> = sorted
        .chunks(SEGMENT_MAX_FILES)
        .map(|c| c.iter().map(|f| (*f).clone()).collect())
        .collect();
    let layout = base.layout().clone();
    let (location, schema) = (location.clone(), schema.clone());
    futures::stream::iter(chunks)
        .map(move |chunk| {
            let (location, schema, layout) = (location.clone(), schema.clone(), layout.clone());
            async move { write_segment(&location, chunk, &schema, &layout).await }
        })
        .buffered(4)
        .try_collect()
        .await
}

async fn write_segment(
    location: &Location,
    files: Vec<DataFile>,
    schema: &SchemaRef,
    layout: &crate::layout::Layout,
) -> Result<SegmentSummary> {
    let (bytes, mut summary) = {
        let schema = schema.clone();
        let layout = layout.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let bytes = encode_segment(&files, &schema, &layout)?;
            let summary = summarize(&files, &schema, &layout)?;
            Ok((bytes, summary))
        })
        .await
        .map_err(|e| Error::Task {
            context: "encoding a segment".to_string(),
            reason: e.to_string(),
        })??
    };
    summary.path = new_segment_path();
    let path = location.child(&summary.path);
    location
        .store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|e| Error::store(&path, e))?;
    Ok(summary)
}

fn compare_partitions(a: &[ScalarValue], b: &[ScalarValue]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Drop the files matching `remove` from `current`'s segments, rewriting only segments
/// that lose files. Returns kept segments, files removed, rows removed.
async fn remove_files(
    location: &Arc<Location>,
    current: &Snapshot,
    schema: &SchemaRef,
    remove: impl Fn(&DataFile) -> Result<bool>,
) -> Result<(Vec<SegmentSummary>, u64, u64)> {
    let (shared_location, shared_current) = (location.clone(), current.clone());
    let lists: Vec<_> = futures::stream::iter(current.segments().to_vec())
        .map(move |s| {
            let (location, current) = (shared_location.clone(), shared_current.clone());
            async move { read_segment(&location, &current, &s).await.map(|l| (s, l)) }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let mut kept = Vec::new();
    let (mut files_removed, mut rows_removed) = (0u64, 0u64);
    for (summary, list) in lists {
        let mut keep = Vec::with_capacity(list.len());
        let mut removed_here = false;
        for i in 0..list.len() {
            let file = list.data_file(i)?;
            if remove(&file)? {
                removed_here = true;
                files_removed += 1;
                rows_removed += file.num_rows;
            } else {
                keep.push(file);
            }
        }
        if !removed_here {
            kept.push(summary);
        } else if !keep.is_empty() {
            kept.push(write_segment(location, keep, schema, current.layout()).await?);
        }
    }
    Ok((kept, files_removed, rows_removed))
}

/// Before putting version `base + 1`: `base` must still exist (a put on top of a base gc
/// has removed would land in the gap gc left below newer versions), and no version may
/// exist above `base + 1` while `base + 1` does not (a put into such a gap would be
/// acknowledged and never seen). `base + 1` existing is a lost race, which the put finds.
async fn check_base(location: &Location, base: u64) -> Result<()> {
    let present = versions_from(location, base).await?;
    if present.first() != Some(&base) {
        return Err(Error::Conflict {
            location: location.display.clone(),
            reason: format!(
                "the commit is based on version {base}, which gc has removed since; \
                 reopen the dataset and write again"
            ),
        });
    }
    match present.get(1) {
        Some(&next) if next > base + 1 => Err(Error::VersionGap {
            location: location.display.clone(),
            missing: base + 1,
            newer: next,
        }),
        _ => Ok(()),
    }
}

/// Fail with [`Error::CommitFilesMissing`] unless every file the commit adds (segments,
/// index files, data files) still exists; see the module docs.
async fn ensure_files_exist(
    location: &Arc<Location>,
    segments: &[SegmentSummary],
    indices: &[crate::manifest::IndexFile],
    files: &[DataFile],
) -> Result<()> {
    let relative: Vec<String> = segments
        .iter()
        .map(|s| s.path.clone())
        .chain(indices.iter().map(|i| i.path.clone()))
        .chain(files.iter().map(|f| f.path.clone()))
        .collect();
    let shared = location.clone();
    let found: Vec<Option<String>> = futures::stream::iter(relative)
        .map(move |relative| {
            let location = shared.clone();
            async move {
                let path = location.child(&relative);
                match location.store.head(&path).await {
                    Ok(_) => Ok(None),
                    Err(object_store::Error::NotFound { .. }) => Ok(Some(relative)),
                    Err(e) => Err(Error::store(&path, e)),
                }
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let missing: Vec<String> = found.into_iter().flatten().collect();
    match missing.iter().min() {
        None => Ok(()),
        Some(example) => Err(Error::CommitFilesMissing {
            location: location.display.clone(),
            missing: missing.len(),
            example: example.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;
    use crate::names::{LATEST_HINT, version_path};
    use crate::writer::tests::{batch, layout, rows, schema};
    use crate::{Dataset, WriterOptions};

    async fn write(dataset: &Dataset, start: i64) -> Vec<DataFile> {
        let mut writer = dataset.writer(WriterOptions::default()).unwrap();
        writer.write(batch(&rows(start, 50))).await.unwrap();
        writer.finish().await.unwrap()
    }

    /// Versions 0 to `last` of a new dataset in `dir`, one handle per version.
    async fn versions(dir: &TempDir, last: u64) -> Vec<Dataset> {
        let location = dir.path().to_str().unwrap();
        let mut dataset = Dataset::create(location, schema(), layout()).await.unwrap();
        let mut handles = vec![dataset.clone()];
        for v in 1..=last {
            let files = write(&dataset, v as i64 * 1_000).await;
            dataset = dataset.with_snapshot(dataset.append(files).commit().await.unwrap().snapshot);
            handles.push(dataset.clone());
        }
        handles
    }

    /// Regression: with versions 0, 1, 2 and 4 and the `_latest` hint at 2, "latest" was
    /// 2 (the hint, stepped forward while the next version existed), and the next append
    /// was acknowledged as version 3, below version 4, where no reader saw it.
    #[tokio::test]
    async fn a_gap_below_a_stale_hint_is_seen_and_a_commit_into_it_is_refused() {
        let dir = TempDir::new().unwrap();
        let location = dir.path().to_str().unwrap();
        let handles = versions(&dir, 4).await;
        std::fs::remove_file(dir.path().join(version_path(3))).unwrap();
        std::fs::write(dir.path().join(LATEST_HINT), "2").unwrap();

        let latest = Dataset::open(location).await.unwrap();
        assert_eq!(latest.version(), 4);

        // Writers still holding version 2 (or 1, which loses the race for 2 first) would
        // put version 3 into the gap: refused, and nothing is written there.
        for stale in [&handles[2], &handles[1]] {
            let files = write(stale, 90_000).await;
            let err = stale.append(files).commit().await.unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::VersionGap {
                        missing: 3,
                        newer: 4,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("version 3"), "{err}");
            assert!(!dir.path().join(version_path(3)).exists());
        }

        let files = write(&latest, 50_000).await;
        let committed = latest.append(files).commit().await.unwrap();
        assert_eq!(committed.version(), 5);
        assert_eq!(Dataset::open(location).await.unwrap().version(), 5);
        // A hint that names a version gc removed (or that is ahead) is not trusted either.
        std::fs::write(dir.path().join(LATEST_HINT), "9").unwrap();
        assert_eq!(Dataset::open(location).await.unwrap().version(), 5);
    }

    /// The check right before the version put: a commit whose files are gone (gc with a
    /// forced short retention ran meanwhile) fails and puts nothing.
    #[tokio::test]
    async fn a_commit_whose_files_are_gone_is_refused_and_puts_nothing() {
        let dir = TempDir::new().unwrap();
        let handles = versions(&dir, 1).await;
        let dataset = &handles[1];
        let files = write(dataset, 7_000).await;
        assert!(files.len() > 1);
        std::fs::remove_file(dir.path().join(&files[0].path)).unwrap();

        let err = dataset.append(files.clone()).commit().await.unwrap_err();
        match &err {
            Error::CommitFilesMissing {
                missing, example, ..
            } => assert_eq!((*missing, example.as_str()), (1, files[0].path.as_str())),
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("nothing was committed"), "{err}");
        let location = dir.path().to_str().unwrap();
        assert_eq!(Dataset::open(location).await.unwrap().version(), 1);
        assert!(!dir.path().join(version_path(2)).exists());
    }

    /// Regression: one corrupt older version file failed every append that carried an
    /// idempotency key, since finding the key read every version.
    #[tokio::test]
    async fn a_corrupt_older_version_does_not_block_appends() {
        let dir = TempDir::new().unwrap();
        let handles = versions(&dir, 3).await;
        let keyed = &handles[3];
        let files = write(keyed, 4_000).await;
        let v4 = keyed
            .append(files)
            .with_idempotency_key("nightly/1")
            .commit()
            .await
            .unwrap();
        assert_eq!(v4.version(), 4);
        std::fs::write(dir.path().join(version_path(1)), b"{ not a version").unwrap();
        let dataset = keyed.with_snapshot(v4.snapshot.clone());

        let files = write(&dataset, 5_000).await;
        let v5 = dataset
            .append(files)
            .with_idempotency_key("nightly/2")
            .commit()
            .await
            .unwrap();
        assert_eq!((v5.version(), v5.duplicate_of), (5, None));
        // A key in a readable version is still found past the corrupt one.
        let dataset = dataset.with_snapshot(v5.snapshot.clone());
        let files = write(&dataset, 6_000).await;
        let again = dataset
            .append(files)
            .with_idempotency_key("nightly/1")
            .commit()
            .await
            .unwrap();
        assert_eq!((again.version(), again.duplicate_of), (5, Some(4)));
    }
}

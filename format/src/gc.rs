//! Garbage collection: removing old versions and the files no retained version needs.
//!
//! Nothing in a dataset is ever overwritten or deleted by a commit: an overwrite, a
//! partition delete or a compaction writes a new version that simply stops listing the
//! old files, and a failed or abandoned job leaves files that no version ever lists.
//! [`Dataset::gc`] reclaims that space with one rule, relative to a *cutoff* of
//! `now - retention` ([`GcOptions::retention`], 7 days by default):
//!
//! - **Retained versions** are every version committed at or after the cutoff, the newest
//!   version committed before it (it was the current version *at* the cutoff, so time
//!   travel to any instant of the retention period still works), and always the latest
//!   version. The version files of all older versions are deleted.
//! - **Referenced objects** are, for every retained version, its segments, every data
//!   file those segments list, and its index files.
//! - Every other object that terrace names (data files under the layout's partition
//!   directories, segments, index files, `_terrace/staging/` pieces, probe leftovers, and
//!   the `<name>#<N>` temporary files of puts killed before their rename; see
//!   `names.rs`) is deleted **only if it was last modified before the cutoff**.
//!   `_terrace/_latest` and the files of retained versions are never deleted; nothing
//!   else under `_terrace/versions/` is touched.
//!
//! What gc never touches:
//!
//! - **Names terrace does not write.** A dataset created in a directory that also holds
//!   `docs/thesis.txt` or the `input.csv` it was ingested from keeps them, however old
//!   (and [`Dataset::create`](crate::Dataset::create) now refuses such a directory).
//! - **Nested datasets.** A directory below the root that holds a `_terrace/` directory is
//!   another dataset: gc does not descend into it.
//! - **The staging of live runs.** [`GcOptions::live_runs`] names runs whose jobs have not
//!   finished (the gc job kind reads them from the queue); everything below their
//!   `_terrace/staging/<run>/` is kept whatever its age, even with [`GcOptions::force`].
//!
//! Why the age test on unreferenced files: writers are concurrent and never coordinate
//! with gc. A commit in progress has already uploaded its data files, segments and index
//! files but not yet created its version file, so for a while they look exactly like
//! garbage. Keeping every file younger than the cutoff makes gc safe against any commit
//! that finishes within the retention period after writing its first file. A retention
//! below [`GC_RETENTION_FLOOR`] (24 hours) would make that window shorter than a large
//! ingest can take, so it is refused unless [`GcOptions::force`] is set, as delta-rs
//! refuses a vacuum below its retention duration. Even then the race is caught, not
//! lost: a commit checks that every file it is about to reference still exists right
//! before its version put (see `commit.rs`) and fails, committing nothing, when gc took
//! one. Just before deleting, gc also looks for versions committed while it ran and
//! keeps what they reference.
//!
//! Version files go first, oldest first, then the other files: if gc stops half-way,
//! every version still on the store is complete, and the next run finishes the job.
//!
//! The walk over versions relies on version timestamps growing with version numbers,
//! which the commit protocol guarantees (a version is never stamped before its parent),
//! so gc reads only the retained version files plus one, never the whole history.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::location::Location;
use crate::manifest::Snapshot;
use crate::names::{Name, OWN_DIR, classify, nested_root, staging_dir_name, temporary_of};
use crate::version_log::{latest_version, list_versions, load_snapshot, read_segment};

/// The shortest retention [`Dataset::gc`](crate::Dataset::gc) accepts without
/// [`GcOptions::force`]: 24 hours.
///
/// Files a job has written but not yet committed are unreferenced and look exactly like
/// garbage; the retention is what keeps them. A day is longer than any ingest terrace
/// expects to run, and short enough to reclaim the space of failed jobs daily.
pub const GC_RETENTION_FLOOR: Duration = Duration::from_secs(24 * 60 * 60);

/// How [`Dataset::gc`](crate::Dataset::gc) decides what to remove.
///
/// ```
/// use std::time::Duration;
/// use terrace_format::GcOptions;
/// let options = GcOptions::default()
///     .with_retention(Duration::from_secs(3 * 24 * 3600))
///     .with_dry_run(true);
/// assert!(options.dry_run);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// How far back time travel must keep working, and how old an unreferenced file must
    /// be before it is removed (default 7 days; at least [`GC_RETENTION_FLOOR`] unless
    /// [`GcOptions::force`]).
    pub retention: Duration,
    /// Only report what would be removed.
    pub dry_run: bool,
    /// The current time; `None` is the system clock. Tests and replays inject it.
    pub now: Option<DateTime<Utc>>,
    /// Accept a retention below [`GC_RETENTION_FLOOR`]: files of jobs still writing may
    /// then be removed (their commits fail rather than lose rows).
    pub force: bool,
    /// Run ids of jobs that have not finished: their staging directories
    /// (`_terrace/staging/<run id, path-encoded>/`) are kept whatever their age, even
    /// with [`GcOptions::force`].
    pub live_runs: BTreeSet<String>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            dry_run: false,
            now: None,
            force: false,
            live_runs: BTreeSet::new(),
        }
    }
}

impl GcOptions {
    /// Set [`GcOptions::retention`].
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Set [`GcOptions::dry_run`].
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Set [`GcOptions::now`].
    pub fn with_now(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }

    /// Set [`GcOptions::force`].
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Add to [`GcOptions::live_runs`].
    pub fn with_live_runs(mut self, runs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.live_runs.extend(runs.into_iter().map(Into::into));
        self
    }

    /// Refuse a retention below the floor unless forced.
    pub fn check(&self) -> Result<()> {
        if self.retention < GC_RETENTION_FLOOR && !self.force {
            return Err(Error::RetentionBelowFloor {
                retention: human_duration(self.retention),
                floor: human_duration(GC_RETENTION_FLOOR),
            });
        }
        Ok(())
    }

    /// `now - retention`; a retention reaching before the representable past keeps
    /// everything.
    fn cutoff(&self) -> DateTime<Utc> {
        let now = self.now.unwrap_or_else(Utc::now);
        TimeDelta::from_std(self.retention)
            .ok()
            .and_then(|retention| now.checked_sub_signed(retention))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// `7d`, `24h`, `90m`, `0s`, or the debug form for fractions of a second.
fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{d:?}");
    }
    let secs = d.as_secs();
    match secs {
        0 => "0s".to_string(),
        // The floor reads as `24h`, as it is documented.
        s if s % 86_400 == 0 && s > 86_400 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What [`Dataset::gc`](crate::Dataset::gc) removed, or with
/// [`GcOptions::dry_run`] would remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Versions whose version file was removed, ascending.
    pub versions_removed: Vec<u64>,
    /// Other objects removed (data files, segments, index files, staging files,
    /// temporary files of killed puts), as paths relative to the dataset root, sorted.
    pub files_removed: Vec<String>,
    /// Bytes of every object removed, version files included.
    pub bytes_removed: u64,
    /// Versions still on the store afterwards.
    pub versions_kept: usize,
    /// Whether this was a dry run (nothing was deleted).
    pub dry_run: bool,
}

/// Run gc on the dataset at `location`; see the module docs for the rule.
pub(crate) async fn collect(location: &Arc<Location>, options: GcOptions) -> Result<GcReport> {
    options.check()?;
    let cutoff = options.cutoff();
    let versions = list_versions(location).await?;
    let retained = retained_versions(location, &versions, cutoff).await?;
    let oldest_retained = retained.keys().next().copied().unwrap_or(0);
    let newest_seen = versions.last().copied().unwrap_or(0);
    let rule = Rule {
        // The layout never changes after create; the newest version has it.
        layout: retained
            .values()
            .next_back()
            .map(|s| s.layout().clone())
            .unwrap_or_default(),
        removed_versions: versions
            .iter()
            .copied()
            .filter(|v| *v < oldest_retained)
            .collect(),
        cutoff,
        live_runs: options
            .live_runs
            .iter()
            .map(|run| staging_dir_name(run))
            .collect(),
    };

    let mut referenced = HashSet::new();
    add_references(location, retained.values(), &mut referenced).await?;

    let mut candidates = list_candidates(location, &rule, &referenced).await?;
    candidates.extend(list_temporaries(location, &rule).await?);

    // A commit may have landed while we listed; keep whatever it references.
    let mut versions_kept = retained.len();
    let latest = latest_version(location).await?;
    if latest > newest_seen {
        let newer = load_existing(location, newest_seen + 1..=latest).await?;
        versions_kept += newer.len();
        add_references(location, newer.iter(), &mut referenced).await?;
    }
    candidates.retain(|c| c.version.is_some() || !referenced.contains(&c.path));
    candidates.sort_by(|a, b| a.version.cmp(&b.version).then(a.relative.cmp(&b.relative)));
    let (version_files, files): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| c.version.is_some());

    let report = GcReport {
        versions_removed: version_files.iter().filter_map(|c| c.version).collect(),
        files_removed: files.iter().map(|c| c.relative.clone()).collect(),
        bytes_removed: version_files
            .iter()
            .chain(&files)
            .map(|c| c.size)
            .sum::<u64>(),
        versions_kept,
        dry_run: options.dry_run,
    };
    if !options.dry_run {
        for candidate in &version_files {
            delete(location, std::iter::once(candidate.path.clone())).await?;
        }
        let (temporaries, objects): (Vec<Candidate>, Vec<Candidate>) =
            files.into_iter().partition(|c| c.local.is_some());
        delete(location, objects.into_iter().map(|c| c.path)).await?;
        delete_local(temporaries.into_iter().filter_map(|c| c.local).collect()).await?;
    }
    tracing::info!(
        location = %location.display,
        %cutoff,
        dry_run = options.dry_run,
        versions_removed = report.versions_removed.len(),
        files_removed = report.files_removed.len(),
        bytes_removed = report.bytes_removed,
        versions_kept = report.versions_kept,
        "gc finished"
    );
    Ok(report)
}

/// Which objects a run removes, apart from what retained versions reference.
struct Rule {
    layout: Layout,
    removed_versions: BTreeSet<u64>,
    cutoff: DateTime<Utc>,
    /// Staging directory names of live runs.
    live_runs: HashSet<String>,
}

impl Rule {
    /// Whether the object at `relative`, last modified at `modified`, goes: a version file
    /// of a removed version, or an old enough object that terrace names and no live run
    /// owns. References are checked by the caller.
    fn removes(&self, relative: &str, modified: DateTime<Utc>) -> Removal {
        match classify(relative, &self.layout) {
            Some(Name::Version(v)) if self.removed_versions.contains(&v) => Removal::Version(v),
            Some(Name::Version(_) | Name::LatestHint) | None => Removal::Keep,
            Some(Name::Staging { run }) if self.live_runs.contains(run) => Removal::Keep,
            Some(_) if modified >= self.cutoff => Removal::Keep,
            Some(_) => Removal::Unreferenced,
        }
    }

    /// Whether a temporary file standing for `base` goes. Every name terrace writes,
    /// version files and the hint included, leaves one when its put is killed; the
    /// temporary is never the object itself, so only its age and a live run keep it.
    fn removes_temporary(&self, base: &str, modified: DateTime<Utc>) -> bool {
        match classify(base, &self.layout) {
            None => false,
            Some(Name::Staging { run }) if self.live_runs.contains(run) => false,
            Some(_) => modified < self.cutoff,
        }
    }
}

enum Removal {
    Keep,
    Version(u64),
    Unreferenced,
}

/// An object gc would delete.
struct Candidate {
    path: Path,
    relative: String,
    size: u64,
    /// The version, for a version file.
    version: Option<u64>,
    /// The file, for a temporary file of a local store (which the store cannot address).
    local: Option<PathBuf>,
}

/// The retained versions by number: walk down from the newest, loading a few version
/// files at a time, until the first one committed before the cutoff (included).
async fn retained_versions(
    location: &Arc<Location>,
    versions: &[u64],
    cutoff: DateTime<Utc>,
) -> Result<BTreeMap<u64, Snapshot>> {
    let mut retained = BTreeMap::new();
    for chunk in versions.rchunks(16).map(|c| c.iter().rev().copied()) {
        for snapshot in load_existing(location, chunk).await? {
            let before_cutoff = snapshot.timestamp() < cutoff;
            retained.insert(snapshot.version(), snapshot);
            if before_cutoff {
                return Ok(retained);
            }
        }
    }
    Ok(retained)
}

/// Load the given versions in order, skipping any that no longer exist (a concurrent gc
/// removed it).
async fn load_existing(
    location: &Arc<Location>,
    versions: impl IntoIterator<Item = u64>,
) -> Result<Vec<Snapshot>> {
    let loaded: Vec<Option<Snapshot>> = futures::stream::iter(versions)
        .map(|v| async move {
            match load_snapshot(location, v).await {
                Ok(snapshot) => Ok(Some(snapshot)),
                Err(Error::VersionNotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    Ok(loaded.into_iter().flatten().collect())
}

/// Add the object paths of the segments, listed data files and index files of
/// `snapshots`; a segment shared by several versions is read once.
async fn add_references<'a>(
    location: &Arc<Location>,
    snapshots: impl Iterator<Item = &'a Snapshot>,
    referenced: &mut HashSet<Path>,
) -> Result<()> {
    let mut segments = Vec::new();
    for snapshot in snapshots {
        for index in snapshot.indices() {
            referenced.insert(location.child(&index.path));
        }
        for segment in snapshot.segments() {
            if referenced.insert(location.child(&segment.path)) {
                segments.push((snapshot.clone(), segment.clone()));
            }
        }
    }
    let lists: Vec<_> = futures::stream::iter(segments)
        .map(|(snapshot, segment)| async move { read_segment(location, &snapshot, &segment).await })
        .buffered(8)
        .try_collect()
        .await?;
    for list in lists {
        for path in list.paths().iter().flatten() {
            referenced.insert(location.child(path));
        }
    }
    Ok(())
}

/// List every object below the root and keep those the rule removes, leaving nested
/// datasets alone.
async fn list_candidates(
    location: &Location,
    rule: &Rule,
    referenced: &HashSet<Path>,
) -> Result<Vec<Candidate>> {
    let listed: Vec<ObjectMeta> = location
        .store
        .list(Some(&location.root))
        .try_collect()
        .await
        .map_err(|e| Error::store(&location.root, e))?;
    let objects: Vec<(String, ObjectMeta)> = listed
        .into_iter()
        .filter_map(|meta| location.relative(&meta.location).map(|r| (r, meta)))
        .collect();
    let nested: BTreeSet<String> = objects
        .iter()
        .filter_map(|(relative, _)| nested_root(relative).map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for (relative, meta) in objects {
        if in_nested(&nested, &relative) || referenced.contains(&meta.location) {
            continue;
        }
        let version = match rule.removes(&relative, meta.last_modified) {
            Removal::Keep => continue,
            Removal::Version(v) => Some(v),
            Removal::Unreferenced => None,
        };
        out.push(Candidate {
            path: meta.location,
            relative,
            size: meta.size,
            version,
            local: None,
        });
    }
    Ok(out)
}

/// Whether `relative` lies in one of the `nested` dataset roots.
fn in_nested(nested: &BTreeSet<String>, relative: &str) -> bool {
    nested.iter().any(|root| {
        relative
            .strip_prefix(root.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The temporary files (`<name>#<N>`) of puts killed before their rename that the rule
/// removes. Only a local filesystem store writes them, and its listing hides them, so
/// they are found by walking the root's directory (not descending into nested datasets).
async fn list_temporaries(location: &Location, rule: &Rule) -> Result<Vec<Candidate>> {
    let Some(fs_root) = location.fs_root.clone() else {
        return Ok(Vec::new());
    };
    let found = tokio::task::spawn_blocking(move || walk_temporaries(&fs_root))
        .await
        .map_err(|e| Error::Task {
            context: "looking for temporary files".to_string(),
            reason: e.to_string(),
        })?
        .map_err(|(path, e)| local_error(&path, e))?;
    let mut out = Vec::new();
    for (file, size, modified) in found {
        let Ok(path) = Path::from_absolute_path(&file) else {
            continue;
        };
        let Some(relative) = location.relative(&path) else {
            continue;
        };
        let Some(base) = temporary_of(&relative) else {
            continue;
        };
        if rule.removes_temporary(base, modified) {
            out.push(Candidate {
                path,
                relative,
                size,
                version: None,
                local: Some(file),
            });
        }
    }
    Ok(out)
}

type Found = Vec<(PathBuf, u64, DateTime<Utc>)>;

fn walk_temporaries(
    root: &std::path::Path,
) -> std::result::Result<Found, (PathBuf, std::io::Error)> {
    let own = root.join(OWN_DIR);
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err((dir, e)),
        };
        let entries = entries
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| (dir.clone(), e))?;
        let nested = dir != root
            && !dir.starts_with(&own)
            && entries.iter().any(|e| e.file_name() == OWN_DIR);
        if nested {
            continue;
        }
        for entry in entries {
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| (path.clone(), e))?;
            if file_type.is_dir() {
                dirs.push(path);
                continue;
            }
            let is_temporary =
                file_type.is_file() && entry.file_name().to_str().and_then(temporary_of).is_some();
            if !is_temporary {
                continue;
            }
            match entry.metadata() {
                Ok(meta) => {
                    let modified = meta
                        .modified()
                        .map(DateTime::<Utc>::from)
                        .map_err(|e| (path.clone(), e))?;
                    out.push((path, meta.len(), modified));
                }
                // Renamed into place or removed meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err((path, e)),
            }
        }
    }
    Ok(out)
}

fn local_error(path: &std::path::Path, source: std::io::Error) -> Error {
    Error::store(
        path.display(),
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        },
    )
}

/// Delete `paths`, in bulk where the store can; an object already gone is fine.
async fn delete(location: &Location, paths: impl Iterator<Item = Path>) -> Result<()> {
    let paths: Vec<_> = paths.map(Ok).collect();
    if paths.is_empty() {
        return Ok(());
    }
    let mut results = location
        .store
        .delete_stream(futures::stream::iter(paths).boxed());
    while let Some(result) = results.next().await {
        match result {
            Ok(path) => tracing::debug!(%path, "gc removed"),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store(&location.root, e)),
        }
    }
    Ok(())
}

/// Delete local temporary files; one already gone is fine.
async fn delete_local(files: Vec<PathBuf>) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        for file in files {
            match std::fs::remove_file(&file) {
                Ok(()) => tracing::debug!(path = %file.display(), "gc removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(local_error(&file, e)),
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Task {
        context: "removing temporary files".to_string(),
        reason: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use arrow::record_batch::RecordBatch;
    use object_store::{ObjectStoreExt, PutPayload};
    use tempfile::TempDir;

    use super::*;
    use crate::layout::encode_path_segment;
    use crate::names::LATEST_HINT;
    use crate::writer::tests::{Row, batch, layout, rows, schema, to_rows};
    use crate::{
        CreateOptions, DataFile, Dataset, Layout, ScanRequest, WriterOptions, read_data_files,
    };

    /// A partitioned, bucketed dataset with an indexed column, so versions have data
    /// files with awkward partition values, segments and index files.
    async fn create(dir: &TempDir) -> Dataset {
        let options = CreateOptions {
            layout: layout(),
            indexed_columns: vec!["s".into()],
        };
        Dataset::create_with(location(dir), schema(), options)
            .await
            .unwrap()
    }

    fn location(dir: &TempDir) -> &str {
        dir.path().to_str().unwrap()
    }

    async fn write(dataset: &Dataset, rows: &[Row]) -> Vec<DataFile> {
        let mut writer = dataset.writer(WriterOptions::default()).unwrap();
        writer.write(batch(rows)).await.unwrap();
        writer.finish().await.unwrap()
    }

    async fn read_all(dataset: &Dataset) -> Vec<Row> {
        let request = ScanRequest::new(dataset.files().await.unwrap());
        let stream = read_data_files(
            dataset.store(),
            dataset.root().clone(),
            dataset.schema(),
            dataset.current().layout(),
            request,
        )
        .await
        .unwrap();
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        to_rows(&batches)
    }

    /// Every object below the root with its size, by path relative to the root.
    async fn objects(dataset: &Dataset) -> BTreeMap<String, u64> {
        let metas: Vec<ObjectMeta> = dataset
            .store()
            .list(Some(dataset.root()))
            .try_collect()
            .await
            .unwrap();
        metas
            .into_iter()
            .map(|m| {
                let parts = m.location.prefix_match(dataset.root()).unwrap();
                let relative: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
                (relative.join("/"), m.size)
            })
            .collect()
    }

    fn paths(files: &[DataFile]) -> Vec<String> {
        let mut out: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        out.sort();
        out
    }

    /// Eight days from now: everything written so far is past the default retention.
    fn eight_days_later() -> GcOptions {
        GcOptions::default().with_now(Utc::now() + TimeDelta::days(8))
    }

    /// Put a small object at `relative` and make it look `days` old.
    async fn put_aged(dataset: &Dataset, dir: &TempDir, relative: &str, days: u64) {
        let path = crate::location::join(dataset.root(), relative);
        dataset
            .store()
            .put(&path, PutPayload::from_static(b"piece"))
            .await
            .unwrap();
        age(dir, relative, days);
    }

    fn age(dir: &TempDir, relative: &str, days: u64) {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join(relative))
            .unwrap();
        let then = SystemTime::now() - Duration::from_secs(days * 24 * 3600);
        file.set_modified(then).unwrap();
    }

    #[tokio::test]
    async fn orphan_files_past_the_retention_are_removed_and_committed_ones_kept() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let committed = write(&dataset, &rows(0, 300)).await;
        let dataset = dataset.with_snapshot(
            dataset
                .append(committed.clone())
                .commit()
                .await
                .unwrap()
                .snapshot,
        );
        // A job that wrote files and died before committing, and a staging piece.
        let orphans = write(&dataset, &rows(1_000, 300)).await;
        put_aged(&dataset, &dir, "_terrace/staging/job-1/piece-0.parquet", 0).await;
        let before = objects(&dataset).await;

        let report = dataset.gc(eight_days_later()).await.unwrap();

        let mut expected = paths(&orphans);
        expected.push("_terrace/staging/job-1/piece-0.parquet".into());
        expected.sort();
        assert_eq!(report.files_removed, expected);
        assert_eq!(report.versions_removed, [0]);
        assert_eq!(report.versions_kept, 1);
        assert!(!report.dry_run);
        let version_0 = crate::names::version_path(0);
        let removed_bytes: u64 = expected.iter().chain([&version_0]).map(|p| before[p]).sum();
        assert_eq!(report.bytes_removed, removed_bytes);

        let after = objects(&dataset).await;
        let mut still_there = before.clone();
        for gone in expected.iter().chain([&version_0]) {
            still_there.remove(gone);
        }
        assert_eq!(after, still_there);
        for file in &committed {
            assert!(after.contains_key(&file.path), "{} was removed", file.path);
        }
        assert!(after.contains_key(LATEST_HINT));
        let reopened = Dataset::open(location(&dir)).await.unwrap();
        let mut expected_rows = rows(0, 300);
        expected_rows.sort_by_key(|r| r.id);
        assert_eq!(read_all(&reopened).await, expected_rows);

        // A second run finds nothing more to do.
        let again = reopened.gc(eight_days_later()).await.unwrap();
        assert_eq!(
            again,
            GcReport {
                versions_kept: 1,
                ..GcReport::default()
            }
        );
    }

    #[tokio::test]
    async fn overwritten_files_and_old_versions_go_once_past_the_retention() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let old_rows = rows(0, 600);
        let v1_files = write(&dataset, &old_rows).await;
        let v1 = dataset.append(v1_files.clone()).commit().await.unwrap();
        let dataset = dataset.with_snapshot(v1.snapshot.clone());
        let new_rows: Vec<Row> = rows(10_000, 600)
            .into_iter()
            .filter(|r| r.p1.as_deref() == Some("x/y"))
            .collect();
        let v2_files = write(&dataset, &new_rows).await;
        let v2 = dataset
            .overwrite_partitions(v2_files)
            .commit()
            .await
            .unwrap();
        let dataset = dataset.with_snapshot(v2.snapshot.clone());
        let touched: HashSet<(Option<String>, Option<i32>)> =
            new_rows.iter().map(|r| (r.p1.clone(), r.p2)).collect();
        let mut expected_rows: Vec<Row> = old_rows
            .into_iter()
            .filter(|r| !touched.contains(&(r.p1.clone(), r.p2)))
            .chain(new_rows)
            .collect();
        expected_rows.sort_by_key(|r| r.id);
        assert_eq!(read_all(&dataset).await, expected_rows);
        let latest: HashSet<String> = paths(&dataset.files().await.unwrap()).into_iter().collect();
        let replaced: Vec<String> = paths(&v1_files)
            .into_iter()
            .filter(|p| !latest.contains(p))
            .collect();
        assert!(!replaced.is_empty() && replaced.len() < v1_files.len());

        // Within the retention nothing goes: version 1 is still reachable by time travel.
        let now = dataset.gc(GcOptions::default()).await.unwrap();
        assert_eq!((now.files_removed.len(), now.versions_kept), (0, 3));

        let report = dataset.gc(eight_days_later()).await.unwrap();
        assert_eq!(report.versions_removed, [0, 1]);
        assert_eq!(report.versions_kept, 1);
        // The replaced files, and version 1's segment (version 2 rewrote it without them).
        let mut expected = replaced.clone();
        expected.extend(v1.segments().iter().map(|s| s.path.clone()));
        expected.sort();
        assert_eq!(report.files_removed, expected);
        // Index files accumulate across versions: the latest still lists version 1's.
        assert!(report.files_removed.iter().all(|p| !p.contains("indices")));
        let reopened = Dataset::open(location(&dir)).await.unwrap();
        assert_eq!(reopened.version(), 2);
        assert_eq!(read_all(&reopened).await, expected_rows);
        for index in reopened.current().indices() {
            reopened.read_index(index).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_dry_run_deletes_nothing_and_reports_what_a_real_run_removes() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let committed = write(&dataset, &rows(0, 200)).await;
        let dataset =
            dataset.with_snapshot(dataset.append(committed).commit().await.unwrap().snapshot);
        write(&dataset, &rows(500, 200)).await;
        let before = objects(&dataset).await;

        let dry = dataset
            .gc(eight_days_later().with_dry_run(true))
            .await
            .unwrap();
        assert_eq!(objects(&dataset).await, before);
        assert!(dry.dry_run);
        assert_eq!(dry.versions_removed, [0]);
        assert!(!dry.files_removed.is_empty());
        let json = serde_json::to_value(&dry).unwrap();
        assert_eq!(json["dry_run"], true);
        assert_eq!(json["versions_removed"], serde_json::json!([0]));

        let real = dataset.gc(eight_days_later()).await.unwrap();
        assert_eq!(
            real,
            GcReport {
                dry_run: false,
                ..dry
            }
        );
        assert_eq!(
            objects(&dataset).await.len(),
            before.len() - real.files_removed.len() - 1
        );
    }

    #[tokio::test]
    async fn unreferenced_files_newer_than_the_cutoff_are_kept() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let committed = write(&dataset, &rows(0, 200)).await;
        let dataset =
            dataset.with_snapshot(dataset.append(committed).commit().await.unwrap().snapshot);
        // Files of a commit in flight, written just now...
        let in_flight = write(&dataset, &rows(1_000, 200)).await;
        put_aged(&dataset, &dir, "_terrace/staging/job-2/piece-0.parquet", 0).await;
        // ...and leftovers of a job abandoned ten days ago.
        let abandoned = write(&dataset, &rows(2_000, 50)).await;
        for file in &abandoned {
            age(&dir, &file.path, 10);
        }
        put_aged(&dataset, &dir, "_terrace/staging/job-1/piece-0.parquet", 10).await;
        // A file terrace never wrote is kept however old (see the next tests).
        put_aged(&dataset, &dir, "stray.txt", 10).await;

        let report = dataset.gc(GcOptions::default()).await.unwrap();

        let mut expected = paths(&abandoned);
        expected.push("_terrace/staging/job-1/piece-0.parquet".to_string());
        expected.sort();
        assert_eq!(report.files_removed, expected);
        // Both versions are younger than the cutoff.
        assert!(report.versions_removed.is_empty());
        assert_eq!(report.versions_kept, 2);
        let after = objects(&dataset).await;
        for path in paths(&in_flight) {
            assert!(after.contains_key(&path), "{path} was removed");
        }
        assert!(after.contains_key("_terrace/staging/job-2/piece-0.parquet"));
        assert!(after.contains_key("stray.txt"));
        // The commit in flight still succeeds and reads back.
        let committed = dataset.append(in_flight).commit().await.unwrap();
        let dataset = dataset.with_snapshot(committed.snapshot);
        assert_eq!(read_all(&dataset).await.len(), 400);
    }

    #[tokio::test]
    async fn the_version_current_at_the_cutoff_stays_readable() {
        let dir = TempDir::new().unwrap();
        let mut dataset = create(&dir).await;
        let mut versions = vec![dataset.current().clone()];
        for i in 0..3 {
            // Distinct commit timestamps.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let files = write(&dataset, &rows(i * 100, 100)).await;
            let snapshot = dataset.append(files).commit().await.unwrap().snapshot;
            dataset = dataset.with_snapshot(snapshot.clone());
            versions.push(snapshot);
        }
        // Cutoff just after version 1: version 1 was current then.
        let cutoff = versions[1].timestamp() + TimeDelta::milliseconds(1);
        assert!(cutoff < versions[2].timestamp());
        let options = GcOptions::default()
            .with_retention(Duration::from_secs(3600))
            .with_force(true)
            .with_now(cutoff + TimeDelta::hours(1));
        let report = dataset.gc(options).await.unwrap();
        assert_eq!(report.versions_removed, [0]);
        assert_eq!(report.versions_kept, 3);
        assert!(
            report.files_removed.is_empty(),
            "{:?}",
            report.files_removed
        );

        let as_of = Dataset::open_as_of(location(&dir), cutoff).await.unwrap();
        assert_eq!(as_of.version(), 1);
        assert_eq!(read_all(&as_of).await.len(), 100);
    }

    #[tokio::test]
    async fn opening_a_removed_version_says_it_was_removed_by_gc() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let files = write(&dataset, &rows(0, 100)).await;
        dataset.append(files).commit().await.unwrap();
        let report = dataset.gc(eight_days_later()).await.unwrap();
        assert_eq!(report.versions_removed, [0]);

        let err = Dataset::open_version(location(&dir), 0).await.unwrap_err();
        assert!(
            matches!(err, Error::VersionNotFound { version: 0, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("version 0") && message.contains("removed by gc"),
            "{message}"
        );
        assert_eq!(
            Dataset::open_version(location(&dir), 1)
                .await
                .unwrap()
                .version(),
            1
        );
    }

    #[tokio::test]
    async fn a_commit_based_on_a_removed_version_is_refused_not_lost() {
        let dir = TempDir::new().unwrap();
        let stale = create(&dir).await;
        let mut dataset = stale.clone();
        for i in 0..3 {
            let files = write(&dataset, &rows(i * 100, 100)).await;
            dataset = dataset.with_snapshot(dataset.append(files).commit().await.unwrap().snapshot);
        }
        let report = dataset.gc(eight_days_later()).await.unwrap();
        assert_eq!(report.versions_removed, [0, 1, 2]);

        // A writer still holding version 0 would put version 1 into the gap.
        let files = write(&stale, &rows(1000, 10)).await;
        let err = stale.append(files).commit().await.unwrap_err();
        assert!(
            matches!(&err, Error::Conflict { reason, .. } if reason.contains("gc")),
            "{err}"
        );
        let latest = Dataset::open(location(&dir)).await.unwrap();
        assert_eq!(latest.version(), 3);
        assert_eq!(read_all(&latest).await.len(), 300);
        assert!(Dataset::open_version(location(&dir), 1).await.is_err());
    }

    /// Write a file as a user would (not through the store), `days` old.
    fn put_file_aged(dir: &TempDir, relative: &str, days: u64) {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"not terrace's").unwrap();
        age(dir, relative, days);
    }

    #[tokio::test]
    async fn a_retention_below_the_floor_is_refused_without_force() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let orphans = write(&dataset, &rows(0, 50)).await;
        let before = objects(&dataset).await;
        for retention in [Duration::ZERO, GC_RETENTION_FLOOR - Duration::from_secs(1)] {
            for dry_run in [false, true] {
                let options = GcOptions::default()
                    .with_retention(retention)
                    .with_dry_run(dry_run);
                let err = dataset.gc(options).await.unwrap_err();
                assert!(matches!(err, Error::RetentionBelowFloor { .. }), "{err:?}");
                assert!(!err.is_retryable());
                let message = err.to_string();
                assert!(
                    message.contains("24h") && message.contains("--force"),
                    "{message}"
                );
            }
        }
        assert_eq!(
            objects(&dataset).await,
            before,
            "a refused gc changed nothing"
        );

        // The floor itself needs no force (and nothing is old enough for it).
        let at_floor = GcOptions::default().with_retention(GC_RETENTION_FLOOR);
        assert!(dataset.gc(at_floor).await.unwrap().files_removed.is_empty());
        let forced = GcOptions::default()
            .with_retention(Duration::ZERO)
            .with_force(true)
            .with_now(Utc::now() + TimeDelta::seconds(1));
        assert_eq!(
            dataset.gc(forced).await.unwrap().files_removed,
            paths(&orphans)
        );
    }

    /// Regression: `gc --dry-run` on a dataset created inside a non-empty directory
    /// listed `docs/thesis.txt` and `input.csv`, and a real run deleted them.
    #[tokio::test]
    async fn names_terrace_does_not_write_are_never_removed() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let committed = write(&dataset, &rows(0, 100)).await;
        let dataset =
            dataset.with_snapshot(dataset.append(committed).commit().await.unwrap().snapshot);
        let orphans = write(&dataset, &rows(1_000, 100)).await;
        for file in &orphans {
            age(&dir, &file.path, 10);
        }
        // What a user keeps beside the dataset, including names that look almost like
        // terrace's; all ten days old.
        let id = uuid::Uuid::new_v4();
        let foreign = [
            "docs/thesis.txt".to_string(),
            "input.csv".to_string(),
            ".DS_Store".to_string(),
            "p1=a/notes.txt".to_string(),
            format!("p1=a/part-00001-{id}.parquet"),
            format!("p1=a/p2=1/part-{id}.parquet"),
            format!("p1=a/p2=1/old/part-00001-{id}.parquet"),
            format!("part-00001-{id}.parquet"),
            "_terrace/README".to_string(),
            "_terrace/segments/mine.parquet".to_string(),
            "_terrace/versions/notes.json".to_string(),
        ];
        for path in &foreign {
            put_file_aged(&dir, path, 10);
        }

        let dry = dataset
            .gc(eight_days_later().with_dry_run(true))
            .await
            .unwrap();
        assert_eq!(dry.files_removed, paths(&orphans));
        let real = dataset.gc(eight_days_later()).await.unwrap();
        assert_eq!(real.files_removed, paths(&orphans));
        for path in &foreign {
            assert!(dir.path().join(path).exists(), "{path} was removed");
        }
    }

    /// Regression: a gc of an outer dataset deleted a nested dataset's version files.
    #[tokio::test]
    async fn a_nested_dataset_is_left_alone() {
        let dir = TempDir::new().unwrap();
        let outer = create(&dir).await;
        let files = write(&outer, &rows(0, 100)).await;
        let outer = outer.with_snapshot(outer.append(files).commit().await.unwrap().snapshot);
        // A dataset whose root looks like a partition directory of the outer one, with
        // files named like the outer one's: only the `_terrace/` below it tells.
        // (`zz` is a value the outer rows never have: create refuses a directory holding
        // files that are not the new dataset's.)
        let inner_at = dir.path().join("p1=zz/p2=1");
        let inner = Dataset::create(
            inner_at.to_str().unwrap(),
            schema(),
            Layout {
                bucket_by: vec!["id".into()],
                num_buckets: Some(4),
                ..Layout::default()
            },
        )
        .await
        .unwrap();
        let mut writer = inner.writer(WriterOptions::default()).unwrap();
        writer.write(batch(&rows(5_000, 40))).await.unwrap();
        let inner_files = writer.finish().await.unwrap();
        let inner = inner.with_snapshot(
            inner
                .append(inner_files.clone())
                .commit()
                .await
                .unwrap()
                .snapshot,
        );
        // An orphan of the inner dataset too: the inner gc's business, not the outer's.
        let mut writer = inner.writer(WriterOptions::default()).unwrap();
        writer.write(batch(&rows(6_000, 40))).await.unwrap();
        writer.finish().await.unwrap();
        let inner_before = objects(&inner).await;
        assert!(inner_before.keys().any(|p| p.starts_with("part-")));
        assert!(crate::names::is_data_file_path(
            &format!("p1=zz/p2=1/{}", inner_files[0].path),
            outer.current().layout()
        ));

        let report = outer.gc(eight_days_later()).await.unwrap();
        assert!(
            report
                .files_removed
                .iter()
                .all(|p| !p.starts_with("p1=zz/")),
            "{:?}",
            report.files_removed
        );
        assert_eq!(objects(&inner).await, inner_before);
        let inner = Dataset::open(inner_at.to_str().unwrap()).await.unwrap();
        assert_eq!((inner.version(), read_all(&inner).await.len()), (1, 40));
        assert_eq!(
            read_all(&Dataset::open(location(&dir)).await.unwrap())
                .await
                .len(),
            100
        );
    }

    /// Regression: the `<name>#<N>` files object_store's local store writes before its
    /// rename stayed forever when the put was killed; gc now removes them once old.
    #[tokio::test]
    async fn temporary_files_of_killed_puts_go_once_past_the_retention() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let files = write(&dataset, &rows(0, 100)).await;
        let dataset = dataset.with_snapshot(
            dataset
                .append(files.clone())
                .commit()
                .await
                .unwrap()
                .snapshot,
        );
        let id = uuid::Uuid::new_v4();
        let old = [
            format!("{}#1", files[0].path),
            format!("{}#2", files[0].path),
            format!("_terrace/segments/{id}.parquet#1"),
            format!("{}#1", crate::names::version_path(2)),
            "_terrace/_latest#1".to_string(),
            "_terrace/staging/run-9/reports/r.parquet#3".to_string(),
        ];
        for path in &old {
            put_file_aged(&dir, path, 10);
        }
        let young = format!("{}#3", files[1].path);
        put_file_aged(&dir, &young, 0);
        let foreign = ["input.csv#1", "docs/thesis.txt#2", "p1=a/notes#1"];
        for path in foreign {
            put_file_aged(&dir, path, 10);
        }
        // The store's listing does not show them.
        assert!(objects(&dataset).await.keys().all(|p| !p.contains('#')));

        let options = GcOptions::default().with_retention(Duration::from_secs(2 * 86_400));
        let dry = dataset
            .gc(options.clone().with_dry_run(true))
            .await
            .unwrap();
        let mut expected = old.to_vec();
        expected.sort();
        assert_eq!(dry.files_removed, expected);
        assert_eq!(dry.bytes_removed, 13 * old.len() as u64);
        for path in &old {
            assert!(dir.path().join(path).exists(), "the dry run removed {path}");
        }
        let report = dataset.gc(options).await.unwrap();
        assert_eq!(report.files_removed, expected);
        for path in &old {
            assert!(!dir.path().join(path).exists(), "{path} was kept");
        }
        for path in foreign.iter().copied().chain([young.as_str()]) {
            assert!(dir.path().join(path).exists(), "{path} was removed");
        }
        assert_eq!(
            read_all(&Dataset::open(location(&dir)).await.unwrap())
                .await
                .len(),
            100
        );
    }

    #[tokio::test]
    async fn the_staging_of_live_runs_is_kept_even_when_forced() {
        let dir = TempDir::new().unwrap();
        let dataset = create(&dir).await;
        let live = "0193a7e4-live/run";
        let live_dir = format!("_terrace/staging/{}", encode_path_segment(live));
        let pieces = [
            format!("{live_dir}/map-00000-ab/p1=a/p2=1/map-00000.parquet"),
            format!("{live_dir}/reports/write-00000-x.parquet"),
            format!("{live_dir}/result.parquet#1"),
        ];
        let finished = "_terrace/staging/0193a7e4-done/reports/write-00000-y.parquet";
        for path in pieces.iter().map(String::as_str).chain([finished]) {
            put_file_aged(&dir, path, 10);
        }
        let options = GcOptions::default()
            .with_retention(Duration::ZERO)
            .with_force(true)
            .with_live_runs([live, "another-run"]);
        let report = dataset.gc(options).await.unwrap();
        assert_eq!(report.files_removed, [finished]);
        for path in &pieces {
            assert!(dir.path().join(path).exists(), "{path} was removed");
        }
    }
}

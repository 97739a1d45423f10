//! The names terrace writes below a dataset root: how each is built, and a test for
//! whether an object is one.
//!
//! Every path below `_terrace/` (and every staging path of a job) is built here, by the
//! constructors below, and recognised here, by [`classify`], so what gc removes and what
//! [`Dataset::create`](crate::Dataset::create) tolerates is decided by the same module
//! that writes the names. Data-file names are built by [`data_file_name`](crate::data_file_name)
//! under the layout's partition paths.
//!
//! A dataset root may sit in a directory (or bucket prefix) that also holds things terrace
//! never wrote: a user's `docs/thesis.txt`, the `input.csv` an ingest read, another
//! dataset nested in a subdirectory. gc deletes only objects named here, and
//! [`Dataset::create`](crate::Dataset::create) refuses a location that holds anything
//! else, so terrace never owns (or removes) a file it did not create.
//!
//! The names, relative to the root:
//!
//! | name | written by | built by |
//! |---|---|---|
//! | `_terrace/versions/<20 digits>.json` | a commit (the commit point) | [`version_path`] |
//! | `_terrace/_latest` | a commit (the latest-version hint) | [`LATEST_HINT`] |
//! | `_terrace/segments/<uuid>.parquet` | a commit (file lists) | [`new_segment_path`] |
//! | `_terrace/indices/<column>/<uuid>.parquet` | a commit (secondary indices) | [`new_index_path`] |
//! | `_terrace/staging/<run>/…` | the tasks of a run (below) | [`staging_dir`] |
//! | `_terrace/_probe/<uuid>` | `create` (the conditional-put probe) | [`new_probe_path`] |
//! | `<k1>=<v1>/…/<kn>=<vn>/part-[<bucket>-]<uuid>.parquet` | a data-file writer, under exactly the layout's partition columns, with a bucket exactly when the layout has buckets | [`data_file_name`](crate::data_file_name) |
//!
//! Below a run's staging directory `<staging>`:
//!
//! | name | written by | built by |
//! |---|---|---|
//! | `<staging>/map-<5 digits>-<8 hex>/<data-file path>` | one attempt of a map task (shuffle pieces) | [`new_map_attempt_dir`] |
//! | `<staging>/reports/<task>-<uuid>.parquet` | a write, map or reduce task (the files it wrote) | [`new_report_path`] |
//! | `<staging>/reports/<task>-<uuid>.json` | a map task of a shuffle through sorted runs (the runs it wrote) | [`new_runs_report_path`] |
//! | `<staging>/map-<5 digits>-<8 hex>/run-<5 digits>-<uuid>.arrow` | a map task of a shuffle through sorted runs | `RunWriter` |
//! | `<staging>/parts/part-<5 digits>-<uuid>.parquet` | a query's read task | [`new_query_part_path`] |
//! | `<staging>/result.parquet` | a query's gather task | [`query_result_path`] |
//!
//! Any of them followed by `#<digits>` is the temporary file object_store's
//! `LocalFileSystem` writes a put into before renaming it into place; a process killed
//! in between leaves it behind.

use crate::layout::{Layout, NULL_PARTITION_MARKER, decode_path_segment, encode_path_segment};

/// The directory below a dataset root that holds every name terrace writes other than
/// data files.
pub(crate) const OWN_DIR: &str = "_terrace";
/// The non-authoritative "latest version" hint.
pub(crate) const LATEST_HINT: &str = "_terrace/_latest";
/// The directory of the version files.
pub(crate) const VERSIONS_DIR: &str = "_terrace/versions";
const SEGMENTS_DIR: &str = "_terrace/segments";
const INDICES_DIR: &str = "_terrace/indices";
const STAGING_DIR: &str = "_terrace/staging";
const PROBE_DIR: &str = "_terrace/_probe";

/// Path of the version file of `version`, relative to the dataset root.
pub(crate) fn version_path(version: u64) -> String {
    format!("{VERSIONS_DIR}/{version:020}.json")
}

/// Parse a version number back from a version file name.
pub(crate) fn parse_version_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A new segment's path, relative to the dataset root: unique, so the segment stays
/// invisible until a version references it.
pub(crate) fn new_segment_path() -> String {
    format!("{SEGMENTS_DIR}/{}.parquet", uuid::Uuid::new_v4())
}

/// A new index file's path for `column`, relative to the dataset root (the column name
/// path-encoded, so any name stays one directory).
pub(crate) fn new_index_path(column: &str) -> String {
    format!(
        "{INDICES_DIR}/{}/{}.parquet",
        encode_path_segment(column),
        uuid::Uuid::new_v4()
    )
}

/// A new conditional-put probe's path, relative to the dataset root.
pub(crate) fn new_probe_path() -> String {
    format!("{PROBE_DIR}/{}", uuid::Uuid::new_v4())
}

/// The staging directory of the run `run_id`, relative to the dataset root:
/// `_terrace/staging/<run id, path-encoded>`. Everything a run's tasks write before (or
/// instead of) a commit lies below it, and gc keeps it while the run is live
/// ([`crate::GcOptions::live_runs`]).
pub fn staging_dir(run_id: &str) -> String {
    format!("{STAGING_DIR}/{}", staging_dir_name(run_id))
}

/// The name of `run_id`'s directory below `_terrace/staging/`, as [`Name::Staging`]
/// reports it.
pub(crate) fn staging_dir_name(run_id: &str) -> String {
    encode_path_segment(run_id)
}

/// A new directory, below the run's `staging` directory, for the pieces one attempt of map
/// task `map_index` writes: `<staging>/map-<index, 5 digits>-<8 hex>`. The pieces below
/// it are data files of the dataset's layout (partition paths and file names as in the
/// dataset), and each attempt gets its own directory, so a zombie attempt's pieces never
/// mix with the pieces of the attempt whose report the reduce stage reads.
pub fn new_map_attempt_dir(staging: &str, map_index: usize) -> String {
    format!(
        "{staging}/map-{map_index:05}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A new path, below the run's `staging` directory, for the file report of the task
/// `name` (`write-00003`, `map-00003`, `reduce-00003`):
/// `<staging>/reports/<name>-<uuid>.parquet`.
pub fn new_report_path(staging: &str, name: &str) -> String {
    format!("{staging}/reports/{name}-{}.parquet", uuid::Uuid::new_v4())
}

/// A new path, below the run's `staging` directory, for the description of the sorted
/// runs the map task `name` (`map-00003`) wrote: `<staging>/reports/<name>-<uuid>.json`.
pub fn new_runs_report_path(staging: &str, name: &str) -> String {
    format!("{staging}/reports/{name}-{}.json", uuid::Uuid::new_v4())
}

/// A new path, below the query run's `staging` directory, for the part read task
/// `read_index` writes: `<staging>/parts/part-<index, 5 digits>-<uuid>.parquet`.
pub fn new_query_part_path(staging: &str, read_index: usize) -> String {
    format!(
        "{staging}/parts/part-{read_index:05}-{}.parquet",
        uuid::Uuid::new_v4()
    )
}

/// Where a query run's gather task writes the result, below the run's `staging`
/// directory: `<staging>/result.parquet`.
pub fn query_result_path(staging: &str) -> String {
    format!("{staging}/result.parquet")
}

/// `relative` below the directory `dir` (both relative to the dataset root): what
/// follows `dir/`.
fn below<'a>(relative: &'a str, dir: &str) -> Option<&'a str> {
    relative.strip_prefix(dir)?.strip_prefix('/')
}

/// Whether `relative` lies below `_terrace/`, where data files never are.
pub(crate) fn is_own(relative: &str) -> bool {
    below(relative, OWN_DIR).is_some()
}

/// What a name below a dataset root is, when terrace wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name<'a> {
    /// A version file.
    Version(u64),
    /// `_terrace/_latest`.
    LatestHint,
    /// A segment (file list).
    Segment,
    /// An index file.
    Index,
    /// Anything below `_terrace/staging/<run>/`; `run` is the directory name as stored
    /// (the run id path-encoded).
    Staging {
        /// The run's directory name.
        run: &'a str,
    },
    /// A leftover of the conditional-put probe.
    Probe,
    /// A data file.
    DataFile,
}

/// What terrace's own name `relative` (a path relative to the dataset root, segments as
/// the store lists them) is, or `None` for a name terrace never writes with `layout`.
pub(crate) fn classify<'a>(relative: &'a str, layout: &Layout) -> Option<Name<'a>> {
    if !is_own(relative) {
        return is_data_file_path(relative, layout).then_some(Name::DataFile);
    }
    if relative == LATEST_HINT {
        return Some(Name::LatestHint);
    }
    if let Some(name) = below(relative, VERSIONS_DIR) {
        return parse_version_file_name(name).map(Name::Version);
    }
    if let Some(name) = below(relative, SEGMENTS_DIR) {
        return is_uuid_file(name, ".parquet").then_some(Name::Segment);
    }
    if let Some(name) = below(relative, INDICES_DIR) {
        let (column, file) = name.split_once('/')?;
        return (!column.is_empty() && is_uuid_file(file, ".parquet")).then_some(Name::Index);
    }
    if let Some(name) = below(relative, STAGING_DIR) {
        let (run, piece) = name.split_once('/')?;
        return (!run.is_empty() && !piece.is_empty()).then_some(Name::Staging { run });
    }
    if let Some(name) = below(relative, PROBE_DIR) {
        return is_uuid_file(name, "").then_some(Name::Probe);
    }
    None
}

fn is_uuid_file(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix).is_some_and(is_uuid)
}

/// A hyphenated UUID, the only form terrace writes.
fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::try_parse(text).is_ok()
}

/// Whether `relative` is a data-file path of `layout`: one `key=value` directory per
/// partition column, in order, then a name made by [`crate::data_file_name`].
pub(crate) fn is_data_file_path(relative: &str, layout: &Layout) -> bool {
    let mut segments = relative.split('/');
    for column in &layout.partition_on {
        let Some((key, value)) = segments.next().and_then(|s| s.split_once('=')) else {
            return false;
        };
        if decode_path_segment(key).ok().as_deref() != Some(column.as_str()) {
            return false;
        }
        if value != NULL_PARTITION_MARKER && decode_path_segment(value).is_err() {
            return false;
        }
    }
    match (segments.next(), segments.next()) {
        (Some(name), None) => is_data_file_name(name, layout.num_buckets.is_some()),
        _ => false,
    }
}

/// Whether `name` is a data-file name as [`crate::data_file_name`] makes it:
/// `part-<uuid>.parquet`, or `part-<bucket, 5 digits or more>-<uuid>.parquet` when
/// `bucketed`.
pub(crate) fn is_data_file_name(name: &str, bucketed: bool) -> bool {
    let Some(stem) = name
        .strip_prefix("part-")
        .and_then(|s| s.strip_suffix(".parquet"))
    else {
        return false;
    };
    if !bucketed {
        return is_uuid(stem);
    }
    let Some((bucket, id)) = stem.split_once('-') else {
        return false;
    };
    bucket.len() >= 5 && bucket.parse::<u32>().is_ok() && is_uuid(id)
}

/// The name a `LocalFileSystem` temporary file (`<name>#<digits>`) stands for, or `None`
/// when `relative` is not one.
pub(crate) fn temporary_of(relative: &str) -> Option<&str> {
    let (base, suffix) = relative.rsplit_once('#')?;
    let is_temporary = !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
        && !base.is_empty()
        && !base.ends_with('/');
    is_temporary.then_some(base)
}

/// The root of a dataset nested below this one that `relative` lies in: the directories
/// before a `_terrace` directory that is not this dataset's own. `_terrace/indices/_terrace/…`
/// (the index of a column named `_terrace`) is this dataset's, not a nested one.
pub(crate) fn nested_root(relative: &str) -> Option<&str> {
    if is_own(relative) {
        return None;
    }
    let mut offset = 0;
    for segment in relative.split('/') {
        if segment == OWN_DIR && offset > 0 {
            return Some(&relative[..offset - 1]);
        }
        offset += segment.len() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b5f4f0e-8d43-4e53-9e0c-3d1f7a8b9c0d";

    fn layout(partition_on: &[&str], buckets: Option<u32>) -> Layout {
        Layout {
            partition_on: partition_on.iter().map(|s| s.to_string()).collect(),
            bucket_by: buckets.map(|_| vec!["b".to_string()]).unwrap_or_default(),
            num_buckets: buckets,
        }
    }

    #[test]
    fn names_terrace_writes_are_recognised() {
        let flat = layout(&[], None);
        let cases = [
            (
                "_terrace/versions/00000000000000000003.json".to_string(),
                Name::Version(3),
            ),
            ("_terrace/_latest".to_string(), Name::LatestHint),
            (format!("_terrace/segments/{ID}.parquet"), Name::Segment),
            (
                format!("_terrace/indices/carrier/{ID}.parquet"),
                Name::Index,
            ),
            (
                format!("_terrace/indices/_terrace/{ID}.parquet"),
                Name::Index,
            ),
            (
                "_terrace/staging/run-1/map-00001-ab/origin=JFK/x.parquet".to_string(),
                Name::Staging { run: "run-1" },
            ),
            (format!("_terrace/_probe/{ID}"), Name::Probe),
            (format!("part-{ID}.parquet"), Name::DataFile),
        ];
        for (path, expected) in &cases {
            assert_eq!(classify(path, &flat), Some(*expected), "{path}");
        }
    }

    /// The constructors build the names of the table in the module docs, byte for byte,
    /// and `classify` recognises each as what it is.
    #[test]
    fn constructed_names_are_recognised_as_what_they_are() {
        let flat = layout(&[], None);
        let shaped = |path: &str, prefix: &str, suffix: &str| {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(is_uuid)
        };
        assert_eq!(
            version_path(7),
            "_terrace/versions/00000000000000000007.json"
        );
        assert_eq!(classify(&version_path(7), &flat), Some(Name::Version(7)));
        assert_eq!(classify(LATEST_HINT, &flat), Some(Name::LatestHint));
        let segment = new_segment_path();
        assert!(
            shaped(&segment, "_terrace/segments/", ".parquet"),
            "{segment}"
        );
        assert_eq!(classify(&segment, &flat), Some(Name::Segment));
        let index = new_index_path("a/b");
        assert!(
            shaped(&index, "_terrace/indices/a%2Fb/", ".parquet"),
            "{index}"
        );
        assert_eq!(classify(&index, &flat), Some(Name::Index));
        let probe = new_probe_path();
        assert!(shaped(&probe, "_terrace/_probe/", ""), "{probe}");
        assert_eq!(classify(&probe, &flat), Some(Name::Probe));

        let staging = staging_dir("run/1");
        assert_eq!(staging, "_terrace/staging/run%2F1");
        let map_dir = new_map_attempt_dir(&staging, 3);
        let attempt = map_dir
            .strip_prefix("_terrace/staging/run%2F1/map-00003-")
            .unwrap_or_default();
        assert!(
            attempt.len() == 8 && attempt.bytes().all(|b| b.is_ascii_hexdigit()),
            "{map_dir}"
        );
        let report = new_report_path(&staging, "map-00003");
        assert!(
            shaped(
                &report,
                "_terrace/staging/run%2F1/reports/map-00003-",
                ".parquet"
            ),
            "{report}"
        );
        let part = new_query_part_path(&staging, 3);
        assert!(
            shaped(
                &part,
                "_terrace/staging/run%2F1/parts/part-00003-",
                ".parquet"
            ),
            "{part}"
        );
        let result = query_result_path(&staging);
        assert_eq!(result, "_terrace/staging/run%2F1/result.parquet");
        let run = staging_dir_name("run/1");
        for path in [format!("{map_dir}/part-{ID}.parquet"), report, part, result] {
            assert_eq!(
                classify(&path, &flat),
                Some(Name::Staging { run: &run }),
                "{path}"
            );
        }
    }

    #[test]
    fn other_names_are_not_terrace_names() {
        let flat = layout(&[], None);
        let by_origin = layout(&["origin"], Some(8));
        for path in [
            "input.csv".to_string(),
            "docs/thesis.txt".to_string(),
            "part-1.parquet".to_string(),
            format!("part-{ID}.parquet.bak"),
            format!("sub/part-{ID}.parquet"),
            format!("sub/_terrace/segments/{ID}.parquet"),
            "_terrace/versions/3.json".to_string(),
            "_terrace/versions/notes.txt".to_string(),
            "_terrace/segments/mine.parquet".to_string(),
            "_terrace/staging/run-1".to_string(),
            "_terrace/README".to_string(),
            "_terrace/_latest/x".to_string(),
        ] {
            assert_eq!(classify(&path, &flat), None, "{path}");
        }
        for path in [
            // No bucket number on a bucketed layout, a wrong column, too deep, too shallow.
            format!("origin=JFK/part-{ID}.parquet"),
            format!("dest=JFK/part-00003-{ID}.parquet"),
            format!("origin=JFK/x/part-00003-{ID}.parquet"),
            format!("part-00003-{ID}.parquet"),
            format!("origin=JFK/part-003-{ID}.parquet"),
            format!("origin=J%ZZ/part-00003-{ID}.parquet"),
        ] {
            assert_eq!(classify(&path, &by_origin), None, "{path}");
        }
        for path in [
            format!("origin=JFK/part-00003-{ID}.parquet"),
            format!("origin=x%2Fy/part-00007-{ID}.parquet"),
            format!("origin={NULL_PARTITION_MARKER}/part-00000-{ID}.parquet"),
        ] {
            assert_eq!(classify(&path, &by_origin), Some(Name::DataFile), "{path}");
        }
    }

    #[test]
    fn temporary_files_of_puts_name_what_they_stand_for() {
        assert_eq!(
            temporary_of("a=1/part-x.parquet#1"),
            Some("a=1/part-x.parquet")
        );
        assert_eq!(
            temporary_of("_terrace/_latest#23"),
            Some("_terrace/_latest")
        );
        for not_temporary in ["part-x.parquet", "a#b", "a#", "#1", "a/#1", "a#1x"] {
            assert_eq!(temporary_of(not_temporary), None, "{not_temporary}");
        }
    }

    #[test]
    fn nested_dataset_roots_are_found_below_the_root_only() {
        assert_eq!(
            nested_root("sub/_terrace/versions/00000000000000000000.json"),
            Some("sub")
        );
        assert_eq!(nested_root("a=1/b/_terrace/_latest"), Some("a=1/b"));
        assert_eq!(nested_root("_terrace/indices/_terrace/x.parquet"), None);
        assert_eq!(nested_root("_terrace/_latest"), None);
        assert_eq!(nested_root("a=1/part-x.parquet"), None);
        assert_eq!(nested_root("x_terrace/_terracex/y"), None);
    }
}

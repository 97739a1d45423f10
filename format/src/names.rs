//! The names terrace writes below a dataset root, and a test for whether an object is one.
//!
//! A dataset root may sit in a directory (or bucket prefix) that also holds things terrace
//! never wrote: a user's `docs/thesis.txt`, the `input.csv` an ingest read, another
//! dataset nested in a subdirectory. gc deletes only objects named here, and
//! [`Dataset::create`](crate::Dataset::create) refuses a location that holds anything
//! else, so terrace never owns (or removes) a file it did not create.
//!
//! The names, relative to the root:
//!
//! | name | written by |
//! |---|---|
//! | `_terrace/versions/<20 digits>.json` | a commit (the commit point) |
//! | `_terrace/_latest` | a commit (the latest-version hint) |
//! | `_terrace/segments/<uuid>.parquet` | a commit (file lists) |
//! | `_terrace/indices/<column>/<uuid>.parquet` | a commit (secondary indices) |
//! | `_terrace/staging/<run>/…` | the tasks of a run (pieces, file reports, results) |
//! | `_terrace/_probe/<uuid>` | `create` (the conditional-put probe) |
//! | `<k1>=<v1>/…/<kn>=<vn>/part-[<bucket>-]<uuid>.parquet` | a data-file writer, under exactly the layout's partition columns, with a bucket exactly when the layout has buckets ([`data_file_name`](crate::data_file_name)) |
//!
//! Any of them followed by `#<digits>` is the temporary file object_store's
//! `LocalFileSystem` writes a put into before renaming it into place; a process killed
//! in between leaves it behind.

use crate::layout::{Layout, NULL_PARTITION_MARKER, decode_path_segment};
use crate::manifest::parse_version_file_name;

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
    if let Some(rest) = relative.strip_prefix("_terrace/") {
        return classify_own(rest);
    }
    is_data_file_path(relative, layout).then_some(Name::DataFile)
}

fn classify_own(rest: &str) -> Option<Name<'_>> {
    if rest == "_latest" {
        return Some(Name::LatestHint);
    }
    let (dir, name) = rest.split_once('/')?;
    match dir {
        "versions" => parse_version_file_name(name).map(Name::Version),
        "segments" => is_uuid_file(name, ".parquet").then_some(Name::Segment),
        "indices" => {
            let (column, file) = name.split_once('/')?;
            (!column.is_empty() && is_uuid_file(file, ".parquet")).then_some(Name::Index)
        }
        "staging" => {
            let (run, piece) = name.split_once('/')?;
            (!run.is_empty() && !piece.is_empty()).then_some(Name::Staging { run })
        }
        "_probe" => is_uuid_file(name, "").then_some(Name::Probe),
        _ => None,
    }
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
    if relative.starts_with("_terrace/") {
        return None;
    }
    let mut offset = 0;
    for segment in relative.split('/') {
        if segment == "_terrace" && offset > 0 {
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

//! What a run file holds, as a map task reports it: the groups in the shuffle's order
//! with their rows, and the rows of each record batch.
//!
//! A run's rows are in group order and cut into record batches of about a MiB, which
//! small groups share: a batch per group would cost a batch's framing (header, buffer
//! padding, compression frames: about a KiB) per group and run, more than the rows of
//! the small groups of a write with thousands of groups. A group is then the rows
//! after the groups before it, and the batches holding them follow from `block_rows`.

use std::collections::BTreeMap;
use std::fmt;

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// The shuffle's order of (partition, bucket) groups, shared by every run: by
/// partition path (as [`partition_path`](crate::partition_path) writes it, `""` when
/// unpartitioned), then by bucket.
///
/// The path is a group's name on the store too, so the key names a group the same way
/// in every task, and [`parse_partition_path`](crate::parse_partition_path) turns it back
/// into typed values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShuffleKey {
    /// The group's partition directory below the dataset root, e.g. `a=1/b=x%2Fy`.
    pub partition_path: String,
    /// The group's bucket, when the dataset is bucketed.
    pub bucket: Option<u32>,
}

impl fmt::Display for ShuffleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.partition_path.is_empty() {
            "(unpartitioned)"
        } else {
            &self.partition_path
        };
        match self.bucket {
            Some(bucket) => write!(f, "{path} bucket {bucket}"),
            None => f.write_str(path),
        }
    }
}

/// One group's rows in a run file: the `rows` rows after those of the groups before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunGroup {
    /// The group.
    pub key: ShuffleKey,
    /// Rows of the group in this run.
    pub rows: u64,
}

/// One sorted run: an Arrow IPC file of the stored columns whose rows are in the
/// shuffle's group order ([`ShuffleKey`]), each group's rows consecutive.
///
/// Serialisable, for a map task's report; a reduce task reads the groups it is given
/// from every run ([`RunMerge`](crate::RunMerge)). The serialised form lists groups by
/// partition path, each with its (bucket, rows) pairs: about 8 bytes
/// of JSON a group, as a run of a write with thousands of groups lists them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RunFileWire", into = "RunFileWire")]
pub struct RunFile {
    /// Path relative to the root the run writer was given.
    pub path: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// Where the end-of-stream marker and the IPC footer start (the end of the last
    /// batch): a reader fetches `tail_offset..size_bytes` for the footer.
    pub tail_offset: u64,
    /// Rows in the file.
    pub rows: u64,
    /// Rows of each record batch, in file order.
    pub block_rows: Vec<u32>,
    /// The groups, in strictly increasing key order.
    pub groups: Vec<RunGroup>,
}

/// (partition path, [(bucket, rows)]) for consecutive groups of one path: how a run's
/// groups are serialised.
type PathGroups = (String, Vec<(Option<u32>, u64)>);

/// The serialised form of a [`RunFile`]: groups by partition path, in order.
#[derive(Serialize, Deserialize)]
struct RunFileWire {
    path: String,
    size_bytes: u64,
    tail_offset: u64,
    rows: u64,
    block_rows: Vec<u32>,
    groups: Vec<PathGroups>,
}

impl From<RunFile> for RunFileWire {
    fn from(run: RunFile) -> Self {
        let mut groups: Vec<PathGroups> = Vec::new();
        for group in run.groups {
            let entry = (group.key.bucket, group.rows);
            match groups.last_mut() {
                Some((path, entries)) if *path == group.key.partition_path => entries.push(entry),
                _ => groups.push((group.key.partition_path, vec![entry])),
            }
        }
        Self {
            path: run.path,
            size_bytes: run.size_bytes,
            tail_offset: run.tail_offset,
            rows: run.rows,
            block_rows: run.block_rows,
            groups,
        }
    }
}

impl From<RunFileWire> for RunFile {
    fn from(wire: RunFileWire) -> Self {
        let groups = wire
            .groups
            .into_iter()
            .flat_map(|(path, entries)| {
                entries.into_iter().map(move |(bucket, rows)| RunGroup {
                    key: ShuffleKey {
                        partition_path: path.clone(),
                        bucket,
                    },
                    rows,
                })
            })
            .collect();
        Self {
            path: wire.path,
            size_bytes: wire.size_bytes,
            tail_offset: wire.tail_offset,
            rows: wire.rows,
            block_rows: wire.block_rows,
            groups,
        }
    }
}

impl RunFile {
    /// The groups of this run that `range` selects: a contiguous slice, since groups are
    /// in key order.
    pub fn groups_in(&self, range: &GroupRange) -> &[RunGroup] {
        let (start, end) = self.group_span(range);
        &self.groups[start..end]
    }

    /// Indices `start..end` of the groups `range` selects.
    pub(crate) fn group_span(&self, range: &GroupRange) -> (usize, usize) {
        let start = match &range.start {
            Some(start) => self.groups.partition_point(|g| g.key < *start),
            None => 0,
        };
        let end = match &range.end {
            Some(end) => self.groups.partition_point(|g| g.key < *end),
            None => self.groups.len(),
        };
        (start, end.max(start))
    }

    /// About how many bytes of the file `rows` of its rows take (an average over the
    /// run), for planning ranges.
    pub fn estimated_bytes(&self, rows: u64) -> u64 {
        let per_row = self.tail_offset as f64 / self.rows.max(1) as f64;
        (rows as f64 * per_row).ceil() as u64
    }
}

/// A contiguous range of groups in the shuffle's order: from `start` (inclusive) to
/// `end` (exclusive); `None` is unbounded. A reduce task is given one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRange {
    /// First group of the range; `None` from the first group.
    pub start: Option<ShuffleKey>,
    /// First group after the range; `None` up to the last group.
    pub end: Option<ShuffleKey>,
}

impl GroupRange {
    /// Every group.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &ShuffleKey) -> bool {
        self.start.as_ref().is_none_or(|s| s <= key) && self.end.as_ref().is_none_or(|e| key < e)
    }
}

/// Cut the groups of `runs` into consecutive ranges of about `target_bytes` of run
/// bytes each ([`RunFile::estimated_bytes`]; a group is never cut, and a group bigger
/// than the target is a range of its own), covering every group: one reduce task per
/// range.
pub fn split_group_ranges(runs: &[RunFile], target_bytes: u64) -> Vec<GroupRange> {
    let mut sizes: BTreeMap<&ShuffleKey, u64> = BTreeMap::new();
    for run in runs {
        for group in &run.groups {
            *sizes.entry(&group.key).or_default() += run.estimated_bytes(group.rows);
        }
    }
    let mut ranges = Vec::new();
    let mut start: Option<ShuffleKey> = None;
    let mut bytes = 0u64;
    for (key, size) in sizes {
        if bytes > 0 && bytes + size > target_bytes {
            let end = Some(key.clone());
            ranges.push(GroupRange {
                start: start.take(),
                end: end.clone(),
            });
            start = end;
            bytes = 0;
        }
        bytes += size;
    }
    ranges.push(GroupRange { start, end: None });
    ranges
}

/// The schema of a run file: the stored columns with dictionary columns written as
/// their values. The IPC file format allows one dictionary per column for the whole
/// file, and a run's batches gather rows from many input batches, each with a
/// dictionary of its own; readers cast them back ([`arrow::compute::cast`]).
pub(crate) fn run_schema(file_schema: &Schema) -> SchemaRef {
    let fields: Fields = file_schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => FieldRef::new(
                Field::new(f.name(), value.as_ref().clone(), f.is_nullable())
                    .with_metadata(f.metadata().clone()),
            ),
            _ => FieldRef::clone(f),
        })
        .collect();
    SchemaRef::new(Schema::new_with_metadata(
        fields,
        file_schema.metadata().clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, bucket: Option<u32>) -> ShuffleKey {
        ShuffleKey {
            partition_path: path.to_string(),
            bucket,
        }
    }

    /// A run of groups (path, bucket, rows) at a byte a row.
    fn run(keys: &[(&str, Option<u32>, u64)]) -> RunFile {
        let rows = keys.iter().map(|k| k.2).sum();
        RunFile {
            path: "r".into(),
            size_bytes: rows + 100,
            tail_offset: rows,
            rows,
            block_rows: vec![rows as u32],
            groups: keys
                .iter()
                .map(|&(p, b, rows)| RunGroup {
                    key: key(p, b),
                    rows,
                })
                .collect(),
        }
    }

    #[test]
    fn keys_order_by_path_then_bucket_and_read_well() {
        let mut keys = [
            key("d=2", Some(0)),
            key("d=10", Some(1)),
            key("d=10", Some(0)),
            key("d=__HIVE_DEFAULT_PARTITION__", None),
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "d=10 bucket 0",
                "d=10 bucket 1",
                "d=2 bucket 0",
                "d=__HIVE_DEFAULT_PARTITION__"
            ]
        );
        assert_eq!(key("", Some(3)).to_string(), "(unpartitioned) bucket 3");
    }

    #[test]
    fn ranges_cover_every_group_once_and_select_slices() {
        let runs = [
            run(&[("a", None, 10), ("c", None, 10), ("e", None, 50)]),
            run(&[("b", None, 10), ("c", None, 5), ("d", None, 1)]),
        ];
        let ranges = split_group_ranges(&runs, 20);
        assert_eq!(ranges.first().and_then(|r| r.start.clone()), None);
        assert_eq!(ranges.last().and_then(|r| r.end.clone()), None);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        for p in ["a", "b", "c", "d", "e"] {
            let holding = ranges.iter().filter(|r| r.contains(&key(p, None))).count();
            assert_eq!(holding, 1, "{p}");
        }
        // a+b = 20 bytes, then c+d = 16, then e alone.
        assert_eq!(ranges.len(), 3, "{ranges:?}");
        let middle: Vec<&str> = runs[0]
            .groups_in(&ranges[1])
            .iter()
            .map(|g| g.key.partition_path.as_str())
            .collect();
        assert_eq!(middle, ["c"]);
        assert_eq!(runs[1].groups_in(&ranges[1]).len(), 2);
        assert_eq!(runs[0].groups_in(&GroupRange::all()).len(), 3);
        assert_eq!(split_group_ranges(&[], 1), [GroupRange::all()]);
    }

    /// The report form is pinned: map tasks of one version are read by reduce tasks of
    /// another during an upgrade.
    #[test]
    fn run_files_survive_json_in_their_compact_form() {
        let r = run(&[
            ("a=1", Some(2), 7),
            ("a=1", Some(5), 1),
            ("a=2", Some(0), 3),
            ("", None, 4),
        ]);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"path":"r","size_bytes":115,"tail_offset":15,"rows":15,"block_rows":[15],"groups":[["a=1",[[2,7],[5,1]]],["a=2",[[0,3]]],["",[[null,4]]]]}"#
        );
        let back: RunFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}

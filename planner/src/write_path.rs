//! Which path an ingest's rows take to their files, picked from the plan unless the user
//! says.
//!
//! A direct write task writes a file for every (partition, bucket) group its rows touch
//! and keeps one open per group meanwhile, so `S` splits touching `G` groups make up to
//! `S x G` files, and a task's memory grows with `G`. A shuffle makes one file per group
//! whatever `S` is, for a second pass over the rows. So the direct path is taken where it
//! already gives one file per group at bounded memory (a layout of one group, or one
//! split touching few groups), the shuffle everywhere else: through pieces where the
//! groups are few (their row groups are copied, not encoded again), through sorted runs
//! where they are many (bench/README.md, "Backfill").
//!
//! The group count comes from a sample (the first batch of the first input), which
//! undercounts inputs sorted by the partition column; that only makes the pick lean to
//! pieces, which then touch few groups per map task too.

use serde::{Deserialize, Serialize};

use terrace_format::Layout;

/// Up to this many (partition, bucket) groups in the sample, a shuffle stages pieces and
/// one split is written directly; past it a direct task would hold too many open files,
/// and a shuffle through pieces writes a file per map task and group.
pub const FEW_GROUPS: usize = 256;

/// How a shuffle carries each (partition, bucket) group's rows from the map tasks to the
/// reduce task that writes the group's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShuffleMethod {
    /// Map tasks sort their rows by group into a few runs; each reduce task merges its
    /// groups from every run. Memory and files do not grow with the number of groups.
    Runs,
    /// Map tasks write a piece per group in the final encoding, which the reduce copies
    /// into the group's file row group by row group: a file per map task and group.
    Pieces,
}

/// The path an ingest takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePath {
    /// Each write task writes its rows into the dataset's files.
    Direct,
    /// Map tasks stage the rows, reduce tasks write one file per group.
    Shuffle(ShuffleMethod),
}

impl WritePath {
    /// Whether the rows go through a shuffle.
    pub fn is_shuffle(self) -> bool {
        matches!(self, WritePath::Shuffle(_))
    }

    /// The shuffle's method, if any.
    pub fn shuffle_method(self) -> Option<ShuffleMethod> {
        match self {
            WritePath::Direct => None,
            WritePath::Shuffle(m) => Some(m),
        }
    }
}

impl std::fmt::Display for WritePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WritePath::Direct => "direct write",
            WritePath::Shuffle(ShuffleMethod::Runs) => "shuffle through sorted runs",
            WritePath::Shuffle(ShuffleMethod::Pieces) => "shuffle through pieces",
        })
    }
}

/// What the user asked for, if anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRequest {
    /// `Some(true)`: shuffle; `Some(false)`: write directly; `None`: pick.
    pub shuffle: Option<bool>,
    /// The shuffle's method; `None`: pick.
    pub method: Option<ShuffleMethod>,
}

impl PathRequest {
    /// Whether [`pick_write_path`] looks at a group sample for this request into `layout`:
    /// when neither the path nor the method is asked for and the layout has groups.
    pub fn needs_sample(&self, layout: &Layout) -> bool {
        has_groups(layout) && self.shuffle != Some(false) && self.method.is_none()
    }
}

/// Whether `layout` cuts rows into more than one group.
fn has_groups(layout: &Layout) -> bool {
    !layout.partition_on.is_empty() || layout.is_bucketed()
}

/// The (partition, bucket) groups in a sample of the input rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSample {
    /// Rows sampled.
    pub rows: usize,
    /// Distinct groups among them.
    pub groups: usize,
}

/// The path picked, and why, as `explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathPick {
    /// The path.
    pub path: WritePath,
    /// Why, in a sentence.
    pub why: String,
    /// Splits of the input at the direct path's task size.
    pub splits: usize,
    /// The sample the pick looked at (none when the user chose everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<GroupSample>,
}

/// Pick the path of an ingest of `splits` splits (at the direct path's task size) into
/// `layout`, from what the user asked and the group sample (`None` when none was taken:
/// the request decided, or the layout has one group).
pub fn pick_write_path(
    request: PathRequest,
    layout: &Layout,
    splits: usize,
    sample: Option<GroupSample>,
) -> PathPick {
    let pick = |path: WritePath, why: String| PathPick {
        path,
        why,
        splits,
        sample,
    };
    let many = sample.is_some_and(|s| s.groups > FEW_GROUPS);
    let method_by_sample = || match sample {
        Some(s) if s.groups > FEW_GROUPS => (
            ShuffleMethod::Runs,
            format!(
                "{} rows sampled hold {} (partition, bucket) groups, more than {FEW_GROUPS}",
                s.rows, s.groups
            ),
        ),
        Some(s) => (
            ShuffleMethod::Pieces,
            format!(
                "{} rows sampled hold {} (partition, bucket) groups, at most {FEW_GROUPS}",
                s.rows, s.groups
            ),
        ),
        None => (ShuffleMethod::Pieces, "no sample".to_string()),
    };
    match (request.shuffle, request.method) {
        (Some(false), _) => pick(WritePath::Direct, "asked for (--no-shuffle)".into()),
        (_, Some(method)) => pick(
            WritePath::Shuffle(method),
            "asked for (--shuffle-method)".into(),
        ),
        (Some(true), None) => {
            let (method, why) = method_by_sample();
            pick(
                WritePath::Shuffle(method),
                format!("--shuffle; its method because {why}"),
            )
        }
        (None, None) if !has_groups(layout) => pick(
            WritePath::Direct,
            "the layout has no partition or bucket columns: files are cut by size alone".into(),
        ),
        (None, None) if many => {
            let (method, why) = method_by_sample();
            pick(
                WritePath::Shuffle(method),
                format!("{why}: a direct write task would keep a file open per group"),
            )
        }
        (None, None) if splits <= 1 => pick(
            WritePath::Direct,
            "one direct write task: it writes each group's file once".into(),
        ),
        (None, None) => {
            let (method, why) = method_by_sample();
            pick(
                WritePath::Shuffle(method),
                format!("{splits} direct write tasks would each write a file per group; {why}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days() -> Layout {
        Layout {
            partition_on: vec!["day".into()],
            ..Layout::default()
        }
    }

    fn sample(groups: usize) -> Option<GroupSample> {
        Some(GroupSample { rows: 8192, groups })
    }

    #[test]
    fn the_request_decides_where_it_says() {
        let direct = PathRequest {
            shuffle: Some(false),
            method: None,
        };
        assert_eq!(
            pick_write_path(direct, &days(), 8, sample(5000)).path,
            WritePath::Direct
        );
        let pieces = PathRequest {
            shuffle: Some(true),
            method: Some(ShuffleMethod::Pieces),
        };
        assert_eq!(
            pick_write_path(pieces, &days(), 8, sample(5000)).path,
            WritePath::Shuffle(ShuffleMethod::Pieces)
        );
        let shuffle = PathRequest {
            shuffle: Some(true),
            method: None,
        };
        assert_eq!(
            pick_write_path(shuffle, &days(), 1, sample(5000)).path,
            WritePath::Shuffle(ShuffleMethod::Runs)
        );
        assert_eq!(
            pick_write_path(shuffle, &days(), 1, sample(3)).path,
            WritePath::Shuffle(ShuffleMethod::Pieces)
        );
    }

    #[test]
    fn without_a_request_the_plan_decides() {
        let auto = PathRequest::default();
        // One group: nothing to shuffle for.
        let pick = pick_write_path(auto, &Layout::default(), 8, None);
        assert_eq!(pick.path, WritePath::Direct);
        // Many groups: runs, even from one split (a direct task would hold them all).
        let pick = pick_write_path(auto, &days(), 1, sample(2526));
        assert_eq!(pick.path, WritePath::Shuffle(ShuffleMethod::Runs));
        assert!(pick.why.contains("2526"), "{}", pick.why);
        // Few groups: one split writes them directly, several shuffle through pieces.
        assert_eq!(
            pick_write_path(auto, &days(), 1, sample(7)).path,
            WritePath::Direct
        );
        let pick = pick_write_path(auto, &days(), 4, sample(7));
        assert_eq!(pick.path, WritePath::Shuffle(ShuffleMethod::Pieces));
        assert!(pick.why.contains("4 direct write tasks"), "{}", pick.why);
        // The boundary.
        assert_eq!(
            pick_write_path(auto, &days(), 4, sample(FEW_GROUPS)).path,
            WritePath::Shuffle(ShuffleMethod::Pieces)
        );
        assert_eq!(
            pick_write_path(auto, &days(), 4, sample(FEW_GROUPS + 1)).path,
            WritePath::Shuffle(ShuffleMethod::Runs)
        );
    }

    #[test]
    fn a_pick_round_trips_through_json() {
        let pick = pick_write_path(PathRequest::default(), &days(), 3, sample(9));
        let json = serde_json::to_value(&pick).unwrap();
        assert_eq!(json["path"], serde_json::json!({"shuffle": "pieces"}));
        assert_eq!(serde_json::from_value::<PathPick>(json).unwrap(), pick);
        let json = serde_json::to_value(WritePath::Direct).unwrap();
        assert_eq!(json, serde_json::json!("direct"));
    }
}

//! The inputs of a write as data: listing globs into files, and cutting the files into
//! splits, one per write or map task. Reading their rows is terrace-format's
//! ([`terrace_format::read_split`]); only the footers of big Parquet files are read here,
//! for their row-group boundaries.
//!
//! Inputs are local paths or object-store URLs (`s3://b/in/*.csv`, `memory://x/*.jsonl`),
//! with glob patterns (`*`, `?`, `[..]`, `**`) in their path. Formats: CSV (with a
//! header), Parquet, JSON lines, Arrow IPC streams; by extension unless given (a `.gz`
//! suffix aside: see [`InputFile::gzipped`]). An empty file, or one two inputs name, is
//! refused when it is listed.
//!
//! Splits: Parquet files larger than the target are cut at row-group boundaries, and
//! consecutive other files are grouped, into as many splits as there are targets in their
//! size, as even as the boundaries allow ([`balanced_partition`]). CSV, JSON
//! lines and Arrow files are never cut: finding a record boundary at a byte offset would
//! need reading and re-synchronising on quoted newlines, so a big CSV file is one split
//! (it is still read as a stream, in bounded memory).

use futures::stream::StreamExt;
use object_store::ObjectStoreExt;
use terrace_format::{InputFile, InputFormat, InputSplit, Location, SplitPart};

use crate::error::{Error, Result};

fn glob_start(pattern: &str) -> Option<usize> {
    pattern.find(['*', '?', '['])
}

fn store_error(path: &str) -> impl Fn(object_store::Error) -> Error + '_ {
    move |source| Error::ObjectStore {
        path: path.to_string(),
        source,
    }
}

fn location(text: &str) -> Result<Location> {
    terrace_format::input_location(text).map_err(Error::input)
}

/// List the files matching `patterns` (paths, URLs, globs), in pattern order then path
/// order. `format` forces the format; otherwise each file's extension decides.
pub async fn list_inputs(
    patterns: &[String],
    format: Option<InputFormat>,
) -> Result<Vec<InputFile>> {
    if patterns.is_empty() {
        return Err(Error::invalid("inputs", "no input given"));
    }
    let mut out: Vec<InputFile> = Vec::new();
    // Which pattern each file came from, to refuse a file two patterns name.
    let mut named_by: Vec<&String> = Vec::new();
    for pattern in patterns {
        let format_of = |path: &str| {
            format
                .or_else(|| InputFormat::from_path(path))
                .ok_or_else(|| Error::Input {
                    path: path.to_string(),
                    reason:
                        "unknown format (use .csv, .parquet, .jsonl or .arrow, or give the format)"
                            .to_string(),
                })
        };
        let Some(start) = glob_start(pattern) else {
            let loc = location(pattern)?;
            let meta = loc.store.head(&loc.root).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => Error::Input {
                    path: pattern.clone(),
                    reason: "no such file".to_string(),
                },
                other => store_error(pattern)(other),
            })?;
            named_by.push(pattern);
            out.push(InputFile {
                location: pattern.clone(),
                format: format_of(pattern)?,
                size_bytes: meta.size,
            });
            continue;
        };
        let dir_end = pattern[..start].rfind('/').map(|i| i + 1).unwrap_or(0);
        let (dir, rest) = pattern.split_at(dir_end);
        let dir_text = if dir.is_empty() { "." } else { dir };
        let loc = location(dir_text)?;
        let glob = glob::Pattern::new(rest)
            .map_err(|e| Error::invalid(format!("glob {pattern:?}"), e.to_string()))?;
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let mut listed = loc.store.list(Some(&loc.root));
        let mut matches = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = match meta {
                Ok(m) => m,
                // A missing directory is an empty glob, reported below.
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(store_error(pattern)(e)),
            };
            let Some(relative) = meta.location.prefix_match(&loc.root) else {
                continue;
            };
            let relative: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
            let relative = relative.join("/");
            if glob.matches_with(&relative, options) {
                matches.push((relative, meta.size));
            }
        }
        if matches.is_empty() {
            return Err(Error::EmptyGlob {
                pattern: pattern.clone(),
            });
        }
        matches.sort();
        for (relative, size) in matches {
            let full = format!("{dir}{relative}");
            named_by.push(pattern);
            out.push(InputFile {
                format: format_of(&full)?,
                location: full,
                size_bytes: size,
            });
        }
    }
    terrace_format::check_not_empty(&out).map_err(Error::input)?;
    // A file named twice would be ingested twice: refuse rather than double its rows.
    let mut first_named_by: std::collections::HashMap<&str, &String> =
        std::collections::HashMap::new();
    for (file, pattern) in out.iter().zip(&named_by) {
        if let Some(first) = first_named_by.insert(&file.location, *pattern) {
            return Err(Error::Input {
                path: file.location.clone(),
                reason: format!(
                    "named by both the inputs {first:?} and {pattern:?}; give each file once"
                ),
            });
        }
    }
    Ok(out)
}

/// Cut and group inputs into splits of about `target_bytes` (see the module docs).
pub async fn split_inputs(files: &[InputFile], target_bytes: u64) -> Result<Vec<InputSplit>> {
    let target = target_bytes.max(1);
    let mut splits = Vec::new();
    // Consecutive files that are not cut, grouped when the run ends.
    let mut whole: Vec<&InputFile> = Vec::new();
    let group_whole = |whole: &mut Vec<&InputFile>, splits: &mut Vec<InputSplit>| {
        let sizes: Vec<u64> = whole.iter().map(|f| f.size_bytes).collect();
        for range in balanced_partition(&sizes, target) {
            splits.push(InputSplit {
                parts: whole[range]
                    .iter()
                    .map(|&file| SplitPart {
                        file: file.clone(),
                        row_groups: None,
                    })
                    .collect(),
            });
        }
        whole.clear();
    };
    for file in files {
        if file.format == InputFormat::Parquet && file.size_bytes > target {
            group_whole(&mut whole, &mut splits);
            let sizes = terrace_format::parquet_row_group_bytes(file)
                .await
                .map_err(Error::input)?;
            for range in balanced_partition(&sizes, target) {
                splits.push(InputSplit {
                    parts: vec![SplitPart {
                        file: file.clone(),
                        row_groups: Some(range.collect()),
                    }],
                });
            }
            continue;
        }
        whole.push(file);
    }
    group_whole(&mut whole, &mut splits);
    Ok(splits)
}

/// Cut `sizes` (files or row groups, in order) into at most as many contiguous runs as
/// there are `target`s in their sum (rounded up), with the largest run at most 1/8 above
/// the smallest it can be.
///
/// Cutting greedily at the target instead makes lopsided splits, and the task with the
/// most files runs alone at the end of the ingest. Runs are then filled up to 1/8 above
/// that smallest largest run, which takes the fewest runs among nearly as even cuts: at
/// exactly the smallest, files of nearly equal sizes could be cut into pairs and single
/// files, and a single file's map task makes pieces too small to combine by copying.
fn balanced_partition(sizes: &[u64], target: u64) -> Vec<std::ops::Range<usize>> {
    if sizes.is_empty() {
        return Vec::new();
    }
    let target = target.max(1);
    let total: u64 = sizes.iter().sum();
    let runs = total.div_ceil(target).max(1);
    // Runs of greedy filling up to `capacity` (which is at least the largest size).
    let fill = |capacity: u64| {
        let mut ranges = Vec::new();
        let (mut start, mut bytes) = (0, 0u64);
        for (i, &size) in sizes.iter().enumerate() {
            if i > start && bytes + size > capacity {
                ranges.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        ranges.push(start..sizes.len());
        ranges
    };
    // Greedy filling gives the fewest runs for a capacity, so the smallest capacity
    // that needs at most `runs` runs is found by bisection.
    let (mut low, mut high) = (
        sizes.iter().copied().max().unwrap_or(0).max(1),
        total.max(1),
    );
    while low < high {
        let mid = low + (high - low) / 2;
        if fill(mid).len() as u64 <= runs {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    fill(low.saturating_add(low / 8))
}

#[cfg(test)]
mod tests {
    use super::balanced_partition;
    use proptest::prelude::*;

    /// The smallest largest run over every cut of `sizes` into at most `runs` runs.
    fn best_largest_run(sizes: &[u64], runs: usize) -> u64 {
        if runs == 1 || sizes.len() <= 1 {
            return sizes.iter().sum();
        }
        (1..sizes.len())
            .map(|cut| {
                let head: u64 = sizes[..cut].iter().sum();
                head.max(best_largest_run(&sizes[cut..], runs - 1))
            })
            .min()
            .unwrap_or(0)
    }

    #[test]
    fn equal_files_give_equal_splits() {
        let sizes = |n, size| vec![size; n];
        let lengths = |ranges: Vec<std::ops::Range<usize>>| -> Vec<usize> {
            ranges.into_iter().map(|r| r.len()).collect()
        };
        // The bench's inputs: 8 Parquet files of 26.6 MB, 8 CSV files of 95.7 MB.
        let target = 128 << 20;
        assert_eq!(
            lengths(balanced_partition(&sizes(8, 26_600_000), target)),
            [4, 4]
        );
        assert_eq!(
            lengths(balanced_partition(&sizes(8, 95_700_000), target)),
            [2, 2, 2, 2]
        );
        // The bench's CSV files, whose sizes differ a little.
        let csv = [
            95_075_626, 95_464_561, 95_898_570, 95_825_280, 95_989_576, 95_820_605, 95_827_715,
            95_964_073,
        ];
        assert_eq!(lengths(balanced_partition(&csv, target)), [2, 2, 2, 2]);
        assert_eq!(lengths(balanced_partition(&sizes(3, 10), 1000)), [3]);
        assert_eq!(lengths(balanced_partition(&sizes(3, 10), 1)), [1, 1, 1]);
        assert!(balanced_partition(&[], 10).is_empty());
    }

    proptest! {
        #[test]
        fn runs_cover_in_order_and_the_largest_is_near_the_smallest(
            sizes in proptest::collection::vec(0u64..100, 1..9),
            target in 1u64..400,
        ) {
            let ranges = balanced_partition(&sizes, target);
            let total: u64 = sizes.iter().sum();
            let allowed = total.div_ceil(target).max(1) as usize;
            prop_assert!(ranges.len() <= allowed, "{ranges:?} for {allowed}");
            let mut next = 0;
            for range in &ranges {
                prop_assert_eq!(range.start, next);
                prop_assert!(!range.is_empty());
                next = range.end;
            }
            prop_assert_eq!(next, sizes.len());
            let largest = ranges.iter().map(|r| sizes[r.clone()].iter().sum::<u64>()).max();
            let best = best_largest_run(&sizes, allowed);
            prop_assert!(largest.unwrap_or(0) <= best + best / 8, "{ranges:?}: {largest:?} > {best}");
        }
    }
}

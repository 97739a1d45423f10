//! Genomic-style regions: BED-like text, merging, and splitting into groups.
//!
//! A region is `contig:[start, end)` over a contig column and a position column, half-open
//! as in BED. Coordinates are taken as written and compared with the position column as
//! stored: no 0-/1-based conversion is made (a dataset storing VCF's 1-based `POS` should
//! be queried with regions shifted accordingly, or with `start` one lower).
//!
//! Regions are merged (overlapping or touching regions of a contig become one) before
//! they are split into groups, so the groups are disjoint and a row matches at most one
//! group: a region x sample plan never returns a row twice.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A half-open range `[start, end)` of positions on one contig.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Region {
    /// The contig (chromosome) name, compared with the contig column.
    pub contig: String,
    /// First position (inclusive).
    pub start: i64,
    /// End position (exclusive).
    pub end: i64,
}

impl Region {
    /// A region; `start <= end` is required.
    pub fn new(contig: impl Into<String>, start: i64, end: i64) -> Result<Region> {
        let contig = contig.into();
        if start > end {
            return Err(Error::invalid(
                "region",
                format!("{contig}:{start}-{end} ends before it starts"),
            ));
        }
        Ok(Region { contig, start, end })
    }
}

/// Parse BED-like text: one `contig<TAB>start<TAB>end` per line (more columns ignored,
/// whitespace also accepted as a separator); blank lines and lines starting with `#`,
/// `track` or `browser` are skipped. A malformed line is an error naming its line number.
///
/// ```
/// # use terrace_planner::{parse_bed, Region};
/// let regions = parse_bed("# header\nchr1\t10\t20\n\nchr2\t0\t5\tname\n")?;
/// assert_eq!(regions, vec![Region::new("chr1", 10, 20)?, Region::new("chr2", 0, 5)?]);
/// assert!(parse_bed("chr1\t10\n").is_err());
/// # Ok::<(), terrace_planner::Error>(())
/// ```
pub fn parse_bed(text: &str) -> Result<Vec<Region>> {
    let mut regions = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty()
            || trimmed.starts_with('#')
            || trimmed.starts_with("track")
            || trimmed.starts_with("browser")
        {
            continue;
        }
        let bad = |reason: String| Error::invalid(format!("regions line {number}"), reason);
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').map(str::trim).collect()
        } else {
            trimmed.split_whitespace().collect()
        };
        let [contig, start, end, ..] = fields.as_slice() else {
            return Err(bad(format!(
                "expected `contig<TAB>start<TAB>end`, found {line:?}"
            )));
        };
        let number_of = |text: &str, what: &str| {
            text.parse::<i64>()
                .map_err(|_| bad(format!("{what} {text:?} is not an integer")))
        };
        let (start, end) = (number_of(start, "start")?, number_of(end, "end")?);
        if contig.is_empty() {
            return Err(bad("the contig is empty".to_string()));
        }
        if start > end {
            return Err(bad(format!("start {start} is after end {end}")));
        }
        regions.push(Region {
            contig: contig.to_string(),
            start,
            end,
        });
    }
    Ok(regions)
}

/// Sort and merge overlapping or touching regions of each contig; empty regions vanish.
pub fn merge_regions(mut regions: Vec<Region>) -> Vec<Region> {
    regions.retain(|r| r.start < r.end);
    regions.sort();
    let mut merged: Vec<Region> = Vec::with_capacity(regions.len());
    for region in regions {
        match merged.last_mut() {
            Some(last) if last.contig == region.contig && region.start <= last.end => {
                last.end = last.end.max(region.end);
            }
            _ => merged.push(region),
        }
    }
    merged
}

/// Split merged regions into at most `groups` contiguous groups of balanced total length.
///
/// Groups keep the sorted order, so a group covers neighbouring regions (good locality
/// for the files a task reads). Fewer groups come back when there are fewer regions.
pub fn split_regions(regions: &[Region], groups: usize) -> Vec<Vec<Region>> {
    let groups = groups.max(1).min(regions.len().max(1));
    if regions.is_empty() {
        return Vec::new();
    }
    let lengths: Vec<u128> = regions
        .iter()
        .map(|r| (r.end as i128 - r.start as i128).max(1) as u128)
        .collect();
    let total: u128 = lengths.iter().sum();
    let mut out: Vec<Vec<Region>> = Vec::with_capacity(groups);
    let mut current = Vec::new();
    let mut done: u128 = 0;
    for (i, (region, length)) in regions.iter().zip(&lengths).enumerate() {
        current.push(region.clone());
        done += length;
        let remaining_regions = regions.len() - i - 1;
        let remaining_groups = groups - out.len() - 1;
        // Close the group once its share of the total is reached, but always leave at
        // least one region for each group still to fill.
        let share = total * (out.len() as u128 + 1) / groups as u128;
        if remaining_groups > 0
            && (done >= share || remaining_regions == remaining_groups)
            && remaining_regions >= remaining_groups
        {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(c: &str, s: i64, e: i64) -> Region {
        Region::new(c, s, e).unwrap()
    }

    #[test]
    fn bed_lines() {
        let text = "browser x\ntrack y\n#c\nchr1 5 9\r\nchr1\t1\t3\tfoo\n";
        assert_eq!(
            parse_bed(text).unwrap(),
            vec![r("chr1", 5, 9), r("chr1", 1, 3)]
        );
        let err = parse_bed("chr1\t1\t3\nchr1\tx\t4\n").unwrap_err();
        assert!(err.to_string().contains("regions line 2"), "{err}");
        let err = parse_bed("chr1\t9\t3\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn merge_overlaps_and_touching() {
        let merged = merge_regions(vec![
            r("chr2", 0, 10),
            r("chr1", 5, 9),
            r("chr1", 1, 5),
            r("chr1", 20, 30),
            r("chr1", 25, 27),
            r("chr1", 40, 40),
        ]);
        assert_eq!(
            merged,
            vec![r("chr1", 1, 9), r("chr1", 20, 30), r("chr2", 0, 10)]
        );
    }

    #[test]
    fn split_keeps_every_region_once() {
        let regions: Vec<Region> = (0..10)
            .map(|i| r("chr1", i * 100, i * 100 + 10 + i))
            .collect();
        for groups in 1..13 {
            let split = split_regions(&regions, groups);
            assert_eq!(split.len(), groups.min(10));
            assert!(split.iter().all(|g| !g.is_empty()));
            let flat: Vec<Region> = split.into_iter().flatten().collect();
            assert_eq!(flat, regions);
        }
    }
}

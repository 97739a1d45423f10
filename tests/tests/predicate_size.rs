//! Long and deep `--where` predicates through the `terrace` binary. A `--where` of 2,000+
//! OR terms used to overflow a worker thread's stack and abort the process (and every
//! process whose worker claimed the task after it). Long OR and AND chains now work and
//! return the right rows; absurd nesting is refused with one line, before anything is
//! queued.
//!
//! A command-line argument is at most 128 KiB on Linux, which is what bounds the sizes
//! here (short column names keep 10,000 terms under it).

use std::collections::BTreeSet;
use std::path::Path;

use terrace_tests::{job_count, terrace};

const ROWS: i64 = 20_000;

/// Row `k` of the dataset: `(k, s, g)`.
fn row(k: i64) -> (i64, String, i64) {
    (k, format!("s{}", k % 97), k % 7)
}

/// Ingest rows 0..ROWS (columns k, s, g) partitioned on g, in several files.
fn dataset(cwd: &Path) {
    std::fs::create_dir_all(cwd.join("in")).unwrap();
    for part in 0..4 {
        let mut text = String::from("k,s,g\n");
        for k in (part * ROWS / 4)..((part + 1) * ROWS / 4) {
            let (k, s, g) = row(k);
            text.push_str(&format!("{k},{s},{g}\n"));
        }
        std::fs::write(cwd.join(format!("in/part-{part}.csv")), text).unwrap();
    }
    terrace(
        cwd,
        &[],
        &[
            "ingest",
            "in/*.csv",
            "--into",
            "lake",
            "--partition-on",
            "g",
        ],
    )
    .ok();
}

/// The `k` of every row `terrace query --where predicate` returns.
fn query_keys(cwd: &Path, predicate: &str) -> Vec<i64> {
    assert!(predicate.len() < 128 * 1024, "{} bytes", predicate.len());
    let out = terrace(
        cwd,
        &[],
        &[
            "query",
            "lake",
            "--where",
            predicate,
            "--columns",
            "k",
            "--format",
            "csv",
        ],
    )
    .ok();
    let mut keys: Vec<i64> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.parse().unwrap())
        .collect();
    keys.sort_unstable();
    keys
}

fn expected(keep: impl Fn(i64, &str, i64) -> bool) -> Vec<i64> {
    (0..ROWS)
        .filter(|&k| {
            let (k, s, g) = row(k);
            keep(k, &s, g)
        })
        .collect()
}

/// Distinct pseudo-random values below `below`.
fn values(n: usize, below: i64, seed: u64) -> BTreeSet<i64> {
    let mut state = seed;
    let mut out = BTreeSet::new();
    while out.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.insert((state % below as u64) as i64);
    }
    out
}

#[test]
fn long_or_and_and_chains_return_the_right_rows_and_deep_nesting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset(cwd);

    // 2,000 OR terms of three shapes: equalities, AND groups in parentheses, BETWEENs.
    let mut terms = Vec::new();
    let mut equal = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    let mut ranges = Vec::new();
    for (i, v) in values(2_000, 2 * ROWS, 7).into_iter().enumerate() {
        match i % 3 {
            0 => {
                terms.push(format!("k = {v}"));
                equal.insert(v);
            }
            1 => {
                let (s, g) = (format!("s{}", v % 97), v % 5);
                terms.push(format!("(s = '{s}' AND g = {g})"));
                pairs.insert((s, g));
            }
            _ => {
                terms.push(format!("k BETWEEN {v} AND {}", v + 2));
                ranges.push((v, v + 2));
            }
        }
    }
    let want = expected(|k, s, g| {
        equal.contains(&k)
            || pairs.contains(&(s.to_string(), g))
            || ranges.iter().any(|&(lo, hi)| lo <= k && k <= hi)
    });
    assert!(!want.is_empty() && want.len() < ROWS as usize);
    assert_eq!(query_keys(cwd, &terms.join(" OR ")), want, "2,000 OR terms");

    // 10,000 OR terms, half of them matching no row.
    let wanted = values(10_000, 2 * ROWS, 11);
    let predicate: Vec<String> = wanted.iter().map(|v| format!("k={v}")).collect();
    let want = expected(|k, _, _| wanted.contains(&k));
    assert_eq!(
        query_keys(cwd, &predicate.join(" OR ")),
        want,
        "10,000 OR terms"
    );

    // 10,000 AND terms.
    let unwanted = values(10_000, ROWS, 13);
    let predicate: Vec<String> = unwanted.iter().map(|v| format!("k<>{v}")).collect();
    let want = expected(|k, _, _| !unwanted.contains(&k));
    assert_eq!(
        query_keys(cwd, &predicate.join(" AND ")),
        want,
        "10,000 AND terms"
    );

    // Absurd nesting: refused on the client with one line, nothing queued. 100,000
    // levels do not fit in one argument well-formed, so opened only; 60,000 well-formed.
    let before = job_count(cwd);
    for predicate in [
        format!("{}k = 1", "(".repeat(100_000)),
        format!("{}k = 1{}", "(".repeat(60_000), ")".repeat(60_000)),
        format!("{}k = 1", "NOT ".repeat(30_000)),
    ] {
        for command in ["query", "explain", "delete"] {
            let out = terrace(cwd, &[], &[command, "lake", "--where", &predicate]);
            assert_eq!(out.code, 1, "{command}: {out:?}");
            assert!(
                out.stderr
                    .contains("--where: predicate too large: nested deeper than 64 levels"),
                "{command}: {}",
                out.stderr
            );
            assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
        }
    }
    assert_eq!(job_count(cwd), before, "nothing was queued");
}

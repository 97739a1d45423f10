//! User SQL through the `terrace` binary: `--map` / `--reduce` SQL that is not one query
//! (COPY … TO, CREATE EXTERNAL TABLE, SET, INSERT, DROP, a second statement) is refused
//! with one line naming the flag, before anything is queued; no file is written, the
//! dataset is unchanged. Queries still run, and SQL cannot read files by name.

use std::path::Path;

use terrace_tests::{job_count, terrace, write_flights_csv};

/// Every file below `dir` (relative path, size, bytes): compared before and after.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn map_and_reduce_sql_other_than_a_query_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    write_flights_csv(&cwd.join("flights"), 2, 300);
    terrace(
        cwd,
        &[],
        &[
            "ingest",
            "flights/*.csv",
            "--into",
            "lake/f",
            "--partition-on",
            "origin",
        ],
    )
    .ok();
    let outside = cwd.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = |name: &str| outside.join(name).display().to_string();
    let dataset = cwd.join("lake/f");
    let version_file = dataset.join("_terrace/versions/00000000000000000001.json");
    let (jobs_before, data_before) = (job_count(cwd), snapshot(&dataset));

    let not = |what: &str| format!("only a query (SELECT …) is allowed, not {what}");
    let cases: Vec<(&str, String, String)> = vec![
        (
            "--map",
            format!("COPY (SELECT * FROM part) TO '{}'", target("copy.csv")),
            not("COPY"),
        ),
        (
            // The fault campaign overwrote the dataset's own version file this way.
            "--map",
            format!(
                "COPY (SELECT 1 AS x) TO '{}' STORED AS JSON",
                version_file.display()
            ),
            not("COPY"),
        ),
        (
            "--reduce",
            format!(
                "COPY (SELECT * FROM parts) TO '{}' STORED AS PARQUET",
                target("reduce.parquet")
            ),
            not("COPY"),
        ),
        (
            "--map",
            format!(
                "CREATE EXTERNAL TABLE stolen STORED AS CSV LOCATION '{}'",
                cwd.join("flights/flights-01.csv").display()
            ),
            not("CREATE EXTERNAL TABLE"),
        ),
        (
            "--reduce",
            "SET datafusion.execution.batch_size = 1".into(),
            not("SET"),
        ),
        ("--map", "INSERT INTO part VALUES (1)".into(), not("INSERT")),
        ("--reduce", "DROP TABLE parts".into(), not("DROP TABLE")),
        (
            "--map",
            format!(
                "SELECT * FROM part; COPY (SELECT 1) TO '{}'",
                target("second.csv")
            ),
            "only one query (SELECT …) is allowed, not 2 statements separated by `;`".into(),
        ),
    ];
    for (flag, sql, refusal) in &cases {
        let out = terrace(
            cwd,
            &[],
            &["query", "lake/f", "--where", "origin = 'JFK'", flag, sql],
        );
        let line = format!("{flag}: {refusal}");
        assert_eq!(out.code, 1, "{flag} {sql}: {out:?}");
        assert!(out.stderr.contains(&line), "{flag} {sql}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "one line: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    assert_eq!(job_count(cwd), jobs_before, "nothing was queued");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "no file was written outside"
    );
    assert!(
        snapshot(&dataset) == data_before,
        "the dataset is unchanged"
    );

    // SQL names tables, not files: there is no URL table and no file-reading function.
    for sql in [
        format!(
            "SELECT * FROM '{}'",
            cwd.join("flights/flights-01.csv").display()
        ),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
    ] {
        let out = terrace(cwd, &[], &["query", "lake/f", "--map", &sql]);
        assert_eq!(out.code, 1, "{sql}: {out:?}");
        assert!(out.stderr.contains("--map: "), "{sql}: {}", out.stderr);
    }
    assert_eq!(job_count(cwd), jobs_before, "nothing was queued");

    // A query is still a query.
    let out = terrace(
        cwd,
        &[],
        &[
            "query",
            "lake/f",
            "--map",
            "SELECT origin, count(*) AS n FROM part GROUP BY origin",
            "--reduce",
            "SELECT origin, sum(n) AS n FROM parts GROUP BY origin ORDER BY origin",
            "--format",
            "csv",
        ],
    )
    .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert_eq!(lines[0], "origin,n");
    let total: u64 = lines[1..]
        .iter()
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 600);
}

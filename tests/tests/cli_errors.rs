//! Every bad input the CLI issue lists: one clear line, exit code 1, no panic, and no
//! change to the dataset or the queue.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use terrace_tests::{
    dataset_version, files_below, ingest, job_count, terrace, terrace_bin, write_flights_csv,
};

/// Every file under `dir` with its size, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    files_below(dir)
        .into_iter()
        .map(|(p, n, _)| (p, n))
        .collect()
}

#[test]
fn bad_inputs_fail_cleanly_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    write_flights_csv(&cwd.join("flights"), 2, 500);
    ingest(
        cwd,
        &[
            "flights/*.csv",
            "--into",
            "lake/f",
            "--partition-on",
            "origin",
        ],
    )
    .ok();
    ingest(cwd, &["flights/flights-01.csv", "--into", "lake/f"]).ok();
    let (jobs_before, version_before) = (job_count(cwd), dataset_version(cwd, "lake/f"));
    assert_eq!(version_before, 2);

    // Missing input and empty glob: nothing is created.
    ingest(cwd, &["nope.csv", "--into", "lake/new"]).fails_with("nope.csv");
    std::fs::create_dir_all(cwd.join("empty")).unwrap();
    ingest(cwd, &["empty/*.csv", "--into", "lake/new"]).fails_with("no input file matches");
    assert!(!cwd.join("lake/new").exists());

    // Mixed schemas across inputs.
    std::fs::create_dir_all(cwd.join("mixed")).unwrap();
    std::fs::write(cwd.join("mixed/a.csv"), "a,b\n1,x\n").unwrap();
    std::fs::write(cwd.join("mixed/b.csv"), "a,c\n2,y\n").unwrap();
    ingest(cwd, &["mixed/*.csv", "--into", "lake/mixed"]).fails_with("b.csv");

    // Unknown columns, SQL errors, missing dataset.
    terrace(cwd, &[], &["query", "lake/f", "--where", "nope = 1"]).fails_with("\"nope\"");
    terrace(
        cwd,
        &[],
        &["query", "lake/f", "--columns", "origin", "nope"],
    )
    .fails_with("nope");
    terrace(
        cwd,
        &[],
        &["query", "lake/f", "--map", "SELEC month FROM part"],
    )
    .fails_with("--map");
    terrace(cwd, &[], &["query", "lake/missing"]).fails_with("no terrace dataset");

    // Unreachable database: clear error after a few tries, nothing else happens.
    terrace(
        cwd,
        &[],
        &[
            "--db",
            "postgres://postgres@127.0.0.1:1/x",
            "query",
            "lake/f",
        ],
    )
    .fails_with("cannot open the job queue");

    // Permission denied on the output (sysfs refuses new files even to root).
    terrace(
        cwd,
        &[],
        &["query", "lake/f", "--output", "/sys/kernel/terrace-out.csv"],
    )
    .fails_with("cannot write the output");

    assert_eq!(
        job_count(cwd),
        jobs_before,
        "no bad request reached the queue"
    );

    // A CSV with a bad row: the job fails with the line number, the dataset stays put.
    std::fs::create_dir_all(cwd.join("bad")).unwrap();
    let mut text = std::fs::read_to_string(cwd.join("flights/flights-01.csv")).unwrap();
    text.push_str("2013,1,1,not-a-number,0,AA,1,N1,JFK,BOS,100\n");
    let line = text.lines().count();
    std::fs::write(cwd.join("bad/bad.csv"), text).unwrap();
    // Inference would read the bad value as text; a given schema makes it a bad row.
    let schema = r#"[
        {"name": "year", "type": "Int64", "nullable": true},
        {"name": "month", "type": "Int64", "nullable": true},
        {"name": "day", "type": "Int64", "nullable": true},
        {"name": "dep_delay", "type": "Int64", "nullable": true},
        {"name": "arr_delay", "type": "Int64", "nullable": true},
        {"name": "carrier", "type": "Utf8", "nullable": true},
        {"name": "flight", "type": "Int64", "nullable": true},
        {"name": "tailnum", "type": "Utf8", "nullable": true},
        {"name": "origin", "type": "Utf8", "nullable": true},
        {"name": "dest", "type": "Utf8", "nullable": true},
        {"name": "distance", "type": "Int64", "nullable": true}
    ]"#;
    std::fs::write(cwd.join("schema.json"), schema).unwrap();
    ingest(
        cwd,
        &["bad/bad.csv", "--into", "lake/f", "--schema", "schema.json"],
    )
    .fails_with(&format!("line {line}"));
    assert_eq!(
        dataset_version(cwd, "lake/f"),
        version_before,
        "a failed ingest commits nothing"
    );

    // A version removed by gc.
    terrace(cwd, &[], &["gc", "lake/f", "--retention", "0s", "--force"]).ok();
    terrace(cwd, &[], &["query", "lake/f", "--version", "1"]).fails_with("version 1");
    terrace(
        cwd,
        &[],
        &["query", "lake/f", "--version", "2", "--limit", "1"],
    )
    .ok();

    // Usage errors exit 2.
    assert_eq!(terrace(cwd, &[], &["ingest", "x.csv"]).code, 2);
    assert_eq!(terrace(cwd, &[], &["status", "not-a-number"]).code, 2);
    let zero = ingest(
        cwd,
        &[
            "flights/*.csv",
            "--into",
            "lake/rg",
            "--row-group-rows",
            "0",
        ],
    );
    assert_eq!(zero.code, 2, "{}", zero.stderr);
    assert!(zero.stderr.contains("--row-group-rows"), "{}", zero.stderr);
    assert!(!cwd.join("lake/rg").exists());
    terrace(cwd, &[], &["status", "999999"]).fails_with("job 999999 not found");
}

/// `query --output F --detach` used to create (or empty) F and return with nothing left
/// to fill it; a query failing as it ran used to leave an existing F empty too.
#[test]
fn an_output_file_is_replaced_only_by_a_query_that_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    write_flights_csv(&cwd.join("flights"), 1, 300);
    ingest(cwd, &["flights/*.csv", "--into", "lake/f"]).ok();
    let query = |extra: &[&str]| {
        let mut args = vec!["query", "lake/f", "--where", "origin = 'JFK'"];
        args.extend_from_slice(extra);
        terrace(cwd, &[], &args)
    };
    let read = |name: &str| std::fs::read(cwd.join(name)).unwrap();
    query(&["--columns", "origin", "carrier", "--output", "res.csv"]).ok();
    let good = read("res.csv");
    assert!(good.split(|b| *b == b'\n').count() > 2, "too few rows");
    let (jobs_before, version_before) = (job_count(cwd), dataset_version(cwd, "lake/f"));

    // With --detach: refused before anything is submitted or written.
    query(&["--output", "res.csv", "--detach"])
        .fails_with("--output res.csv cannot be used with --detach");
    query(&["--output", "new.parquet", "--detach"]).fails_with("--detach");
    assert_eq!(
        job_count(cwd),
        jobs_before,
        "a refused query reached the queue"
    );
    assert_eq!(read("res.csv"), good, "a refused query touched the output");
    assert!(!cwd.join("new.parquet").exists());

    // A query that fails as it runs (its map cannot cast the rows) leaves the output as
    // it was, and no temporary file beside it.
    let cast = "SELECT CAST(origin AS INT) AS o FROM part";
    query(&["--map", cast, "--output", "res.csv"]).fails_with("query of lake/f failed");
    assert_eq!(read("res.csv"), good, "a failed query touched the output");
    query(&["--map", cast, "--output", "new.parquet"]).fails_with("query of lake/f failed");
    assert!(!cwd.join("new.parquet").exists());
    let names: Vec<String> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(dataset_version(cwd, "lake/f"), version_before);

    // A query that succeeds replaces the output, in either way of delivering it.
    query(&["--columns", "origin", "--limit", "1", "--output", "res.csv"]).ok();
    assert_eq!(read("res.csv"), b"origin\nJFK\n");
    query(&["--limit", "1", "--output", "res.parquet"]).ok();
    assert!(read("res.parquet").starts_with(b"PAR1"));
}

/// A small flights dataset `lake/f` partitioned on origin (EWR, JFK, LGA), at version 1.
fn flights_lake(cwd: &Path) {
    write_flights_csv(&cwd.join("flights"), 1, 300);
    ingest(
        cwd,
        &[
            "flights/*.csv",
            "--into",
            "lake/f",
            "--partition-on",
            "origin",
        ],
    )
    .ok();
}

/// Run terrace expecting a usage error: exit 2 with `needle` in stderr. A command that
/// took the flags would run (a worker until stopped), so it is killed after 60 s and
/// the test fails.
fn refused(cwd: &Path, args: &[&str], needle: &str) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let log = |stream: &str| cwd.join(format!("refused-{run}.{stream}"));
    let mut child = Command::new(terrace_bin())
        .current_dir(cwd)
        .env_remove("TERRACE_DB")
        .args(args)
        .stdout(std::fs::File::create(log("out")).unwrap())
        .stderr(std::fs::File::create(log("err")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "terrace {args:?} ran instead of refusing its flags:\n{}",
                std::fs::read_to_string(log("err")).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(log("err")).unwrap();
    assert_eq!(status.code(), Some(2), "terrace {args:?}:\n{stderr}");
    assert!(
        stderr.contains(needle),
        "expected {needle:?} in the stderr of terrace {args:?}:\n{stderr}"
    );
}

/// `--where "origin = NULL"` was accepted and matched nothing: `delete` printed "no
/// partition matched" and `query` returned 0 rows. Each command that takes --where
/// refuses it before anything is queued and says to write IS [NOT] NULL.
#[test]
fn where_with_a_comparison_to_null_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    let (jobs_before, files_before) = (job_count(cwd), files(&cwd.join("lake")));
    for (predicate, suggestion) in [
        ("origin = NULL", "origin IS NULL"),
        ("origin != NULL", "origin IS NOT NULL"),
        ("NULL = origin", "origin IS NULL"),
        (
            "origin IN ('JFK', NULL)",
            "origin IS NULL OR origin IN ('JFK')",
        ),
    ] {
        for command in ["query", "explain", "delete"] {
            let out = terrace(cwd, &[], &[command, "lake/f", "--where", predicate]);
            let out = out.fails_with("\"origin\" is compared with NULL");
            assert!(out.stderr.contains(suggestion), "{command}: {}", out.stderr);
        }
    }
    assert_eq!(
        job_count(cwd),
        jobs_before,
        "no refused request reached the queue"
    );
    assert_eq!(
        files(&cwd.join("lake")),
        files_before,
        "the dataset is untouched"
    );
}

/// `gc --retention 500ms` became a 0 s retention (no age safeguard for the files of
/// running jobs), and a huge retention wrapped around in release builds.
#[test]
fn gc_refuses_a_retention_under_a_second_or_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    // An older version and a leftover file that a 0 s retention would remove.
    ingest(
        cwd,
        &["flights/*.csv", "--into", "lake/f", "--mode", "overwrite"],
    )
    .ok();
    std::fs::write(cwd.join("lake/f/leftover.parquet"), b"x").unwrap();
    let (jobs_before, files_before) = (job_count(cwd), files(&cwd.join("lake")));

    terrace(cwd, &[], &["gc", "lake/f", "--retention", "500ms"])
        .fails_with("--retention: 500ms is not a whole number of seconds");
    terrace(cwd, &[], &["gc", "lake/f", "--retention", "1500ms"])
        .fails_with("not a whole number of seconds");
    refused(
        cwd,
        &["gc", "lake/f", "--retention", "30500568904944w"],
        "too long a duration",
    );
    assert_eq!(
        job_count(cwd),
        jobs_before,
        "no refused gc reached the queue"
    );
    assert_eq!(files(&cwd.join("lake")), files_before, "gc removed nothing");
}

/// Flags that were accepted and then ignored: `worker --concurrency 0` ran one slot,
/// `--workers` did nothing for `terrace worker` or with `--detach`, `--detach` and
/// `--workers` did nothing on commands that run no job, and the region column flags did
/// nothing without `--regions`.
#[test]
fn flags_that_would_be_ignored_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    let (jobs_before, files_before) = (job_count(cwd), files(&cwd.join("lake")));

    refused(cwd, &["worker", "--concurrency", "0"], "--concurrency");
    // How a shuffle carries rows means nothing without one, and names a method.
    let ingest = ["ingest", "flights/*.csv", "--into", "lake/f"];
    for (flags, needle) in [
        (&["--shuffle-method", "runs"][..], "--shuffle"),
        (&["--shuffle-method", "pieces"], "--shuffle"),
        (
            &["--shuffle", "--shuffle-method", "fast"],
            "--shuffle-method",
        ),
        // A shuffle asked for and refused at once.
        (&["--shuffle", "--no-shuffle"], "--no-shuffle"),
    ] {
        refused(cwd, &[&ingest[..], flags].concat(), needle);
    }
    refused(cwd, &["--workers", "2", "worker"], "--workers");
    refused(cwd, &["worker", "--workers", "2"], "--concurrency");
    refused(
        cwd,
        &["query", "lake/f", "--workers", "2", "--detach"],
        "--detach",
    );
    refused(
        cwd,
        &[
            "--detach",
            "delete",
            "lake/f",
            "--where",
            "origin = 'JFK'",
            "--workers",
            "1",
        ],
        "--workers",
    );
    let no_job: [&[&str]; 6] = [
        &["worker"],
        &["status"],
        &["jobs"],
        &["inspect", "lake/f"],
        &["explain", "lake/f", "--where", "origin = 'JFK'"],
        &["schedule", "list"],
    ];
    for command in no_job {
        for (flag, value) in [("--detach", None), ("--workers", Some("2"))] {
            if command == ["worker"] && flag == "--workers" {
                continue; // refused above, pointing at --concurrency
            }
            let mut args = command.to_vec();
            args.push(flag);
            args.extend(value);
            refused(
                cwd,
                &args,
                &format!("{flag} only acts on commands that run a job"),
            );
        }
    }
    // `schedule run` does run a job, so --detach is not refused there (the schedule does
    // not exist, which is the error).
    let run = [
        "schedule",
        "run",
        "nightly",
        "--at",
        "2026-11-23",
        "--detach",
    ];
    terrace(cwd, &[], &run).fails_with("no schedule named \"nightly\"");
    for command in ["query", "explain"] {
        refused(
            cwd,
            &[command, "lake/f", "--contig-column", "origin"],
            "--regions",
        );
        refused(
            cwd,
            &[command, "lake/f", "--position-column", "flight"],
            "--regions",
        );
    }
    assert_eq!(
        job_count(cwd),
        jobs_before,
        "no refused command reached the queue"
    );
    assert_eq!(
        files(&cwd.join("lake")),
        files_before,
        "the dataset is untouched"
    );
}
